//! The `jwtgate` binary, driven as an operator would: every kind of config mistake refused with
//! file, field, reason and exit code 2 (by `validate-config` and by `serve`), secrets from the
//! environment, the token tooling (`token mint`, `token jwks`), and `serve` end to end: ready,
//! answering Envoy Check calls, and exiting 0 on SIGTERM and SIGINT.
//!
//! Every child process is bounded in time and killed on drop; servers listen on loopback port 0
//! and report their addresses in their `jwtgate listening` log line.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bearer, check, mint_cli as mint, now, repo};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// Upper bound for anything a child process is waited for: start-up, readiness, exit.
const BOUND: Duration = Duration::from_secs(10);

/// An environment variable that the tests never set (removed from every child's environment).
const UNSET_VAR: &str = "JWTGATE_TEST_UNSET_SECRET";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `jwtgate` with none of its own environment variables inherited from the test runner.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jwtgate"));
    for var in ["JWTGATE_CONFIG", "JWTGATE_LOG", "JWTGATE_LOG_FORMAT", UNSET_VAR] {
        c.env_remove(var);
    }
    c
}

/// Process output as text.
fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Writes `body` as `jwtgate.yaml` in `dir` and returns its path.
fn write_config(dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, body).unwrap();
    file
}

/// Asserts that `out` is the refusal of `file`: exit code 2, nothing on stdout, and stderr
/// `jwtgate: invalid config: FILE: FIELD: …` with `reason` in it. `what` names the case.
#[track_caller]
fn assert_refused(out: &Output, file: &Path, field: &str, reason: &str, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "[{what}] exit code; stderr: {err}");
    assert_eq!(text(&out.stdout), "", "[{what}] nothing on stdout");
    let prefix = format!("jwtgate: invalid config: {}: {field}: ", file.display());
    assert!(err.starts_with(&prefix), "[{what}] expected `{prefix}…`, got: {err}");
    assert!(
        err.contains(reason),
        "[{what}] expected reason containing {reason:?}, got: {err}"
    );
}

/// Runs `jwtgate token ARGS…`; returns (exit code, stdout, stderr).
fn token_cmd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().arg("token").args(args).output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The claims of a token, decoded without verifying it.
fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `examples/keys/dev-hmac-secret.txt` as the config reads it (one trailing newline dropped).
fn dev_hmac_secret() -> Vec<u8> {
    let mut s = std::fs::read(repo("examples/keys/dev-hmac-secret.txt")).unwrap();
    if s.ends_with(b"\n") {
        s.pop();
    }
    s
}

// ---------------------------------------------------------------------------------------------
// validate-config: the examples, and every kind of mistake
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_config_accepts_quickstart_and_says_ok() {
    let file = repo("examples/quickstart.yaml");
    let out = bin().arg("validate-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: ok (2 provider(s))\n", file.display()));
    // The development secrets are checked out as the umask leaves them (0644 under 022): warned.
    for line in text(&out.stderr).lines() {
        assert!(
            line.starts_with("jwtgate: warning: ")
                && line.contains("examples/keys/dev-")
                && line.ends_with("other users may read or change; chmod 0600, owned by jwtgate's user or root"),
            "{line}"
        );
    }
}

#[test]
fn validate_config_accepts_the_cookbook() {
    let file = repo("examples/cookbook.yaml");
    let out = bin().arg("validate-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{}: ok (", file.display())));
}

/// A valid provider `corp`, block style, so cases can add lines to it.
const CORP: &str = concat!(
    "providers:\n",
    "  - name: corp\n",
    "    issuer: \"https://idp.example.com/\"\n",
    "    jwks_uri: \"https://idp.example.com/keys\"\n",
);

/// Provider `corp` with one more line of YAML inside it.
fn corp(line: &str) -> String {
    format!("{CORP}    {line}\n")
}

/// Top-level YAML `top`, then provider `corp`.
fn top(top: &str) -> String {
    format!("{top}\n{CORP}")
}

/// A config with the single provider `provider` written in flow style.
fn only(provider: &str) -> String {
    format!("providers:\n  - {{ {provider} }}\n")
}

/// Provider `corp`, then a second provider written in flow style.
fn second(provider: &str) -> String {
    format!("{CORP}  - {{ {provider} }}\n")
}

/// Fields of an HMAC provider `a` whose secret is in `file`, then `extra` fields.
fn hmac_file(file: &str, extra: &str) -> String {
    let fields = format!("name: a, issuer: legacy, hmac_secret: {{ file: {file} }}");
    if extra.is_empty() {
        fields
    } else {
        format!("{fields}, {extra}")
    }
}

/// Provider `corp` and one route written in flow style.
fn route(route: &str) -> String {
    format!("{CORP}routes:\n  - {{ {route} }}\n")
}

/// One config mistake: the file contents, and the field and reason the refusal must name.
struct Mistake {
    what: &'static str,
    yaml: String,
    field: &'static str,
    reason: &'static str,
}

/// A [`Mistake`]: case name, file contents, expected field and reason fragment.
fn m(what: &'static str, yaml: impl Into<String>, field: &'static str, reason: &'static str) -> Mistake {
    Mistake {
        what,
        yaml: yaml.into(),
        field,
        reason,
    }
}

/// Files that some mistakes refer to, written beside the config by [`mistake_dir`].
const SHORT_SECRET: &str = "short-secret.txt";
const SECRET_48: &str = "secret-48.txt";

/// A temp dir holding the files the mistakes refer to.
fn mistake_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SHORT_SECRET), "short\n").unwrap();
    std::fs::write(dir.path().join(SECRET_48), "x".repeat(48)).unwrap();
    dir
}

