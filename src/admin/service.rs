//! The admin gRPC service: revocations go to the store first (an answer of OK means durable or
//! shared), listing and key status read this replica's memory.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwtgate_core::clock;
use jwtgate_core::config::{AdminAuth, RevocationConfig};
use jwtgate_core::gate::Gate;
use jwtgate_core::introspect::Introspected;
use jwtgate_core::jws;
use jwtgate_core::live::SharedGate;
use jwtgate_core::rejection::Rejection;
use jwtgate_core::revocation::{Revocation, Store, Target, expiry};
use jwtgate_core::verify::{MAX_NUMERIC_DATE, ProviderKeys};
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::audit::{self, quote};
use super::auth::Authenticator;
use super::pb;
use super::pb::revoke_token_request::Target as TokenTarget;

/// Entries per page when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Most entries per page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest issuer, `jti`, subject or reason accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Tokens longer than this are not read for the audit log (before the caller is authenticated).
const MAX_AUDITED_TOKEN_BYTES: usize = 64 * 1024;

/// `jwtgate.admin.v1.Admin`.
pub struct AdminService {
    gate: SharedGate,
    store: Arc<Store>,
    auth: Authenticator,
    subject_retention: Duration,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("auth", &self.auth)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A successful call's answer and what the audit log says was done.
type Done<T> = Result<(T, String), Status>;

impl AdminService {
    /// A service over the gate in force (for verification and key status) and the revocation
    /// store.
    pub fn new(gate: SharedGate, store: Arc<Store>, admin: &AdminAuth, revocation: &RevocationConfig) -> Self {
        Self {
            auth: Authenticator::new(admin, gate.clone()),
            gate,
            store,
            subject_retention: revocation.subject_retention,
        }
    }

