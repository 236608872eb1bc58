//! Sender-constrained tokens: DPoP proofs (RFC 9449) and certificate-bound tokens (RFC 8705),
//! checked on every request; the DPoP challenge; bound tokens refused where nothing checks
//! the binding.

use super::credential::Authenticated;
use super::{Gate, Trace};
use std::sync::Arc;

use crate::binding::ProofError;
use crate::binding::{self, BindingError};
use crate::clock;
use crate::config::binding::{DpopMode, is_dpop_source};
use crate::config::{Provider, Source};
use crate::dpop;
use crate::rejection::Rejection;
use crate::request::Request;
use crate::token;
use crate::verify::{ProviderKeys, Verified};

impl Gate {
    /// The `algs` of a DPoP challenge (RFC 9449 §7.1), when the refusal is about DPoP or the
    /// request used the DPoP scheme: those of the token's provider, else of the first provider
    /// with DPoP.
    pub(super) fn dpop_challenge(
        &self,
        req: &Request,
        provider: Option<usize>,
        rejection: &Rejection,
    ) -> Option<Arc<str>> {
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

    /// The token's sender binding, checked on every request (a cached verification included):
    /// with the provider's `dpop`, a token in the DPoP scheme needs a valid proof and `cnf.jkt`,
    /// and a bearer token must not be DPoP-bound (nor come at all with `mode: required`); with
    /// `mtls_binding`, the token's `cnf["x5t#S256"]` must be the client certificate's.
    pub(super) async fn sender_bound(
        &self,
        req: &Request,
        token: &str,
        source: &Source,
        authenticated: &Authenticated<'_>,
        trace: &mut Trace<'_>,
    ) -> Result<(), Rejection> {
        let provider = authenticated.provider;
        let p = &provider.config;
        let cnf = authenticated.verified.cnf.as_deref();
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
    pub(super) async fn dpop_proof(
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
}

/// A caller of jwtgate's own APIs presents a plain bearer token (no proof, no certificate reaches
/// the gate there): a token its provider binds to a sender is refused, as a bound token sent as
/// `Bearer` to a route is.
pub(super) fn bearer_only(v: &Verified, p: &Provider) -> Result<(), Rejection> {
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
pub(super) fn unchecked_binding(cnf: Option<&binding::Confirmation>, p: &Provider) -> Option<&'static str> {
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
