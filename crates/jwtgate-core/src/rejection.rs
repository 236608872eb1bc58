//! Why a request was refused: one enum, with one method each for its class (which the doors
//! render as the HTTP status and gRPC code together), the RFC 6750 error code, the safe public
//! reason and the metrics label, so that the gRPC door, the HTTP door, the logs and the metrics
//! can never disagree.

use std::borrow::Cow;

/// Every reason jwtgate refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No token in any configured source.
    #[error("missing token")]
    MissingToken,
    /// Longer than `max_token_bytes`; refused before decoding.
    #[error("token too large")]
    TooLarge,
    /// Not a compact JWS (structure, base64url, UTF-8, JSON, types).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Five segments: a JWE.
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// `alg: none` in any spelling.
    #[error("unsigned tokens (alg none) are not accepted")]
    Unsigned,
    /// `crit` lists extensions jwtgate does not implement.
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// `iss` missing, not a string, or not a configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The token came from a source its provider does not enable.
    #[error("token source not enabled for this issuer")]
    SourceNotAllowed,
    /// `alg` not in the provider's allow-list.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No key with that `kid` (after the rate-limited refetch), or none of the right type.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature does not verify with the selected key.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` missing when required.
    #[error("token has no expiry")]
    MissingExpiry,
    /// `exp` in the past beyond the clock skew.
    #[error("token expired")]
    Expired,
    /// `nbf` in the future beyond the clock skew.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` in the future beyond the clock skew.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` longer than the provider allows.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// A time claim that is not a number from 0 to 9999-12-31T23:59:59Z (fractions allowed).
    #[error("invalid {0} claim")]
    InvalidTimeClaim(&'static str),
    /// `aud` missing or none of the configured audiences.
    #[error("audience not accepted")]
    WrongAudience,
    /// Header `typ` not one of the provider's `token_types`.
    #[error("token type not accepted")]
    WrongType,
    /// A `required_claims` entry is absent.
    #[error("missing required claim {0}")]
    MissingClaim(String),
    /// The token's `jti` is revoked, or its subject was cut off after it was issued.
    #[error("token revoked")]
    Revoked,
    /// The provider has no usable keys (issuer down, nothing cached or too stale).
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The route accepts tokens from other providers only.
    #[error("token issuer not accepted here")]
    ProviderNotAccepted,
    /// Scopes the route requires and the token lacks.
    #[error("missing scope: {}", .0.join(" "))]
    MissingScope(Vec<String>),
    /// Roles the route requires and the token lacks (all of them for `any_of`).
    #[error("missing role: {}", .0.join(" "))]
    MissingRole(Vec<String>),
    /// A claim test of the route failed.
    #[error("claim {0} not accepted")]
    ClaimNotAccepted(String),
    /// No route matches and `defaults.unmatched` is `deny`.
    #[error("no route matches this request")]
    NoRoute,
    /// The path cannot be normalised safely.
    #[error("invalid request path: {0}")]
    BadPath(crate::path::PathError),
    /// The HTTP door cannot tell which request to check (no trusted original-request headers).
    #[error("original request unknown")]
    OriginalRequestUnknown,
    /// The HTTP door was sent original-request headers of a family other than its own (this
    /// one, named), or one of its own on several lines: a client may have chosen the request
    /// checked, so none is decided.
    #[error("ambiguous original request ({0})")]
    AmbiguousOriginalRequest(&'static str),
    /// The request's host is not a host (RFC 9110 §7.2): routes are never matched loosely.
    #[error("invalid host: {0}")]
    BadHost(crate::host::HostError),
    /// A rate-limit rule is exhausted (checked after the token and the route's requirements).
    #[error("rate limit {} exceeded", .0.rule)]
    RateLimited(Box<RateLimitExceeded>),
    /// The shared revocation store (Redis) has not been read since start, so revocations made
    /// by other replicas may be missing: no token is allowed until it has.
    #[error("revocations not loaded yet")]
    RevocationsUnavailable,
    /// An opaque token its providers' introspection endpoints say is not active (expired,
    /// revoked, unknown to them).
    #[error("token not active")]
    Inactive,
    /// No provider's introspection endpoint could answer for an opaque token in time (down,
    /// slow, or an answer that is not RFC 7662).
    #[error("token introspection unavailable")]
    IntrospectionUnavailable,
    /// A DPoP proof (RFC 9449) that does not hold for this request and token.
    #[error("{0}")]
    InvalidDpopProof(crate::binding::ProofError),
    /// A sender-constrained token without its sender: DPoP-bound sent as Bearer, not bound
    /// where binding is required, or not the client certificate it is bound to.
    #[error("{0}")]
    Unbound(crate::binding::BindingError),
    /// The shared DPoP replay cache (Redis) could not say in time whether a proof is new.
    #[error("DPoP replay check unavailable")]
    ReplayCheckUnavailable,
    /// At a provider without `max_lifetime`, `exp - iat` (or `exp - now` without `iat`) is longer
    /// than `revocation.subject_retention`: a subject cut-off would be forgotten while the token
    /// it cut off still lives.
    #[error("token lives longer than revocations are kept")]
    LifetimeExceedsRetention,
    /// `sub` or `jti` (named) present but not a string (RFC 7519 §4.1.2, §4.1.7): no revocation
    /// could match it.
    #[error("{0} must be a string")]
    ClaimNotString(&'static str),
    /// An introspection answer says the token is of a type its provider refuses
    /// (`refuse_token_types`; refresh tokens by default): the type, normalised.
    #[error("{}", not_access_token(.0))]
    NotAccessToken(String),
    /// A sender-constrained token (its `cnf` member, named) at a provider that does not check
    /// that binding (RFC 9449 §7.1, RFC 8705 §3): never accepted as a bearer token unless the
    /// provider says so (`accept_bound_tokens_as_bearer`).
    #[error("token is sender-constrained ({0})")]
    SenderConstrained(&'static str),
}

/// How [`Rejection::NotAccessToken`] reads: refresh tokens (Keycloak's offline tokens are
/// refresh tokens too) by name, any other type it names.
fn not_access_token(kind: &str) -> String {
    match kind {
        "refresh" | "offline" => "token is a refresh token".to_owned(),
        other => format!("token is not an access token (type {other})"),
    }
}

/// Which rule refused, and when to try again: what `Retry-After`, `RateLimit-Policy` and
/// `RateLimit` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitExceeded {
    /// The rule's name.
    pub rule: String,
    /// Its `limit` (the policy's quota).
    pub limit: u64,
    /// Its window in whole seconds (rounded up).
    pub window_secs: u64,
    /// Whole seconds (rounded up, at least 1) until the request would fit.
    pub retry_after_secs: u64,
}

/// How a refusal is answered. The doors' render module gives each class its HTTP status and
/// its gRPC code together, so the two can never drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No valid identity (401, `UNAUTHENTICATED`).
    Unauthenticated,
    /// The identity, or the request itself, is fine as a credential but not allowed here
    /// (403, `PERMISSION_DENIED`).
    Forbidden,
    /// jwtgate cannot decide now; the proxy's failure mode applies (503, `UNAVAILABLE`).
    Unavailable,
    /// Over a rate limit (429, `RESOURCE_EXHAUSTED`).
    Limited,
    /// The request cannot be decided as sent: which request, or which host, is unclear (400,
    /// `INVALID_ARGUMENT`).
    BadRequest,
}

/// How one refusal is answered, apart from its reason: its class, its RFC 6750 `error` code
/// (if the challenge carries one) and the `error` member of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status and gRPC code, together.
    pub class: Class,
    /// The RFC 6750 `error` code of the `WWW-Authenticate` challenge.
    pub oauth_error: Option<&'static str>,
    /// The `error` member of the JSON body.
    pub body_error: &'static str,
}

