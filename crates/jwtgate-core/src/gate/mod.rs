//! The decision, computed in one place for every front door: [`Request`] in, [`Decision`] out.
//!
//! Order of steps: normalise the path ([`crate::path`]) and the host ([`crate::host`]) → pick
//! the route ([`crate::route`]) →
//! find the token ([`crate::token`]) → verify it, through the verified-token cache
//! ([`crate::verify`], [`crate::cache`]) → check it came from a source its provider enables →
//! `require_jti` and revocation ([`crate::revocation`]) → the route's requirements
//! ([`crate::policy`]) → allow with identity headers, or deny (dry run applied). The admin API's
//! callers go through the same token steps ([`Gate::authorize`]). Nothing here knows gRPC or
//! HTTP: [`crate::request::Deny`] carries the rejection, and the doors render it.
//!
//! This file is the order of the steps and nothing else; each step family is its own file:
//! `credential` (verification through the cache, opaque tokens, source, revocation), `sender`
//! (DPoP, certificate binding), `all_of`, `rate_limit`, `answer` (allow, deny, trace id),
//! `explain`, `callers` (the bare-credential API), `build` (construction, what a cached token
//! keeps) and `metrics` (what the gate counts).

mod all_of;
mod answer;
mod build;
mod callers;
mod credential;
mod explain;
pub mod metrics;
mod rate_limit;
mod sender;

pub use build::{Gate, Shared};
pub use callers::Refusal;
pub use explain::{Explanation, Step};

use std::sync::Arc;

use crate::config::Provider;
use crate::config::Source;
use crate::config::routes::{Auth, Mode, Requirements, Route, Unmatched};
use crate::rejection::Rejection;
use crate::request::{Decision, Request};
use crate::verify::{ProviderKeys, Verified};
use crate::{path, policy, token};
use answer::trace_id;
use credential::Authenticated;
use explain::Trace;

/// The route a request matched, and its position in the config (which indexes its metrics).
#[derive(Clone, Copy)]
struct MatchedRoute<'g> {
    index: usize,
    route: &'g Route,
}

/// The matched route, if any.
type Matched<'g> = Option<MatchedRoute<'g>>;

/// What a route decided before dry run is applied.
struct Outcome<'g> {
    route: Matched<'g>,
    /// The provider whose key verified the token, also when a later step refused it.
    provider: Option<&'g Arc<ProviderKeys>>,
    /// The token that identifies the caller (with `providers: { all_of }`, the first one's).
    caller: Option<Caller<'g>>,
    /// With `providers: { all_of }`, the other providers' tokens.
    also: Vec<Caller<'g>>,
    result: Result<(), Rejection>,
}

impl<'g> Outcome<'g> {
    /// Decided before any token was verified.
    fn early(route: Matched<'g>, result: Result<(), Rejection>) -> Self {
        Self {
            route,
            provider: None,
            caller: None,
            also: Vec::new(),
            result,
        }
    }

    /// Refused after `provider`'s key verified the token (or none did).
    fn refused(route: Matched<'g>, provider: Option<&'g Arc<ProviderKeys>>, rejection: Rejection) -> Self {
        Self {
            provider,
            ..Self::early(route, Err(rejection))
        }
    }
}

/// A token that may identify the caller: verified, not revoked, bound to its sender where its
/// provider binds tokens; where it was found, and the provider whose key verified it.
struct Caller<'g> {
    verified: Arc<Verified>,
    source: &'g Source,
    provider: &'g Arc<ProviderKeys>,
}

impl<'g> Caller<'g> {
    fn new(token: Authenticated<'g>, source: &'g Source) -> Self {
        Self {
            verified: token.verified,
            source,
            provider: token.provider,
        }
    }
}

impl Gate {
    /// May this request pass, and with which identity?
    pub async fn decide(&self, req: &Request) -> Decision {
        self.run(req, Trace::off()).await
    }

    /// The decision and how it was reached (for `jwtgate check`).
    pub async fn explain(&self, req: &Request) -> (Decision, Explanation) {
        let mut explanation = Explanation::default();
        let decision = self.run(req, Trace::on(&mut explanation)).await;
        (decision, explanation)
    }

    /// The route's decision, then the rate limits, then the answer with dry run applied.
    async fn run(&self, req: &Request, mut trace: Trace<'_>) -> Decision {
        let trace_id = trace_id(req);
        let Outcome {
            route,
            provider,
            caller,
            also,
            result,
        } = self.evaluate(req, &mut trace).await;
        let route_name = route.map_or("(unmatched)", |m| m.route.name.as_str());
        let dry_run = route.is_some_and(|m| m.route.mode == Mode::DryRun);
        // Limits come after the token and the requirements: a refused token is never a 429.
        let (result, headroom) = match result {
            Ok(()) => match self
                .rate_limit(req, route.map(|m| m.route), caller.as_ref(), &mut trace)
                .await
            {
                Ok(headroom) => (Ok(()), headroom),
                Err(limited) => (Err(limited), None),
            },
            Err(r) => (Err(r), None),
        };
        let (route, provider_index) = (route.map(|m| m.index), provider.map(|p| p.index));
        self.record_on_span(route_name, caller.as_ref().map(|c| &*c.verified), &result, dry_run);
        match result {
            Ok(()) => {
                self.counters.allowed(route, provider_index);
                let mut allow = self.allow(req, caller.as_ref(), &also, trace_id);
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
                let allow = self.allow(req, caller.as_ref(), &also, trace_id);
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

    /// The route's decision: path → host → route → token → credential → sender binding →
    /// requirements (all-of routes: each provider's token in turn, [`Gate::evaluate_all_of`]).
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
        let route = self.routes.select_index(req, &path, &host).and_then(|index| {
            Some(MatchedRoute {
                index,
                route: self.routes.routes().get(index)?,
            })
        });
        trace.with(|e| e.route = route.map(|m| m.route.name.clone()));
        let done = |result| Outcome::early(route, result);
        let auth = match (route, self.unmatched) {
            (Some(m), _) => &m.route.auth,
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
        let authenticated = match self.authenticate(&token, Some(source), trace).await {
            Ok(ok) => ok,
            Err(refused) => return Outcome::refused(route, refused.provider(), refused.rejection),
        };
        let provider = authenticated.provider;
        if let Err(rejection) = self.sender_bound(req, &token, source, &authenticated, trace).await {
            return Outcome::refused(route, Some(provider), rejection);
        }
        let result = match requirements {
            Some(r) => self.requirements_met(r, &provider.config, &authenticated.verified, trace),
            None => Ok(()),
        };
        Outcome {
            provider: Some(provider),
            caller: Some(Caller::new(authenticated, source)),
            ..done(result)
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
        debug_assert!(
            policy::claims_read(requirements, provider).all(|c| self.retained_claims.contains(c)),
            "requirements read a claim the verified-token cache drops: Config::requirements must yield them"
        );
        let mut result = Ok(());
        for (what, outcome) in policy::steps(requirements, provider, &verified.claims) {
            trace.step(|| what.describe(), outcome.as_ref().map(|_| ()));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}