    /// Whether any admin credential is configured (else every call is refused).
    pub fn enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Authenticates, runs `call` for an allowed caller, and records the outcome in the audit log.
    async fn audited<M, T, Fut>(
        &self,
        method: &str,
        req: Request<M>,
        target: String,
        call: impl FnOnce(M) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Fut: Future<Output = Done<T>>,
    {
        let (metadata, _, message) = req.into_parts();
        let (caller, result) = match self.auth.authenticate(&metadata).await {
            Err(refused) => (refused.caller, Err(refused.status)),
            Ok(caller) => (caller.to_string(), call(message).await),
        };
        match result {
            Ok((answer, outcome)) => {
                audit::record(&caller, method, &target, Ok(&outcome));
                Ok(Response::new(answer))
            }
            Err(status) => {
                audit::record(&caller, method, &target, Err(&status));
                Err(status)
            }
        }
    }

    async fn revoke_token_now(&self, req: pb::RevokeTokenRequest) -> Done<pb::RevokeResponse> {
        check_field("reason", &req.reason, true)?;
        let now = clock::unix();
        let gate = self.gate.load_full();
        let (issuer, jti, expires_at) = match req.target {
            None => return Err(invalid("give the token, or its issuer and jti")),
            Some(TokenTarget::Id(id)) => {
                check_field("issuer", &id.issuer, false)?;
                check_field("jti", &id.jti, false)?;
                let p = provider(&gate, &id.issuer)?;
                let expires_at = match id.expires_at {
                    0 => expiry::kept_until(&p.config, now, self.subject_retention),
                    t if t > MAX_NUMERIC_DATE => return Err(invalid("expires_at is beyond the year 9999")),
                    // The token's `exp`: it is accepted until `exp` plus skew, so kept that long.
                    t => expiry::token_kept_until(&p.config, Some(t), now, self.subject_retention),
                };
                (id.issuer, id.jti, expires_at)
            }
            Some(TokenTarget::Token(token)) => match gate.verifier().verify(token.trim()).await {
                Ok((v, p)) => {
                    let Some(jti) = v.jti.as_deref() else {
                        return Err(invalid(
                            "the token has no jti, so it cannot be revoked alone: revoke its subject instead",
                        ));
                    };
                    check_field("jti", jti, false)?;
                    let expires_at = expiry::token_kept_until(&p.config, v.exp, now, self.subject_retention);
                    (v.issuer.to_string(), jti.to_owned(), expires_at)
                }
                Err(Rejection::Expired) => return Ok(nothing("the token has already expired: nothing to revoke")),
                Err(Rejection::KeysUnavailable) => {
                    return Err(Status::unavailable(
                        "cannot verify the token: signing keys unavailable; revoke it by issuer and jti instead",
                    ));
                }
                Err(r) => {
                    return Err(invalid(format!(
                        "the token does not verify ({r}); revoke it by issuer and jti instead"
                    )));
                }
            },
        };
        if expires_at <= now {
            return Ok(nothing("expires_at has passed: the token has already expired"));
        }
        self.record(Revocation {
            target: Target::Token { issuer, jti },
            expires_at,
            created_at: now,
            reason: req.reason,
        })
        .await
    }

    async fn revoke_subject_now(&self, req: pb::RevokeSubjectRequest) -> Done<pb::RevokeResponse> {
        check_field("issuer", &req.issuer, false)?;
        check_field("subject", &req.subject, false)?;
        check_field("reason", &req.reason, true)?;
        let now = clock::unix();
        let gate = self.gate.load_full();
        let p = provider(&gate, &req.issuer)?;
        let Some(issued_before) = expiry::issued_before(&p.config, req.issued_before, now) else {
            return Err(invalid("issued_before is in the future"));
        };
        let expires_at = expiry::kept_until(&p.config, issued_before, self.subject_retention);
        if expires_at <= now {
            return Ok(nothing(
                "every token issued before issued_before has already expired: nothing to revoke",
            ));
        }
        self.record(Revocation {
            target: Target::Subject {
                issuer: req.issuer,
                subject: req.subject,
                issued_before,
            },
            expires_at,
            created_at: now,
            reason: req.reason,
        })
        .await
    }

    /// Store first, then memory; a store that cannot take the write is UNAVAILABLE.
    async fn record(&self, r: Revocation) -> Done<pb::RevokeResponse> {
        self.store
            .revoke(r.clone())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let outcome = format!("revoked until {}", r.expires_at);
        Ok((
            pb::RevokeResponse {
                revocation: Some(message(&r)),
                note: String::new(),
            },
            outcome,
        ))
    }

    fn list_now(&self, req: &pb::ListRevocationsRequest) -> Done<pb::ListRevocationsResponse> {
        let size = match req.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = match req.page_token.as_str() {
            "" => None,
            t => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                    .ok_or_else(|| invalid("page_token is not one this API gave out"))?,
            ),
        };
        let mut rest = self
            .store
            .set()
            .all()
            .into_iter()
            .map(|r| (r.key(), r))
            .skip_while(|(key, _)| after.as_ref().is_some_and(|a| key <= a))
            .peekable();
        let page: Vec<(String, Revocation)> = rest.by_ref().take(size).collect();
        let next_page_token = match (rest.peek(), page.last()) {
            (Some(_), Some((last, _))) => URL_SAFE_NO_PAD.encode(last),
            _ => String::new(),
        };
        let outcome = format!("listed {}", page.len());
        Ok((
            pb::ListRevocationsResponse {
                revocations: page.iter().map(|(_, r)| message(r)).collect(),
                next_page_token,
            },
            outcome,
        ))
    }