impl Answer {
    /// A token that is not a valid credential: 401 `invalid_token`.
    const INVALID_TOKEN: Self = Self::new(Class::Unauthenticated, Some("invalid_token"), "invalid_token");
    /// jwtgate cannot decide now: 503, no challenge code.
    const UNAVAILABLE: Self = Self::new(Class::Unavailable, None, "temporarily_unavailable");
    /// A valid identity that lacks what the route requires: 403 `insufficient_scope`.
    const INSUFFICIENT: Self = Self::new(Class::Forbidden, Some("insufficient_scope"), "insufficient_scope");

    const fn new(class: Class, oauth_error: Option<&'static str>, body_error: &'static str) -> Self {
        Self {
            class,
            oauth_error,
            body_error,
        }
    }
}

impl Rejection {
    /// How this refusal is answered. One match with no wildcard arm: a new refusal cannot
    /// compile until it is given its status, gRPC code, OAuth error and body error.
    pub fn answer(&self) -> Answer {
        match self {
            Self::TooLarge
            | Self::Malformed(_)
            | Self::Encrypted
            | Self::Unsigned
            | Self::UnsupportedCritical
            | Self::UnknownIssuer
            | Self::SourceNotAllowed
            | Self::AlgorithmNotAllowed
            | Self::UnknownKey
            | Self::BadSignature
            | Self::MissingExpiry
            | Self::Expired
            | Self::NotYetValid
            | Self::IssuedInFuture
            | Self::LifetimeTooLong
            | Self::InvalidTimeClaim(_)
            | Self::WrongAudience
            | Self::WrongType
            | Self::MissingClaim(_)
            | Self::Revoked
            | Self::Inactive
            | Self::Unbound(_)
            | Self::LifetimeExceedsRetention
            | Self::ClaimNotString(_)
            | Self::NotAccessToken(_)
            | Self::SenderConstrained(_) => Answer::INVALID_TOKEN,
            // RFC 6750 §3.1: a request without credentials gets a challenge without a code.
            Self::MissingToken => Answer::new(Class::Unauthenticated, None, "missing_token"),
            Self::InvalidDpopProof(_) => {
                Answer::new(Class::Unauthenticated, Some("invalid_dpop_proof"), "invalid_dpop_proof")
            }
            Self::KeysUnavailable
            | Self::RevocationsUnavailable
            | Self::IntrospectionUnavailable
            | Self::ReplayCheckUnavailable => Answer::UNAVAILABLE,
            Self::ProviderNotAccepted | Self::MissingScope(_) | Self::MissingRole(_) | Self::ClaimNotAccepted(_) => {
                Answer::INSUFFICIENT
            }
            Self::NoRoute => Answer::new(Class::Forbidden, None, "access_denied"),
            Self::BadPath(_) | Self::OriginalRequestUnknown => Answer::new(Class::Forbidden, None, "invalid_request"),
            Self::AmbiguousOriginalRequest(_) | Self::BadHost(_) => {
                Answer::new(Class::BadRequest, None, "invalid_request")
            }
            Self::RateLimited(_) => Answer::new(Class::Limited, None, "rate_limited"),
        }
    }

