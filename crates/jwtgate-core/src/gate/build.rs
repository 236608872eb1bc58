//! The gate built from a validated config: its fields, the state kept across reloads, and what
//! a cached token keeps.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::metrics::{DecisionCounters, DecisionMetrics};
use crate::cache::{CacheLookups, TokenCache};
use crate::config::http_auth::HttpAuth;
use crate::config::introspection::Introspection;
use crate::config::routes::Unmatched;
use crate::config::{Config, Source};
use crate::denial_log::DenialLog;
use crate::dpop::DpopMetrics;
use crate::dpop::replay::Replays;
use crate::keys::cache::KeyCache;
use crate::metrics::Metrics;
use crate::opaque::Introspector;
use crate::ratelimit::RateLimiter;
use crate::ratelimit::local::LocalCounters;
use crate::ratelimit::redis::RedisCounters;
use crate::revocation::{Listener, Revocation, RevocationSet, Store};
use crate::route::RouteTable;
use crate::verify::Verifier;
use crate::{introspect, policy, ratelimit};
use prometheus_client::metrics::counter::Counter;

/// Orders the steps of a decision: path → route → token → verification → requirements →
/// decision (with dry run applied).
pub struct Gate {
    pub(super) verifier: Verifier,
    pub(super) routes: RouteTable,
    pub(super) unmatched: Unmatched,
    pub(super) sources: Vec<Source>,
    pub(super) identity_headers: Vec<String>,
    pub(super) realm: Arc<str>,
    pub(super) shared: Shared,
    pub(super) http_auth: HttpAuth,
    pub(super) cache: Arc<TokenCache>,
    /// Top-level claims the requirements (the routes' and the admin API's) read: what a cached
    /// token keeps of its claims.
    pub(super) retained_claims: BTreeSet<String>,
    /// This config's metrics handles.
    pub(super) counters: DecisionCounters,
    /// `jwtgate_token_cache_lookups_total` by outcome.
    pub(super) cache_lookups: Arc<CacheLookups>,
    /// Evicts revoked tokens from `cache`; the revocation set holds it weakly.
    pub(super) _evict_revoked: Arc<Listener>,
    /// How many denial lines may be logged per second.
    pub(super) denial_log: DenialLog,
    /// Whether a check's span records the subject (`telemetry.tracing.record_subject`).
    pub(super) record_subject: bool,
    /// The rate-limit rules, over the counters in [`Shared`].
    pub(super) limiter: RateLimiter,
    /// `rate_limits.headers_on_allow`.
    pub(super) headers_on_allow: bool,
    /// `introspection:`: whether tokens may be introspected, and by whom.
    pub(super) introspection: Introspection,
    /// The providers that introspect opaque tokens, in config order.
    pub(super) opaque: Vec<Arc<Introspector>>,
    /// By provider index: `jwtgate_dpop_proofs_total` by outcome, empty without DPoP.
    pub(super) dpop_counters: Vec<Box<[Counter]>>,
    /// By provider index: the `algs` a DPoP challenge names, `None` without DPoP.
    pub(super) dpop_algs: Vec<Option<Arc<str>>>,
}

/// State that outlives a config reload: counters and the revocation set.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// The process's metrics: every family, kept across reloads.
    pub metrics: Arc<Metrics>,
    /// The live revocation set (kept in sync by the revocation store).
    pub revocations: Arc<RevocationSet>,
    /// The store behind it, for status (none in one-shot commands such as `jwtgate check`).
    pub store: Option<Arc<Store>>,
    /// Rate-limit counters (`rate_limits.store: local`): a reload keeps them.
    pub rate_counters: Arc<LocalCounters>,
    /// The shared rate-limit store (`rate_limits.store: redis`), when serving.
    pub rate_store: Option<Arc<RedisCounters>>,
    /// Where fetched key sets are kept (`key_cache.dir`), when serving.
    pub key_cache: Option<Arc<KeyCache>>,
    /// Seen DPoP proof ids (local, and the shared Redis when a provider has `replay: redis`).
    pub replays: Arc<Replays>,
}

impl Gate {
    /// Builds the gate (and every provider's key store) from a validated config.
    pub fn new(config: &Config, client: &reqwest::Client, shared: Shared) -> Self {
        Self::with_verifier(config, Verifier::new(config, client, &shared.metrics), client, shared)
    }

