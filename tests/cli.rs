//! The `jwtgate` binary: every kind of config mistake refused with file, field, reason and exit
//! code 2 (by `validate-config` and `serve`), secrets from the environment, and the token tooling.
#![allow(clippy::unwrap_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jwtgate"));
    c.env_remove("JWTGATE_CONFIG");
    c
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

const PROVIDER: &str = "providers:\n  - name: corp\n    issuer: \"https://idp.example.com/\"\n    jwks_uri: \"https://idp.example.com/keys\"\n";

/// (what, file contents, field, reason fragment)
fn mistakes() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let p = PROVIDER;
    vec![
        (
            "yaml syntax",
            "providers: [\n".into(),
            "providers",
            "line 1 column 12: unclosed bracket",
        ),
        (
            "unknown field",
            format!("{p}    audience: [api]\n"),
            "providers[0].audience",
            "unknown field `audience`",
        ),
        (
            "unknown top-level field",
            format!("{p}listn: {{}}\n"),
            "listn",
            "unknown field",
        ),
        (
            "bad duration",
            format!("{p}    clock_skew: 5 minutes\n"),
            "providers[0].clock_skew",
            "unit",
        ),
        (
            "clock skew too large",
            format!("{p}    clock_skew: 1h\n"),
            "providers[0].clock_skew",
            "at most 10m",
        ),
        (
            "no providers",
            "providers: []\n".into(),
            "providers",
            "at least one provider",
        ),
        (
            "missing issuer",
            "providers:\n  - { name: a, jwks_uri: \"https://i/k\" }\n".into(),
            "providers[0].issuer",
            "is required",
        ),
        (
            "missing name",
            "providers:\n  - { issuer: \"https://i/\", jwks_uri: \"https://i/k\" }\n".into(),
            "providers[0].name",
            "is required",
        ),
        (
            "no key source",
            "providers:\n  - { name: a, issuer: \"https://i/\" }\n".into(),
            "providers[0]",
            "exactly one key source is required (jwks_uri, discovery: true, jwks_file or hmac_secret); found 0",
        ),
        (
            "two key sources",
            format!("{p}    discovery: true\n"),
            "providers[0]",
            "found 2",
        ),
        (
            "jwks_uri not http",
            "providers:\n  - { name: a, issuer: \"https://i/\", jwks_uri: \"ftp://i/k\" }\n".into(),
            "providers[0].jwks_uri",
            "http",
        ),
        (
            "unsupported algorithm",
            format!("{p}    algorithms: [ES512]\n"),
            "providers[0].algorithms",
            "ES512",
        ),
        (
            "HS256 without a secret",
            format!("{p}    algorithms: [HS256]\n"),
            "providers[0].algorithms",
            "HS256",
        ),
        (
            "hmac env var missing",
            "providers:\n  - { name: a, issuer: legacy, hmac_secret: { env: JWTGATE_TEST_UNSET_SECRET } }\n".into(),
            "providers[0].hmac_secret.env",
            "JWTGATE_TEST_UNSET_SECRET is not set",
        ),
        (
            "hmac file missing",
            "providers:\n  - { name: a, issuer: legacy, hmac_secret: { file: /nonexistent/secret } }\n".into(),
            "providers[0].hmac_secret.file",
            "cannot read",
        ),
        (
            "jwks_file missing",
            "providers:\n  - { name: a, issuer: \"https://i/\", jwks_file: /nonexistent/jwks.json }\n".into(),
            "providers[0].jwks_file",
            "",
        ),
        (
            "duplicate names",
            format!("{p}  - {{ name: corp, issuer: \"https://other/\", jwks_uri: \"https://other/k\" }}\n"),
            "providers[1].name",
            "used twice",
        ),
        (
            "duplicate issuers",
            format!("{p}  - {{ name: other, issuer: \"https://idp.example.com/\", jwks_uri: \"https://other/k\" }}\n"),
            "providers[1].issuer",
            "two providers",
        ),
        (
            "bad listen address",
            format!("listen: {{ grpc: \"localhost\" }}\n{p}"),
            "listen.grpc",
            "not an IP:port",
        ),
        (
            "bad max_token_bytes",
            format!("max_token_bytes: 10\n{p}"),
            "max_token_bytes",
            "between",
        ),
        (
            "bad header name",
            format!("{p}    claims_to_headers: {{ sub: \"x jwt\" }}\n"),
            "providers[0].claims_to_headers.sub",
            "not a valid HTTP header name",
        ),
        (
            "empty sources",
            format!("{p}    sources: []\n"),
            "providers[0].sources",
            "cannot be empty",
        ),
        (
            "route to unknown provider",
            format!("{p}routes:\n  - {{ name: r, require: {{ providers: [nope] }} }}\n"),
            "routes[0].require.providers",
            "no provider `nope`",
        ),
        (
            "route path not normalised",
            format!("{p}routes:\n  - {{ name: r, match: {{ path_prefix: /a/../b }} }}\n"),
            "routes[0].match.path_prefix",
            "normalised form",
        ),
        (
            "route regex invalid",
            format!("{p}routes:\n  - {{ name: r, match: {{ path_regex: \"(\" }} }}\n"),
            "routes[0].match.path_regex",
            "invalid expression",
        ),
        (
            "public route with require",
            format!("{p}routes:\n  - {{ name: r, auth: public, require: {{ scopes: [a] }} }}\n"),
            "routes[0].require",
            "only for routes",
        ),
        (
            "bad trusted proxy",
            format!("{p}http_auth: {{ trusted_proxies: [\"nonsense\"] }}\n"),
            "http_auth.trusted_proxies[0]",
            "not an address or CIDR",
        ),
    ]
}