    fn key_status_now(&self) -> Done<pb::KeyStatusResponse> {
        let gate = self.gate.load();
        let providers: Vec<pb::ProviderKeyStatus> = gate
            .verifier()
            .providers_by_name()
            .into_iter()
            .map(|p| {
                let s = p.keys.status();
                pb::ProviderKeyStatus {
                    provider: s.provider,
                    state: s.state.to_owned(),
                    kids: s.kids,
                    keys: s.keys as u64,
                    last_loaded_unix: s.last_loaded_unix,
                    age_seconds: s.age_seconds,
                    last_error: s.last_error,
                    fetches: s.fetches,
                    issuer: p.config.issuer.clone(),
                }
            })
            .collect();
        let outcome = format!("{} provider(s)", providers.len());
        Ok((pb::KeyStatusResponse { providers }, outcome))
    }
}

impl AdminService {
    async fn introspect_now(&self, req: pb::IntrospectRequest) -> Done<pb::IntrospectResponse> {
        let gate = self.gate.load_full();
        if !gate.introspection().enabled {
            return Err(Status::failed_precondition(
                "introspection is not enabled (introspection.enabled)",
            ));
        }
        if req.token.is_empty() {
            return Err(invalid("token is required"));
        }
        let answer = gate.introspect(req.token.trim()).await;
        let outcome = answer.outcome().to_owned();
        let message = match answer {
            Introspected::Active { provider, token } => pb::IntrospectResponse {
                active: true,
                iss: token.iss,
                sub: token.sub,
                aud: match token.aud {
                    Some(Value::String(a)) => vec![a],
                    Some(Value::Array(all)) => all.into_iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                },
                exp: token.exp,
                iat: token.iat,
                nbf: token.nbf,
                jti: token.jti,
                scope: token.scope,
                client_id: token.client_id,
                token_type: token.token_type.to_owned(),
                provider,
                inactive_reason: String::new(),
            },
            Introspected::Inactive { provider, reason } => pb::IntrospectResponse {
                provider: provider.unwrap_or_default(),
                inactive_reason: reason.label().to_owned(),
                ..Default::default()
            },
            Introspected::Unavailable { reason } => {
                return Err(Status::unavailable(format!("cannot tell now: {reason}")));
            }
        };
        Ok((message, outcome))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn introspect(
        &self,
        req: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let target = token_target(&req.get_ref().token);
        self.audited("Introspect", req, target, |m| self.introspect_now(m))
            .await
    }

    async fn revoke_token(&self, req: Request<pb::RevokeTokenRequest>) -> Result<Response<pb::RevokeResponse>, Status> {
        let target = match &req.get_ref().target {
            None => "-".to_owned(),
            Some(TokenTarget::Id(id)) => format!("issuer={} jti={}", quote(&id.issuer), quote(&id.jti)),
            Some(TokenTarget::Token(t)) => token_target(t),
        };
        self.audited("RevokeToken", req, target, |m| self.revoke_token_now(m))
            .await
    }

    async fn revoke_subject(
        &self,
        req: Request<pb::RevokeSubjectRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let m = req.get_ref();
        let target = format!(
            "issuer={} subject={} issued_before={}",
            quote(&m.issuer),
            quote(&m.subject),
            m.issued_before
        );
        self.audited("RevokeSubject", req, target, |m| self.revoke_subject_now(m))
            .await
    }

    async fn list_revocations(
        &self,
        req: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        self.audited("ListRevocations", req, "-".into(), |m| async move { self.list_now(&m) })
            .await
    }

    async fn key_status(&self, req: Request<pb::KeyStatusRequest>) -> Result<Response<pb::KeyStatusResponse>, Status> {
        self.audited("KeyStatus", req, "-".into(), |_| async { self.key_status_now() })
            .await
    }
}

/// The provider whose issuer this is, or INVALID_ARGUMENT.
fn provider<'g>(gate: &'g Gate, issuer: &str) -> Result<&'g Arc<ProviderKeys>, Status> {
    gate.verifier().provider(issuer).ok_or_else(|| {
        invalid(format!(
            "issuer {} is not a configured provider's issuer",
            quote(issuer)
        ))
    })
}

/// Required fields must be non-empty; none may exceed [`MAX_FIELD_BYTES`].
fn check_field(name: &str, value: &str, may_be_empty: bool) -> Result<(), Status> {
    if value.is_empty() && !may_be_empty {
        return Err(invalid(format!("{name} is required")));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(invalid(format!("{name} is longer than {MAX_FIELD_BYTES} bytes")));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// OK with nothing recorded, and why.
fn nothing(note: &str) -> (pb::RevokeResponse, String) {
    (
        pb::RevokeResponse {
            revocation: None,
            note: note.to_owned(),
        },
        format!("nothing to do: {note}"),
    )
}

/// The audit target of a revocation by the token itself: its claimed issuer and `jti`
/// (unverified at this point), never the token.
fn token_target(token: &str) -> String {
    if token.len() > MAX_AUDITED_TOKEN_BYTES {
        return "token (too large to read)".into();
    }
    match jws::parse_unverified(token.trim()) {
        Ok(jws) => {
            let claim = |name| jws.claims.get(name).and_then(Value::as_str).map_or("-".into(), quote);
            format!("token issuer={} jti={}", claim("iss"), claim("jti"))
        }
        Err(_) => "token (unreadable)".into(),
    }
}

/// A stored revocation as the API shows it.
fn message(r: &Revocation) -> pb::Revocation {
    let mut m = pb::Revocation {
        expires_at: r.expires_at,
        created_at: r.created_at,
        reason: r.reason.clone(),
        ..Default::default()
    };
    match &r.target {
        Target::Token { issuer, jti } => {
            m.set_kind(pb::RevocationKind::Token);
            m.issuer.clone_from(issuer);
            m.jti.clone_from(jti);
        }
        Target::Subject {
            issuer,
            subject,
            issued_before,
        } => {
            m.set_kind(pb::RevocationKind::Subject);
            m.issuer.clone_from(issuer);
            m.subject.clone_from(subject);
            m.issued_before = *issued_before;
        }
    }
    m
}
