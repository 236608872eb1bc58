use super::*;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.yaml", Path::new("."))
}

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("config should be refused")
}

const MINIMAL: &str = r#"
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
fn issue_example_parses() {
    let c = parse(
        r#"
listen: { grpc: "127.0.0.1:9001", http: "127.0.0.1:9002" }
providers:
  - name: corp
    issuer: "https://idp.example.com/"
    jwks_uri: "https://idp.example.com/keys"
    audiences: ["api"]
    algorithms: ["RS256", "ES256"]
    clock_skew: 60s
    sources: [{ header: authorization, prefix: "Bearer " }]
    claims_to_headers: { sub: x-jwt-sub }
    keys: { refresh_interval: 5m, min_refetch_interval: 30s, max_stale: 24h, fetch_timeout: 5s }
"#,
    )
    .unwrap();
    let p = &c.providers[0];
    assert_eq!(p.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(p.claims_to_headers, vec![("sub".to_string(), "x-jwt-sub".to_string())]);
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
fn two_key_sources_are_refused() {
    let e = err(&format!("{MINIMAL}    discovery: true\n"));
    assert_eq!(e.field, "providers[0]");
    assert!(e.reason.contains("exactly one key source"), "{e}");
}

#[test]
fn hmac_algorithm_without_secret_is_refused() {
    let e = err(&format!("{MINIMAL}    algorithms: [HS256]\n"));
    assert_eq!(e.field, "providers[0].algorithms");
    assert!(e.reason.contains("needs `hmac_secret`"), "{e}");
}

#[test]
fn alg_none_is_not_an_algorithm() {
    let e = err(&format!("{MINIMAL}    algorithms: [none]\n"));
    assert!(e.reason.contains("`none` is not supported"), "{e}");
}

#[test]
fn short_hmac_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "short\n").unwrap();
    let e = Config::parse(
        "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n",
        "t.yaml",
        dir.path(),
    )
    .unwrap_err();
    assert_eq!(e.field, "providers[0].hmac_secret");
    assert!(e.reason.contains("at least 32"), "{e}");
}

#[test]
fn hmac_defaults_follow_secret_length() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "x".repeat(48)).unwrap();
    let c = Config::parse(
        "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n",
        "t.yaml",
        dir.path(),
    )
    .unwrap();
    assert_eq!(c.providers[0].algorithms, vec![Algorithm::HS256, Algorithm::HS384]);
    let e = Config::parse(
        "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n    algorithms: [HS512]\n",
        "t.yaml",
        dir.path(),
    )
    .unwrap_err();
    assert!(e.reason.contains("at least 64 bytes"), "{e}");
}

#[test]
fn duplicate_issuers_are_refused() {
    let e = err(&format!(
        "{MINIMAL}  - name: other\n    issuer: \"https://idp.example.com/\"\n    jwks_uri: \"https://x/\"\n"
    ));
    assert_eq!(e.field, "providers[1].issuer");
}

#[test]
fn yaml_syntax_error_is_reported() {
    let e = err("providers: [\n");
    assert_eq!(e.file, "test.yaml");
    assert!(!e.reason.is_empty());
}

#[test]
fn missing_providers_is_refused() {
    let e = err("listen: { grpc: \"127.0.0.1:1\" }\n");
    assert_eq!(e.field, "providers");
}

#[test]
fn bad_listen_address_is_refused() {
    let e = err(&format!("listen: {{ grpc: nowhere }}\n{MINIMAL}"));
    assert_eq!(e.field, "listen.grpc");
}

#[test]
fn typ_is_normalized() {
    assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
}

