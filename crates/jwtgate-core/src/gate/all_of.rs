//! `providers: { all_of }`: a token of each named provider, each in its own sources.

use std::sync::Arc;

use super::{Caller, Gate, Matched, Outcome, Trace};
use crate::config::routes::Requirements;
use crate::rejection::Rejection;
use crate::request::Request;
use crate::token;

impl Gate {
    /// `providers: { all_of }`: for each provider in turn, a token in its own sources that
    /// verifies as that provider's, is not revoked and is bound to its sender; then the first
    /// one's claims against the other requirements. The first failure decides.
    pub(super) async fn evaluate_all_of<'g>(
        &'g self,
        req: &Request,
        requirements: &Requirements,
        route: Matched<'g>,
        trace: &mut Trace<'_>,
    ) -> Outcome<'g> {
        let mut callers: Vec<Caller<'g>> = Vec::with_capacity(requirements.all_providers.len());
        for name in &requirements.all_providers {
            let Some(wanted) = self.verifier.providers().find(|p| &p.config.name == name) else {
                // Validated with the same config: cannot happen, and would deny.
                return Outcome::refused(route, None, Rejection::ProviderNotAccepted);
            };
            let Some((token, source)) = token::extract(req, &wanted.config.sources) else {
                trace.step(
                    || format!("a token of provider {name} present"),
                    Err(&Rejection::MissingToken),
                );
                let first = callers.first().map(|c| c.provider);
                return Outcome::refused(route, first, Rejection::MissingToken);
            };
            trace.step(
                || format!("token of provider {name} found in {}", source.describe()),
                Ok(()),
            );
            match self.authenticate(&token, Some(source), trace).await {
                Ok(authenticated) if Arc::ptr_eq(authenticated.provider, wanted) => {
                    if let Err(rejection) = self.sender_bound(req, &token, source, &authenticated, trace).await {
                        return Outcome::refused(route, Some(wanted), rejection);
                    }
                    callers.push(Caller::new(authenticated, source));
                }
                Ok(other) => {
                    trace.step(
                        || format!("the token in {} is provider {name}'s", source.describe()),
                        Err(&Rejection::ProviderNotAccepted),
                    );
                    return Outcome::refused(route, Some(other.provider), Rejection::ProviderNotAccepted);
                }
                Err(refused) => return Outcome::refused(route, refused.provider(), refused.rejection),
            }
        }
        let mut callers = callers.into_iter();
        let Some(first) = callers.next() else {
            return Outcome::early(route, Err(Rejection::MissingToken));
        };
        let result = self.requirements_met(requirements, &first.provider.config, &first.verified, trace);
        Outcome {
            route,
            provider: Some(first.provider),
            caller: Some(first),
            also: callers.collect(),
            result,
        }
    }
}