/// Every distinct way `src/config` refuses a file (other than a file that cannot be read).
#[rustfmt::skip] // one case per line reads as a table
fn mistakes() -> Vec<Mistake> {
    vec![
        // YAML and schema: reported by the parser with the path where it stopped.
        m("yaml syntax: unclosed bracket", "providers: [\n", "providers", "line 1 column 12: unclosed bracket"),
        m("yaml syntax: bad indentation", "providers:\n  - name: a\n   issuer: x\n", "providers", "line 3 column 4"),
        m("top level is not a mapping", "- a\n", "(top level)", "expected mapping start"),
        m("unknown provider field", corp("audience: [api]"), "providers[0].audience", "unknown field `audience`"),
        m("unknown top-level field", top("listn: {}"), "listn", "unknown field `listn`"),
        m("unknown listen field", top("listen: { grcp: \"127.0.0.1:1\" }"), "listen.grcp", "unknown field `grcp`"),
        m("unknown keys field", corp("keys: { refresh: 5m }"), "providers[0].keys.refresh", "unknown field `refresh`"),
        m("wrong type: number", top("max_token_bytes: lots"), "max_token_bytes", "invalid u64"),
        m("wrong type: boolean", corp("require_exp: maybe"), "providers[0].require_exp", "invalid boolean"),
        m("wrong type: listen", top("listen: 127.0.0.1:9001"), "listen", "expected mapping"),
        m("unknown store kind", top("revocation: { store: mongo }"), "revocation.store", "unknown variant `mongo`"),
        m("unknown route auth", route("name: r, auth: maybe"), "routes[0].auth", "unknown variant `maybe`"),
        m("bad duration unit", corp("clock_skew: 5 minutes"), "providers[0].clock_skew", "unknown unit"),
        m("duration without unit", corp("keys: { refresh_interval: 5 }"),
          "providers[0].keys.refresh_interval", "`5` has no unit"),
        m("bad shutdown_grace", top("shutdown_grace: soon"), "shutdown_grace", "not a duration"),
        // Top level.
        m("bad listen.grpc", top("listen: { grpc: localhost }"),
          "listen.grpc", "`localhost` is not an IP:port address"),
        m("bad listen.http", top("listen: { http: \"127.0.0.1\" }"),
          "listen.http", "`127.0.0.1` is not an IP:port address"),
        m("bad listen.admin", top("listen: { admin: \":9003\" }"), "listen.admin", "`:9003` is not an IP:port address"),
        m("introspection listener without enabled", top("listen: { introspection: \"127.0.0.1:9004\" }"),
          "listen.introspection", "is set but `introspection.enabled` is not true"),
        m("introspection without clients", top("introspection: { enabled: true }"),
          "introspection.clients", "at least one client is required"),
        m("introspection client of no provider", top("introspection: { enabled: true, clients: [{ provider: nobody, role: r }] }"),
          "introspection.clients[0].provider", "no provider `nobody`"),
        m("provider introspection without an endpoint",
          only("name: a, issuer: \"https://i/\", introspection: { client_id: j, client_secret_file: s }"),
          "providers[0].introspection.endpoint", "is required unless the provider has `discovery: true`"),
        m("empty providers list", "providers: []\n", "providers", "at least one provider is required"),
        m("empty file", "", "providers", "at least one provider is required"),
        m("duplicate provider names", second("name: corp, issuer: \"https://o/\", jwks_uri: \"https://o/k\""),
          "providers[1].name", "`corp` is used twice"),
        m("duplicate issuers", second("name: other, issuer: \"https://idp.example.com/\", jwks_uri: \"https://o/k\""),
          "providers[1].issuer", "`https://idp.example.com/` is used by two providers"),
        m("max_token_bytes too small", top("max_token_bytes: 10"), "max_token_bytes", "between 256 and 1048576"),
        m("max_token_bytes too large", top("max_token_bytes: 2000000"), "max_token_bytes", "between 256 and 1048576"),
        m("realm with a quote", top("realm: 'a\"b'"), "realm", "without quotes"),
        m("empty realm", top("realm: \"\""), "realm", "must be non-empty"),
        // A provider's identity and key source.
        m("missing name", only("issuer: \"https://i/\", jwks_uri: \"https://i/k\""),
          "providers[0].name", "is required"),
        m("name with a space", only("name: \"a b\", issuer: \"https://i/\", jwks_uri: \"https://i/k\""),
          "providers[0].name", "use letters, digits"),
        m("missing issuer", only("name: a, jwks_uri: \"https://i/k\""), "providers[0].issuer", "is required"),
        m("empty issuer", only("name: a, issuer: \"\", jwks_uri: \"https://i/k\""),
          "providers[0].issuer", "is required"),
        m("no key source", only("name: a, issuer: \"https://i/\""),
          "providers[0]",
          "exactly one key source is required (jwks_uri, discovery: true, jwks_file or hmac_secret; none with `introspection`); found 0"),
        m("two key sources", corp("discovery: true"), "providers[0]", "exactly one key source is required"),
        m("jwks_uri not http(s)", only("name: a, issuer: \"https://i/\", jwks_uri: \"ftp://i/k\""),
          "providers[0].jwks_uri", "`ftp://i/k` must be an http(s) URL with a host"),
        m("jwks_uri not a URL", only("name: a, issuer: \"https://i/\", jwks_uri: \"keys.json\""),
          "providers[0].jwks_uri", "`keys.json` is not a URL"),
        m("discovery from a non-URL issuer", only("name: a, issuer: legacy, discovery: true"),
          "providers[0].discovery", "needs an http(s) issuer"),
        m("jwks_file that does not exist", only("name: a, issuer: \"https://i/\", jwks_file: /nonexistent/jwks.json"),
          "providers[0].jwks_file", "/nonexistent/jwks.json is not a readable file"),
        m("hmac_secret env var not set", only(&format!("name: a, issuer: legacy, hmac_secret: {{ env: {UNSET_VAR} }}")),
          "providers[0].hmac_secret.env", "environment variable JWTGATE_TEST_UNSET_SECRET is not set"),
        m("hmac_secret file missing", only("name: a, issuer: legacy, hmac_secret: { file: /nonexistent/secret }"),
          "providers[0].hmac_secret.file", "cannot read /nonexistent/secret"),
        m("hmac_secret with env and file", only("name: a, issuer: legacy, hmac_secret: { env: X, file: y }"),
          "providers[0].hmac_secret", "give exactly one of `env` or `file`"),
        m("hmac_secret with neither env nor file", only("name: a, issuer: legacy, hmac_secret: {}"),
          "providers[0].hmac_secret", "give exactly one of `env` or `file`"),
        m("hmac secret shorter than 32 bytes", only(&hmac_file(SHORT_SECRET, "")),
          "providers[0].hmac_secret", "secret is 5 bytes; HMAC needs at least 32"),
        // Algorithms.
        m("empty algorithms", corp("algorithms: []"), "providers[0].algorithms", "cannot be empty"),
        m("unsupported algorithm", corp("algorithms: [ES512]"), "providers[0].algorithms", "`ES512` is not supported"),
        m("alg none", corp("algorithms: [none]"), "providers[0].algorithms", "`none` is not supported"),
        // Sender-constrained tokens.
        m("unknown dpop mode", corp("dpop: { mode: strict }"),
          "providers[0].dpop.mode", "`strict` is not one of off, optional, required"),
        m("HMAC DPoP proofs", corp("dpop: { mode: required, algorithms: [HS256] }"),
          "providers[0].dpop.algorithms", "`HS256` is not an asymmetric algorithm"),
        m("shared DPoP replay without redis", corp("dpop: { mode: required, replay: redis }"),
          "providers[0].dpop.replay", "`redis` needs `redis.url`"),
        m("unknown mtls_binding mode", corp("mtls_binding: { mode: optional }"),
          "providers[0].mtls_binding.mode", "`optional` is not one of off, required"),
        m("HS256 without hmac_secret", corp("algorithms: [HS256]"),
          "providers[0].algorithms", "HS256 needs `hmac_secret`"),
        m("RS256 with hmac_secret", only(&hmac_file(SECRET_48, "algorithms: [RS256]")),
          "providers[0].algorithms", "RS256 cannot be verified with `hmac_secret`"),
        m("HS512 with a 48-byte secret", only(&hmac_file(SECRET_48, "algorithms: [HS512]")),
          "providers[0].algorithms", "HS512 needs a secret of at least 64 bytes; this one has 48"),
        // Token checks.
        m("clock_skew over 10m", corp("clock_skew: 1h"), "providers[0].clock_skew", "must be at most 10m"),
        m("empty audience", corp("audiences: [\"\"]"), "providers[0].audiences", "an audience cannot be empty"),
        m("empty token type", corp("token_types: [\"\"]"), "providers[0].token_types", "a type cannot be empty"),
        m("empty required claim", corp("required_claims: [\"\"]"),
          "providers[0].required_claims", "a claim name cannot be empty"),
        m("zero max_lifetime", corp("max_lifetime: 0s"), "providers[0].max_lifetime", "must be more than 0s"),
        m("bad roles_claim", corp("roles_claim: \"a.\""), "providers[0].roles_claim", "a dot path"),
        // Token sources.
        m("empty sources", corp("sources: []"), "providers[0].sources", "cannot be empty"),
        m("bad source header", corp("sources: [{ header: \"x y\" }]"),
          "providers[0].sources[0].header", "`x y` is not a valid HTTP header name"),
        m("bad source cookie", corp("sources: [{ cookie: \"a;b\" }]"),
          "providers[0].sources[0].cookie", "not a valid cookie name"),
        m("empty source query", corp("sources: [{ query: \"\" }]"), "providers[0].sources[0].query", "cannot be empty"),
        m("prefix on a cookie source", corp("sources: [{ cookie: session, prefix: \"Bearer \" }]"),
          "providers[0].sources[0]", "`prefix` goes only with `header`"),
        m("source with header and cookie", corp("sources: [{ header: authorization, cookie: session }]"),
          "providers[0].sources[0]", "give exactly one of `header`, `cookie` or `query`"),
        // Identity headers.
        m("bad claim path in claims_to_headers", corp("claims_to_headers: { \"a..b\": x-a }"),
          "providers[0].claims_to_headers.a..b", "a claim path is dot-separated names"),
        m("bad header name in claims_to_headers", corp("claims_to_headers: { sub: \"x jwt\" }"),
          "providers[0].claims_to_headers.sub", "`x jwt` is not a valid HTTP header name"),
        m("hop-by-hop header in claims_to_headers", corp("claims_to_headers: { sub: Host }"),
          "providers[0].claims_to_headers.sub", "`Host` cannot carry identity"),
        m("bad payload_header", corp("payload_header: \"x:payload\""),
          "providers[0].payload_header", "is not a valid HTTP header name"),
        // Key-set lifecycle.
        m("refresh_interval under 1s", corp("keys: { refresh_interval: 500ms }"),
          "providers[0].keys.refresh_interval", "must be at least 1s"),
        m("min_refetch_interval under 100ms", corp("keys: { min_refetch_interval: 10ms }"),
          "providers[0].keys.min_refetch_interval", "must be at least 100ms"),
        m("zero fetch_timeout", corp("keys: { fetch_timeout: 0s }"),
          "providers[0].keys.fetch_timeout", "must be between 1ms and 60s"),
        m("refetch_wait over 1s", corp("keys: { refetch_wait: 2s }"),
          "providers[0].keys.refetch_wait", "must be at most 1s"),
        m("max_stale under refresh_interval", corp("keys: { max_stale: 1m }"),
          "providers[0].keys.max_stale", "must be at least refresh_interval"),
        // Routes.
        m("duplicate route names", format!("{CORP}routes:\n  - {{ name: r }}\n  - {{ name: r }}\n"),
          "routes[1].name", "`r` is empty or used twice"),
        m("host with a port", route("name: r, match: { host: \"api.example.com:443\" }"),
          "routes[0].match.host", "use an exact host or `*.suffix`, without port"),
        m("two path conditions", route("name: r, match: { path: /a, path_prefix: /b }"),
          "routes[0].match", "use at most one of `path_prefix`, `path_string_prefix`, `path` and `path_regex`"),
        m("relative path", route("name: r, match: { path: a }"), "routes[0].match.path", "must start with `/`"),
        m("path not normalised", route("name: r, match: { path_prefix: /a/../b }"),
          "routes[0].match.path_prefix", "write it in normalised form (`/b`)"),
        m("path with a control character", route("name: r, match: { path_prefix: \"/a%00\" }"),
          "routes[0].match.path_prefix", "not a usable path"),
        m("invalid path_regex", route("name: r, match: { path_regex: \"(\" }"),
          "routes[0].match.path_regex", "invalid expression"),
        m("bad method", route("name: r, match: { methods: [\"GE T\"] }"),
          "routes[0].match.methods", "`GE T` is not an HTTP method"),
        m("public route with require", route("name: r, auth: public, require: { scopes: [a] }"),
          "routes[0].require", "only for routes that require a token"),
        m("route requiring an unknown provider", route("name: r, require: { providers: [nope] }"),
          "routes[0].require.providers", "no provider `nope` (have: corp)"),
        m("scope with a space", route("name: r, require: { scopes: [\"a b\"] }"),
          "routes[0].require.scopes", "entries must be non-empty without spaces"),
        m("roles with all_of and any_of", route("name: r, require: { roles: { all_of: [a], any_of: [b] } }"),
          "routes[0].require.roles", "give a list, or exactly one of `all_of`, `any_of`"),
        m("bad claim path in require", route("name: r, require: { claims: { \"org.\": { equals: x } } }"),
          "routes[0].require.claims.org.", "a claim path is dot-separated names"),
        m("claim test with no test", route("name: r, require: { claims: { tenant: {} } }"),
          "routes[0].require.claims.tenant", "give exactly one of `equals: VALUE`"),
        m("invalid claim regex", route("name: r, require: { claims: { tenant: { regex: \"[\" } } }"),
          "routes[0].require.claims.tenant.regex", "invalid expression"),
        m("both kinds of path prefix", route("name: r, match: { path_prefix: /a, path_string_prefix: /a }"),
          "routes[0].match", "use at most one of `path_prefix`, `path_string_prefix`, `path` and `path_regex`"),
        // The HTTP front door.
        m("envoy_prefix without a slash", top("http_auth: { envoy_prefix: ext_authz }"),
          "http_auth.envoy_prefix", "a path like `/ext_authz`"),
        m("envoy_prefix on an own path", top("http_auth: { envoy_prefix: /healthz }"),
          "http_auth.envoy_prefix", "collides with one of jwtgate's own paths"),
        m("bad trusted proxy", top("http_auth: { trusted_proxies: [nonsense] }"),
          "http_auth.trusted_proxies[0]", "`nonsense` is not an address or CIDR"),
        m("unknown header family", top("http_auth: { original_request: traefik }"),
          "http_auth.original_request", "unknown variant `traefik`"),
        m("certificate-bound tokens, certificate header not named", corp("mtls_binding: { mode: required }"),
          "http_auth.client_cert_header", "is required with providers[0].mtls_binding"),
        m("two doors at one path", top("http_auth: { doors: [{ path: /auth, original_request: forwarded }] }"),
          "http_auth.doors[0]", "`/auth` and the door at `/auth` overlap"),
        m("a door under an envoy prefix", top("http_auth: { envoy_prefix: /e, doors: [{ path: /e/x, original_request: nginx }] }"),
          "http_auth.doors[0]", "overlap"),
        m("bad client address header", top("http_auth: { client_ip_header: \"x real ip\" }"),
          "http_auth.client_ip_header", "is not a valid HTTP header name"),
        // Revocation store.
        m("redis settings on the embedded store", top("revocation: { url: \"redis://127.0.0.1/\" }"),
          "revocation", "`url`, `key_prefix` and `channel` go with `store: redis`"),
        m("path on the redis store", top("revocation: { store: redis, url: \"redis://127.0.0.1/\", path: data }"),
          "revocation.path", "goes with `store: embedded`"),
        m("redis store without url", top("revocation: { store: redis }"),
          "revocation.url", "is required with `store: redis`"),
        m("redis url with another scheme", top("revocation: { store: redis, url: \"http://127.0.0.1/\" }"),
          "revocation.url", "must start with redis://"),
        m("purge_interval under 100ms", top("revocation: { purge_interval: 10ms }"),
          "revocation.purge_interval", "must be at least 100ms"),
        // Admin API.
        m("admin token shorter than 16 bytes", top(&format!("admin: {{ token: {{ file: {SHORT_SECRET} }} }}")),
          "admin.token", "must be at least 16 bytes"),
        m("admin token env var not set", top(&format!("admin: {{ token: {{ env: {UNSET_VAR} }} }}")),
          "admin.token.env", "environment variable JWTGATE_TEST_UNSET_SECRET is not set"),
        m("admin provider unknown", top("admin: { provider: nope, role: admin }"),
          "admin.provider", "no provider `nope`"),
        m("admin provider without role", top("admin: { provider: corp }"),
          "admin.role", "is required with `admin.provider`"),
        m("admin role without provider", top("admin: { role: admin }"),
          "admin.provider", "is required with `admin.role`"),
    ]
}

