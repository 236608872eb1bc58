//! The decision, computed in one place for every front door: [`Request`] in, [`Decision`] out.
//!
//! Order of steps: normalise the path ([`crate::path`]) and the host ([`crate::host`]) → pick
//! the route ([`crate::route`]) →
//! find the token ([`crate::token`]) → verify it, through the verified-token cache
//! ([`crate::verify`], [`crate::cache`]) → check it came from a source its provider enables →
//! `require_jti` and revocation ([`crate::revocation`]) → the route's requirements
//! ([`crate::policy`]) → allow with identity headers, or deny (dry run applied). The admin API's
//! callers go through the same token steps ([`Gate::authorize`]). Nothing here knows gRPC or
//! HTTP: [`Deny`] carries the rejection, and the doors render it.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::binding::ProofError;
use crate::binding::{self, BindingError};
use crate::cache::TokenCache;
use crate::clock;
use crate::config::binding::{DpopMode, is_dpop_source};
use crate::config::http_auth::HttpAuth;
use crate::config::introspection::{Introspection, IntrospectionClient};
use crate::config::rate_limits::KeyPart;
use crate::config::routes::{Auth, Mode, Requirements, Route, Unmatched};
use crate::config::{Config, Provider, Source};
use crate::denial_log::DenialLog;
use crate::dpop;
use crate::dpop::replay::Replays;
use crate::introspect::{self, Introspected};
use crate::keys::cache::KeyCache;
use crate::metrics::{CacheOutcome, DecisionCounters, Format, KeySetState, Metrics};
use crate::opaque::{Answer, Introspector};
use crate::path;
use crate::ratelimit::local::LocalCounters;
use crate::ratelimit::redis::RedisCounters;
use crate::ratelimit::{RateLimiter, Subject, Verdict};
use crate::rejection::Rejection;
use crate::request::{Allow, Decision, Deny, Headroom, Identity, Request};
use crate::revocation::{Listener, Revocation, RevocationSet, Store};
use crate::route::RouteTable;
use crate::verify::{ProviderKeys, Verified, Verifier};
use crate::{jws, policy, token};
use prometheus_client::metrics::counter::Counter;

/// One step of a decision, as `jwtgate check` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked.
    pub what: String,
    /// Passed, or why it failed.
    pub outcome: Result<(), Rejection>,
}

/// How a decision was reached: the route, the provider and every check made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explanation {
    /// The normalised path that routes were matched against.
    pub path: Option<String>,
    /// The matched route's name; `None` when no route matched.
    pub route: Option<String>,
    /// The provider that verified the token.
    pub provider: Option<String>,
    /// Every check, in order.
    pub steps: Vec<Step>,
    /// A denial that a dry-run route turned into an allow.
    pub dry_run_denial: Option<Rejection>,
}

/// What a route decided before dry run is applied.
struct Outcome<'g> {
    /// The matched route and its position in the config.
    route: Option<(usize, &'g Route)>,
    /// The provider whose key verified the token, also when a later step refused it.
    provider: Option<&'g Arc<ProviderKeys>>,
    /// The token, when it may identify the caller (verified, not revoked) and where it was.
    verified: Option<(Arc<Verified>, &'g Source)>,
    /// With `providers: { all_of }`, the other providers' tokens (verified, not revoked).
    also: Vec<AlsoVerified<'g>>,
    result: Result<(), Rejection>,
}

/// One more verified token of an all-of requirement, where it was found, and its provider.
type AlsoVerified<'g> = ((Arc<Verified>, &'g Source), &'g Arc<ProviderKeys>);

impl<'g> Outcome<'g> {
    /// Decided before any token was verified.
    fn early(route: Option<(usize, &'g Route)>, result: Result<(), Rejection>) -> Self {
        Self {
            route,
            provider: None,
            verified: None,
            also: Vec::new(),
            result,
        }
    }
}

/// A caller's verified token, where it was found, and its provider.
type Caller<'a> = (&'a (Arc<Verified>, &'a Source), &'a Arc<ProviderKeys>);

/// The token steps' refusal, with the verified token when the refusal came after verification.
struct Refused<'g> {
    rejection: Rejection,
    verified: Option<(Arc<Verified>, &'g Arc<ProviderKeys>)>,
}

/// Records steps only when explaining; free otherwise.
struct Trace<'e>(Option<&'e mut Explanation>);

impl Trace<'_> {
    fn step(&mut self, what: impl FnOnce() -> String, outcome: Result<(), &Rejection>) {
        if let Some(e) = self.0.as_deref_mut() {
            e.steps.push(Step {
                what: what(),
                outcome: outcome.map_err(Rejection::clone),
            });
        }
    }

    fn with(&mut self, f: impl FnOnce(&mut Explanation)) {
        if let Some(e) = self.0.as_deref_mut() {
            f(e);
        }
    }
}

