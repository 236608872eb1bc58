//! The soak's identity provider: signing keys it rotates without telling anyone, and a JWKS on a
//! loopback HTTP server that it can take down (connections refused) and bring back on the same
//! port.
//!
//! A rotation is what an issuer that rotates unannounced does: a new key is generated, and from
//! the same instant the JWKS lists it (with the previous key, whose tokens are still in flight)
//! and new tokens are signed with it. jwtgate learns of it from the first token it cannot place.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwtgate_core::{clock, mint};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// `iss` of the soak's tokens.
pub const ISSUER: &str = "https://issuer.soak.local";
/// The algorithm the issuer signs with (RSA keys, as most identity providers use).
const ALG: Algorithm = Algorithm::RS256;
/// Lifetime of the tokens it mints: longer than any soak.
pub const TTL_SECS: u64 = 4 * 3_600;

/// One signing key.
struct Key {
    kid: String,
    signing: EncodingKey,
    jwk: Value,
}

impl Key {
    fn generate(generation: u64) -> Result<Self, String> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
        let pem = pair.serialize_pem();
        let kid = format!("soak-{generation}");
        let signing = mint::signing_key(pem.as_bytes(), ALG).map_err(|e| e.to_string())?;
        let jwk = mint::public_jwk(pem.as_bytes(), ALG, &kid).map_err(|e| e.to_string())?;
        Ok(Self { kid, signing, jwk })
    }
}

/// The current key and the one before it (still published).
struct Ring {
    current: Key,
    previous: Option<Key>,
    generation: u64,
}

impl Ring {
    fn jwks(&self) -> String {
        let keys: Vec<&Value> = std::iter::once(&self.current.jwk)
            .chain(self.previous.as_ref().map(|k| &k.jwk))
            .collect();
        json!({ "keys": keys }).to_string()
    }
}

/// The issuer: keys, the published JWKS, and its HTTP server.
pub struct Issuer {
    ring: Mutex<Ring>,
    body: Arc<ArcSwap<String>>,
    hits: Arc<AtomicU64>,
    addr: SocketAddr,
    up: AtomicBool,
    server: Mutex<CancellationToken>,
}

impl Issuer {
    /// Generates the first key and starts serving `GET /jwks` on an ephemeral loopback port.
    pub async fn start() -> Result<Arc<Self>, String> {
        let ring = Ring {
            current: Key::generate(1)?,
            previous: None,
            generation: 1,
        };
        let body = Arc::new(ArcSwap::from_pointee(ring.jwks()));
        let hits = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen for the JWKS server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = serve(listener, body.clone(), hits.clone());
        Ok(Arc::new(Self {
            ring: Mutex::new(ring),
            body,
            hits,
            addr,
            up: AtomicBool::new(true),
            server: Mutex::new(server),
        }))
    }

    /// Where jwtgate fetches the keys.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Whether the JWKS server is answering.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// JWKS requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The key id new tokens carry.
    pub fn current_kid(&self) -> String {
        self.lock().current.kid.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs a token for `sub` with the current key (`iat` now, `exp` in [`TTL_SECS`], a random
    /// `jti`), returning it with its `iat`.
    pub fn mint(&self, sub: &str) -> Result<(String, u64), String> {
        let iat = clock::unix();
        let mut claims = Map::new();
        claims.insert("iss".into(), ISSUER.into());
        claims.insert("sub".into(), sub.into());
        claims.insert("aud".into(), super::AUDIENCE.into());
        claims.insert("iat".into(), iat.into());
        let ring = self.lock();
        let token = mint::mint(&ring.current.signing, ALG, Some(&ring.current.kid), &claims, TTL_SECS)
            .map_err(|e| e.to_string())?;
        Ok((token, iat))
    }

    /// Signs `n` tokens for subjects `user-0` … with the current key.
    pub fn mint_pool(&self, n: usize) -> Result<Vec<String>, String> {
        (0..n)
            .map(|i| self.mint(&format!("user-{i}")).map(|(t, _)| t))
            .collect()
    }

    /// Rotates unannounced: a new key is published beside the previous one (the key before that
    /// is dropped) and signs from then on — in that order, under one lock, so no token ever
    /// names a key the JWKS does not yet hold (a revocation's token minted meanwhile included).
    /// `pool` mints the tokens the clients will send from now on, the moment the issuer would
    /// start handing them out.
    pub fn rotate(&self, pool_size: usize) -> Result<Vec<String>, String> {
        let next = {
            let ring = self.lock();
            ring.generation + 1
        };
        let key = Key::generate(next)?;
        {
            let mut ring = self.lock();
            let old = std::mem::replace(&mut ring.current, key);
            ring.previous = Some(old);
            ring.generation = next;
            self.body.store(Arc::new(ring.jwks()));
        }
        self.mint_pool(pool_size)
    }

    /// Takes the JWKS server down: the listener closes, connections are refused.
    pub fn go_down(&self) {
        self.up.store(false, Ordering::Release);
        self.server.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }

    /// Brings it back on the same port (retrying the bind for up to 5 s while the old socket
    /// lets go).
    pub async fn come_back(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let server = serve(listener, self.body.clone(), self.hits.clone());
                    *self.server.lock().unwrap_or_else(|p| p.into_inner()) = server;
                    self.up.store(true, Ordering::Release);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the JWKS server cannot listen on {} again: {last}", self.addr))
    }
}

/// Serves the JWKS on `listener` ([`crate::serve::serve_jwks_on`]) until the returned token is
/// cancelled.
fn serve(listener: tokio::net::TcpListener, body: Arc<ArcSwap<String>>, hits: Arc<AtomicU64>) -> CancellationToken {
    let stop = CancellationToken::new();
    crate::serve::serve_jwks_on(listener, body, hits, stop.clone());
    stop
}