/// Every mistake, checked in-process as `validate-config` and `serve` check a file
/// (`jwtgate::cli::checked_config`): the file, the field and the reason.
#[test]
fn every_mistake_is_refused_with_file_field_and_reason() {
    let dir = mistake_dir();
    for Mistake {
        what,
        yaml,
        field,
        reason,
    } in mistakes()
    {
        let file = write_config(dir.path(), &yaml);
        let e = jwtgate::cli::checked_config(&file).expect_err(what);
        assert_eq!(
            (e.file.as_str(), e.field.as_str()),
            (file.display().to_string().as_str(), field),
            "[{what}] {e}"
        );
        assert!(
            e.reason.contains(reason),
            "[{what}] expected reason containing {reason:?}, got: {e}"
        );
    }
}

/// Through the binary, a few mistakes of each kind (YAML syntax, schema, type, a section's
/// validation): exit code 2, nothing on stdout, and
/// `jwtgate: invalid config: FILE: FIELD: REASON` on stderr.
#[test]
fn validate_config_refuses_a_mistake_with_file_field_reason_and_exit_2() {
    let dir = mistake_dir();
    let end_to_end = [
        "yaml syntax: unclosed bracket",
        "unknown provider field",
        "wrong type: number",
        "admin role without provider",
    ];
    let mistakes = mistakes();
    for what in end_to_end {
        let Mistake {
            yaml, field, reason, ..
        } = mistakes.iter().find(|m| m.what == what).expect(what);
        let file = write_config(dir.path(), yaml);
        let out = bin().arg("validate-config").arg(&file).output().unwrap();
        assert_refused(&out, &file, field, reason, what);
    }
}

