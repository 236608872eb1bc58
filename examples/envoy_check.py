#!/usr/bin/env python3
"""Ask an ext_authz service what Envoy would ask: one `envoy.service.auth.v3.Authorization/Check`.

The request is built from Envoy's own protos (the `xds-protos` package) and sent with `grpcio`,
so this is the same message Envoy's ext_authz filter sends, minus the fields jwtgate ignores.

Usage:

    python3 -m venv .venv && .venv/bin/pip install -q -r tests/requirements.txt
    .venv/bin/python examples/envoy_check.py --token "$TOKEN"
    .venv/bin/python examples/envoy_check.py --addr 127.0.0.1:9001 --method POST --path '/orders?x=1' \\
        --host api.example.com --header 'x-request-id=abc-123' --header 'cookie=at=...' --timeout 2

It prints one JSON object on stdout:

    {"allowed": true, "grpc_code": 0, "http_status": null,
     "headers": {"x-jwt-sub": "alice"}, "headers_to_remove": [], "body": null,
     "metadata": {"jwtgate": {"provider": "corp", "iss": "...", "sub": "alice"}}}

`headers` are the ones to set upstream when allowed, or the ones sent to the client when denied;
`http_status` and `body` (parsed JSON) are the denial's. Exit status: 0 allowed, 1 denied,
2 no decision: transport failure, timeout, or a gRPC error status such as UNAVAILABLE (jwtgate
answers that when it has no usable keys; Envoy's `failure_mode_allow` then decides). The error
goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import json_format

EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Send one Envoy ext_authz v3 Check and print the answer as JSON.")
    p.add_argument("--addr", default="127.0.0.1:9001", help="host:port of the gRPC service (default %(default)s)")
    p.add_argument("--token", help="bearer token, sent as 'authorization: Bearer TOKEN'")
    p.add_argument("--method", default="GET", help="HTTP method (default %(default)s)")
    p.add_argument("--path", default="/", help="path including any query string (default %(default)s)")
    p.add_argument("--host", default="api.example.com", help="host / :authority (default %(default)s)")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="request header, repeatable; names are lower-cased; --token wins over an authorization header",
    )
    p.add_argument("--scheme", default="https", help="request scheme (default %(default)s)")
    p.add_argument(
        "--dpop",
        metavar="PROOF",
        help="DPoP proof (RFC 9449): sent in the 'dpop' header, and --token then as 'authorization: DPoP TOKEN'",
    )
    p.add_argument(
        "--peer-certificate",
        metavar="PEM_FILE",
        help="the client's certificate, sent URL-encoded in attributes.source.certificate as Envoy does "
        "with include_peer_certificate: true",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds (default %(default)s)")
    args = p.parse_args(argv)
    for h in args.header:
        name, sep, _ = h.partition("=")
        if not sep or not name:
            p.error(f"--header expects NAME=VALUE, got {h!r}")
    return args


def build_request(args: argparse.Namespace) -> external_auth_pb2.CheckRequest:
    headers: dict[str, str] = {}
    for h in args.header:
        name, _, value = h.partition("=")
        headers[name.strip().lower()] = value
    if args.token is not None:
        scheme = "DPoP" if args.dpop is not None else "Bearer"
        headers["authorization"] = f"{scheme} {args.token}"
    if args.dpop is not None:
        headers["dpop"] = args.dpop
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=args.method,
        path=args.path,
        host=args.host,
        scheme=args.scheme,
        headers=headers,
    )
    source = attribute_context_pb2.AttributeContext.Peer()
    if args.peer_certificate is not None:
        with open(args.peer_certificate, encoding="ascii") as f:
            source.certificate = urllib.parse.quote(f.read(), safe="")
    attributes = attribute_context_pb2.AttributeContext(
        source=source,
        request=attribute_context_pb2.AttributeContext.Request(http=http),
    )
    return external_auth_pb2.CheckRequest(attributes=attributes)


def header_pairs(options: list[base_pb2.HeaderValueOption]) -> dict[str, str]:
    """`HeaderValueOption`s as a name → value dict (`raw_value` when `value` is empty)."""
    out: dict[str, str] = {}
    for option in options:
        h = option.header
        out[h.key] = h.value or h.raw_value.decode("utf-8", "replace")
    return out


def summarize(response: external_auth_pb2.CheckResponse) -> dict[str, Any]:
    """Flattens a CheckResponse into the JSON this tool prints."""
    kind = response.WhichOneof("http_response")
    result: dict[str, Any] = {
        "allowed": response.status.code == 0,  # google.rpc.Code.OK
        "grpc_code": response.status.code,
        "http_status": None,
        "headers": {},
        "headers_to_remove": [],
        "body": None,
        "metadata": json_format.MessageToDict(response.dynamic_metadata),
    }
    if kind == "ok_response":
        ok = response.ok_response
        result["headers"] = header_pairs(ok.headers)
        result["headers_to_remove"] = list(ok.headers_to_remove)
    elif kind == "denied_response":
        denied = response.denied_response
        if denied.HasField("status"):
            result["http_status"] = denied.status.code
        result["headers"] = header_pairs(denied.headers)
        if denied.body:
            try:
                result["body"] = json.loads(denied.body)
            except json.JSONDecodeError:
                result["body"] = denied.body  # not JSON: show it as sent
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    request = build_request(args)
    try:
        with grpc.insecure_channel(args.addr) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            response = stub.Check(request, timeout=args.timeout)
    except grpc.RpcError as e:
        # A gRPC error status is "no decision", not a denial: UNAVAILABLE means the service
        # could not decide (for jwtgate: no usable signing keys), DEADLINE_EXCEEDED a timeout.
        code = e.code() if isinstance(e, grpc.Call) else None
        details = e.details() if isinstance(e, grpc.Call) else str(e)
        name = code.name if code is not None else "UNKNOWN"
        print(f"envoy_check: {args.addr}: {name}: {details}", file=sys.stderr)
        return EXIT_ERROR
    result = summarize(response)
    print(json.dumps(result, sort_keys=True))
    return EXIT_ALLOWED if result["allowed"] else EXIT_DENIED


if __name__ == "__main__":
    sys.exit(main())
