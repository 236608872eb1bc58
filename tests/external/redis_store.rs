//! The Redis revocation store end to end, on real parts only: a real `redis-server` of the test's
//! own on loopback (see `common::redis_server`), several jwtgate replicas in this process sharing
//! it and one JWKS issuer, and the real Envoy Check door. A revocation made on one replica is
//! enforced by the others within a second; a replica started later loads what was revoked before;
//! with Redis down every replica keeps serving and enforcing what it knows while writes fail
//! clearly, and one started meanwhile allows no token until it has synced; a replica cut off from Redis catches up when it reconnects; keys live as long as
//! their revocation; the Redis password never shows.
//!
//! Run with `--nocapture` to see the measured propagation times.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::Algorithm;
use jwtgate_core::clock;
use jwtgate_core::revocation::{Revocation, Store, Target};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const KEY_PREFIX: &str = "jwtgate:";
const CHANNEL: &str = "jwtgate:revocations";

/// Every test runs under this bound.
const BOUND: Duration = Duration::from_secs(90);

/// A replica: the issuer's provider and the Redis store at `url`.
async fn replica(iss: &Issuer, url: &str) -> Gatekeeper {
    replica_with(iss, url, "").await
}

/// A replica with `extra` settings in its `revocation:` block, once ready.
async fn replica_with(iss: &Issuer, url: &str, extra: &str) -> Gatekeeper {
    let gk = Gatekeeper::start(&replica_yaml(iss, url, extra), &[]).await;
    gk.wait_ready().await;
    gk
}

/// A replica's config: the issuer's provider, the Redis store at `url` with `extra` settings.
fn replica_yaml(iss: &Issuer, url: &str, extra: &str) -> String {
    format!(
        "{}revocation: {{ store: redis, url: \"{url}\", purge_interval: 1s{extra} }}\n",
        jwks_provider("corp", &iss.url(), &iss.jwks_uri(), "")
    )
}