#[test]
fn validate_config_refuses_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = bin().arg("validate-config").arg(&missing).output().unwrap();
    assert_refused(&out, &missing, "(file)", "cannot read: No such file", "missing file");
}

#[test]
fn validate_config_refuses_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("validate-config").arg(dir.path()).output().unwrap();
    assert_refused(&out, dir.path(), "(file)", "cannot read", "directory");
}

#[test]
fn validate_config_resolves_key_files_beside_the_config_not_the_cwd() {
    // quickstart.yaml names `keys/jwks.json`; run from elsewhere, it must still be found.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(elsewhere.path())
        .arg("validate-config")
        .arg(repo("examples/quickstart.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn validate_config_without_a_file_argument_is_a_usage_error() {
    let out = bin().arg("validate-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<FILE>"), "{}", text(&out.stderr));
}

#[test]
fn validate_config_refuses_grpc_and_http_on_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &top("listen: { grpc: \"127.0.0.1:19001\", http: \"127.0.0.1:19001\" }"),
    );
    let out = bin().arg("validate-config").arg(&file).output().unwrap();
    assert_refused(
        &out,
        &file,
        "listen.http",
        "listen.grpc",
        "grpc and http share an address",
    );
}

// ---------------------------------------------------------------------------------------------
// serve: refuses what validate-config refuses
// ---------------------------------------------------------------------------------------------