    /// Which kind of answer this refusal gets.
    pub fn class(&self) -> Class {
        self.answer().class
    }

    /// The RFC 6750 `scope` attribute of an `insufficient_scope` challenge.
    pub fn required_scope(&self) -> Option<String> {
        if let Self::MissingScope(s) = self {
            Some(s.join(" "))
        } else {
            None
        }
    }

    /// RFC 6750 `error` code, if the `WWW-Authenticate` header carries one.
    pub fn oauth_error(&self) -> Option<&'static str> {
        self.answer().oauth_error
    }

    /// The `error` member of the JSON body.
    pub fn body_error(&self) -> &'static str {
        self.answer().body_error
    }

    /// Short reason that is safe to show the client (no token contents, no key material).
    pub fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Malformed(what) => Cow::Owned(format!("malformed token: {what}")),
            Self::InvalidTimeClaim(claim) => Cow::Owned(format!("invalid {claim} claim")),
            Self::MissingClaim(claim) => Cow::Owned(format!("missing required claim {claim}")),
            Self::NoRoute => Cow::Borrowed("no route matches this request"),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// Whether the refusal is about DPoP (its challenge names the DPoP scheme, RFC 9449 §7.1).
    pub fn is_dpop(&self) -> bool {
        use crate::binding::BindingError as B;
        matches!(
            self,
            Self::InvalidDpopProof(_)
                | Self::ReplayCheckUnavailable
                | Self::Unbound(B::BoundSentAsBearer | B::DpopRequired | B::NotDpopBound)
        )
    }

    /// Bounded metrics/log label.
    pub fn label(&self) -> &'static str {
        LABELS[self.index()]
    }

    /// Position of this refusal's label in [`LABELS`]: a metrics handle table is indexed by it.
    pub fn index(&self) -> usize {
        match self {
            Self::MissingToken => 0,
            Self::TooLarge => 1,
            Self::Malformed(_) => 2,
            Self::Encrypted => 3,
            Self::Unsigned => 4,
            Self::UnsupportedCritical => 5,
            Self::UnknownIssuer => 6,
            Self::SourceNotAllowed => 7,
            Self::AlgorithmNotAllowed => 8,
            Self::UnknownKey => 9,
            Self::BadSignature => 10,
            Self::MissingExpiry => 11,
            Self::Expired => 12,
            Self::NotYetValid => 13,
            Self::IssuedInFuture => 14,
            Self::LifetimeTooLong => 15,
            Self::InvalidTimeClaim(_) => 16,
            Self::WrongAudience => 17,
            Self::WrongType => 18,
            Self::MissingClaim(_) => 19,
            Self::KeysUnavailable => 20,
            Self::Revoked => 21,
            Self::ProviderNotAccepted => 22,
            Self::MissingScope(_) => 23,
            Self::MissingRole(_) => 24,
            Self::ClaimNotAccepted(_) => 25,
            Self::NoRoute => 26,
            Self::BadPath(_) => 27,
            Self::OriginalRequestUnknown => 28,
            Self::RateLimited(_) => 29,
            Self::RevocationsUnavailable => 30,
            Self::Inactive => 31,
            Self::IntrospectionUnavailable => 32,
            Self::InvalidDpopProof(_) => 33,
            Self::Unbound(_) => 34,
            Self::ReplayCheckUnavailable => 35,
            Self::AmbiguousOriginalRequest(_) => 36,
            Self::BadHost(_) => 37,
            Self::LifetimeExceedsRetention => 38,
            Self::ClaimNotString(_) => 39,
            Self::NotAccessToken(_) => 40,
            Self::SenderConstrained(_) => 41,
        }
    }
}

