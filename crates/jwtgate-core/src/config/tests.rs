//! Tests of the document as a whole (defaults, YAML and schema errors), and the helpers the
//! sections' tests parse with. Each section's own tests sit beside it.

use super::*;

use jsonwebtoken::AlgorithmFamily;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.yaml", Path::new("."))
}

pub(super) fn err(text: &str) -> ConfigError {
    parse(text).expect_err("config should be refused")
}

pub(super) const MINIMAL: &str = r#"
providers:
  - name: corp
    issuer: "https://idp.example.com/"
    jwks_uri: "https://idp.example.com/keys"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.listen.grpc.to_string(), "127.0.0.1:9001");
    assert_eq!(c.listen.http.to_string(), "127.0.0.1:9002");
    assert_eq!(c.max_token_bytes, 8192);
    let p = &c.providers[0];
    assert_eq!(p.clock_skew, Duration::from_secs(60));
    assert!(p.require_exp);
    assert!(p.forward_token);
    assert_eq!(p.keys.refresh_interval, Duration::from_secs(300));
    assert_eq!(p.keys.min_refetch_interval, Duration::from_secs(30));
    assert_eq!(p.keys.max_stale, Duration::from_secs(86_400));
    assert_eq!(p.keys.fetch_timeout, Duration::from_secs(5));
    assert_eq!(
        p.sources,
        vec![Source::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into()
        }]
    );
    assert!(p.algorithms.iter().all(|a| a.family() != AlgorithmFamily::Hmac));
    assert_eq!(p.algorithms.len(), 9);
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let e = err(&format!("{MINIMAL}    audience: [api]\n"));
    assert_eq!(e.file, "test.yaml");
    assert_eq!(e.field, "providers[0].audience");
    assert!(e.reason.contains("unknown field `audience`"), "{e}");
}

#[test]
fn bad_duration_names_field_and_reason() {
    let e = err(&format!("{MINIMAL}    keys: {{ refresh_interval: 5 }}\n"));
    assert_eq!(e.field, "providers[0].keys.refresh_interval", "{e}");
    assert!(e.reason.contains("no unit"), "{e}");
}

#[test]
fn yaml_syntax_error_is_reported() {
    let e = err("providers: [\n");
    assert_eq!(e.file, "test.yaml");
    assert!(!e.reason.is_empty());
}

#[test]
fn an_empty_top_level_key_is_named_as_the_top_level() {
    // Found by the config_yaml fuzz target: the field was the empty string.
    let e = err(&format!("\"\": [a, b]\n{MINIMAL}"));
    assert_eq!(e.field, "(top level)", "{e}");
    assert!(e.reason.contains("unknown field"), "{e}");
}