#[test]
fn serve_refuses_each_mistake_the_same_way_with_config_flag_and_jwtgate_config() {
    let dir = mistake_dir();
    for Mistake {
        what,
        yaml,
        field,
        reason,
    } in mistakes()
    {
        let file = write_config(dir.path(), &yaml);
        let out = bin().arg("serve").arg("--config").arg(&file).output().unwrap();
        assert_refused(&out, &file, field, reason, &format!("serve --config: {what}"));
        let out = bin().arg("serve").env("JWTGATE_CONFIG", &file).output().unwrap();
        assert_refused(
            &out,
            &file,
            field,
            reason,
            &format!("serve with JWTGATE_CONFIG: {what}"),
        );
    }
}

#[test]
fn serve_refuses_a_missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = bin().arg("serve").arg("--config").arg(&missing).output().unwrap();
    assert_refused(
        &out,
        &missing,
        "(file)",
        "cannot read: No such file",
        "serve --config missing",
    );
    let out = bin().arg("serve").env("JWTGATE_CONFIG", &missing).output().unwrap();
    assert_refused(
        &out,
        &missing,
        "(file)",
        "cannot read: No such file",
        "JWTGATE_CONFIG missing",
    );
}

#[test]
fn serve_config_flag_wins_over_jwtgate_config() {
    let dir = tempfile::tempdir().unwrap();
    let flagged = dir.path().join("flagged.yaml");
    std::fs::write(&flagged, "providers: []\n").unwrap();
    let from_env = dir.path().join("from-env.yaml");
    let out = bin()
        .arg("serve")
        .arg("--config")
        .arg(&flagged)
        .env("JWTGATE_CONFIG", &from_env)
        .output()
        .unwrap();
    assert_refused(
        &out,
        &flagged,
        "providers",
        "at least one provider",
        "--config and JWTGATE_CONFIG",
    );
}

#[test]
fn serve_without_any_config_is_a_usage_error_naming_config() {
    let out = bin().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--config"), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Secrets from the environment
// ---------------------------------------------------------------------------------------------

#[test]
fn hmac_secret_from_a_set_env_var_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &only("name: legacy, issuer: legacy, hmac_secret: { env: JWTGATE_TEST_SECRET }"),
    );
    let out = bin()
        .arg("validate-config")
        .arg(&file)
        .env("JWTGATE_TEST_SECRET", "s".repeat(48))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: ok (1 provider(s))\n", file.display()));
}

#[test]
fn hmac_secret_from_an_env_var_is_refused_when_short_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &only("name: legacy, issuer: legacy, hmac_secret: { env: JWTGATE_TEST_SECRET }"),
    );
    for (value, reason) in [
        ("short", "secret is 5 bytes; HMAC needs at least 32"),
        ("", "secret is 0 bytes; HMAC needs at least 32"),
    ] {
        let out = bin()
            .arg("validate-config")
            .arg(&file)
            .env("JWTGATE_TEST_SECRET", value)
            .output()
            .unwrap();
        assert_refused(
            &out,
            &file,
            "providers[0].hmac_secret",
            reason,
            &format!("secret {value:?}"),
        );
    }
}

#[test]
fn admin_token_from_a_set_env_var_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &top("admin: { token: { env: JWTGATE_TEST_ADMIN } }"));
    let out = bin()
        .arg("validate-config")
        .arg(&file)
        .env("JWTGATE_TEST_ADMIN", "a".repeat(16))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// token mint / token jwks
// ---------------------------------------------------------------------------------------------

#[test]
fn token_mint_rs256_sets_header_passes_claims_and_adds_iat_exp() {
    let claims = json!({
        "iss": "https://dev.jwtgate.local/", "aud": "demo-api", "sub": "alice",
        "tenant": "acme", "roles": ["admin", "dev"], "org": { "id": 7 },
    });
    let before = now();
    let token = mint("dev-rsa.pem", "RS256", Some("dev-rsa-1"), &claims, &[]);
    let after = now();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("dev-rsa-1"));
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    let mut got = payload(&token);
    let iat = got["iat"].as_u64().expect("iat is a number");
    let exp = got["exp"].as_u64().expect("exp is a number");
    assert!((before..=after).contains(&iat), "iat {iat} not in [{before}, {after}]");
    assert_eq!(exp - iat, 3600, "default --ttl is 1h");
    let obj = got.as_object_mut().unwrap();
    obj.remove("iat");
    obj.remove("exp");
    let jti = obj.remove("jti").expect("a jti is added");
    assert_eq!(jti.as_str().map(str::len), Some(32), "a random uuid: {jti}");
    assert_eq!(got, claims, "every other claim passes through unchanged");
}

