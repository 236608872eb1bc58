//! `providers:`, the identity providers (token issuers): their schema, their validated form
//! ([`Provider`]) and their validator. A provider's keys are in [`super::keys`], its sender
//! binding (`dpop`, `mtls_binding`) in [`super::binding`], its `introspection` in
//! [`super::introspection`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::binding::{RawDpop, RawMtlsBinding};
use super::duration::serde_text;
use super::introspection::RawProviderIntrospection;
use super::keys::{KeySettings, KeySource, RawKeys};
use super::secrets::RawSecret;
use super::syntax::valid_token;
use super::{ConfigError, Validator, binding, introspection, routes};

/// One identity provider (token issuer).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Required, unique.
    pub name: Option<String>,
    /// Required, unique; compared exactly with the token's `iss`.
    pub issuer: Option<String>,
    /// Key source: a JWKS URL.
    pub jwks_uri: Option<String>,
    /// Key source: OIDC discovery from `{issuer}/.well-known/openid-configuration`.
    pub discovery: Option<bool>,
    /// Key source: a local JWKS file, reloaded when it changes.
    pub jwks_file: Option<PathBuf>,
    /// Key source: a shared secret for legacy HS256/384/512 tokens.
    pub hmac_secret: Option<RawSecret>,
    /// Default: none (no `aud` check). Otherwise the token's `aud` must contain one.
    pub audiences: Option<Vec<String>>,
    /// Default: every asymmetric algorithm the keys support, or HS* with `hmac_secret`.
    pub algorithms: Option<Vec<String>>,
    /// Default: 60s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub clock_skew: Option<Duration>,
    /// Default: any `typ`. Otherwise the header `typ` must be one of these (e.g. `at+jwt`).
    pub token_types: Option<Vec<String>>,
    /// Default: none. Claims that must be present.
    pub required_claims: Option<Vec<String>>,
    /// Default: true.
    pub require_exp: Option<bool>,
    /// Default: none. Longest allowed `exp - iat` (or `exp - now` without `iat`).
    #[serde(default, deserialize_with = "serde_text::option")]
    pub max_lifetime: Option<Duration>,
    /// Default: `[{header: authorization, prefix: "Bearer "}]`.
    pub sources: Option<Vec<RawSource>>,
    /// Default: none. Claim (dot path) → upstream header.
    pub claims_to_headers: Option<BTreeMap<String, String>>,
    /// Default: none. Header that receives the base64url payload.
    pub payload_header: Option<String>,
    /// Default: true. `false` strips the token's header before the request goes upstream.
    pub forward_token: Option<bool>,
    /// Dot path of the roles claim.
    pub roles_claim: Option<String>,
    /// Refuse tokens without `jti`.
    pub require_jti: Option<bool>,
    /// Key-set lifecycle settings.
    #[serde(default)]
    pub keys: RawKeys,
    /// `introspection:` — opaque tokens checked at the provider's RFC 7662 endpoint.
    pub introspection: Option<RawProviderIntrospection>,
    /// `dpop:` (RFC 9449 proof-of-possession).
    pub dpop: Option<RawDpop>,
    /// `mtls_binding:` (RFC 8705 certificate-bound tokens).
    pub mtls_binding: Option<RawMtlsBinding>,
    /// `refuse` (the default) or `decimal`: what an integer `sub` or `jti` is.
    pub numeric_ids: Option<String>,
    /// Default: false. Accept tokens bound in a way this provider does not check (`cnf.jkt`
    /// without `dpop`, `cnf["x5t#S256"]` without `mtls_binding`) as bearer tokens.
    pub accept_bound_tokens_as_bearer: Option<bool>,
}

/// One place to look for the token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Header name.
    pub header: Option<String>,
    /// With `header`: the scheme prefix, matched case-insensitively. Default: `"Bearer "`.
    pub prefix: Option<String>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Query parameter name (opt-in; RFC 6750 discourages it).
    pub query: Option<String>,
}