/// Orders the steps of a decision: path → route → token → verification → requirements →
/// decision (with dry run applied).
pub struct Gate {
    verifier: Verifier,
    routes: RouteTable,
    unmatched: Unmatched,
    sources: Vec<Source>,
    identity_headers: Vec<String>,
    realm: Arc<str>,
    shared: Shared,
    http_auth: HttpAuth,
    cache: Arc<TokenCache>,
    /// Top-level claims the requirements (the routes' and the admin API's) read: what a cached
    /// token keeps of its claims.
    policy_claims: BTreeSet<String>,
    /// This config's metrics handles.
    counters: DecisionCounters,
    /// Evicts revoked tokens from `cache`; the revocation set holds it weakly.
    _evict_revoked: Arc<Listener>,
    /// How many denial lines may be logged per second.
    denial_log: DenialLog,
    /// Whether a check's span records the subject (`telemetry.tracing.record_subject`).
    record_subject: bool,
    /// The rate-limit rules, over the counters in [`Shared`].
    limiter: RateLimiter,
    /// `rate_limits.headers_on_allow`.
    headers_on_allow: bool,
    /// `introspection:`: whether tokens may be introspected, and by whom.
    introspection: Introspection,
    /// The providers that introspect opaque tokens, in config order.
    opaque: Vec<Arc<Introspector>>,
    /// By provider index: `jwtgate_dpop_proofs_total` by outcome, empty without DPoP.
    dpop_counters: Vec<Box<[Counter]>>,
    /// By provider index: the `algs` a DPoP challenge names, `None` without DPoP.
    dpop_algs: Vec<Option<Arc<str>>>,
}

