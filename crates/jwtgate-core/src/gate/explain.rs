//! `jwtgate check`'s explanation: every step with its outcome, recorded only when asked; the
//! providers whose keys a one-shot check must load first.

use super::Gate;
use std::sync::Arc;

use crate::rejection::Rejection;
use crate::request::Request;
use crate::verify::ProviderKeys;
use crate::{jws, token};

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

/// Records steps only when explaining; free otherwise.
pub(super) struct Trace<'e>(Option<&'e mut Explanation>);

impl<'e> Trace<'e> {
    /// Records nothing.
    pub(super) fn off() -> Self {
        Self(None)
    }

    /// Records into `explanation`.
    pub(super) fn on(explanation: &'e mut Explanation) -> Self {
        Self(Some(explanation))
    }

    /// Records one step; `what` is formatted only when explaining.
    pub(super) fn step(&mut self, what: impl FnOnce() -> String, outcome: Result<(), &Rejection>) {
        if let Some(e) = self.0.as_deref_mut() {
            e.steps.push(Step {
                what: what(),
                outcome: outcome.map_err(Rejection::clone),
            });
        }
    }

    /// Changes the explanation, when explaining.
    pub(super) fn with(&mut self, f: impl FnOnce(&mut Explanation)) {
        if let Some(e) = self.0.as_deref_mut() {
            f(e);
        }
    }
}

impl Gate {
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
}