#[test]
fn token_mint_keeps_given_iat_and_exp_and_honours_ttl() {
    let token = mint(
        "dev-rsa.pem",
        "RS256",
        None,
        &json!({"sub": "a", "iat": 100, "exp": 200}),
        &[],
    );
    let p = payload(&token);
    assert_eq!((p["iat"].as_u64(), p["exp"].as_u64()), (Some(100), Some(200)));
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid,
        None,
        "no --kid, no kid"
    );

    let token = mint("dev-rsa.pem", "RS256", None, &json!({"sub": "a"}), &["--ttl", "10m"]);
    let p = payload(&token);
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 600);
}

#[test]
fn token_mint_reads_claims_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claims.json");
    std::fs::write(&file, r#"{"sub":"from-file"}"#).unwrap();
    let key = repo("examples/keys/dev-ec.pem").display().to_string();
    let claims = format!("@{}", file.display());
    let (code, out, err) = token_cmd(&["mint", "--key", &key, "--alg", "ES256", "--claims", &claims]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(payload(out.trim())["sub"], "from-file");
}

#[test]
fn token_jwks_of_the_dev_keys_is_the_published_examples_jwks() {
    let spec =
        |file: &str, alg: &str, kid: &str| format!("{}:{alg}:{kid}", repo(&format!("examples/keys/{file}")).display());
    let (code, out, err) = token_cmd(&[
        "jwks",
        "--key",
        &spec("dev-rsa.pem", "RS256", "dev-rsa-1"),
        "--key",
        &spec("dev-ec.pem", "ES256", "dev-ec-1"),
        "--key",
        &spec("dev-ed25519.pem", "EdDSA", "dev-ed-1"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("examples/keys/jwks.json")).unwrap()).unwrap();
    assert_eq!(
        printed, published,
        "examples/keys/jwks.json must be the public half of the dev keys"
    );
}

#[test]
fn token_jwks_verifies_tokens_minted_with_each_dev_key() {
    let claims = json!({"iss": "https://dev.jwtgate.local/", "aud": "demo-api", "sub": "alice"});
    for (file, alg, kid) in [
        ("dev-rsa.pem", Algorithm::RS256, "dev-rsa-1"),
        ("dev-ec.pem", Algorithm::ES256, "dev-ec-1"),
        ("dev-ed25519.pem", Algorithm::EdDSA, "dev-ed-1"),
    ] {
        let name = format!("{alg:?}");
        let token = mint(file, &name, Some(kid), &claims, &[]);
        let spec = format!("{}:{name}:{kid}", repo(&format!("examples/keys/{file}")).display());
        let (code, out, err) = token_cmd(&["jwks", "--key", &spec]);
        assert_eq!(code, Some(0), "[{name}] {err}");
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&out).unwrap();
        assert_eq!(jwks.keys.len(), 1, "[{name}]");
        let key = DecodingKey::from_jwk(jwks.find(kid).expect("kid in the JWKS")).unwrap();
        let mut v = Validation::new(alg);
        v.set_audience(&["demo-api"]);
        v.set_issuer(&["https://dev.jwtgate.local/"]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &v)
            .unwrap_or_else(|e| panic!("[{name}] the printed JWKS does not verify the minted token: {e}"));
        assert_eq!(data.claims["sub"], "alice", "[{name}]");
    }
}

#[test]
fn token_mint_hs256_with_the_dev_secret_file_verifies_with_that_secret() {
    let claims = json!({"iss": "legacy-monolith", "aud": "demo-api", "sub": "bob"});
    let token = mint("dev-hmac-secret.txt", "HS256", None, &claims, &[]);
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, Algorithm::HS256);
    // The secret is the file without its trailing newline, as `hmac_secret: {file: …}` reads it.
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["demo-api"]);
    let data =
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(&dev_hmac_secret()).unwrap(), &v).unwrap();
    assert_eq!(data.claims["sub"], "bob");
}

#[test]
fn token_mint_refuses_bad_input_with_a_clear_error() {
    let rsa = repo("examples/keys/dev-rsa.pem").display().to_string();
    let hmac = repo("examples/keys/dev-hmac-secret.txt").display().to_string();
    let ok = r#"{"sub":"a"}"#;
    let cases: [(&str, Vec<&str>, &str); 9] = [
        (
            "claims not JSON",
            vec!["--key", &rsa, "--alg", "RS256", "--claims", "not json"],
            "jwtgate: --claims is not JSON: ",
        ),
        (
            "claims an array",
            vec!["--key", &rsa, "--alg", "RS256", "--claims", "[1]"],
            "jwtgate: --claims must be a JSON object",
        ),
        (
            "claims file missing",
            vec!["--key", &rsa, "--alg", "RS256", "--claims", "@/nonexistent/claims.json"],
            "jwtgate: cannot read /nonexistent/claims.json",
        ),
        (
            "unknown algorithm",
            vec!["--key", &rsa, "--alg", "RS999", "--claims", ok],
            "jwtgate: unknown algorithm `RS999`",
        ),
        (
            "bad ttl",
            vec!["--key", &rsa, "--alg", "RS256", "--claims", ok, "--ttl", "1 hour"],
            "jwtgate: --ttl: ",
        ),
        (
            "key file missing",
            vec!["--key", "/nonexistent/key.pem", "--alg", "RS256", "--claims", ok],
            "jwtgate: cannot read /nonexistent/key.pem",
        ),
        (
            "RSA key for ES256",
            vec!["--key", &rsa, "--alg", "ES256", "--claims", ok],
            "jwtgate: cannot read the key for ES256",
        ),
        (
            "PEM key for HS256",
            vec!["--key", &rsa, "--alg", "HS256", "--claims", ok],
            "jwtgate: HS* needs a shared secret, not a PEM key",
        ),
        (
            "secret for RS256",
            vec!["--key", &hmac, "--alg", "RS256", "--claims", ok],
            "jwtgate: RS256 needs a PEM private key",
        ),
    ];
    for (what, args, message) in cases {
        let mut full = vec!["mint"];
        full.extend(args);
        let (code, out, err) = token_cmd(&full);
        assert_eq!(code, Some(2), "[{what}] exit code; stderr: {err}");
        assert_eq!(out, "", "[{what}] no token on stdout");
        assert!(err.starts_with(message), "[{what}] expected `{message}…`, got: {err}");
    }
}

