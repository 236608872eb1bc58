# jwtgate's container image: one statically linked binary in an otherwise empty image (no shell,
# no package manager, no libc), running as uid:gid 65532:65532.
#
#   docker build -t jwtgate .                     (or `podman build -t jwtgate .`)
#   docker run --rm --read-only --cap-drop=ALL --security-opt=no-new-privileges \
#       -p 9001:9001 -p 9002:9002 \
#       -v "$PWD/config:/etc/jwtgate:ro" -v jwtgate-data:/var/lib/jwtgate \
#       jwtgate
#
# The config is read from /etc/jwtgate/jwtgate.yaml (the CMD; relative paths in it, e.g. a
# `jwks_file` or a secret `file`, are beside it), and must be readable by uid 65532. Inside a
# container it must listen on 0.0.0.0 (9001 gRPC ext_authz, 9002 HTTP door and probes, 9003
# admin API) and, with the embedded revocation store, keep revocations in the image's data
# directory: `revocation: { path: /var/lib/jwtgate }` (owned by 65532, so a new named volume
# mounted there is writable; the default, `jwtgate-data` beside the config, is not when the config
# is mounted read-only). The root filesystem can be read-only: nothing else is written.
#
# Without registry access, the build stage can be replaced by a directory holding what it
# produces (a named build context overrides the stage of the same name), and nothing is pulled:
#   podman build --pull=never --build-context build=DIR -f Dockerfile DIR
#   (or `docker buildx build --build-context build=DIR ...`)
# with DIR/out/rootfs/jwtgate a static x86_64 Linux jwtgate (RUSTFLAGS="-C
# target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu),
# DIR/out/rootfs/etc/ssl/certs/ca-certificates.crt, and the empty directories
# DIR/out/rootfs/etc/jwtgate/, DIR/out/rootfs/var/lib/ and DIR/out/data/. tests/container.rs
# builds the image that way (no registry is reachable there), so this file's final stage is
# exercised unchanged; only the compile step differs.

# --- build: a static release binary, and the CA roots (rustls reads them from the system store)
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# aws-lc-sys (rustls' crypto) compiles its C with the image's cc; no cmake, no protoc (protox).
# glibc linked statically: no libc in the final image, and since glibc 2.34 the `files` and `dns`
# name services are part of libc itself, so host names still resolve (/etc/hosts, resolv.conf).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin jwtgate \
 && mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/etc/jwtgate /out/rootfs/var/lib /out/data \
 && cp target/x86_64-unknown-linux-gnu/release/jwtgate /out/rootfs/jwtgate \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ca-certificates.crt

# --- the image
FROM scratch
LABEL org.opencontainers.image.title="jwtgate" \
      org.opencontainers.image.description="External-authorization service for Envoy, Istio and Nginx that verifies JWTs against cached, rotating key sets" \
      org.opencontainers.image.licenses="Apache-2.0"
# Everything owned by root and read-only to the service, except the data directory.
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=65532:65532 /out/data /var/lib/jwtgate
# Numeric, so runAsNonRoot can check it (there is no /etc/passwd).
USER 65532:65532
EXPOSE 9001 9002 9003
# No HEALTHCHECK: there is no shell or client in the image; probe GET /readyz and /healthz on
# 9002 (or gRPC health on 9001) from outside, as the Helm chart does.
ENTRYPOINT ["/jwtgate"]
CMD ["serve", "--config", "/etc/jwtgate/jwtgate.yaml"]
