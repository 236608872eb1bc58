//! The bare-credential API: a bearer token checked without a request, for the admin API's
//! callers, the introspection endpoint's token clients and its RFC 7662 answers.

use super::credential::Authenticated;
use super::sender::{bearer_only, unchecked_binding};
use super::{Gate, Trace};

use crate::config::routes::Requirements;
use crate::introspect::Introspected;
use crate::opaque::IntrospectionMetrics;
use crate::rejection::Rejection;
use crate::request::Identity;

/// A credential [`Gate::authorize`] refused: why, and who presented it when that is known (the
/// token verified but is revoked, or lacks what the requirements ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub rejection: Rejection,
    /// Who, once the token's signature and claims verified.
    pub identity: Option<Identity>,
}

impl Gate {
    /// Checks a bearer credential the way a check checks a request's token — verification
    /// (through the cache), `require_jti` and revocation — then `requirements`, so every check a
    /// route applies to a token applies here too. The admin API authenticates its callers with
    /// it; a token its provider binds to a sender is refused (no proof or certificate reaches
    /// the gate there). Not counted as a decision.
    pub async fn authorize(&self, token: &str, requirements: &Requirements) -> Result<Identity, Refusal> {
        let mut trace = Trace::off();
        let Authenticated { verified, provider } =
            self.authenticate(token, None, &mut trace).await.map_err(|r| Refusal {
                rejection: r.rejection,
                identity: r.token.map(|t| t.verified.identity()),
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
        let outcome = self.authenticate(token, None, &mut Trace::off()).await;
        let answer = Introspected::new(match &outcome {
            Ok(Authenticated {
                verified: v,
                provider: p,
            }) => match unchecked_binding(v.cnf.as_deref(), &p.config) {
                // A binding its provider does not check: no check accepts it, proof or not.
                Some(member) => Err((Rejection::SenderConstrained(member), Some(p.config.name.as_str()))),
                None => Ok((&**v, p.config.name.as_str())),
            },
            Err(r) => Err((r.rejection.clone(), r.provider().map(|p| p.config.name.as_str()))),
        });
        let provider = answer.provider().unwrap_or_default();
        self.shared
            .metrics
            .families::<IntrospectionMetrics>()
            .served(provider, answer.outcome());
        if !matches!(answer, Introspected::Active { .. }) && self.denial_log.admit() {
            tracing::info!(provider, reason = answer.outcome(), "introspection: inactive token");
        }
        answer
    }
}
