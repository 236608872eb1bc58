//! `/metrics` after a scripted mix of checks — allows from two providers, each denial class, a
//! dry-run route, the HTTP door, a failing key fetch and two reloads: the scrape passes a real
//! `promtool check metrics`, and each metric holds the value the mix implies.
//!
//! promtool comes from `$JWTGATE_PROMTOOL`, else `promtool` on `PATH`; with neither the test
//! fails: `bash tests/run.sh` unpacks Debian's `prometheus` package for it.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const HS_SECRET: &str = "legacy-shared-secret-0123456789-abcdef";

/// `promtool check metrics` on `text`: its exit code and what it said.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    let mut child = Command::new(tools::PROMTOOL.path())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

fn providers(issuer: &Issuer) -> String {
    format!(
        "{}    keys: {{ min_refetch_interval: 100ms }}\n  - name: legacy\n    issuer: monolith\n    hmac_secret: {{ file: hs.txt }}\nroutes:\n  - {{ name: health, match: {{ path_prefix: /health }}, auth: public }}\n  - {{ name: beta, match: {{ path_prefix: /beta }}, require: {{ roles: [beta] }}, mode: dry_run }}\n  - {{ name: write, match: {{ path_prefix: /write }}, require: {{ scopes: [api.write] }} }}\n  - {{ name: api, match: {{ path_prefix: /api }} }}\nhttp_auth: {{ envoy_prefix: /ext_authz }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    )
}

#[tokio::test]
async fn a_scrape_after_a_mix_of_checks_passes_promtool_and_counts_each_one() {
    bounded(Duration::from_secs(60), async {
        let issuer = rsa_issuer().await;
        let yaml = providers(&issuer);
        let gk = Gatekeeper::start(&yaml, &[("hs.txt", HS_SECRET.as_bytes())]).await;
        gk.wait_ready().await;
        let mut client = gk.client().await;
        let corp = |extra: serde_json::Value| {
            let mut c = claims(&issuer.url());
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
        };
        let at = |path: &str, token: Option<&str>| {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            check_request(path, &headers)
        };
        let good = corp(json!({}));
        let legacy = sign(
            HS_SECRET.as_bytes(),
            Algorithm::HS256,
            None,
            json!({"iss": "monolith", "sub": "bob", "exp": now() + 600}),
        );
        let forged = sign(&pem("rsa-b.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
        let expired = corp(json!({"iat": now() - 7200, "exp": now() - 3600}));

        let allowed = |a: Result<Answer, tonic::Code>| assert_eq!(a.unwrap().grpc_code, 0);
        let denied = |a: Result<Answer, tonic::Code>, status| assert_eq!(a.unwrap().http_status, Some(status));
        allowed(check(&mut client, at("/api/a", Some(&good))).await);
        allowed(check(&mut client, at("/api/b", Some(&good))).await); // a cache hit
        allowed(check(&mut client, at("/api", Some(&legacy))).await);
        allowed(check(&mut client, at("/health", None)).await);
        allowed(check(&mut client, at("/beta", None)).await); // dry run: would deny
        denied(check(&mut client, at("/api", None)).await, 401);
        denied(check(&mut client, at("/api", Some(&forged))).await, 401);
        denied(check(&mut client, at("/api", Some(&expired))).await, 401);
        denied(check(&mut client, at("/write", Some(&good))).await, 403);
        denied(check(&mut client, at("/nowhere", Some(&good))).await, 403);
        // The issuer fails: a token with an unknown kid costs one failed refetch.
        issuer.set_mode(Mode::Status(500));
        let rotated = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("new"), claims(&issuer.url()));
        denied(check(&mut client, at("/api", Some(&rotated))).await, 401);
        // The HTTP door (Envoy HTTP mode).
        let http = reqwest::Client::new()
            .get(format!("http://{}/ext_authz/api", gk.http_addr))
            .bearer_auth(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(http.status(), 200);

        let url = format!("http://{}/metrics", gk.http_addr);
        let scrape = reqwest::get(&url).await.unwrap();
        assert_eq!(
            scrape.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = scrape.text().await.unwrap();
        let (code, said) = promtool_check(&text);
        assert_eq!(code, Some(0), "promtool check metrics: {said}\n{text}");
        let s = samples(&text);
        let value = |series: &str| s.get(series).copied().unwrap_or_else(|| panic!("no {series} in\n{text}"));
        let decision = |decision: &str, reason: &str, provider: &str, route: &str| {
            value(&format!(
                "jwtgate_decisions_total{{decision=\"{decision}\",reason=\"{reason}\",provider=\"{provider}\",route=\"{route}\"}}"
            ))
        };
        assert_eq!(decision("allow", "", "corp", "api"), 3.0, "two gRPC checks and one HTTP");
        assert_eq!(decision("allow", "", "legacy", "api"), 1.0);
        assert_eq!(decision("allow", "", "", "health"), 1.0);
        assert_eq!(decision("allow", "", "", "beta"), 1.0);
        assert_eq!(decision("deny", "missing_token", "", "api"), 1.0);
        assert_eq!(decision("deny", "bad_signature", "", "api"), 1.0);
        assert_eq!(decision("deny", "expired", "", "api"), 1.0);
        assert_eq!(decision("deny", "missing_scope", "corp", "write"), 1.0);
        assert_eq!(decision("deny", "no_route", "", ""), 1.0);
        assert_eq!(decision("deny", "unknown_key", "", "api"), 1.0);
        assert_eq!(
            value("jwtgate_dry_run_denials_total{route=\"beta\",reason=\"missing_token\"}"),
            1.0
        );
        // Signatures checked, cache hits not: the second corp check and the HTTP one were hits.
        assert_eq!(value("jwtgate_tokens_verified_total{provider=\"corp\",alg=\"RS256\"}"), 1.0);
        assert_eq!(value("jwtgate_tokens_verified_total{provider=\"legacy\",alg=\"HS256\"}"), 1.0);
        assert_eq!(value("jwtgate_token_cache_lookups_total{outcome=\"hit\"}"), 3.0);
        assert!(value("jwtgate_token_cache_entries") >= 2.0);
        let durations = |door: &str, decision: &str| {
            value(&format!(
                "jwtgate_check_duration_seconds_count{{door=\"{door}\",decision=\"{decision}\"}}"
            ))
        };
        assert_eq!(durations("grpc", "allow"), 5.0);
        assert_eq!(durations("grpc", "deny"), 6.0);
        assert_eq!(durations("http", "allow"), 1.0);
        assert_eq!(
            value("jwtgate_check_duration_seconds_bucket{le=\"+Inf\",door=\"grpc\",decision=\"deny\"}"),
            6.0
        );
        assert_eq!(value("jwtgate_key_fetches_total{provider=\"corp\",outcome=\"success\"}"), 1.0);
        assert_eq!(value("jwtgate_key_fetches_total{provider=\"corp\",outcome=\"failure\"}"), 1.0);
        assert_eq!(value("jwtgate_key_set_keys{provider=\"corp\"}"), 1.0);
        assert_eq!(value("jwtgate_key_set_keys{provider=\"legacy\"}"), 1.0);
        let loaded = value("jwtgate_key_set_last_success_timestamp_seconds{provider=\"corp\"}");
        assert!((now() - 60..=now()).contains(&(loaded as u64)), "{loaded}");
        assert!(value("jwtgate_key_set_age_seconds{provider=\"corp\"}") < 60.0);
        assert_eq!(value("jwtgate_revocations{kind=\"jti\"}"), 0.0);
        assert_eq!(value("jwtgate_revocations{kind=\"subject\"}"), 0.0);
        assert_eq!(value("jwtgate_revocation_store_up"), 1.0);
        assert_eq!(value("jwtgate_trace_spans_dropped_total"), 0.0, "no exporter, no loss");
        assert_eq!(
            value(&format!("jwtgate_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))),
            1.0
        );

        // Two reloads: one applied, one refused.
        let path = gk.dir().join("jwtgate.yaml");
        std::fs::write(&path, config_text(&yaml)).unwrap();
        gk.live().reload(&path).unwrap();
        std::fs::write(&path, "providers: [").unwrap();
        assert!(gk.live().reload(&path).is_err());
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let s = samples(&text);
        assert_eq!(s["jwtgate_config_reloads_total{outcome=\"success\"}"], 1.0, "{text}");
        assert_eq!(s["jwtgate_config_reloads_total{outcome=\"failure\"}"], 1.0, "{text}");
        assert_eq!(
            s["jwtgate_decisions_total{decision=\"allow\",reason=\"\",provider=\"corp\",route=\"api\"}"],
            3.0,
            "counts survive a reload"
        );
        // The alert rules and the dashboard query only what a scrape holds.
        let exported: Vec<&str> = s.keys().map(|series| series.split('{').next().unwrap_or(series)).collect();
        let named = regex::Regex::new("jwtgate_[a-z_]+").unwrap();
        for file in [
            "examples/prometheus/alerts.yaml",
            "examples/prometheus/migration.yaml",
            "examples/grafana/jwtgate.json",
        ] {
            let text = std::fs::read_to_string(repo(file)).unwrap();
            for m in named.find_iter(&text) {
                assert!(exported.contains(&m.as_str()), "{file} queries {}, which no scrape holds", m.as_str());
            }
        }

        // A scraper that asks for OpenMetrics gets it.
        let open = reqwest::Client::new()
            .get(&url)
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .send()
            .await
            .unwrap();
        assert!(
            open.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let open = open.text().await.unwrap();
        assert!(open.contains("# TYPE jwtgate_decisions counter") && open.ends_with("# EOF\n"), "{open}");
    })
    .await
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo("examples/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
        ["check", "rules", "migration.yaml"],
        ["test", "rules", "migration.test.yaml"],
    ] {
        let out = Command::new(tools::PROMTOOL.path())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