/// One identity provider, validated.
#[derive(Clone)]
pub struct Provider {
    /// Unique name, used in logs, metrics and `/readyz`.
    pub name: String,
    /// Exact `iss` value.
    pub issuer: String,
    /// Where the keys come from.
    pub key_source: KeySource,
    /// Accepted audiences; empty means no `aud` check.
    pub audiences: Vec<String>,
    /// Allowed algorithms; a key must also support the token's algorithm.
    pub algorithms: Vec<Algorithm>,
    /// Symmetric tolerance for `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// Accepted header `typ` values (lower-cased, without `application/`); empty means any.
    pub token_types: Vec<String>,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Whether `exp` must be present.
    pub require_exp: bool,
    /// Longest allowed token lifetime.
    pub max_lifetime: Option<Duration>,
    /// Where to look for the token, in order.
    pub sources: Vec<Source>,
    /// Claim path → upstream header (lower-case).
    pub claims_to_headers: Vec<(String, String)>,
    /// Header that receives the base64url payload.
    pub payload_header: Option<String>,
    /// Whether the token's header goes upstream.
    pub forward_token: bool,
    /// Dot path of the claim holding roles (default `roles`).
    pub roles_claim: String,
    /// Refuse tokens without `jti` (so every token can be revoked singly).
    pub require_jti: bool,
    /// Key-set lifecycle.
    pub keys: KeySettings,
    /// Opaque tokens introspected at the provider, when configured.
    pub introspection: Option<introspection::ProviderIntrospection>,
    /// DPoP (RFC 9449), unless `mode: off`.
    pub dpop: Option<binding::Dpop>,
    /// Whether tokens must be bound to the client certificate (RFC 8705, `mtls_binding`).
    pub mtls_binding: bool,
    /// What an integer `sub` or `jti` is (`numeric_ids`): refused, or its decimal text.
    pub numeric_ids: NumericIds,
    /// Whether a token bound in a way this provider does not check (`cnf.jkt` without `dpop`,
    /// `cnf["x5t#S256"]` without `mtls_binding`) is accepted as a bearer token.
    pub accept_bound_tokens_as_bearer: bool,
    /// The longest a token may live (`exp - iat`, or `exp - now` without `iat`) so that a
    /// subject cut-off outlives it: `revocation.subject_retention`, for a provider without
    /// `max_lifetime` whose tokens must expire (`require_exp`). `None` otherwise: `max_lifetime`
    /// bounds its tokens (and how long its cut-offs are kept), or, with `require_exp: false`,
    /// its tokens may never expire and its revocations are kept for good.
    pub subject_retention: Option<Duration>,
}

/// `providers[].numeric_ids`: what an integer `sub` or `jti` is (RFC 7519 says a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumericIds {
    /// Refused: `sub must be a string`, `jti must be a string`.
    #[default]
    Refuse,
    /// Its decimal text (`42` is `"42"`) for every use: identity headers, revocation, rate
    /// limits, audit. Numbers with a fraction or an exponent are still refused.
    Decimal,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("key_source", &self.key_source)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// One place to look for a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A header (lower-case name) with a scheme prefix matched case-insensitively.
    Header {
        /// Header name, lower-case.
        name: String,
        /// Scheme prefix such as `Bearer `; empty for the whole value.
        prefix: String,
    },
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

impl Source {
    /// How `jwtgate check` names this source, e.g. `header authorization`.
    pub fn describe(&self) -> String {
        match self {
            Self::Header { name, .. } => format!("header {name}"),
            Self::Cookie(name) => format!("cookie {name}"),
            Self::Query(name) => format!("query parameter {name}"),
        }
    }
}

/// `application/at+jwt` and `AT+JWT` both mean `at+jwt` (RFC 7515 §4.1.9).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
}

