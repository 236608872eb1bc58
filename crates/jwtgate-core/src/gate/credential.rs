//! The credential: a JWT verified through the verified-token cache, or an opaque token
//! introspected at its providers; the source its provider enables; `require_jti` and
//! revocation.

use super::{Gate, Trace};
use std::sync::Arc;

use serde_json::Value;

use crate::cache::CacheOutcome;
use crate::clock;
use crate::config::{Provider, Source};
use crate::jws;
use crate::opaque::Answer;
use crate::rejection::Rejection;
use crate::verify::{ProviderKeys, Verified};

/// A token that verified (a JWT's signature and claims, or an opaque token's introspection
/// answer), and the provider whose key or endpoint verified it.
pub(super) struct Authenticated<'g> {
    pub(super) verified: Arc<Verified>,
    pub(super) provider: &'g Arc<ProviderKeys>,
}

/// The token steps' refusal, with the token when the refusal came after verification (revoked,
/// `require_jti`).
pub(super) struct Refused<'g> {
    pub(super) rejection: Rejection,
    pub(super) token: Option<Authenticated<'g>>,
}

impl<'g> Refused<'g> {
    /// The provider that verified the token, when one did.
    pub(super) fn provider(&self) -> Option<&'g Arc<ProviderKeys>> {
        self.token.as_ref().map(|t| t.provider)
    }
}