/// State that outlives a config reload: counters and the revocation set.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Decision counters.
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
            ),
            headers_on_allow: config.rate_limits.headers_on_allow,
            introspection: config.introspection.clone(),
            opaque,
            dpop_counters: config
                .providers
                .iter()
                .map(|p| match p.dpop {
                    Some(_) => shared.metrics.dpop_counters(&p.name),
                    None => Box::default(),
                })
                .collect(),
            dpop_algs: config
                .providers
                .iter()
                .map(|p| p.dpop.as_ref().map(|d| Arc::from(d.algs())))
                .collect(),
            cache,
            policy_claims: policy_claims(config),
            counters: shared.metrics.decision_counters(
                config.routes.iter().map(|r| r.name.clone()).collect(),
                config.providers.iter().map(|p| p.name.clone()).collect(),
                &config
                    .rate_limits
                    .rules
                    .iter()
                    .map(|r| r.name.clone())
                    .collect::<Vec<_>>(),
            ),
            shared,
        }
    }

    /// The verifier, for key status and background refresh.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The decision counters.
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

    /// May this request pass, and with which identity?
    pub async fn decide(&self, req: &Request) -> Decision {
        self.run(req, Trace(None)).await
    }

    /// The decision and how it was reached (for `jwtgate check`).
    pub async fn explain(&self, req: &Request) -> (Decision, Explanation) {
        let mut explanation = Explanation::default();
        let decision = self.run(req, Trace(Some(&mut explanation))).await;
        (decision, explanation)
    }

    /// Checks a bearer credential the way a check checks a request's token — verification
    /// (through the cache), `require_jti` and revocation — then `requirements`, so every check a
    /// route applies to a token applies here too. The admin API authenticates its callers with
    /// it; a token its provider binds to a sender is refused (no proof or certificate reaches
    /// the gate there). Not counted as a decision.
    pub async fn authorize(&self, token: &str, requirements: &Requirements) -> Result<Identity, Refusal> {
        let mut trace = Trace(None);
        let (verified, provider) = self.authenticate(token, None, &mut trace).await.map_err(|r| Refusal {
            rejection: r.rejection,
            identity: r.verified.map(|(v, _)| v.identity()),
        })?;
        let identity = verified.identity();
        if let Err(rejection) = bearer_only(&verified, &provider.config) {
            return Err(Refusal {
                rejection,
                identity: Some(identity),
            });
        }
        match self.requirements_met(requirements, &provider.config, &verified, &mut trace) {
            Ok(()) => Ok(identity),
            Err(rejection) => Err(Refusal {
                rejection,
                identity: Some(identity),
            }),
        }
    }

    /// RFC 7662 for `token`: active exactly when a check would accept it as a caller's token —
    /// the same token steps (verification through the cache, `require_jti`, revocation), so
    /// the two cannot disagree. Counted in `jwtgate_introspections_total{direction="served"}`;
    /// an inactive token's reason is logged (within the denial log's budget), never answered.
    pub async fn introspect(&self, token: &str) -> Introspected {
        let outcome = self.authenticate(token, None, &mut Trace(None)).await;
        let answer = Introspected::new(match &outcome {
            Ok((v, p)) => match unchecked_binding(v.cnf.as_deref(), &p.config) {
                // A binding its provider does not check: no check accepts it, proof or not.
                Some(member) => Err((Rejection::SenderConstrained(member), Some(p.config.name.as_str()))),
                None => Ok((&**v, p.config.name.as_str())),
            },
            Err(r) => Err((
                r.rejection.clone(),
                r.verified.as_ref().map(|(_, p)| p.config.name.as_str()),
            )),
        });
        let provider = answer.provider().unwrap_or_default();
        self.shared.metrics.introspection_served(provider, answer.outcome());
        if !matches!(answer, Introspected::Active { .. }) && self.denial_log.admit() {
            tracing::info!(provider, reason = answer.outcome(), "introspection: inactive token");
        }
        answer
    }

    /// The realm challenges name (`realm:`).
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `introspection:` in force: whether it is enabled, and who may ask.
    pub fn introspection(&self) -> &Introspection {
        &self.introspection
    }

    /// The providers whose keys verify the request's tokens: each configured source is looked
    /// in as [`Gate::decide`] looks (so all of an all-of requirement's tokens are found), and a
    /// token's provider named by its (unverified) `iss`. For one-shot commands that must load
    /// those providers' keys first.
    pub fn token_providers(&self, req: &Request) -> Vec<&Arc<ProviderKeys>> {
        let mut found: Vec<&Arc<ProviderKeys>> = Vec::new();
        for source in &self.sources {
            let Some((token, _)) = token::extract(req, std::slice::from_ref(source)) else {
                continue;
            };
            let provider = jws::parse_unverified(&token)
                .ok()
                .and_then(|jws| self.verifier.provider(jws.claims.get("iss")?.as_str()?));
            if let Some(p) = provider
                && !found.iter().any(|f| Arc::ptr_eq(f, p))
            {
                found.push(p);
            }
        }
        found
    }

    async fn run(&self, req: &Request, mut trace: Trace<'_>) -> Decision {
        let trace_id = trace_id(req);
        let Outcome {
            route,
            provider,
            verified,
            also,
            result,
        } = self.evaluate(req, &mut trace).await;
        let route_name = route.map_or("(unmatched)", |(_, r)| r.name.as_str());
        let dry_run = route.is_some_and(|(_, r)| r.mode == Mode::DryRun);
        // Limits come after the token and the requirements: a refused token is never a 429.
        let (result, headroom) = match result {
            Ok(()) => match self
                .rate_limit(req, route.map(|(_, r)| r), verified.as_ref(), provider, &mut trace)
                .await
            {
                Ok(headroom) => (Ok(()), headroom),
                Err(limited) => (Err(limited), None),
            },
            Err(r) => (Err(r), None),
        };
        let (route, provider_index) = (route.map(|(i, _)| i), provider.map(|p| p.index));
        let verified = verified.as_ref().zip(provider);
        self.record_on_span(route_name, verified.map(|((v, _), _)| &**v), &result, dry_run);
        match result {
            Ok(()) => {
                self.counters.allowed(route, provider_index);
                let mut allow = self.allow(req, verified, &also, trace_id);
                if self.headers_on_allow
                    && let Some(h) = headroom
                {
                    allow.rate_limit = Some(h);
                }
                tracing::debug!(trace_id = %allow.trace_id, route = route_name, "allow");
                Decision::Allow(allow)
            }
            Err(rejection) if dry_run => {
                self.counters.allowed(route, provider_index);
                if let Some(route) = route {
                    self.counters.dry_run_denial(route, &rejection);
                }
                if self.denial_log.admit() {
                    tracing::warn!(trace_id = %trace_id, route = route_name, reason = rejection.label(), method = %req.method, "dry run: would deny");
                }
                let allow = self.allow(req, verified, &also, trace_id);
                trace.with(|e| e.dry_run_denial = Some(rejection));
                Decision::Allow(allow)
            }
            Err(rejection) => {
                self.counters.denied(route, provider_index, &rejection);
                let dpop = self.dpop_challenge(req, provider_index, &rejection);
                self.deny(req, route_name, rejection, trace_id, dpop)
            }
        }
    }

    /// Charges the rate-limit rules that match (all or nothing); the rule that refused, counted.
    async fn rate_limit(
        &self,
        req: &Request,
        route: Option<&Route>,
        verified: Option<&(Arc<Verified>, &Source)>,
        provider: Option<&Arc<ProviderKeys>>,
        trace: &mut Trace<'_>,
    ) -> Result<Option<Headroom>, Rejection> {
        if self.limiter.is_empty() {
            return Ok(None);
        }
        let subject = Subject {
            req,
            route: route.map(|r| r.name.as_str()),
            provider: provider.map(|p| p.config.name.as_str()),
            claims: verified.map(|(v, _)| &v.claims),
        };
        let checked = self.limiter.check(&subject, clock::now().instant).await;
        if checked.store_failed {
            self.counters.rate_limit_store_error();
        }
        match (checked.verdict, checked.refused_by) {
            (Verdict::Unlimited, _) => {
                trace.step(|| "no rate-limit rule matches".into(), Ok(()));
                Ok(None)
            }
            (Verdict::Allowed(h), _) => {
                trace.step(
                    || format!("within rate limits (tightest: {}, {} left)", h.rule, h.remaining),
                    Ok(()),
                );
                Ok(Some(h))
            }
            (Verdict::Limited(exceeded), rule) => {
                if let Some(rule) = rule {
                    self.counters.rate_limited(rule);
                }
                let r = Rejection::RateLimited(Box::new(exceeded));
                trace.step(|| "within rate limits".into(), Err(&r));
                Err(r)
            }
        }
    }

    /// What the check decided, on the door's `ext_authz.check` span (when it is traced): the
    /// route, the provider, the decision, the reason, and the subject only with
    /// `record_subject`. Never a token or a claim value otherwise.
    fn record_on_span(
        &self,
        route_name: &str,
        verified: Option<&Verified>,
        result: &Result<(), Rejection>,
        dry_run: bool,
    ) {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        span.record("route", route_name);
        if let Some(v) = verified {
            span.record("provider", &*v.provider);
            if self.record_subject
                && let Some(sub) = &v.subject
            {
                span.record("enduser.id", sub.as_str());
            }
        }
        match result {
            Ok(()) => span.record("decision", "allow"),
            Err(rejection) => {
                span.record("decision", if dry_run { "allow" } else { "deny" });
                span.record("dry_run", dry_run);
                span.record("reason", rejection.label())
            }
        };
    }

    /// The `algs` of a DPoP challenge (RFC 9449 §7.1), when the refusal is about DPoP or the
    /// request used the DPoP scheme: those of the token's provider, else of the first provider
    /// with DPoP.
    fn dpop_challenge(&self, req: &Request, provider: Option<usize>, rejection: &Rejection) -> Option<Arc<str>> {
        let dpop_scheme = || {
            req.header("authorization")
                .is_some_and(|a| token::after_scheme(a, "DPoP ").is_some())
        };
        if !rejection.is_dpop() && !dpop_scheme() {
            return None;
        }
        provider
            .and_then(|i| self.dpop_algs.get(i)?.clone())
            .or_else(|| self.dpop_algs.iter().flatten().next().cloned())
    }

    /// A denial, logged within the denial log's budget (the caller counts it).
    fn deny(
        &self,
        req: &Request,
        route_name: &str,
        rejection: Rejection,
        trace_id: String,
        dpop_algs: Option<Arc<str>>,
    ) -> Decision {
        if self.denial_log.admit() {
            let request_id = req.request_id.as_deref();
            tracing::info!(trace_id = %trace_id, request_id, route = route_name, reason = rejection.label(), method = %req.method, "deny");
        }
        Decision::Deny(Deny {
            rejection,
            trace_id,
            realm: self.realm.clone(),
            dpop_algs,
        })
    }

    async fn evaluate<'g>(&'g self, req: &Request, trace: &mut Trace<'_>) -> Outcome<'g> {
        let path = match path::normalize(&req.path) {
            Ok(p) => p,
            Err(e) => {
                let r = Rejection::BadPath(e);
                trace.step(|| "path can be normalised".into(), Err(&r));
                return Outcome::early(None, Err(r));
            }
        };
        trace.with(|e| e.path = Some(path.clone()));
        let host = match crate::host::normalize(&req.host) {
            Ok(h) => h,
            Err(e) => {
                let r = Rejection::BadHost(e);
                trace.step(|| format!("host {:?} is a valid host", req.host), Err(&r));
                return Outcome::early(None, Err(r));
            }
        };
        let route = self
            .routes
            .select_index(req, &path, &host)
            .and_then(|i| Some((i, self.routes.routes().get(i)?)));
        trace.with(|e| e.route = route.map(|(_, r)| r.name.clone()));
        let done = |result| Outcome::early(route, result);
        let auth = match (route, self.unmatched) {
            (Some((_, r)), _) => &r.auth,
            (None, Unmatched::Public) => {
                trace.step(|| "no route matches; defaults.unmatched is public".into(), Ok(()));
                &Auth::Public
            }
            (None, Unmatched::Deny) => {
                trace.step(|| "a route matches".into(), Err(&Rejection::NoRoute));
                return done(Err(Rejection::NoRoute));
            }
        };
        let requirements = match auth {
            Auth::Public => {
                trace.step(|| "route is public: no token needed, none verified".into(), Ok(()));
                return done(Ok(()));
            }
            Auth::Optional => None,
            Auth::Required(r) => Some(r),
        };
        if let Some(r) = requirements
            && !r.all_providers.is_empty()
        {
            return self.evaluate_all_of(req, r, route, trace).await;
        }
        let Some((token, source)) = token::extract(req, &self.sources) else {
            if requirements.is_none() {
                trace.step(|| "token optional: none sent, anonymous".into(), Ok(()));
                return done(Ok(()));
            }
            trace.step(|| "token present".into(), Err(&Rejection::MissingToken));
            return done(Err(Rejection::MissingToken));
        };
        trace.step(|| format!("token found in {}", source.describe()), Ok(()));
        let (verified, provider) = match self.authenticate(&token, Some(source), trace).await {
            Ok(ok) => ok,
            Err(refused) => {
                return Outcome {
                    provider: refused.verified.map(|(_, p)| p),
                    ..done(Err(refused.rejection))
                };
            }
        };
        if let Err(rejection) = self.sender_bound(req, &token, source, &verified, provider, trace).await {
            return Outcome {
                provider: Some(provider),
                ..done(Err(rejection))
            };
        }
        let result = match requirements {
            Some(r) => self.requirements_met(r, &provider.config, &verified, trace),
            None => Ok(()),
        };
        Outcome {
            provider: Some(provider),
            verified: Some((verified, source)),
            ..done(result)
        }
    }

    /// `providers: { all_of }`: for each provider in turn, a token in its own sources that
    /// verifies as that provider's and is not revoked; then the first one's claims against the
    /// other requirements. The first failure decides.
    async fn evaluate_all_of<'g>(
        &'g self,
        req: &Request,
        requirements: &Requirements,
        route: Option<(usize, &'g Route)>,
        trace: &mut Trace<'_>,
    ) -> Outcome<'g> {
        let mut verified: Vec<AlsoVerified<'g>> = Vec::with_capacity(requirements.all_providers.len());
        for name in &requirements.all_providers {
            let refused = |provider, rejection| Outcome {
                provider,
                ..Outcome::early(route, Err(rejection))
            };
            let Some(wanted) = self.verifier.providers().find(|p| &p.config.name == name) else {
                // Validated with the same config: cannot happen, and would deny.
                return refused(None, Rejection::ProviderNotAccepted);
            };
            let Some((token, source)) = token::extract(req, &wanted.config.sources) else {
                trace.step(
                    || format!("a token of provider {name} present"),
                    Err(&Rejection::MissingToken),
                );
                return refused(verified.first().map(|(_, p)| *p), Rejection::MissingToken);
            };
            trace.step(
                || format!("token of provider {name} found in {}", source.describe()),
                Ok(()),
            );
            match self.authenticate(&token, Some(source), trace).await {
                Ok((v, p)) if Arc::ptr_eq(p, wanted) => {
                    if let Err(rejection) = self.sender_bound(req, &token, source, &v, p, trace).await {
                        return refused(Some(p), rejection);
                    }
                    verified.push(((v, source), p));
                }
                Ok((_, p)) => {
                    trace.step(
                        || format!("the token in {} is provider {name}'s", source.describe()),
                        Err(&Rejection::ProviderNotAccepted),
                    );
                    return refused(Some(p), Rejection::ProviderNotAccepted);
                }
                Err(r) => return refused(r.verified.map(|(_, p)| p), r.rejection),
            }
        }
        let mut verified = verified.into_iter();
        let Some((first, provider)) = verified.next() else {
            return Outcome::early(route, Err(Rejection::MissingToken));
        };
        let result = self.requirements_met(requirements, &provider.config, &first.0, trace);
        Outcome {
            route,
            provider: Some(provider),
            verified: Some(first),
            also: verified.collect(),
            result,
        }
    }

    /// The token's own checks, in order: verification (through the cache), the source its
    /// provider enables (for a token found in a request), then `require_jti` and revocation.
    async fn authenticate<'g>(
        &'g self,
        token: &str,
        source: Option<&Source>,
        trace: &mut Trace<'_>,
    ) -> Result<(Arc<Verified>, &'g Arc<ProviderKeys>), Refused<'g>> {
        let verified = if self.opaque.is_empty() || jws::is_jose(token) {
            self.verify(token).await
        } else {
            self.introspect_opaque(token, trace).await
        };
        let verified = verified.and_then(|(v, provider)| match source {
            Some(s) if !provider.config.sources.contains(s) => Err(Rejection::SourceNotAllowed),
            _ => Ok((v, provider)),
        });
        let (verified, provider) = match verified {
            Ok(ok) => ok,
            Err(rejection) => {
                trace.step(
                    || "token verifies (issuer, algorithm, key, signature, claims)".into(),
                    Err(&rejection),
                );
                return Err(Refused {
                    rejection,
                    verified: None,
                });
            }
        };
        trace.with(|e| e.provider = Some(provider.config.name.clone()));
        trace.step(
            || {
                format!(
                    "token verifies with provider {} (issuer, algorithm, key, signature, claims)",
                    provider.config.name
                )
            },
            Ok(()),
        );
        if let Err(rejection) = self.not_revoked(&verified, &provider.config) {
            trace.step(|| "token not revoked".into(), Err(&rejection));
            return Err(Refused {
                rejection,
                verified: Some((verified, provider)),
            });
        }
        Ok((verified, provider))
    }

    /// The token's sender binding, checked on every request (a cached verification included):
    /// with the provider's `dpop`, a token in the DPoP scheme needs a valid proof and `cnf.jkt`,
    /// and a bearer token must not be DPoP-bound (nor come at all with `mode: required`); with
    /// `mtls_binding`, the token's `cnf["x5t#S256"]` must be the client certificate's.
    async fn sender_bound(
        &self,
        req: &Request,
        token: &str,
        source: &Source,
        verified: &Verified,
        provider: &ProviderKeys,
        trace: &mut Trace<'_>,
    ) -> Result<(), Rejection> {
        let p = &provider.config;
        let cnf = verified.cnf.as_deref();
        if let Some(member) = unchecked_binding(cnf, p) {
            let r = Rejection::SenderConstrained(member);
            trace.step(
                || format!("token not bound in a way provider {} does not check", p.name),
                Err(&r),
            );
            return Err(r);
        }
        if let Some(settings) = &p.dpop {
            let result = if is_dpop_source(source) {
                self.dpop_proof(req, token, cnf.and_then(|c| c.jkt.as_deref()), provider, settings)
                    .await
            } else if cnf.is_some_and(|c| c.jkt.is_some()) {
                Err(Rejection::Unbound(BindingError::BoundSentAsBearer))
            } else if settings.mode == DpopMode::Required {
                Err(Rejection::Unbound(BindingError::DpopRequired))
            } else {
                trace.step(|| "bearer token not DPoP-bound (dpop.mode: optional)".into(), Ok(()));
                Ok(())
            };
            if is_dpop_source(source) || result.is_err() {
                trace.step(
                    || "DPoP proof valid for this request and token".into(),
                    result.as_ref().map(|_| ()),
                );
            }
            result?;
        }
        if p.mtls_binding {
            let result = match (cnf.and_then(|c| c.x5t_s256.as_deref()), &req.client_cert) {
                (None, _) => Err(BindingError::NotCertificateBound),
                (Some(_), None) => Err(BindingError::NoClientCertificate),
                (Some(x5t), Some(cert)) => binding::certificate_matches(cert, x5t),
            }
            .map_err(Rejection::Unbound);
            trace.step(
                || "token bound to the client certificate (cnf x5t#S256)".into(),
                result.as_ref().map(|_| ()),
            );
            result?;
        }
        Ok(())
    }

    /// The request's `DPoP` proof for `token`, counted by outcome; its id recorded last.
    async fn dpop_proof(
        &self,
        req: &Request,
        token: &str,
        jkt: Option<&str>,
        provider: &ProviderKeys,
        settings: &crate::config::binding::Dpop,
    ) -> Result<(), Rejection> {
        let count = |outcome: usize| {
            if let Some(c) = self.dpop_counters.get(provider.index).and_then(|c| c.get(outcome)) {
                c.inc();
            }
        };
        let refuse = |e: ProofError| {
            count(e as usize);
            Rejection::InvalidDpopProof(e)
        };
        let proof = req.header("dpop").ok_or_else(|| refuse(ProofError::Missing))?;
        let path = req.path.split(['?', '#']).next().unwrap_or_default();
        let uri = dpop::htu::of_request(&req.scheme, &req.host, path).ok_or_else(|| refuse(ProofError::Uri))?;
        let Some(jkt) = jkt else {
            // A proof for a token that binds no key proves nothing about it.
            return Err(Rejection::Unbound(BindingError::NotDpopBound));
        };
        let bound = dpop::Bound {
            method: &req.method,
            uri: &uri,
            token,
            jkt,
        };
        let proof = dpop::check(proof, bound, settings, provider.config.clock_skew, clock::unix()).map_err(refuse)?;
        match self
            .shared
            .replays
            .first_use(proof.id, proof.ttl, settings.replay, settings.replay_timeout)
            .await
        {
            Ok(true) => {
                count(ProofError::OUTCOMES.len() - 1);
                Ok(())
            }
            Ok(false) => Err(refuse(ProofError::Replayed)),
            Err(e) => {
                if self.denial_log.admit() {
                    tracing::warn!(provider = %provider.config.name, "DPoP proof not checked for replay: {e}");
                }
                Err(Rejection::ReplayCheckUnavailable)
            }
        }
    }

    /// Every requirement, each one explained; the first that fails decides.
    fn requirements_met(
        &self,
        requirements: &Requirements,
        provider: &Provider,
        verified: &Verified,
        trace: &mut Trace<'_>,
    ) -> Result<(), Rejection> {
        let mut result = Ok(());
        for (what, outcome) in policy::steps(requirements, provider, &verified.claims) {
            trace.step(|| what.describe(), outcome.as_ref().map(|_| ()));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    fn allow(&self, req: &Request, verified: Option<Caller<'_>>, also: &[AlsoVerified<'_>], trace_id: String) -> Allow {
        let mut set_headers: Vec<(String, String)> = Vec::new();
        let identity = verified.map(|((v, _), _)| v.identity());
        let callers = verified.into_iter().chain(also.iter().map(|(v, p)| (v, *p)));
        for ((v, _), provider) in callers.clone() {
            let p = &provider.config;
            for ((_, header), value) in p.claims_to_headers.iter().zip(v.header_values.iter()) {
                // With all_of, the first token that names a header sets it.
                if let Some(value) = value
                    && !set_headers.iter().any(|(h, _)| h == header)
                {
                    set_headers.push((header.clone(), value.clone()));
                }
            }
            if let (Some(h), Some(payload)) = (&p.payload_header, &v.payload_b64)
                && !set_headers.iter().any(|(s, _)| s == h)
            {
                set_headers.push((h.clone(), payload.clone()));
            }
        }
        // Every identity header is answered, set or removed, whether or not the check request
        // showed it: Envoy's HTTP mode sends only its `allowed_headers`, so a forged copy the
        // client sent may reach the upstream unseen unless the answer removes it.
        let mut remove_headers: Vec<String> = self
            .identity_headers
            .iter()
            .filter(|h| !set_headers.iter().any(|(s, _)| s == *h))
            .cloned()
            .collect();
        let mut remove_query_parameters = Vec::new();
        for ((_, source), _) in callers.filter(|(_, p)| !p.config.forward_token) {
            match source {
                Source::Header { name, .. } => remove_headers.push(name.clone()),
                Source::Cookie(name) => {
                    // Several all_of tokens in cookies: cut each out of what is left.
                    let current = match set_headers.iter().position(|(h, _)| h == "cookie") {
                        Some(i) => Some(set_headers.remove(i).1),
                        None if remove_headers.iter().any(|h| h == "cookie") => None,
                        None => req.header("cookie").map(str::to_owned),
                    };
                    match current.and_then(|c| token::without_cookie(&c, name)) {
                        Some(rest) => set_headers.push(("cookie".into(), rest)),
                        None if !remove_headers.iter().any(|h| h == "cookie") => remove_headers.push("cookie".into()),
                        None => {}
                    }
                }
                Source::Query(name) => remove_query_parameters.push(name.clone()),
            }
        }
        Allow {
            set_headers,
            remove_headers,
            remove_query_parameters,
            identity,
            trace_id,
            rate_limit: None,
        }
    }

    /// Verifies through the cache: a hit skips the signature but not the time claims, and counts
    /// only while the key that verified it is still in its provider's key set.
    async fn verify(&self, token: &str) -> Result<(Arc<Verified>, &Arc<ProviderKeys>), Rejection> {
        let key = (token.len() <= self.verifier.max_token_bytes()).then(|| self.cache.key(token));
        let h = match key.flatten() {
            Some(h) => h,
            None => {
                return self.verifier.verify(token).await.map(|(v, p)| {
                    if let Some(alg) = v.alg {
                        self.counters.verified(p.index, alg);
                    }
                    (Arc::new(v), p)
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
                self.shared.metrics.cache_lookup(CacheOutcome::Hit);
                return Ok((v, p));
            }
            // Expired, or its key is gone: verify afresh for the precise answer.
            self.cache.forget(&h);
        } else if let Some(r) = self.cache.refused(&h) {
            self.shared.metrics.cache_lookup(CacheOutcome::RefusedHit);
            return Err(r);
        }
        self.shared.metrics.cache_lookup(CacheOutcome::Miss);
        match self.verifier.verify(token).await {
            Ok((v, p)) => {
                if let Some(alg) = v.alg {
                    self.counters.verified(p.index, alg);
                }
                self.cache.insert(h, Arc::new(v.for_cache(&self.policy_claims)));
                Ok((Arc::new(v), p))
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
    async fn introspect_opaque(
        &self,
        token: &str,
        trace: &mut Trace<'_>,
    ) -> Result<(Arc<Verified>, &Arc<ProviderKeys>), Rejection> {
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
            return Ok((Arc::new(verified), p));
        }
        Err(if unavailable {
            Rejection::IntrospectionUnavailable
        } else {
            Rejection::Inactive
        })
    }

    /// `require_jti`, then the revocation set (memory only), once it has been loaded.
    fn not_revoked(&self, v: &Verified, p: &Provider) -> Result<(), Rejection> {
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

    /// Whether this gate can allow tokens: every provider has usable keys and the revocations
    /// are loaded (readiness: `/readyz`, gRPC health).
    pub fn ready(&self) -> bool {
        self.verifier.keys_ready() && !self.shared.revocations.is_pending()
    }

    /// The routes in use.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The HTTP door's settings.
    pub fn http_auth(&self) -> &HttpAuth {
        &self.http_auth
    }

    /// A denial decided by a front door before the gate could run (e.g. the HTTP door cannot
    /// tell which request to check); counted and logged like any other.
    pub fn refuse(&self, req: &Request, rejection: Rejection) -> Decision {
        self.counters.denied(None, None, &rejection);
        self.deny(req, "(none)", rejection, trace_id(req), None)
    }

    /// The `/metrics` exposition: the state gauges set from this gate (key sets, cache size,
    /// revocations), then every metric.
    pub fn metrics_text(&self, format: Format) -> String {
        let metrics = &self.shared.metrics;
        let sets: Vec<KeySetState> = self
            .verifier
            .providers_by_name()
            .into_iter()
            .map(|p| {
                let s = p.keys.status();
                KeySetState {
                    provider: s.provider,
                    keys: s.keys,
                    age_seconds: s.age_seconds,
                    last_success_unix: s.last_loaded_unix,
                    restored: s.state == "restored",
                }
            })
            .collect();
        metrics.state.key_sets(&sets);
        metrics.state.cache_entries(self.cache.len());
        let (jti, subject) = self.shared.revocations.counts();
        // Only one-shot commands run without a store, and they serve no metrics.
        let store_up = self.shared.store.as_ref().is_some_and(|s| s.status().connected);
        metrics.state.revocations(jti, subject, store_up);
        metrics.render(format)
    }
}

/// A credential [`Gate::authorize`] refused: why, and who presented it when that is known (the
/// token verified but is revoked, or lacks what the requirements ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub rejection: Rejection,
    /// Who, once the token's signature and claims verified.
    pub identity: Option<Identity>,
}

/// The top-level claims any requirement reads (the routes', the admin API's and the introspection
/// token clients': scopes, roles, claim tests). Everything else the gate needs of a token is extracted into [`Verified`]'s own
/// fields.
fn policy_claims(config: &Config) -> BTreeSet<String> {
    let head = |path: &str| path.split('.').next().unwrap_or(path).to_owned();
    let admin = config.admin.requirement();
    let routes = config.routes.iter().filter_map(|r| match &r.auth {
        Auth::Required(r) => Some(r),
        Auth::Public | Auth::Optional => None,
    });
    // Token clients of the introspection endpoint are checked through the same cache: their
    // role is read from a kept copy on every call after the first.
    let clients: Vec<Requirements> = config
        .introspection
        .clients
        .iter()
        .filter_map(IntrospectionClient::requirement)
        .collect();
    let mut names = BTreeSet::new();
    for r in routes.chain(admin.as_ref()).chain(&clients) {
        if !r.scopes.is_empty() {
            names.extend(["scope".to_owned(), "scp".to_owned()]);
        }
        if r.roles.is_some() {
            names.extend(config.providers.iter().map(|p| head(&p.roles_claim)));
        }
        names.extend(r.claims.iter().map(|rule| head(&rule.path)));
    }
    if config.introspection.enabled {
        names.extend(introspect::CLAIMS.map(str::to_owned));
    }
    let rate_limit_claims = config.rate_limits.rules.iter().flat_map(|r| &r.by);
    names.extend(rate_limit_claims.filter_map(|part| match part {
        KeyPart::Claim(path) => Some(head(path)),
        _ => None,
    }));
    names
}

/// A caller of jwtgate's own APIs presents a plain bearer token (no proof, no certificate reaches
/// the gate there): a token its provider binds to a sender is refused, as a bound token sent as
/// `Bearer` to a route is.
fn bearer_only(v: &Verified, p: &Provider) -> Result<(), Rejection> {
    if let Some(member) = unchecked_binding(v.cnf.as_deref(), p) {
        return Err(Rejection::SenderConstrained(member));
    }
    if let Some(dpop) = &p.dpop {
        if v.cnf.as_ref().is_some_and(|c| c.jkt.is_some()) {
            return Err(Rejection::Unbound(BindingError::BoundSentAsBearer));
        }
        if dpop.mode == DpopMode::Required {
            return Err(Rejection::Unbound(BindingError::DpopRequired));
        }
    }
    if p.mtls_binding {
        return Err(Rejection::Unbound(BindingError::NoClientCertificate));
    }
    Ok(())
}

/// The `cnf` member binding the token in a way `p` does not check — `jkt` without `dpop`,
/// `x5t#S256` without `mtls_binding`, a confirmation method jwtgate never checks — unless `p` accepts such tokens as bearer tokens
/// (`accept_bound_tokens_as_bearer`). A resource server must not take a sender-constrained
/// token for a bearer token (RFC 9449 §7.1, RFC 8705 §3).
fn unchecked_binding(cnf: Option<&binding::Confirmation>, p: &Provider) -> Option<&'static str> {
    let cnf = cnf?;
    // A binding jwtgate cannot check is refused even where bound tokens are accepted as bearer
    // tokens: that option covers the two bindings jwtgate knows.
    if let Some(unsupported) = cnf.unsupported {
        return Some(unsupported);
    }
    if p.accept_bound_tokens_as_bearer {
        return None;
    }
    if cnf.jkt.is_some() && p.dpop.is_none() {
        return Some("cnf.jkt");
    }
    if cnf.x5t_s256.is_some() && !p.mtls_binding {
        return Some("cnf x5t#S256");
    }
    None
}

/// An introspected token's identifying members, for `jwtgate check` (no secret among them).
fn summary(claims: &serde_json::Map<String, Value>) -> String {
    let shown: Vec<String> = ["sub", "client_id", "scope", "aud", "exp", "jti"]
        .iter()
        .filter_map(|name| Some(format!("{name}={}", claims.get(*name)?)))
        .collect();
    shown.join(" ")
}

/// The check's W3C trace id: the door's span's, else the `traceparent`'s, else a fresh one —
/// always 32 lower-case hex digits, so it is safe in a header, a body and a log line.
fn trace_id(req: &Request) -> String {
    let valid = |id: &str| {
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) && id.bytes().any(|b| b != b'0')
    };
    req.trace_id
        .as_deref()
        .filter(|id| valid(id))
        .or_else(|| {
            req.header("traceparent")
                .and_then(|tp| tp.trim().split('-').nth(1))
                .filter(|id| valid(id))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
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
        let kept = |clients: &str| policy_claims(&Config::parse(&text(clients), "t", dir.path()).unwrap());
        assert!(kept("{ provider: corp, role: introspect }").contains("realm_access"));
        assert!(!kept("{ id: b, secret_file: b.secret }").contains("realm_access"));
    }

    #[test]
    fn trace_ids_are_the_spans_else_the_traceparents_else_new_and_always_w3c() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut r = Request {
            request_id: Some("abc-123".into()),
            ..Request::default()
        };
        let fresh = trace_id(&r);
        assert!(
            fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fresh}"
        );
        assert_ne!(fresh, trace_id(&r), "a fresh id each time");
        r.headers.insert("traceparent".into(), tp.into());
        assert_eq!(trace_id(&r), "4bf92f3577b34da6a3ce929d0e0e4736");
        r.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        assert_eq!(trace_id(&r), "0af7651916cd43dd8448eb211c80319c");
        for bad in [
            "evil\"\r\n",
            "00000000000000000000000000000000",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
        ] {
            r.trace_id = None;
            r.headers
                .insert("traceparent".into(), format!("00-{bad}-00f067aa0ba902b7-01"));
            assert_ne!(trace_id(&r), bad);
            assert_eq!(trace_id(&r).len(), 32);
        }
    }
}