impl Validator<'_> {
    /// `providers`: at least one, each validated, no name or issuer used twice.
    pub(super) fn providers(&self, raw: Vec<RawProvider>) -> Result<Vec<Provider>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err("providers", "at least one provider is required"));
        }
        let mut providers = Vec::with_capacity(raw.len());
        let (mut names, mut issuers) = (HashSet::new(), HashSet::new());
        for (i, p) in raw.into_iter().enumerate() {
            let field = format!("providers[{i}]");
            let p = self.provider(&field, p)?;
            if !names.insert(p.name.clone()) {
                return Err(self.err(format!("{field}.name"), format!("`{}` is used twice", p.name)));
            }
            if !issuers.insert(p.issuer.clone()) {
                return Err(self.err(
                    format!("{field}.issuer"),
                    format!("`{}` is used by two providers; `iss` must select one", p.issuer),
                ));
            }
            providers.push(p);
        }
        Ok(providers)
    }

    fn provider(&self, field: &str, p: RawProvider) -> Result<Provider, ConfigError> {
        let name = p
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.err(format!("{field}.name"), "is required"))?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(self.err(format!("{field}.name"), "use letters, digits, `-`, `_` and `.` only"));
        }
        let issuer = p
            .issuer
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.err(format!("{field}.issuer"), "is required"))?;
        let introspection = p
            .introspection
            .map(|i| self.provider_introspection(field, i, p.discovery.unwrap_or(false)))
            .transpose()?;
        let key_source = self.key_source(
            field,
            &issuer,
            (p.jwks_uri, p.discovery, p.jwks_file, p.hmac_secret),
            introspection.is_some(),
        )?;
        let algorithms = self.algorithms(field, &key_source, p.algorithms)?;
        let clock_skew = p.clock_skew.unwrap_or(Duration::from_secs(60));
        if clock_skew > Duration::from_secs(600) {
            return Err(self.err(format!("{field}.clock_skew"), "must be at most 10m"));
        }
        let audiences = p.audiences.unwrap_or_default();
        if audiences.iter().any(String::is_empty) {
            return Err(self.err(format!("{field}.audiences"), "an audience cannot be empty"));
        }
        let token_types = p
            .token_types
            .unwrap_or_default()
            .into_iter()
            .map(|t| normalize_typ(&t))
            .collect::<Vec<_>>();
        if token_types.iter().any(String::is_empty) {
            return Err(self.err(format!("{field}.token_types"), "a type cannot be empty"));
        }
        let required_claims = p.required_claims.unwrap_or_default();
        if required_claims.iter().any(String::is_empty) {
            return Err(self.err(format!("{field}.required_claims"), "a claim name cannot be empty"));
        }
        let mut sources = self.sources(field, p.sources)?;
        let dpop = self.dpop(field, p.dpop)?;
        if dpop.is_some() && !sources.contains(&binding::dpop_source()) {
            sources.push(binding::dpop_source());
        }
        let mtls_binding = self.mtls_binding(field, p.mtls_binding)?;
        let mut claims_to_headers = Vec::new();
        for (claim, header) in p.claims_to_headers.unwrap_or_default() {
            let f = format!("{field}.claims_to_headers.{claim}");
            if claim.is_empty() || claim.split('.').any(str::is_empty) {
                return Err(self.err(
                    f,
                    "a claim path is dot-separated names, like `sub` or `realm_access.roles`",
                ));
            }
            claims_to_headers.push((claim, self.header_name(&f, &header)?));
        }
        let payload_header = p
            .payload_header
            .map(|h| self.header_name(&format!("{field}.payload_header"), &h))
            .transpose()?;
        let keys = self.keys(&format!("{field}.keys"), p.keys)?;
        let roles_claim = p.roles_claim.unwrap_or_else(|| "roles".into());
        if !routes::is_claim_path(&roles_claim) {
            return Err(self.err(
                format!("{field}.roles_claim"),
                "a dot path like `roles` or `realm_access.roles`",
            ));
        }
        if let Some(lifetime) = p.max_lifetime
            && lifetime.is_zero()
        {
            return Err(self.err(format!("{field}.max_lifetime"), "must be more than 0s"));
        }
        let numeric_ids = match p.numeric_ids.as_deref() {
            None | Some("refuse") => NumericIds::Refuse,
            Some("decimal") => NumericIds::Decimal,
            Some(other) => {
                return Err(self.err(
                    format!("{field}.numeric_ids"),
                    format!("`{other}` is not `refuse` or `decimal`"),
                ));
            }
        };
        let accept_bound_tokens_as_bearer = p.accept_bound_tokens_as_bearer.unwrap_or(false);
        if accept_bound_tokens_as_bearer && dpop.is_some() && mtls_binding {
            return Err(self.err(
                format!("{field}.accept_bound_tokens_as_bearer"),
                "has no effect: with both `dpop` and `mtls_binding` every binding is checked",
            ));
        }
        Ok(Provider {
            name,
            issuer,
            key_source,
            audiences,
            algorithms,
            clock_skew,
            token_types,
            required_claims,
            require_exp: p.require_exp.unwrap_or(true),
            max_lifetime: p.max_lifetime,
            sources,
            claims_to_headers,
            payload_header,
            forward_token: p.forward_token.unwrap_or(true),
            roles_claim,
            require_jti: p.require_jti.unwrap_or(false),
            keys,
            introspection,
            dpop,
            mtls_binding,
            numeric_ids,
            accept_bound_tokens_as_bearer,
            // Set once `revocation:` is read (see `config`).
            subject_retention: None,
        })
    }

    fn sources(&self, field: &str, raw: Option<Vec<RawSource>>) -> Result<Vec<Source>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(vec![Source::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            }]);
        };
        if raw.is_empty() {
            return Err(self.err(format!("{field}.sources"), "cannot be empty"));
        }
        raw.into_iter()
            .enumerate()
            .map(|(i, s)| {
                let f = format!("{field}.sources[{i}]");
                match (s.header, s.cookie, s.query) {
                    (Some(h), None, None) => Ok(Source::Header {
                        name: self.header_name(&format!("{f}.header"), &h)?,
                        prefix: s.prefix.unwrap_or_else(|| "Bearer ".into()),
                    }),
                    (None, Some(c), None) if s.prefix.is_none() && valid_token(&c) => Ok(Source::Cookie(c)),
                    (None, None, Some(q)) if s.prefix.is_none() && !q.is_empty() => Ok(Source::Query(q)),
                    (None, Some(_), None) | (None, None, Some(_)) if s.prefix.is_some() => {
                        Err(self.err(f, "`prefix` goes only with `header`"))
                    }
                    (None, Some(_), None) => Err(self.err(format!("{f}.cookie"), "not a valid cookie name")),
                    (None, None, Some(_)) => Err(self.err(format!("{f}.query"), "cannot be empty")),
                    _ => Err(self.err(f, "give exactly one of `header`, `cookie` or `query`")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, err, parse};

    #[test]
    fn issue_example_parses() {
        let c = parse(
            r#"
listen: { grpc: "127.0.0.1:9001", http: "127.0.0.1:9002" }
providers:
  - name: corp
    issuer: "https://idp.example.com/"
    jwks_uri: "https://idp.example.com/keys"
    audiences: ["api"]
    algorithms: ["RS256", "ES256"]
    clock_skew: 60s
    sources: [{ header: authorization, prefix: "Bearer " }]
    claims_to_headers: { sub: x-jwt-sub }
    keys: { refresh_interval: 5m, min_refetch_interval: 30s, max_stale: 24h, fetch_timeout: 5s }
"#,
        )
        .unwrap();
        let p = &c.providers[0];
        assert_eq!(p.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(p.claims_to_headers, vec![("sub".to_string(), "x-jwt-sub".to_string())]);
    }

    #[test]
    fn duplicate_issuers_are_refused() {
        let e = err(&format!(
            "{MINIMAL}  - name: other\n    issuer: \"https://idp.example.com/\"\n    jwks_uri: \"https://x/\"\n"
        ));
        assert_eq!(e.field, "providers[1].issuer");
    }

    #[test]
    fn missing_providers_is_refused() {
        let e = err("listen: { grpc: \"127.0.0.1:1\" }\n");
        assert_eq!(e.field, "providers");
    }

    #[test]
    fn typ_is_normalized() {
        assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
    }

    #[test]
    fn numeric_ids_default_to_refuse_and_take_refuse_or_decimal_only() {
        assert_eq!(parse(MINIMAL).unwrap().providers[0].numeric_ids, NumericIds::Refuse);
        let with = |extra: &str| format!("{MINIMAL}{extra}");
        let c = parse(&with("    numeric_ids: decimal\n")).unwrap();
        assert_eq!(c.providers[0].numeric_ids, NumericIds::Decimal);
        let e = err(&with("    numeric_ids: Decimal\n"));
        assert_eq!(
            (e.file.as_str(), e.field.as_str(), e.reason.as_str()),
            (
                "test.yaml",
                "providers[0].numeric_ids",
                "`Decimal` is not `refuse` or `decimal`"
            )
        );
    }

    #[test]
    fn accept_bound_tokens_as_bearer_is_off_by_default_and_refused_where_it_means_nothing() {
        assert!(!parse(MINIMAL).unwrap().providers[0].accept_bound_tokens_as_bearer);
        let with = |extra: &str| format!("{MINIMAL}{extra}");
        let c = parse(&with("    accept_bound_tokens_as_bearer: true\n")).unwrap();
        assert!(c.providers[0].accept_bound_tokens_as_bearer);
        let e = err(&with(
            "    dpop: { mode: optional }\n    mtls_binding: { mode: required }\n    accept_bound_tokens_as_bearer: true\nhttp_auth: { client_cert_header: none }\n",
        ));
        assert_eq!(
            (e.file.as_str(), e.field.as_str()),
            ("test.yaml", "providers[0].accept_bound_tokens_as_bearer")
        );
        assert!(e.reason.contains("has no effect"), "{e}");
        let e = err(&with("    accept_bound_tokens_as_bearer: maybe\n"));
        assert_eq!(e.field, "providers[0].accept_bound_tokens_as_bearer");
    }
}