#[test]
fn token_jwks_refuses_bad_key_specs() {
    let rsa = repo("examples/keys/dev-rsa.pem").display().to_string();
    let hmac = format!("{}:HS256:k", repo("examples/keys/dev-hmac-secret.txt").display());
    for (what, spec, message) in [
        ("no alg and kid", rsa.clone(), "--key `"),
        (
            "HMAC key",
            hmac,
            "HS* keys are shared secrets and are never published in a JWKS",
        ),
        (
            "unknown algorithm",
            format!("{rsa}:XX256:k"),
            "unknown algorithm `XX256`",
        ),
        (
            "missing file",
            "/nonexistent.pem:RS256:k".into(),
            "cannot read /nonexistent.pem",
        ),
    ] {
        let (code, out, err) = token_cmd(&["jwks", "--key", &spec]);
        assert_eq!(code, Some(2), "[{what}] exit code; stderr: {err}");
        assert_eq!(out, "", "[{what}] no JWKS on stdout");
        assert!(err.starts_with(&format!("jwtgate: {message}")), "[{what}] got: {err}");
    }
    let (code, _, err) = token_cmd(&["jwks", "--key", &format!("{rsa}:RS256")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected PEM_FILE:ALG:KID"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// serve, end to end
// ---------------------------------------------------------------------------------------------

/// A running `jwtgate serve` whose stderr lines arrive on a channel. Killed and reaped on drop,
/// so a failing test leaves no process behind.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line received so far.
    log: Vec<String>,
}

impl Served {
    /// Spawns `cmd` (a `jwtgate serve …` command) with JSON logs on a piped stderr.
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("JWTGATE_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The next stderr line containing `needle`, waiting at most [`BOUND`].
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no stderr line with {needle:?} ({e}); stderr:\n{}", self.log.join("\n")),
            }
        }
    }

    /// The gRPC and HTTP addresses from the `jwtgate listening` log line.
    fn addresses(&mut self) -> (SocketAddr, SocketAddr) {
        let line: Value = serde_json::from_str(&self.wait_for("jwtgate listening")).unwrap();
        let addr = |name: &str| line["fields"][name].as_str().unwrap().parse().unwrap();
        (addr("grpc"), addr("http"))
    }

    /// Sends `signal` (`TERM`, `INT`, …) with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits at most `within` for the process to exit; its status and its whole stderr.
    fn exit(&mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}; stderr:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(BOUND) {
            self.log.push(line);
        }
        (status, self.log.join("\n"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temp dir holding `examples/quickstart.yaml` as `jwtgate.yaml`, its keys beside it under
/// `keys/`, and every listener on loopback port 0 (the addresses are logged at start-up).
fn quickstart_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for key in ["jwks.json", "dev-hmac-secret.txt", "dev-admin-token.txt"] {
        std::fs::copy(repo(&format!("examples/keys/{key}")), dir.path().join("keys").join(key)).unwrap();
    }
    let quickstart = std::fs::read_to_string(repo("examples/quickstart.yaml")).unwrap();
    let listen = r#"listen: { grpc: "127.0.0.1:9001", http: "127.0.0.1:9002", admin: "127.0.0.1:9003" }"#;
    assert!(
        quickstart.contains(listen),
        "quickstart.yaml's listen line changed; update this test"
    );
    let config = quickstart.replace(listen, &format!("{}\nshutdown_grace: 5s", listen_on("127.0.0.1:0")));
    let file = write_config(dir.path(), &config);
    (dir, file)
}

/// A runtime for the async clients; its worker thread keeps connections alive while the test
/// thread blocks on the child process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `GET /readyz` until it answers 200, for at most [`BOUND`].
async fn wait_ready(http: SocketAddr) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let status = client
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .map(|r| r.status());
        if matches!(status, Ok(s) if s == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within {BOUND:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves the quickstart config (via `--config`, or `JWTGATE_CONFIG` when `via_env`), checks
/// tokens minted by `jwtgate token mint` over Envoy's gRPC API, then sends `signal` with the
/// client still connected and expects exit status 0 within the shutdown grace.
fn serve_checks_tokens_then_exits_0_on(signal: &str, via_env: bool) {
    let rsa = mint(
        "dev-rsa.pem",
        "RS256",
        Some("dev-rsa-1"),
        &json!({"iss": "https://dev.jwtgate.local/", "aud": "demo-api", "sub": "alice", "email": "alice@example.com"}),
        &[],
    );
    let hmac = mint(
        "dev-hmac-secret.txt",
        "HS256",
        None,
        &json!({"iss": "legacy-monolith", "aud": "demo-api", "sub": "bob"}),
        &[],
    );
    let wrong_aud = mint(
        "dev-ec.pem",
        "ES256",
        Some("dev-ec-1"),
        &json!({"iss": "https://dev.jwtgate.local/", "aud": "other-api", "sub": "eve"}),
        &[],
    );

    let (dir, file) = quickstart_dir();
    let mut cmd = bin();
    cmd.arg("serve").current_dir(dir.path());
    if via_env {
        cmd.env("JWTGATE_CONFIG", &file);
    } else {
        cmd.arg("--config").arg(&file);
    }
    let mut server = Served::spawn(cmd);
    let (grpc, http) = server.addresses();
    assert!(grpc.ip().is_loopback() && http.ip().is_loopback());

    let rt = runtime();
    let mut client = rt.block_on(async {
        wait_ready(http).await;
        AuthorizationClient::connect(format!("http://{grpc}")).await.unwrap()
    });
    rt.block_on(async {
        let a = check(&mut client, bearer(&rsa)).await.unwrap();
        assert_eq!(a.grpc_code, 0, "RS256 token from the dev provider: {a:?}");
        assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("alice"));
        assert_eq!(
            a.headers.get("x-jwt-email").map(String::as_str),
            Some("alice@example.com")
        );

        let a = check(&mut client, bearer(&hmac)).await.unwrap();
        assert_eq!(a.grpc_code, 0, "HS256 token from the legacy provider: {a:?}");
        assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("bob"));

        let a = check(&mut client, bearer(&wrong_aud)).await.unwrap();
        assert_eq!((a.grpc_code, a.http_status), (16, Some(401)), "wrong audience: {a:?}");
        assert!(a.reason().contains("audience"), "{a:?}");
    });

    // The client stays connected, as Envoy's would: shutdown must not wait for it.
    server.signal(signal);
    let (status, log) = server.exit(Duration::from_secs(8));
    assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}; stderr:\n{log}");
    assert!(log.contains("shutting down"), "SIG{signal}: stderr:\n{log}");
    assert!(
        !log.contains("still running after the grace period"),
        "SIG{signal}: an idle connection held shutdown to the grace period; stderr:\n{log}"
    );
    drop(client);
}

#[test]
fn serve_allows_minted_tokens_over_grpc_and_exits_0_on_sigterm() {
    serve_checks_tokens_then_exits_0_on("TERM", false);
}

#[test]
fn serve_reads_jwtgate_config_and_exits_0_on_sigint() {
    serve_checks_tokens_then_exits_0_on("INT", true);
}

/// Listeners on loopback port 0 (the bound addresses are logged at start-up).
fn listen_on(grpc: &str) -> String {
    format!("listen: {{ grpc: \"{grpc}\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}")
}

/// Runs `jwtgate serve` on config `yaml` (provider `corp` after it) in a temp dir, expecting it
/// to exit by itself within [`BOUND`]; its status and stderr.
fn serve_until_exit(yaml: &str) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &top(yaml));
    let mut cmd = bin();
    cmd.arg("serve").arg("--config").arg(&file);
    Served::spawn(cmd).exit(BOUND)
}

