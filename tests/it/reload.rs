//! Config reload without a restart: atomic swaps under a steady request loop, invalid files
//! refused with the old config kept, key sets of unchanged providers kept, file-change detection.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn routes(scope: &str) -> String {
    format!(
        "routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, require: {{ scopes: [api.read] }} }}\n  - {{ name: admin, match: {{ path_prefix: /admin }}, require: {{ scopes: [{scope}] }} }}\n"
    )
}

async fn setup(issuer: &Issuer) -> (Gatekeeper, String) {
    let provider = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
    let gk = Gatekeeper::start(&format!("{provider}{}", routes("admin.v1")), &[]).await;
    gk.wait_ready().await;
    (gk, provider)
}

fn token(issuer: &Issuer, scope: &str) -> String {
    let mut c = claims(&issuer.url());
    c["scope"] = json!(scope);
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("a"), c)
}

#[tokio::test]
async fn reloads_under_a_steady_request_loop_fail_no_request() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let (gk, provider) = setup(&issuer).await;
    let path = gk.dir().join("jwtgate.yaml");
    let reader = token(&issuer, "api.read admin.v1");

    // Two clients hammer a route that both configs allow, while the config flips 30 times.
    let mut loops = Vec::new();
    for _ in 0..2 {
        let mut client = gk.client().await;
        let t = reader.clone();
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                match check(&mut client, bearer(&t)).await {
                    Ok(a) if a.grpc_code == 0 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    for i in 0..30 {
        let scope = if i % 2 == 0 { "admin.v2" } else { "admin.v1" };
        std::fs::write(&path, config_text(&format!("{provider}{}", routes(scope)))).unwrap();
        gk.live().reload(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let mut total = 0;
    for l in loops {
        let (ok, failed) = l.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed requests, first: {}",
            failed.len(),
            failed[0]
        );
        total += ok;
    }
    assert!(total > 30, "the loop ran ({total} requests)");
    // The last config written (i = 29 → admin.v1) is in force.
    let mut client = gk.client().await;
    let a = check(
        &mut client,
        check_request("/admin", &[("authorization", &format!("Bearer {reader}"))]),
    )
    .await
    .unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_old_config_kept() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let (gk, provider) = setup(&issuer).await;
    let path = gk.dir().join("jwtgate.yaml");
    let admin = token(&issuer, "admin.v1");
    let mut client = gk.client().await;
    let ask = check_request("/admin", &[("authorization", &format!("Bearer {admin}"))]);

    std::fs::write(
        &path,
        config_text(&format!("{provider}routes:\n  - {{ name: x, mach: {{}} }}\n")),
    )
    .unwrap();
    let err = gk.live().reload(&path).unwrap_err();
    assert_eq!(err.field, "routes[0].mach", "{err}");
    assert_eq!(
        check(&mut client, ask.clone()).await.unwrap().grpc_code,
        0,
        "old config still in force"
    );

    std::fs::write(&path, "providers: [").unwrap();
    assert!(gk.live().reload(&path).is_err());
    assert_eq!(check(&mut client, ask).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn key_sets_of_unchanged_providers_are_kept() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let (gk, provider) = setup(&issuer).await;
    let path = gk.dir().join("jwtgate.yaml");
    let hits = issuer.jwks_hits();

    // Routes and audiences change; the key source does not: no fetch, keys usable at once.
    let changed = provider.replace("audiences: [api]", "audiences: [api, api2]");
    std::fs::write(&path, config_text(&format!("{changed}{}", routes("admin.v2")))).unwrap();
    gk.live().reload(&path).unwrap();
    assert_eq!(gk.readyz().await.0, 200);
    let mut client = gk.client().await;
    let t = token(&issuer, "api.read");
    assert_eq!(
        check(
            &mut client,
            check_request("/api", &[("authorization", &format!("Bearer {t}"))])
        )
        .await
        .unwrap()
        .grpc_code,
        0
    );
    assert_eq!(issuer.jwks_hits(), hits, "no refetch for an unchanged key source");

    // A changed key source gets a fresh store (and one fetch).
    let moved = provider.replace("/jwks\"", "/jwks?v=2\"");
    std::fs::write(&path, config_text(&format!("{moved}{}", routes("admin.v2")))).unwrap();
    gk.live().reload(&path).unwrap();
    gk.wait_ready().await;
    assert_eq!(
        check(
            &mut client,
            check_request("/api", &[("authorization", &format!("Bearer {t}"))])
        )
        .await
        .unwrap()
        .grpc_code,
        0
    );
    assert!(issuer.jwks_hits() > hits);

    // A removed provider's tokens are unknown from now on.
    let other = Issuer::start(vec![jwk("ec-p256.pem", Algorithm::ES256, "p")]).await;
    let replacement = jwks_provider("other", &other.url(), &other.jwks_uri(), "");
    std::fs::write(&path, config_text(&format!("{replacement}{}", routes("admin.v2")))).unwrap();
    gk.live().reload(&path).unwrap();
    gk.wait_ready().await;
    let a = check(
        &mut client,
        check_request("/api", &[("authorization", &format!("Bearer {t}"))]),
    )
    .await
    .unwrap();
    assert_eq!(a.reason(), "unknown issuer");
}

#[tokio::test]
async fn a_changed_file_is_picked_up_by_the_watcher() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let (gk, provider) = setup(&issuer).await;
    let path = gk.dir().join("jwtgate.yaml");
    std::fs::write(&path, config_text(&format!("{provider}{}", routes("admin.v1")))).unwrap();
    tokio::spawn(gk.live().clone().watch(path.clone()));
    let mut client = gk.client().await;
    let v2 = token(&issuer, "admin.v2");
    let ask = check_request("/admin", &[("authorization", &format!("Bearer {v2}"))]);
    assert_eq!(check(&mut client, ask.clone()).await.unwrap().http_status, Some(403));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, config_text(&format!("{provider}{}", routes("admin.v2")))).unwrap();
    let start = Instant::now();
    loop {
        if check(&mut client, ask.clone()).await.unwrap().grpc_code == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the watcher did not apply the change within 5s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_file_written_in_two_steps_is_never_in_force_half_written() {
    bounded(Duration::from_secs(60), async {
        let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        let provider = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        let admin = "routes:\n  - name: admin\n    match: { path_prefix: /admin }\n";
        let config = |rest: &str| {
            config_text(&format!(
                "{provider}{admin}    require: {{ scopes: [admin.v1] }}\n  - name: rest\n    match: {{ path_prefix: / }}\n{rest}"
            ))
        };
        let (old, new) = (config("    require: { scopes: [api.read] }\n"), config(""));
        // Cut after the admin route's `match:`: valid, and the admin route then only needs a
        // valid token.
        let half = config_text(&format!("{provider}{admin}"));
        let dir = tempfile::tempdir().unwrap();
        let gk = Gatekeeper::start_text(dir, &old, &[]).await;
        gk.wait_ready().await;
        let path = gk.dir().join("jwtgate.yaml");
        std::fs::write(&path, &old).unwrap();
        tokio::spawn(gk.live().clone().watch(path.clone()));
        let user = token(&issuer, "user");
        let on = |p: &str| check_request(p, &[("authorization", &format!("Bearer {user}"))]);
        let mut client = gk.client().await;
        assert_eq!(check(&mut client, on("/admin")).await.unwrap().http_status, Some(403));
        assert_eq!(check(&mut client, on("/x")).await.unwrap().http_status, Some(403));

        let stop = tokio_util::sync::CancellationToken::new();
        let load = {
            let (mut client, stop, ask) = (gk.client().await, stop.clone(), on("/admin"));
            tokio::spawn(async move {
                let (mut checks, mut allowed) = (0u32, 0u32);
                while !stop.is_cancelled() {
                    checks += 1;
                    if check(&mut client, ask.clone()).await.unwrap().grpc_code == 0 {
                        allowed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (checks, allowed)
            })
        };
        // Three times: truncate and write half, pause 0.9 s (less than two polls), finish.
        for _ in 0..3 {
            std::fs::write(&path, &half).unwrap();
            tokio::time::sleep(Duration::from_millis(900)).await;
            std::fs::write(&path, &new).unwrap();
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        stop.cancel();
        let (checks, allowed) = load.await.unwrap();
        assert_eq!(allowed, 0, "{allowed} of {checks} checks allowed a non-admin on /admin: a half-written config was in force");
        // The whole new config is in force.
        assert_eq!(check(&mut client, on("/x")).await.unwrap().grpc_code, 0);
        assert_eq!(check(&mut client, on("/admin")).await.unwrap().http_status, Some(403));
    })
    .await;
}

#[tokio::test]
async fn a_secret_file_others_may_read_is_warned_about_at_start_and_at_reload() {
    use std::os::unix::fs::PermissionsExt;
    const WARNING: &str = "secret file other users may read or change: chmod 0600 (or 0400; 0440 with the group jwtgate runs as; in Kubernetes the Secret volume's defaultMode), owned by jwtgate's user or root";
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = dir.path().join("jwtgate.yaml");
    std::fs::write(
        &file,
        config_text("  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\n"),
    )
    .unwrap();
    let served = ServeProcess::start(&file, &[]);
    let warned = served.wait_for(WARNING);
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["fields"]["field"], "providers[0].hmac_secret.file");
    assert_eq!(warned["fields"]["mode"], "0644");
    served.signal("HUP");
    served.wait_for("SIGHUP: reloading the config");
    assert_eq!(served.wait_for(WARNING)["fields"]["mode"], "0644");
}