fn write(dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, body).unwrap();
    file
}

fn assert_refused(out: &Output, file: &Path, field: &str, reason: &str, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: exit code; stderr: {err}");
    let prefix = format!("jwtgate: invalid config: {}: {field}: ", file.display());
    assert!(err.starts_with(&prefix), "{what}: expected `{prefix}…`, got: {err}");
    assert!(
        err.contains(reason),
        "{what}: expected reason containing {reason:?}, got: {err}"
    );
}

#[test]
fn validate_config_accepts_the_examples() {
    for file in ["examples/quickstart.yaml", "examples/cookbook.yaml"] {
        let out = bin().arg("validate-config").arg(repo(file)).output().unwrap();
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(": ok ("), "{}", text(&out.stdout));
    }
}

#[test]
fn each_config_mistake_gives_its_message_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    for (what, body, field, reason) in mistakes() {
        let file = write(dir.path(), &body);
        let out = bin().arg("validate-config").arg(&file).output().unwrap();
        assert_refused(&out, &file, field, reason, what);
    }
}

#[test]
fn serve_refuses_a_bad_config_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    for (what, body, field, reason) in mistakes().into_iter().take(6) {
        let file = write(dir.path(), &body);
        let out = bin().arg("serve").arg("--config").arg(&file).output().unwrap();
        assert_refused(&out, &file, field, reason, what);
        // JWTGATE_CONFIG names the file when --config is absent.
        let out = bin().arg("serve").env("JWTGATE_CONFIG", &file).output().unwrap();
        assert_refused(&out, &file, field, reason, what);
    }
    let missing = dir.path().join("missing.yaml");
    let out = bin().arg("serve").arg("--config").arg(&missing).output().unwrap();
    assert_refused(&out, &missing, "(file)", "cannot read", "missing file");
}

#[test]
fn hmac_secrets_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "providers:\n  - { name: legacy, issuer: legacy, hmac_secret: { env: JWTGATE_TEST_SECRET } }\n",
    );
    let out = bin()
        .arg("validate-config")
        .arg(&file)
        .env("JWTGATE_TEST_SECRET", "s".repeat(48))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bin()
        .arg("validate-config")
        .arg(&file)
        .env("JWTGATE_TEST_SECRET", "short")
        .output()
        .unwrap();
    assert_refused(&out, &file, "providers[0].hmac_secret", "32", "short secret");
}

#[test]
fn token_mint_and_jwks_round_trip() {
    let claims = r#"{"iss":"https://dev.jwtgate.local/","aud":"demo-api","sub":"alice","tenant":"acme"}"#;
    let out = bin()
        .args([
            "token", "mint", "--alg", "ES256", "--kid", "k1", "--ttl", "10m", "--claims", claims, "--key",
        ])
        .arg(repo("examples/keys/dev-ec.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let jwks_out = bin()
        .args(["token", "jwks", "--key"])
        .arg(format!("{}:ES256:k1", repo("examples/keys/dev-ec.pem").display()))
        .output()
        .unwrap();
    assert!(jwks_out.status.success(), "{}", text(&jwks_out.stderr));
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text(&jwks_out.stdout)).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find("k1").unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["demo-api"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some("k1"));
    let c = data.claims;
    assert_eq!((c["sub"].as_str(), c["tenant"].as_str()), (Some("alice"), Some("acme")));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 600);

    let out = bin()
        .args([
            "token",
            "mint",
            "--alg",
            "HS256",
            "--claims",
            "{\"sub\":\"x\"}",
            "--key",
        ])
        .arg(repo("examples/keys/dev-hmac-secret.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim().split('.').count(), 3);

    let out = bin()
        .args(["token", "mint", "--alg", "RS256", "--claims", "not json", "--key"])
        .arg(repo("examples/keys/dev-rsa.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("claims"), "{}", text(&out.stderr));
}