#[test]
fn serve_exits_1_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (status, log) = serve_until_exit(&listen_on(&taken.local_addr().unwrap().to_string()));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("jwtgate: cannot listen on listen.grpc") && log.contains("Address already in use"),
        "{log}"
    );
}

#[test]
fn serve_names_the_listener_and_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, log) = serve_until_exit(&listen_on(&addr));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("listen.grpc"), "the field is named: {log}");
    assert!(log.contains(&addr), "the address is named: {log}");
}

#[test]
fn serve_reports_an_unusable_revocation_store_as_such() {
    // `revocation.path` must be a directory; make it a file beside the config.
    let yaml = format!("{}\nrevocation: {{ path: jwtgate.yaml }}", listen_on("127.0.0.1:0"));
    let (status, log) = serve_until_exit(&yaml);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("revocation store"), "{log}");
    assert!(!log.contains("cannot listen"), "not a listening problem: {log}");
}

/// A flood of denials logs at most `log.denials_per_second` lines a second; the first line after
/// it says how many went unlogged, and `/metrics` counts every denial.
#[test]
fn denial_lines_are_capped_per_second_and_the_skipped_ones_are_reported() {
    const FLOOD: u64 = 20;
    const BUDGET: u64 = 3;
    let (dir, file) = quickstart_dir();
    let config = std::fs::read_to_string(&file).unwrap() + &format!("\nlog: {{ denials_per_second: {BUDGET} }}\n");
    std::fs::write(&file, config).unwrap();
    let mut cmd = bin();
    cmd.arg("serve").arg("--config").arg(&file).current_dir(dir.path());
    let mut server = Served::spawn(cmd);
    let (grpc, http) = server.addresses();

    let rt = runtime();
    let mut client = rt.block_on(async {
        wait_ready(http).await;
        AuthorizationClient::connect(format!("http://{grpc}")).await.unwrap()
    });
    let deny = |client: &mut AuthorizationClient<_>| {
        rt.block_on(async {
            let a = check(client, bearer("not-a-jwt")).await.unwrap();
            assert_eq!(a.http_status, Some(401), "{a:?}");
        })
    };
    for _ in 0..FLOOD {
        deny(&mut client);
    }
    // The budget is per second: a second later this denial is logged, after the summary.
    std::thread::sleep(Duration::from_millis(1100));
    deny(&mut client);
    let metrics = rt.block_on(async {
        reqwest::get(format!("http://{http}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    server.signal("TERM");
    let (_, log) = server.exit(Duration::from_secs(8));

    let events: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let deny_lines: Vec<&Value> = events.iter().filter(|e| e["fields"]["message"] == "deny").collect();
    let skipped: u64 = events.iter().filter_map(|e| e["fields"]["skipped"].as_u64()).sum();
    assert!(deny_lines.iter().all(|e| e["fields"]["trace_id"].is_string()), "{log}");
    // The flood may straddle one second boundary: at most two seconds' budgets, plus the last.
    let logged = deny_lines.len() as u64;
    assert!(
        (BUDGET + 1..=2 * BUDGET + 1).contains(&logged),
        "{logged} deny lines:\n{log}"
    );
    assert_eq!(
        logged + skipped,
        FLOOD + 1,
        "every denial is logged or counted as skipped:\n{log}"
    );
    let last_summary = events.iter().rposition(|e| e["fields"]["skipped"].is_u64()).unwrap();
    let last_deny = events.iter().rposition(|e| e["fields"]["message"] == "deny").unwrap();
    assert!(
        last_summary < last_deny,
        "the summary comes before the line it precedes:\n{log}"
    );

    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("jwtgate_decisions_total{decision=\"deny\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, FLOOD + 1, "{metrics}");
}

/// A config naming an endless file (a device) is refused with the field, not read forever.
#[test]
fn a_secret_or_key_file_that_never_ends_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "providers:\n  - { name: l, issuer: l, hmac_secret: { file: /dev/zero }, algorithms: [HS256] }\n",
            "providers[0].hmac_secret.file",
        ),
        (
            "listen: { grpc_tls: { cert: /dev/zero, key: /dev/zero } }\nproviders:\n  - { name: c, issuer: c, jwks_file: jwks.json }\n",
            "listen.grpc_tls.cert",
        ),
    ];
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    for (yaml, field) in cases {
        let file = dir.path().join("endless.yaml");
        std::fs::write(&file, yaml).unwrap();
        let stderr = common::refused(&["validate-config"], &file, &[]);
        assert!(
            stderr.contains(field) && stderr.contains("longer than 1048576 bytes"),
            "{stderr}"
        );
    }
}