#[test]
fn all_of_providers_is_validated_and_needs_a_source_per_provider() {
    let two = |device_sources: &str, require: &str| {
        format!(
            "providers:\n  - {{ name: corp, issuer: c, jwks_uri: \"https://c/k\" }}\n  - {{ name: device, issuer: d, jwks_uri: \"https://d/k\"{device_sources} }}\nroutes:\n  - name: r\n    require: {{ providers: {require} }}\n"
        )
    };
    let own = ", sources: [{ header: x-device-token, prefix: \"\" }]";
    let c = parse(&two(own, "{ all_of: [corp, device] }")).unwrap();
    match &c.routes[0].auth {
        routes::Auth::Required(r) => {
            assert_eq!(r.all_providers, ["corp", "device"]);
            assert!(r.providers.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let c = parse(&two(own, "{ any_of: [device] }")).unwrap();
    assert!(
        matches!(&c.routes[0].auth, routes::Auth::Required(r) if r.providers == ["device"] && r.all_providers.is_empty())
    );

    let e = err(&two("", "{ all_of: [corp, device] }"));
    assert_eq!(e.field, "routes[0].require.providers.all_of");
    assert!(
        e.reason.contains("both look for their token in header authorization"),
        "{e}"
    );
    for (require, field, reason) in [
        (
            "{ all_of: [corp, nobody] }",
            "routes[0].require.providers.all_of",
            "no provider `nobody`",
        ),
        (
            "{ all_of: [corp, corp] }",
            "routes[0].require.providers.all_of",
            "named twice",
        ),
        ("{ all_of: [] }", "routes[0].require.providers", "exactly one of"),
        (
            "{ any_of: [corp], all_of: [device] }",
            "routes[0].require.providers",
            "exactly one of",
        ),
        ("{ some_of: [corp] }", "routes[0].require.providers", ""),
    ] {
        let e = err(&two(own, require));
        assert_eq!(e.field, field, "{require}: {e}");
        assert!(e.reason.contains(reason), "{require}: {e}");
    }
    // Different scheme prefixes in one header are different places.
    let dpop = ", sources: [{ header: authorization, prefix: \"DPoP \" }]";
    assert!(parse(&two(dpop, "{ all_of: [corp, device] }")).is_ok());
}

#[test]
fn key_cache_dir_defaults_beside_the_revocation_data_and_is_validated() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.key_cache.dir, Path::new("./jwtgate-data/keys"));
    let c = parse(&format!("revocation: {{ path: /var/lib/jwtgate }}\n{MINIMAL}")).unwrap();
    assert_eq!(c.key_cache.dir, Path::new("/var/lib/jwtgate/keys"));
    let c = parse(&format!("key_cache: {{ dir: /cache }}\n{MINIMAL}")).unwrap();
    assert_eq!(c.key_cache.dir, Path::new("/cache"));
    let e = err(&format!("key_cache: {{ dir: \"\" }}\n{MINIMAL}"));
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("key_cache.dir", "is empty"));
    let e = err(&format!("key_cache: {{ directory: /x }}\n{MINIMAL}"));
    assert!(e.field.starts_with("key_cache"), "{e}");
}

#[test]
fn an_empty_top_level_key_is_named_as_the_top_level() {
    // Found by the config_yaml fuzz target: the field was the empty string.
    let e = err(&format!("\"\": [a, b]\n{MINIMAL}"));
    assert_eq!(e.field, "(top level)", "{e}");
    assert!(e.reason.contains("unknown field"), "{e}");
}

/// MINIMAL with `listen` and `introspection` blocks, secrets in a temp dir.
fn introspection_config(listen: &str, introspection: &str, secret: &[u8]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client.secret"), secret).unwrap();
    let text = format!("{listen}{MINIMAL}{introspection}");
    Config::parse(&text, "test.yaml", dir.path())
}