/// Every refusal's metrics label, by [`Rejection::index`]: the fixed set of `reason` label values.
pub const LABELS: [&str; 42] = [
    "missing_token",
    "too_large",
    "malformed",
    "encrypted",
    "unsigned",
    "unsupported_crit",
    "unknown_issuer",
    "source_not_allowed",
    "algorithm_not_allowed",
    "unknown_key",
    "bad_signature",
    "missing_exp",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "lifetime_too_long",
    "invalid_time_claim",
    "wrong_audience",
    "wrong_type",
    "missing_claim",
    "keys_unavailable",
    "revoked",
    "provider_not_accepted",
    "missing_scope",
    "missing_role",
    "claim_not_accepted",
    "no_route",
    "bad_path",
    "original_request_unknown",
    "rate_limited",
    "revocations_unavailable",
    "inactive",
    "introspection_unavailable",
    "invalid_dpop_proof",
    "token_binding",
    "replay_check_unavailable",
    "ambiguous_original_request",
    "bad_host",
    "lifetime_exceeds_retention",
    "claim_not_string",
    "not_access_token",
    "sender_constrained",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_unavailable_is_unavailable_not_unauthenticated() {
        let r = Rejection::KeysUnavailable;
        assert_eq!(r.class(), Class::Unavailable);
        assert_eq!(r.oauth_error(), None);
    }

    #[test]
    fn bad_tokens_are_401_invalid_token_with_safe_reason() {
        let r = Rejection::Malformed("invalid base64url");
        assert_eq!(r.class(), Class::Unauthenticated);
        assert_eq!(r.oauth_error(), Some("invalid_token"));
        assert_eq!(r.reason(), "malformed token: invalid base64url");
        assert_eq!(r.label(), "malformed");
    }

    #[test]
    fn missing_scope_is_403_insufficient_scope_naming_the_scopes() {
        let r = Rejection::MissingScope(vec!["api.read".into(), "api.write".into()]);
        assert_eq!(r.class(), Class::Forbidden);
        assert_eq!(r.oauth_error(), Some("insufficient_scope"));
        assert_eq!(r.required_scope().as_deref(), Some("api.read api.write"));
        assert_eq!(r.reason(), "missing scope: api.read api.write");
    }

    #[test]
    fn labels_are_distinct_and_each_refusal_has_its_own() {
        let labels: std::collections::BTreeSet<_> = LABELS.iter().collect();
        assert_eq!(labels.len(), LABELS.len());
        assert_eq!(Rejection::MissingToken.label(), "missing_token");
        assert_eq!(Rejection::Revoked.label(), "revoked");
        assert_eq!(Rejection::OriginalRequestUnknown.label(), "original_request_unknown");
        assert_eq!(Rejection::MissingScope(vec![]).index(), 23);
    }

    #[test]
    fn an_unclear_request_is_400_invalid_request_without_a_challenge() {
        for r in [
            Rejection::AmbiguousOriginalRequest("x-original-uri"),
            Rejection::BadHost(crate::host::HostError::Port),
        ] {
            assert_eq!(r.class(), Class::BadRequest, "{r}");
            assert_eq!(r.oauth_error(), None, "{r}");
            assert_eq!(r.body_error(), "invalid_request", "{r}");
        }
        assert_eq!(
            Rejection::AmbiguousOriginalRequest("x-original-uri").reason(),
            "ambiguous original request (x-original-uri)"
        );
        assert_eq!(Rejection::BadHost(crate::host::HostError::Port).label(), "bad_host");
    }

    #[test]
    fn issue_33_refusals_are_401_invalid_token_with_their_own_reasons_and_labels() {
        for (r, reason, label) in [
            (
                Rejection::LifetimeExceedsRetention,
                "token lives longer than revocations are kept",
                "lifetime_exceeds_retention",
            ),
            (
                Rejection::ClaimNotString("sub"),
                "sub must be a string",
                "claim_not_string",
            ),
            (
                Rejection::ClaimNotString("jti"),
                "jti must be a string",
                "claim_not_string",
            ),
            (
                Rejection::NotAccessToken("refresh".into()),
                "token is a refresh token",
                "not_access_token",
            ),
            (
                Rejection::NotAccessToken("offline".into()),
                "token is a refresh token",
                "not_access_token",
            ),
            (
                Rejection::NotAccessToken("id".into()),
                "token is not an access token (type id)",
                "not_access_token",
            ),
            (
                Rejection::SenderConstrained("cnf.jkt"),
                "token is sender-constrained (cnf.jkt)",
                "sender_constrained",
            ),
        ] {
            assert_eq!(r.class(), Class::Unauthenticated, "{r}");
            assert_eq!(r.oauth_error(), Some("invalid_token"), "{r}");
            assert_eq!(r.body_error(), "invalid_token", "{r}");
            assert!(!r.is_dpop(), "{r}");
            assert_eq!((r.reason().as_ref(), r.label()), (reason, label));
        }
    }

    #[test]
    fn missing_token_carries_no_error_code() {
        assert_eq!(Rejection::MissingToken.oauth_error(), None);
        assert_eq!(Rejection::MissingToken.body_error(), "missing_token");
    }
}