/// Polls `/readyz` until it says 200; fails after `limit`.
async fn wait_ready_within(gk: &Gatekeeper, limit: Duration) {
    let started = Instant::now();
    while gk.readyz().await.0 != 200 {
        assert!(
            started.elapsed() < limit,
            "not ready within {limit:?}: {}",
            gk.readyz().await.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store(gk: &Gatekeeper) -> Arc<Store> {
    gk.running.as_ref().unwrap().store.clone()
}

/// A token for `sub: alice, aud: api` with `extra` claims merged in (600 s).
fn token(iss: &Issuer, extra: Value) -> String {
    let mut c = claims(&iss.url());
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
}

fn revoke_jti(iss: &Issuer, jti: &str, expires_at: u64) -> Revocation {
    Revocation {
        target: Target::Token {
            issuer: iss.url(),
            jti: jti.into(),
        },
        expires_at,
        created_at: clock::now().unix,
        reason: "test".into(),
    }
}

fn revoke_subject(iss: &Issuer, subject: &str, issued_before: u64, expires_at: u64) -> Revocation {
    Revocation {
        target: Target::Subject {
            issuer: iss.url(),
            subject: subject.into(),
            issued_before,
        },
        expires_at,
        created_at: clock::now().unix,
        reason: "password change".into(),
    }
}

/// The Redis key of a revocation under the default prefix.
fn redis_key(r: &Revocation) -> String {
    format!("{KEY_PREFIX}r:{}", r.key())
}

async fn assert_revoked(gk: &Gatekeeper, t: &str) {
    let a = check(&mut gk.client().await, bearer(t)).await.unwrap();
    assert_eq!(a.http_status, Some(401), "{a:?}");
    assert_eq!(a.reason(), "token revoked", "{a:?}");
}

async fn assert_allowed(gk: &Gatekeeper, t: &str) {
    let a = check(&mut gk.client().await, bearer(t)).await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
}

/// Asks the Check door every 5 ms until it denies `t`; how long that took from `since`. Fails
/// after `limit`.
async fn time_until_denied(
    client: &mut AuthorizationClient<Channel>,
    t: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let a = check(client, bearer(t)).await.unwrap();
        if a.grpc_code != 0 {
            let took = since.elapsed();
            assert_eq!(a.http_status, Some(401), "{a:?}");
            assert_eq!(a.reason(), "token revoked", "{a:?}");
            return took;
        }
        assert!(
            since.elapsed() < limit,
            "still allowed {:?} after the revocation",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `cond` every 20 ms until it holds; fails after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_connected(gk: &Gatekeeper, connected: bool) {
    let s = store(gk);
    wait_for(
        &format!("store connected = {connected}"),
        Duration::from_secs(10),
        || s.status().connected == connected,
    )
    .await;
}

/// A test's own connection to Redis.
async fn redis_client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A loopback TCP proxy in front of Redis whose connections the test can cut (a network
/// partition between one replica and Redis, while Redis itself stays up).
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
}

struct ProxyState {
    open: bool,
    /// Cancels every connection of the current generation.
    conns: CancellationToken,
}

impl Proxy {
    async fn start(upstream_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            open: true,
            conns: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        let (st, sp) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut down = tokio::select! {
                    () = sp.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let conn = {
                    let s = st.lock().unwrap();
                    s.open.then(|| s.conns.child_token())
                };
                // Cut off: the connection is closed at once.
                let Some(conn) = conn else { continue };
                let stop = sp.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        return;
                    };
                    tokio::select! {
                        () = conn.cancelled() => {}
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    }
                });
            }
        });
        Self { addr, state, stop }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        s.open = false;
        s.conns.cancel();
        s.conns = CancellationToken::new();
    }

    /// Lets connections through again.
    fn restore(&self) {
        self.state.lock().unwrap().open = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_is_enforced_by_another_within_a_second() {
    bounded(BOUND, async {
        let redis = RedisServer::start().await;
        let iss = rsa_issuer().await;
        let a = replica(&iss, &redis.url()).await;
        let b = replica(&iss, &redis.url()).await;
        wait_connected(&a, true).await;
        wait_connected(&b, true).await;
        let mut on_b = b.client().await;

        // A token's jti, several times over to see the spread.
        let mut times = Vec::new();
        for i in 0..5 {
            let jti = format!("prop-{i}");
            let t = token(&iss, json!({ "jti": jti }));
            // Allowed first, so B also holds it in its verified-token cache.
            assert_allowed(&b, &t).await;
            assert_allowed(&b, &t).await;
            let started = Instant::now();
            store(&a).revoke(revoke_jti(&iss, &jti, now() + 660)).await.unwrap();
            let written = started.elapsed();
            let took = time_until_denied(&mut on_b, &t, started, Duration::from_secs(2)).await;
            eprintln!("jti revocation {i}: written on A in {written:?}, denied on B {took:?} after the call");
            assert!(took < Duration::from_secs(1), "B took {took:?}");
            times.push(took);
        }
        assert_allowed(&b, &token(&iss, json!({"jti": "prop-other"}))).await;
        assert_revoked(&a, &token(&iss, json!({"jti": "prop-0"}))).await;

        // A subject cut-off: tokens issued before it are denied on B, one issued after is not.
        let cut_off = now() - 30;
        let old = token(&iss, json!({"sub": "bob", "iat": cut_off - 30}));
        let older = token(&iss, json!({"sub": "bob", "iat": cut_off - 300}));
        let fresh = token(&iss, json!({"sub": "bob", "iat": cut_off + 20}));
        assert_allowed(&b, &old).await;
        assert_allowed(&b, &fresh).await;
        let started = Instant::now();
        store(&a)
            .revoke(revoke_subject(&iss, "bob", cut_off, cut_off + 86_460))
            .await
            .unwrap();
        let took = time_until_denied(&mut on_b, &old, started, Duration::from_secs(2)).await;
        eprintln!("subject cut-off: denied on B {took:?} after the call");
        assert!(took < Duration::from_secs(1), "B took {took:?}");
        assert_revoked(&b, &older).await;
        assert_allowed(&b, &fresh).await;
        assert_allowed(&b, &token(&iss, json!({"sub": "carol", "iat": cut_off - 30}))).await;

        // An unreadable message is skipped; the next one still applies.
        let mut r = redis_client(&redis.url()).await;
        let heard: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg("{not json")
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(heard, 2, "both replicas subscribe");
        let t = token(&iss, json!({"jti": "after-junk"}));
        let started = Instant::now();
        store(&a)
            .revoke(revoke_jti(&iss, "after-junk", now() + 660))
            .await
            .unwrap();
        time_until_denied(&mut on_b, &t, started, Duration::from_secs(1)).await;
        assert!(store(&b).status().connected, "{:?}", store(&b).status());

        times.sort();
        eprintln!(
            "propagation A -> B over {} jti revocations: min {:?}, max {:?}",
            times.len(),
            times[0],
            times[times.len() - 1]
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_later_loads_every_live_revocation() {
    bounded(BOUND, async {
        let redis = RedisServer::start().await;
        let iss = rsa_issuer().await;
        let a = replica(&iss, &redis.url()).await;
        let revoked = token(&iss, json!({"jti": "early-1"}));
        let old = token(&iss, json!({"sub": "dave", "iat": now() - 60}));
        store(&a)
            .revoke(revoke_jti(&iss, "early-1", now() + 660))
            .await
            .unwrap();
        store(&a)
            .revoke(revoke_subject(&iss, "dave", now() - 30, now() + 86_400))
            .await
            .unwrap();
        // Junk under the prefix is skipped, not fatal.
        let mut r = redis_client(&redis.url()).await;
        let () = redis::cmd("SET")
            .arg(format!("{KEY_PREFIX}r:junk"))
            .arg("{not json")
            .query_async(&mut r)
            .await
            .unwrap();

        let c = replica(&iss, &redis.url()).await;
        // Loaded while starting, before serving: no waiting for a message.
        assert_eq!(store(&c).set().len(), 2, "{:?}", store(&c).status());
        assert_revoked(&c, &revoked).await;
        assert_revoked(&c, &old).await;
        assert_allowed(&c, &token(&iss, json!({"jti": "early-2"}))).await;
        assert_allowed(&c, &token(&iss, json!({"sub": "dave", "iat": now() - 5}))).await;
        wait_connected(&c, true).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_is_down_allows_no_token_until_it_has_synced() {
    bounded(BOUND, async {
        let mut redis = RedisServer::start().await;
        redis.stop();
        let iss = rsa_issuer().await;
        let gk = Gatekeeper::start(&replica_yaml(&iss, &redis.url(), ""), &[]).await;
        let (mut status, mut body) = gk.readyz().await;
        let started = Instant::now();
        while body["providers"][0]["state"] != "fresh" {
            assert!(started.elapsed() < Duration::from_secs(10), "{body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            (status, body) = gk.readyz().await;
        }
        // Keys are there, the shared revocations are not: not ready, and no token allowed.
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["revocation"]["connected"], false, "{body}");
        let valid = token(&iss, json!({"jti": "later-revoked"}));
        let mut client = gk.client().await;
        assert_eq!(
            check(&mut client, bearer(&valid)).await.unwrap_err(),
            tonic::Code::Unavailable
        );
        let m = scrape(gk.http_addr).await;
        assert!(
            m.keys().any(|k| k.contains("reason=\"revocations_unavailable\"")),
            "{m:?}"
        );

        // Redis back: the first sync makes the replica ready and its tokens allowed, and its
        // revocations enforced.
        redis.restart().await;
        wait_ready_within(&gk, Duration::from_secs(30)).await;
        assert_allowed(&gk, &valid).await;
        store(&gk)
            .revoke(revoke_jti(&iss, "later-revoked", now() + 660))
            .await
            .unwrap();
        assert_revoked(&gk, &valid).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_replicas_keep_serving_and_writes_fail_clearly() {
    bounded(BOUND, async {
        let mut redis = RedisServer::start().await;
        let iss = rsa_issuer().await;
        let a = replica(&iss, &redis.url()).await;
        let b = replica(&iss, &redis.url()).await;
        wait_connected(&a, true).await;
        wait_connected(&b, true).await;

        let revoked = token(&iss, json!({"jti": "down-1"}));
        let old = token(&iss, json!({"sub": "erin", "iat": now() - 60}));
        let good = token(&iss, json!({"jti": "down-ok"}));
        let later = token(&iss, json!({"jti": "down-2"}));
        let started = Instant::now();
        store(&a).revoke(revoke_jti(&iss, "down-1", now() + 660)).await.unwrap();
        store(&a)
            .revoke(revoke_subject(&iss, "erin", now() - 30, now() + 86_400))
            .await
            .unwrap();
        let mut on_b = b.client().await;
        time_until_denied(&mut on_b, &revoked, started, Duration::from_secs(1)).await;
        time_until_denied(&mut on_b, &old, started, Duration::from_secs(1)).await;

        redis.stop();
        wait_connected(&a, false).await;
        wait_connected(&b, false).await;

        // Both keep serving from memory: what was revoked stays denied, the rest passes.
        let mut on_a = a.client().await;
        for _ in 0..20 {
            for client in [&mut on_a, &mut on_b] {
                for t in [&revoked, &old] {
                    let ans = check(client, bearer(t)).await.unwrap();
                    assert_eq!((ans.http_status, ans.reason().as_str()), (Some(401), "token revoked"));
                }
                assert_eq!(check(client, bearer(&good)).await.unwrap().grpc_code, 0);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // A write fails, and says so; nothing pretends it was revoked.
        let started = Instant::now();
        let e = store(&a)
            .revoke(revoke_jti(&iss, "down-2", now() + 660))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let e = e.to_string();
        assert!(e.contains("revocation store unavailable") && e.contains("redis"), "{e}");
        assert_allowed(&a, &later).await;

        // Ready (everything known is enforced) but reporting the store as disconnected.
        for gk in [&a, &b] {
            let (status, body) = gk.readyz().await;
            assert_eq!(status, 200, "{body}");
            let rev = &body["revocation"];
            assert_eq!(rev["store"], "redis", "{body}");
            assert_eq!(rev["connected"], false, "{body}");
            assert!(rev["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
            assert_eq!(rev["entries"], 2, "{body}");
        }

        // A replica started while Redis is down starts promptly, but knows none of the shared
        // revocations, so it is not ready and allows no token until its first sync.
        let started = Instant::now();
        let c = Gatekeeper::start(&replica_yaml(&iss, &redis.url(), ""), &[]).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(!store(&c).status().connected);
        assert_eq!(c.readyz().await.0, 503);
        let mut on_c = c.client().await;
        assert_eq!(
            check(&mut on_c, bearer(&good)).await.unwrap_err(),
            tonic::Code::Unavailable
        );

        // Redis comes back empty. A's writes work again; B and C catch up by message or re-sync.
        redis.restart().await;
        let back = Instant::now();
        loop {
            match store(&a).revoke(revoke_jti(&iss, "down-2", now() + 660)).await {
                Ok(()) => break,
                Err(e) => assert!(back.elapsed() < Duration::from_secs(10), "A cannot write again: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let written = back.elapsed();
        wait_ready_within(&c, Duration::from_secs(10)).await;
        let took_b = time_until_denied(&mut on_b, &later, back, Duration::from_secs(5)).await;
        let took_c = time_until_denied(&mut on_c, &later, back, Duration::from_secs(5)).await;
        eprintln!(
            "after Redis restarted: A wrote after {written:?}; denied on B after {took_b:?}, on C after {took_c:?}"
        );

        // The re-sync only adds: what A and B knew before the outage is still enforced, though
        // the new (empty) Redis has never heard of it.
        for gk in [&a, &b] {
            assert_revoked(gk, &revoked).await;
            assert_revoked(gk, &old).await;
            assert_allowed(gk, &good).await;
        }
        for gk in [&a, &b, &c] {
            wait_connected(gk, true).await;
            let (status, body) = gk.readyz().await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["revocation"]["connected"], true, "{body}");
            assert_eq!(body["revocation"]["last_error"], Value::Null, "{body}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_redis_catches_up_when_it_reconnects() {
    bounded(BOUND, async {
        let redis = RedisServer::start().await;
        let proxy = Proxy::start(redis.port).await;
        let iss = rsa_issuer().await;
        let a = replica(&iss, &redis.url()).await;
        let b = replica(&iss, &proxy.url()).await;
        wait_connected(&a, true).await;
        wait_connected(&b, true).await;

        // B loses Redis; A and Redis carry on.
        proxy.cut();
        wait_connected(&b, false).await;
        assert!(store(&a).status().connected);

        // Revoked meanwhile: one through A (published, which B misses), one written straight
        // into Redis without any message.
        let by_a = token(&iss, json!({"jti": "cut-1"}));
        let direct = token(&iss, json!({"jti": "cut-2"}));
        store(&a).revoke(revoke_jti(&iss, "cut-1", now() + 660)).await.unwrap();
        let r = revoke_jti(&iss, "cut-2", now() + 660);
        let mut conn = redis_client(&redis.url()).await;
        let () = redis::cmd("SET")
            .arg(redis_key(&r))
            .arg(serde_json::to_string(&r).unwrap())
            .arg("EX")
            .arg(660)
            .query_async(&mut conn)
            .await
            .unwrap();
        // B has no way to know yet.
        for _ in 0..10 {
            assert_allowed(&b, &by_a).await;
            assert_allowed(&b, &direct).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_revoked(&a, &by_a).await;

        // Reconnected, B re-syncs and enforces both.
        proxy.restore();
        let back = Instant::now();
        let mut on_b = b.client().await;
        let took_a = time_until_denied(&mut on_b, &by_a, back, Duration::from_secs(5)).await;
        let took_d = time_until_denied(&mut on_b, &direct, back, Duration::from_secs(5)).await;
        eprintln!("cut-off replica caught up {took_a:?} / {took_d:?} after the link came back");
        wait_connected(&b, true).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_live_as_long_as_their_revocation_and_never_weaken() {
    bounded(BOUND, async {
        let redis = RedisServer::start().await;
        let iss = rsa_issuer().await;
        let a = replica_with(&iss, &redis.url(), ", key_prefix: \"ttl-test:\", channel: \"ttl-chan\"").await;
        let mut conn = redis_client(&redis.url()).await;
        let key = |r: &Revocation| format!("ttl-test:r:{}", r.key());
        let ttl = async |conn: &mut redis::aio::MultiplexedConnection, key: &str| -> i64 {
            redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
        };
        let stored = async |conn: &mut redis::aio::MultiplexedConnection, key: &str| -> Revocation {
            let json: String = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
            serde_json::from_str(&json).unwrap()
        };

        // A token: kept through the last second of its expiry (TTL = expires_at - now + 1).
        let r = revoke_jti(&iss, "ttl-1", now() + 300);
        store(&a).revoke(r.clone()).await.unwrap();
        let t = ttl(&mut conn, &key(&r)).await;
        assert!((298..=301).contains(&t), "TTL {t}");
        assert_eq!(stored(&mut conn, &key(&r)).await, r);

        // A later expiry for the same token extends it; an earlier one does not shorten it.
        let longer = revoke_jti(&iss, "ttl-1", now() + 600);
        store(&a).revoke(longer.clone()).await.unwrap();
        let t = ttl(&mut conn, &key(&r)).await;
        assert!((598..=601).contains(&t), "TTL {t}");
        store(&a).revoke(revoke_jti(&iss, "ttl-1", now() + 100)).await.unwrap();
        assert_eq!(stored(&mut conn, &key(&r)).await, longer);

        // A subject cut-off: kept for its retention; an earlier cut-off does not replace it.
        let s = revoke_subject(&iss, "frank", now() - 10, now() + 1000);
        store(&a).revoke(s.clone()).await.unwrap();
        let t = ttl(&mut conn, &key(&s)).await;
        assert!((998..=1001).contains(&t), "TTL {t}");
        store(&a)
            .revoke(revoke_subject(&iss, "frank", now() - 100, now() + 900))
            .await
            .unwrap();
        assert_eq!(stored(&mut conn, &key(&s)).await, s);
        let t = ttl(&mut conn, &key(&s)).await;
        assert!((998..=1001).contains(&t), "TTL {t}");

        // Nothing under the default prefix.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("jwtgate:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_shows() {
    bounded(BOUND, async {
        const PASSWORD: &str = "s3cret-pw-0123";
        let mut redis = RedisServer::start_with(&["--requirepass", PASSWORD]).await;
        let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
        let iss = rsa_issuer().await;
        let a = replica(&iss, &url).await;
        wait_connected(&a, true).await;
        store(&a).revoke(revoke_jti(&iss, "pw-1", now() + 660)).await.unwrap();

        redis.stop();
        wait_connected(&a, false).await;
        let e = store(&a)
            .revoke(revoke_jti(&iss, "pw-2", now() + 660))
            .await
            .unwrap_err()
            .to_string();
        assert!(!e.contains(PASSWORD), "{e}");
        assert!(e.contains(":***@127.0.0.1"), "{e}");
        let last = store(&a).status().last_error.unwrap();
        assert!(!last.contains(PASSWORD), "{last}");
        let (_, body) = a.readyz().await;
        assert!(!body.to_string().contains(PASSWORD), "{body}");
    })
    .await
}