#[test]
fn introspection_is_off_by_default_and_reads_its_clients() {
    let c = parse(MINIMAL).unwrap();
    assert!(!c.introspection.enabled);
    assert_eq!(c.listen.introspection, None);
    let c = introspection_config(
        "listen: { introspection: \"127.0.0.1:9004\" }\n",
        "introspection:\n  enabled: true\n  clients:\n    - { id: billing, secret_file: client.secret }\n    - { provider: corp, role: introspect }\n",
        b"0123456789abcdef\n",
    )
    .unwrap();
    assert_eq!(c.listen.introspection.map(|a| a.port()), Some(9004));
    assert_eq!(c.introspection.clients.len(), 2);
    match &c.introspection.clients[0] {
        introspection::IntrospectionClient::Secret { id, secret } => {
            assert_eq!((id.as_str(), secret.expose()), ("billing", &b"0123456789abcdef"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(c.introspection.clients[1].requirement().is_some());
}

#[test]
fn bad_introspection_settings_are_refused_with_their_field() {
    let on = "introspection:\n  enabled: true\n  clients:\n";
    let cases: [(&str, String, &[u8], &str); 8] = [
        (
            "listen: { introspection: \"127.0.0.1:9004\" }\n",
            String::new(),
            b"0123456789abcdef",
            "listen.introspection",
        ),
        (
            "",
            "introspection: { enabled: true }\n".into(),
            b"0123456789abcdef",
            "introspection.clients",
        ),
        (
            "",
            format!("{on}    - {{ id: \"a:b\", secret_file: client.secret }}\n"),
            b"0123456789abcdef",
            "introspection.clients[0].id",
        ),
        (
            "",
            format!("{on}    - {{ id: a, secret_file: client.secret }}\n"),
            b"short",
            "introspection.clients[0].secret_file",
        ),
        (
            "",
            format!("{on}    - {{ id: a, secret_file: missing.secret }}\n"),
            b"0123456789abcdef",
            "introspection.clients[0].secret_file",
        ),
        (
            "",
            format!("{on}    - {{ provider: nobody, role: r }}\n"),
            b"0123456789abcdef",
            "introspection.clients[0].provider",
        ),
        (
            "",
            format!("{on}    - {{ id: a, provider: corp }}\n"),
            b"0123456789abcdef",
            "introspection.clients[0]",
        ),
        (
            "",
            format!(
                "{on}    - {{ id: a, secret_file: client.secret }}\n    - {{ id: a, secret_file: client.secret }}\n"
            ),
            b"0123456789abcdef",
            "introspection.clients[1].id",
        ),
    ];
    for (listen, introspection, secret, field) in cases {
        let e = introspection_config(listen, &introspection, secret).expect_err(field);
        assert_eq!(e.field, field, "{e}");
    }
    let e = introspection_config(
        "listen: { introspection: \"127.0.0.1:9002\" }\n",
        &format!("{on}    - {{ provider: corp, role: r }}\n"),
        b"",
    )
    .unwrap_err();
    assert_eq!(e.field, "listen.introspection", "{e}");
    assert!(e.reason.contains("listen.http"), "{e}");
}

/// A provider with `introspection:` (`fields` inside it) and `extra` provider lines.
fn introspecting(extra: &str, fields: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.secret"), b"s3cret\n").unwrap();
    let text = format!(
        "providers:\n  - name: legacy\n    issuer: \"https://idp.example/\"\n{extra}    introspection:\n{fields}"
    );
    Config::parse(&text, "test.yaml", dir.path())
}

#[test]
fn an_introspecting_provider_needs_no_key_source_and_gets_documented_defaults() {
    let c = introspecting(
        "",
        "      endpoint: https://idp.example/introspect\n      client_id: jwtgate\n      client_secret_file: idp.secret\n",
    )
    .unwrap();
    let p = &c.providers[0];
    assert_eq!(p.key_source, KeySource::None);
    let i = p.introspection.as_ref().unwrap();
    assert_eq!(i.endpoint.as_deref(), Some("https://idp.example/introspect"));
    assert_eq!(i.client_secret.expose(), b"s3cret");
    assert_eq!(
        (i.cache_ttl, i.negative_cache_ttl, i.timeout),
        (
            Duration::from_secs(60),
            Duration::from_secs(5),
            Duration::from_millis(500)
        )
    );
    // With discovery, the endpoint may come from the discovery document.
    let c = introspecting(
        "    discovery: true\n",
        "      client_id: jwtgate\n      client_secret_file: idp.secret\n",
    )
    .unwrap();
    assert_eq!(c.providers[0].key_source, KeySource::Discovery);
    assert_eq!(c.providers[0].introspection.as_ref().unwrap().endpoint, None);
}

#[test]
fn bad_provider_introspection_settings_are_refused_with_their_field() {
    let base = "      endpoint: https://idp.example/introspect\n      client_id: jwtgate\n      client_secret_file: idp.secret\n";
    for (fields, field) in [
        (
            "      client_id: jwtgate\n      client_secret_file: idp.secret\n",
            "providers[0].introspection.endpoint",
        ),
        (
            "      endpoint: ftp://idp\n      client_id: j\n      client_secret_file: idp.secret\n",
            "providers[0].introspection.endpoint",
        ),
        (
            "      endpoint: https://idp/i\n      client_secret_file: idp.secret\n",
            "providers[0].introspection.client_id",
        ),
        (
            "      endpoint: https://idp/i\n      client_id: j\n",
            "providers[0].introspection.client_secret_file",
        ),
        (
            "      endpoint: https://idp/i\n      client_id: j\n      client_secret_file: nope\n",
            "providers[0].introspection.client_secret_file",
        ),
        (
            &format!("{base}      timeout: 0s\n"),
            "providers[0].introspection.timeout",
        ),
        (
            &format!("{base}      cache_ttl: 2h\n"),
            "providers[0].introspection.cache_ttl",
        ),
        (
            &format!("{base}      negative_cache_ttl: 10m\n"),
            "providers[0].introspection.negative_cache_ttl",
        ),
        (&format!("{base}      secret: x\n"), "providers[0].introspection"),
    ] {
        let e = introspecting("", fields).expect_err(field);
        assert!(e.field.starts_with(field), "{field}: {e}");
    }
}

#[test]
fn dpop_and_mtls_binding_get_their_defaults_and_the_dpop_source() {
    let c = parse(&format!(
        "{MINIMAL}    dpop: {{ mode: optional }}\n    mtls_binding: {{ mode: required }}\nhttp_auth: {{ client_cert_header: none }}\n"
    ))
    .unwrap();
    let p = &c.providers[0];
    let d = p.dpop.as_ref().unwrap();
    assert_eq!(d.mode, binding::DpopMode::Optional);
    assert_eq!(d.proof_max_age, Duration::from_secs(60));
    assert_eq!(d.algs(), "ES256 ES384 EdDSA RS256 PS256");
    assert_eq!(d.replay, binding::Replay::Local);
    assert!(p.mtls_binding);
    assert_eq!(
        p.sources.last(),
        Some(&binding::dpop_source()),
        "DPoP scheme read beside Bearer"
    );
    assert!(p.sources.len() == 2 && c.dpop_replay.is_none());
    let off = parse(&format!("{MINIMAL}    dpop: {{ mode: off }}\n")).unwrap();
    assert!(off.providers[0].dpop.is_none() && off.providers[0].sources.len() == 1);
}

#[test]
fn bad_dpop_and_mtls_binding_settings_are_refused_with_field_and_reason() {
    for (yaml, field, reason) in [
        (
            "dpop: { mode: strict }",
            "providers[0].dpop.mode",
            "`strict` is not one of off, optional, required",
        ),
        (
            "dpop: { mode: required, algorithms: [HS256] }",
            "providers[0].dpop.algorithms",
            "`HS256` is not an asymmetric algorithm",
        ),
        (
            "dpop: { mode: required, algorithms: [] }",
            "providers[0].dpop.algorithms",
            "cannot be empty",
        ),
        (
            "dpop: { mode: required, proof_max_age: 0s }",
            "providers[0].dpop.proof_max_age",
            "more than 0s",
        ),
        (
            "dpop: { mode: required, proof_max_age: 2h }",
            "providers[0].dpop.proof_max_age",
            "at most 1h",
        ),
        (
            "dpop: { mode: required, replay: disk }",
            "providers[0].dpop.replay",
            "`disk` is not one of local, redis",
        ),
        (
            "dpop: { mode: required, replay: redis }",
            "providers[0].dpop.replay",
            "`redis` needs `redis.url`",
        ),
        (
            "dpop: { mode: required, nonce: true }",
            "providers[0].dpop",
            "unknown field `nonce`",
        ),
        (
            "mtls_binding: { mode: optional }",
            "providers[0].mtls_binding.mode",
            "`optional` is not one of off, required",
        ),
    ] {
        let e = err(&format!("{MINIMAL}    {yaml}\n"));
        assert!(e.field.starts_with(field), "{yaml}: {e}");
        assert!(e.reason.contains(reason), "{yaml}: {e}");
        assert_eq!(e.file, "test.yaml");
    }
    let e = err(&format!("{MINIMAL}http_auth: {{ client_cert_header: \"x client\" }}\n"));
    assert_eq!(e.field, "http_auth.client_cert_header", "{e}");
    let ok = parse(&format!(
        "{MINIMAL}    dpop: {{ mode: required, replay: redis }}\nredis: {{ url: \"redis://127.0.0.1:6379\" }}\n"
    ))
    .unwrap();
    assert!(ok.dpop_replay.is_some());
}

#[test]
fn secret_files_others_may_read_are_listed_and_private_ones_are_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("loose.secret", 0o644);
    write("private.secret", 0o600);
    write("own-group.secret", 0o440);
    write("writable.secret", 0o602);
    let text = "providers:\n  - { name: a, issuer: a, hmac_secret: { file: loose.secret } }\n  - { name: b, issuer: b, hmac_secret: { file: private.secret } }\n  - { name: c, issuer: c, hmac_secret: { file: own-group.secret } }\n  - { name: d, issuer: d, hmac_secret: { file: writable.secret } }\nadmin: { token: { file: loose.secret } }\n";
    let c = Config::parse(text, "test.yaml", dir.path()).unwrap();
    let fields: Vec<&str> = c.loose_secrets.iter().map(|s| s.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "providers[0].hmac_secret.file",
            "providers[3].hmac_secret.file",
            "admin.token.file"
        ]
    );
    assert_eq!(c.loose_secrets[0].mode, 0o644);
}

#[test]
fn numeric_ids_default_to_refuse_and_take_refuse_or_decimal_only() {
    assert_eq!(parse(MINIMAL).unwrap().providers[0].numeric_ids, NumericIds::Refuse);
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let c = parse(&with("    numeric_ids: decimal\n")).unwrap();
    assert_eq!(c.providers[0].numeric_ids, NumericIds::Decimal);
    let e = err(&with("    numeric_ids: Decimal\n"));
    assert_eq!(
        (e.file.as_str(), e.field.as_str(), e.reason.as_str()),
        (
            "test.yaml",
            "providers[0].numeric_ids",
            "`Decimal` is not `refuse` or `decimal`"
        )
    );
}

#[test]
fn accept_bound_tokens_as_bearer_is_off_by_default_and_refused_where_it_means_nothing() {
    assert!(!parse(MINIMAL).unwrap().providers[0].accept_bound_tokens_as_bearer);
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let c = parse(&with("    accept_bound_tokens_as_bearer: true\n")).unwrap();
    assert!(c.providers[0].accept_bound_tokens_as_bearer);
    let e = err(&with(
        "    dpop: { mode: optional }\n    mtls_binding: { mode: required }\n    accept_bound_tokens_as_bearer: true\nhttp_auth: { client_cert_header: none }\n",
    ));
    assert_eq!(
        (e.file.as_str(), e.field.as_str()),
        ("test.yaml", "providers[0].accept_bound_tokens_as_bearer")
    );
    assert!(e.reason.contains("has no effect"), "{e}");
    let e = err(&with("    accept_bound_tokens_as_bearer: maybe\n"));
    assert_eq!(e.field, "providers[0].accept_bound_tokens_as_bearer");
}

#[test]
fn refuse_token_types_default_to_refresh_tokens_and_never_list_access_tokens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "secret").unwrap();
    let text = |extra: &str| {
        format!(
            "providers:\n  - name: o\n    issuer: https://o/\n    introspection: {{ endpoint: https://o/i, client_id: j, client_secret_file: s{extra} }}\n"
        )
    };
    let types = |extra: &str| {
        Config::parse(&text(extra), "test.yaml", dir.path()).map(|c| {
            c.providers[0]
                .introspection
                .as_ref()
                .unwrap()
                .refuse_token_types
                .clone()
        })
    };
    assert_eq!(types("").unwrap(), ["refresh", "offline", "offlineaccess", "id"]);
    assert_eq!(types(", refuse_token_types: []").unwrap(), Vec::<String>::new());
    assert_eq!(
        types(", refuse_token_types: [REFRESH_TOKEN, Refresh, refresh-token, ID]").unwrap(),
        ["refresh", "id"]
    );
    for (bad, why) in [
        ("access_token", "every token would be refused"),
        ("Bearer", "every token would be refused"),
        ("DPoP", "every token would be refused"),
        ("N_A", "every token would be refused"),
        ("\"\"", "is not a token type"),
        ("\"a b\"", "is not a token type"),
    ] {
        let e = types(&format!(", refuse_token_types: [{bad}]")).unwrap_err();
        assert_eq!(e.field, "providers[0].introspection.refuse_token_types", "{bad}");
        assert!(e.reason.contains(why), "{bad}: {e}");
    }
}