impl Gate {
    /// The token's own checks, in order: verification (through the cache), the source its
    /// provider enables (for a token found in a request), then `require_jti` and revocation.
    pub(super) async fn authenticate<'g>(
        &'g self,
        token: &str,
        source: Option<&Source>,
        trace: &mut Trace<'_>,
    ) -> Result<Authenticated<'g>, Refused<'g>> {
        let verified = if self.opaque.is_empty() || jws::is_jose(token) {
            self.verify(token).await
        } else {
            self.introspect_opaque(token, trace).await
        };
        let verified = verified.and_then(|token| match source {
            Some(s) if !token.provider.config.sources.contains(s) => Err(Rejection::SourceNotAllowed),
            _ => Ok(token),
        });
        let token = match verified {
            Ok(ok) => ok,
            Err(rejection) => {
                trace.step(
                    || "token verifies (issuer, algorithm, key, signature, claims)".into(),
                    Err(&rejection),
                );
                return Err(Refused { rejection, token: None });
            }
        };
        let provider = &token.provider.config;
        trace.with(|e| e.provider = Some(provider.name.clone()));
        trace.step(
            || {
                format!(
                    "token verifies with provider {} (issuer, algorithm, key, signature, claims)",
                    provider.name
                )
            },
            Ok(()),
        );
        if let Err(rejection) = self.not_revoked(&token.verified, provider) {
            trace.step(|| "token not revoked".into(), Err(&rejection));
            return Err(Refused {
                rejection,
                token: Some(token),
            });
        }
        Ok(token)
    }

    /// Verifies through the cache: a hit skips the signature but not the time claims, and counts
    /// only while the key that verified it is still in its provider's key set.
    pub(super) async fn verify(&self, token: &str) -> Result<Authenticated<'_>, Rejection> {
        let key = (token.len() <= self.verifier.max_token_bytes()).then(|| self.cache.key(token));
        let h = match key.flatten() {
            Some(h) => h,
            None => {
                return self.verifier.verify(token).await.map(|(v, p)| {
                    if let Some(alg) = v.alg {
                        self.counters.verified(p.index, alg);
                    }
                    Authenticated {
                        verified: Arc::new(v),
                        provider: p,
                    }
                });
            }
        };
        if let Some(v) = self.cache.get(&h) {
            if let Some(p) = self.verifier.provider(&v.issuer)
                && p.keys
                    .usable()
                    .is_some_and(|set| v.key.as_ref().is_some_and(|k| set.holds(k)))
                && !v.expired(&p.config, clock::unix())
            {
                self.cache_lookups.count(CacheOutcome::Hit);
                return Ok(Authenticated {
                    verified: v,
                    provider: p,
                });
            }
            // Expired, or its key is gone: verify afresh for the precise answer.
            self.cache.forget(&h);
        } else if let Some(r) = self.cache.refused(&h) {
            self.cache_lookups.count(CacheOutcome::RefusedHit);
            return Err(r);
        }
        self.cache_lookups.count(CacheOutcome::Miss);
        match self.verifier.verify(token).await {
            Ok((v, p)) => {
                if let Some(alg) = v.alg {
                    self.counters.verified(p.index, alg);
                }
                self.cache.insert(h, Arc::new(v.for_cache(&self.retained_claims)));
                Ok(Authenticated {
                    verified: Arc::new(v),
                    provider: p,
                })
            }
            Err(r) => {
                self.cache.refuse(h, &r);
                Err(r)
            }
        }
    }

    /// An opaque token, asked of each introspecting provider in config order: the first that
    /// says active wins, and its answer's claims are checked as a JWT's are (time claims,
    /// audience, required claims; an `iss` must be the provider's). Inactive everywhere is
    /// [`Rejection::Inactive`]; no answer from one that could have said active is
    /// [`Rejection::IntrospectionUnavailable`] (503), never a 401.
    pub(super) async fn introspect_opaque(
        &self,
        token: &str,
        trace: &mut Trace<'_>,
    ) -> Result<Authenticated<'_>, Rejection> {
        if token.len() > self.verifier.max_token_bytes() {
            return Err(Rejection::TooLarge);
        }
        let mut unavailable = false;
        for introspector in &self.opaque {
            let p = introspector.provider();
            let claims = match introspector.ask(token).await {
                Ok(Answer::Active(claims)) => claims,
                Ok(Answer::Inactive) => {
                    trace.step(
                        || format!("opaque token active at provider {}", p.config.name),
                        Err(&Rejection::Inactive),
                    );
                    continue;
                }
                Err(why) => {
                    trace.step(
                        || format!("opaque token introspected at provider {} ({why})", p.config.name),
                        Err(&Rejection::IntrospectionUnavailable),
                    );
                    unavailable = true;
                    continue;
                }
            };
            if claims
                .get("iss")
                .is_some_and(|iss| iss.as_str() != Some(p.config.issuer.as_str()))
            {
                return Err(Rejection::UnknownIssuer);
            }
            let mut claims = (*claims).clone();
            crate::verify::canonical_ids(&p.config, &mut claims);
            crate::verify::check_claims(&p.config, &claims, clock::unix())?;
            if let Some(kind) = p
                .config
                .introspection
                .as_ref()
                .and_then(|settings| crate::opaque::refused_type(&settings.refuse_token_types, &claims))
            {
                return Err(Rejection::NotAccessToken(kind));
            }
            trace.step(
                || {
                    format!(
                        "opaque token introspected at provider {}: active, {}",
                        p.config.name,
                        summary(&claims)
                    )
                },
                Ok(()),
            );
            let payload = p.config.payload_header.as_ref().map(|_| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
            });
            let verified = Verified::of(p, claims, None, None, payload);
            return Ok(Authenticated {
                verified: Arc::new(verified),
                provider: p,
            });
        }
        Err(if unavailable {
            Rejection::IntrospectionUnavailable
        } else {
            Rejection::Inactive
        })
    }

    /// `require_jti`, then the revocation set (memory only), once it has been loaded.
    pub(super) fn not_revoked(&self, v: &Verified, p: &Provider) -> Result<(), Rejection> {
        let jti = v.jti.as_deref();
        if p.require_jti && jti.is_none() {
            return Err(Rejection::MissingClaim("jti".into()));
        }
        if self.shared.revocations.is_pending() {
            return Err(Rejection::RevocationsUnavailable);
        }
        match self
            .shared
            .revocations
            .check(&v.issuer, jti, v.subject.as_deref(), v.iat)
        {
            Some(_) => Err(Rejection::Revoked),
            None => Ok(()),
        }
    }
}

/// An introspected token's identifying members, for `jwtgate check` (no secret among them).
pub(super) fn summary(claims: &serde_json::Map<String, Value>) -> String {
    let shown: Vec<String> = ["sub", "client_id", "scope", "aud", "exp", "jti"]
        .iter()
        .filter_map(|name| Some(format!("{name}={}", claims.get(*name)?)))
        .collect();
    shown.join(" ")
}