    /// Builds the gate around an existing verifier (a reload that keeps fetched keys); opaque
    /// tokens are introspected through `client`.
    pub fn with_verifier(config: &Config, verifier: Verifier, client: &reqwest::Client, shared: Shared) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        let mut identity_headers: Vec<String> = Vec::new();
        for p in &config.providers {
            for s in &p.sources {
                if !sources.contains(s) {
                    sources.push(s.clone());
                }
            }
            for h in p
                .claims_to_headers
                .iter()
                .map(|(_, h)| h)
                .chain(p.payload_header.iter())
            {
                if !identity_headers.contains(h) {
                    identity_headers.push(h.clone());
                }
            }
        }
        let capacity = usize::try_from(config.cache.max_entries).unwrap_or(usize::MAX);
        let opaque = config
            .providers
            .iter()
            .filter_map(|p| {
                let settings = p.introspection.clone()?;
                let provider = verifier.provider(&p.issuer)?.clone();
                Some(Arc::new(Introspector::new(
                    provider,
                    settings,
                    client.clone(),
                    &shared.metrics,
                    capacity,
                )))
            })
            .collect();
        let dpop = shared.metrics.families::<DpopMetrics>();
        let cache = Arc::new(TokenCache::new(&config.cache));
        let c = cache.clone();
        let evict_revoked: Arc<Listener> = Arc::new(move |r: &Revocation| c.evict_revoked(r));
        shared.revocations.subscribe(&evict_revoked);
        Self {
            verifier,
            routes: RouteTable::new(config.routes.clone()),
            unmatched: config.unmatched,
            sources,
            identity_headers,
            realm: Arc::from(config.realm.as_str()),
            http_auth: config.http_auth.clone(),
            _evict_revoked: evict_revoked,
            denial_log: DenialLog::new(config.denials_logged_per_second),
            record_subject: config.tracing.record_subject,
            limiter: RateLimiter::new(
                &config.rate_limits,
                shared.rate_counters.clone(),
                shared.rate_store.clone(),
                &shared.metrics,
            ),
            headers_on_allow: config.rate_limits.headers_on_allow,
            introspection: config.introspection.clone(),
            opaque,
            dpop_counters: config
                .providers
                .iter()
                .map(|p| match p.dpop {
                    Some(_) => dpop.counters(&p.name),
                    None => Box::default(),
                })
                .collect(),
            dpop_algs: config
                .providers
                .iter()
                .map(|p| p.dpop.as_ref().map(|d| Arc::from(d.algs())))
                .collect(),
            cache,
            retained_claims: retained_claims(config),
            cache_lookups: shared.metrics.families(),
            counters: shared.metrics.families::<DecisionMetrics>().counters(
                config.routes.iter().map(|r| r.name.clone()).collect(),
                config.providers.iter().map(|p| p.name.clone()).collect(),
            ),
            shared,
        }
    }

    /// The verifier, for key status and background refresh.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The verified-token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// State kept across reloads.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The realm challenges name (`realm:`).
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `introspection:` in force: whether it is enabled, and who may ask.
    pub fn introspection(&self) -> &Introspection {
        &self.introspection
    }

    /// The routes in use.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The HTTP door's settings.
    pub fn http_auth(&self) -> &HttpAuth {
        &self.http_auth
    }
}

/// What a cached token keeps of its claims: the top-level claims every requirement reads
/// ([`Config::requirements`], [`policy::claims_read`] for each provider), the rate-limit keys
/// read ([`ratelimit::claims_read`]) and the introspection endpoint answers with
/// ([`introspect::CLAIMS`]). Everything else the gate needs of a token is extracted into
/// [`crate::verify::Verified`]'s own fields.
fn retained_claims(config: &Config) -> BTreeSet<String> {
    let requirements = config.requirements();
    let read = requirements
        .iter()
        .flat_map(|r| config.providers.iter().flat_map(move |p| policy::claims_read(r, p)));
    let answered = config
        .introspection
        .enabled
        .then_some(introspect::CLAIMS)
        .into_iter()
        .flatten();
    read.chain(ratelimit::claims_read(&config.rate_limits))
        .chain(answered)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_token_keeps_the_roles_claim_an_introspection_client_is_checked_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.secret"), "billing-secret-0123456789").unwrap();
        let text = |clients: &str| {
            format!(
                "providers:\n  - {{ name: corp, issuer: https://i/, jwks_uri: https://i/k, roles_claim: realm_access.roles }}\n\
                 introspection:\n  enabled: true\n  clients: [{clients}]\n"
            )
        };
        let kept = |clients: &str| retained_claims(&Config::parse(&text(clients), "t", dir.path()).unwrap());
        assert!(kept("{ provider: corp, role: introspect }").contains("realm_access"));
        assert!(!kept("{ id: b, secret_file: b.secret }").contains("realm_access"));
    }
}
