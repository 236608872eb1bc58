//! Configuration: the YAML schema ([`raw`]), parsed once into validated types ([`Config`]) whose
//! fields cannot hold invalid values. Errors name the file, the field path and the reason.
//!
//! This module reads the config file and the secrets it points at; it does no other I/O.

pub mod admin;
pub mod binding;
pub mod cache;
pub mod duration;
pub mod http_auth;
pub mod introspection;
pub mod key_cache;
pub mod limits;
pub mod listen;
pub mod rate_limits;
pub mod raw;
pub mod redis;
pub mod revocation;
pub mod routes;
pub mod secrets;
pub mod telemetry;

pub use admin::AdminAuth;
pub use cache::CacheConfig;
pub use key_cache::KeyCacheConfig;
pub use listen::{Listen, ListenTls};
pub use redis::RedisConnection;
pub use revocation::{RevocationConfig, StoreConfig};
pub use secrets::{LooseSecret, Secret};
pub use telemetry::{OtlpExport, OtlpProtocol, TracingConfig};

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use raw::{RawConfig, RawKeys, RawProvider, RawSource};
use secrets::RawSecret;

/// A config file that cannot be used: which file, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct ConfigError {
    /// The file that was read.
    pub file: String,
    /// The field path, e.g. `providers[0].keys.refresh_interval`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener addresses.
    pub listen: Listen,
    /// Identity providers; a token's `iss` selects one exactly.
    pub providers: Vec<Provider>,
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// Tokens longer than this are refused before decoding.
    pub max_token_bytes: usize,
    /// Grace period for in-flight checks at shutdown.
    pub shutdown_grace: Duration,
    /// How long jwtgate keeps serving after SIGTERM, not ready, so load balancers and proxies
    /// stop sending before the listeners close.
    pub shutdown_drain: Duration,
    /// Routes in order; the first that matches decides. Without `routes:` in the file, one
    /// route requiring a valid token from any provider.
    pub routes: Vec<routes::Route>,
    /// What a request that matches no route gets.
    pub unmatched: routes::Unmatched,
    /// The HTTP front door's settings.
    pub http_auth: http_auth::HttpAuth,
    /// Where revocations are kept.
    pub revocation: RevocationConfig,
    /// Who may call the admin API.
    pub admin: AdminAuth,
    /// What a connection may hold of a listener, and for how long.
    pub limits: limits::Limits,
    /// Secret files other users may read (warned about, not refused).
    pub loose_secrets: Vec<LooseSecret>,
    /// The verified-token cache.
    pub cache: CacheConfig,
    /// Most denial log lines per second (the rest are counted and summarised); 0 logs none.
    pub denials_logged_per_second: u32,
    /// Traces: sampling, export, what spans record.
    pub tracing: TracingConfig,
    /// Rate limits decided with each check.
    pub rate_limits: rate_limits::RateLimits,
    /// Where `jwtgate serve` keeps each fetching provider's last good key set.
    pub key_cache: KeyCacheConfig,
    /// Who may introspect tokens (RFC 7662), when enabled.
    pub introspection: introspection::Introspection,
    /// The Redis that keeps DPoP proof ids when a provider has `dpop.replay: redis`.
    pub dpop_replay: Option<RedisConnection>,
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

/// Where a provider's keys come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL.
    JwksUri(String),
    /// OIDC discovery from the issuer.
    Discovery,
    /// A local JWKS file, reloaded when it changes.
    JwksFile(PathBuf),
    /// A shared secret for HS* tokens.
    HmacSecret(Secret),
    /// None: the provider's tokens are opaque and introspected (`introspection:` without a key
    /// source); a JWT naming its issuer is refused.
    None,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUri(u) => write!(f, "JwksUri({u})"),
            Self::Discovery => write!(f, "Discovery"),
            Self::JwksFile(p) => write!(f, "JwksFile({})", p.display()),
            Self::HmacSecret(_) => write!(f, "HmacSecret(<redacted>)"),
            Self::None => write!(f, "None"),
        }
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

/// Key-set lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    /// Background refresh period (upper bound for `Cache-Control: max-age`).
    pub refresh_interval: Duration,
    /// At most one unknown-`kid` refetch per this window.
    pub min_refetch_interval: Duration,
    /// How long the last good keys keep serving while fetches fail.
    pub max_stale: Duration,
    /// Bound on one fetch.
    pub fetch_timeout: Duration,
    /// Bound on how long a request waits for a refetch.
    pub refetch_wait: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(86_400),
            fetch_timeout: Duration::from_secs(5),
            refetch_wait: Duration::from_millis(100),
        }
    }
}

/// Every algorithm jwtgate verifies, as spelled in JOSE.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
];

/// Minimum HMAC secret length for an algorithm: its hash output (RFC 7518 §3.2).
pub fn hmac_min_secret(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = crate::file::read(path, crate::file::MAX_FILE_BYTES)
            .and_then(|b| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
            .map_err(|e| ConfigError {
                file: file.clone(),
                field: "(file)".into(),
                reason: format!("cannot read: {e}"),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &file, base)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut field = None;
        let raw: RawConfig = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                field = Some(e.path().to_string());
                e.into_inner()
            })
        })
        .map_err(|e| ConfigError {
            file: file.into(),
            field: match field.as_deref() {
                None => "(yaml)".into(),
                // The root, or a key that is itself empty (`"": x`) at the root.
                Some(".") | Some("") => "(top level)".into(),
                Some(path) => path.into(),
            },
            reason: e.to_string().trim().into(),
        })?;
        Validator {
            file,
            base,
            loose: RefCell::default(),
        }
        .config(raw)
    }
}

struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
    /// Secret files read so far that others may read.
    loose: RefCell<Vec<LooseSecret>>,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen = self.listen(raw.listen)?;
        if raw.providers.is_empty() {
            return Err(self.err("providers", "at least one provider is required"));
        }
        let mut providers = Vec::with_capacity(raw.providers.len());
        let (mut names, mut issuers) = (HashSet::new(), HashSet::new());
        for (i, p) in raw.providers.into_iter().enumerate() {
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
        let max_token_bytes = raw.max_token_bytes.unwrap_or(8192);
        if !(256..=1 << 20).contains(&max_token_bytes) {
            return Err(self.err("max_token_bytes", "must be between 256 and 1048576"));
        }
        let realm = raw.realm.unwrap_or_else(|| "jwtgate".into());
        if realm.is_empty() || realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(self.err(
                "realm",
                "must be non-empty without quotes, backslashes or control characters",
            ));
        }
        let routes = self.routes(raw.routes, &providers)?;
        let redis = match raw.redis {
            Some(r) => Some(self.redis(r)?),
            None => None,
        };
        let revocation = self.revocation(raw.revocation, redis.as_ref())?;
        for p in &mut providers {
            if p.max_lifetime.is_none() && p.require_exp {
                p.subject_retention = Some(revocation.subject_retention);
            }
        }
        let shared = redis.or_else(|| match &revocation.store {
            StoreConfig::Redis { connection, .. } => Some(connection.clone()),
            StoreConfig::Embedded { .. } => None,
        });
        let rate_limits = self.rate_limits(raw.rate_limits, &routes, shared.as_ref())?;
        let dpop_replay = match providers
            .iter()
            .position(|p| p.dpop.as_ref().is_some_and(|d| d.replay == binding::Replay::Redis))
        {
            None => None,
            Some(i) => Some(shared.clone().ok_or_else(|| {
                self.err(
                    format!("providers[{i}].dpop.replay"),
                    "`redis` needs `redis.url` (or a `revocation.url` with `store: redis`)",
                )
            })?),
        };
        let key_cache = self.key_cache(raw.key_cache, &revocation.store)?;
        let admin = self.admin(raw.admin, &providers)?;
        let http_auth = self.http_auth(raw.http_auth, &providers)?;
        let introspection = self.introspection(raw.introspection, listen.introspection.is_some(), &providers)?;
        Ok(Config {
            limits: self.limits(raw.limits)?,
            introspection,
            key_cache,
            listen,
            providers,
            realm,
            max_token_bytes,
            shutdown_grace: raw.shutdown_grace.unwrap_or(Duration::from_secs(10)),
            shutdown_drain: self.shutdown_drain(raw.shutdown_drain)?,
            admin,
            routes,
            unmatched: self.unmatched(&raw.defaults),
            http_auth,
            revocation,
            cache: self.cache(&raw.cache)?,
            denials_logged_per_second: raw.log.denials_per_second.unwrap_or(1000),
            tracing: self.tracing(raw.telemetry.tracing, &|name| std::env::var(name).ok())?,
            rate_limits,
            dpop_replay,
            loose_secrets: self.loose.take(),
        })
    }

    fn shutdown_drain(&self, raw: Option<Duration>) -> Result<Duration, ConfigError> {
        let drain = raw.unwrap_or(Duration::from_secs(5));
        if drain > Duration::from_secs(300) {
            return Err(self.err("shutdown_drain", "must be at most 5m"));
        }
        Ok(drain)
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

    /// The one key source; none at all only with `introspection` (an introspection-only
    /// provider).
    fn key_source(
        &self,
        field: &str,
        issuer: &str,
        (jwks_uri, discovery, jwks_file, hmac_secret): RawKeySource,
        introspected: bool,
    ) -> Result<KeySource, ConfigError> {
        let discovery = discovery.unwrap_or(false);
        let count = [
            jwks_uri.is_some(),
            discovery,
            jwks_file.is_some(),
            hmac_secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count == 0 && introspected {
            return Ok(KeySource::None);
        }
        if count != 1 {
            return Err(self.err(
                field,
                format!(
                    "exactly one key source is required (jwks_uri, discovery: true, jwks_file or hmac_secret; none with `introspection`); found {count}"
                ),
            ));
        }
        if let Some(uri) = jwks_uri {
            check_http_url(&uri).map_err(|r| self.err(format!("{field}.jwks_uri"), r))?;
            return Ok(KeySource::JwksUri(uri));
        }
        if discovery {
            check_http_url(issuer)
                .map_err(|r| self.err(format!("{field}.discovery"), format!("needs an http(s) issuer: {r}")))?;
            return Ok(KeySource::Discovery);
        }
        if let Some(path) = jwks_file {
            let path = self.base.join(path);
            if !path.is_file() {
                return Err(self.err(
                    format!("{field}.jwks_file"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
            return Ok(KeySource::JwksFile(path));
        }
        let secret = hmac_secret.ok_or_else(|| self.err(field, "no key source"))?;
        let f = format!("{field}.hmac_secret");
        let bytes = self.secret(&f, secret)?;
        if bytes.len() < 32 {
            return Err(self.err(
                f,
                format!(
                    "secret is {} bytes; HMAC needs at least 32 (the hash output)",
                    bytes.len()
                ),
            ));
        }
        Ok(KeySource::HmacSecret(Secret(bytes)))
    }

    fn algorithms(
        &self,
        field: &str,
        source: &KeySource,
        raw: Option<Vec<String>>,
    ) -> Result<Vec<Algorithm>, ConfigError> {
        let field = format!("{field}.algorithms");
        let secret_len = match source {
            KeySource::HmacSecret(s) => Some(s.expose().len()),
            _ => None,
        };
        let Some(names) = raw else {
            return Ok(ALGORITHMS
                .iter()
                .copied()
                .filter(|a| match secret_len {
                    Some(len) => a.family() == AlgorithmFamily::Hmac && len >= hmac_min_secret(*a),
                    None => a.family() != AlgorithmFamily::Hmac,
                })
                .collect());
        };
        if names.is_empty() {
            return Err(self.err(field, "cannot be empty"));
        }
        let mut out = Vec::new();
        for name in names {
            let alg = Algorithm::from_str(&name)
                .ok()
                .filter(|a| ALGORITHMS.contains(a))
                .ok_or_else(|| {
                    self.err(
                        &field,
                        format!("`{name}` is not supported; use RS256/384/512, PS256/384/512, ES256, ES384, EdDSA or HS256/384/512"),
                    )
                })?;
            match (alg.family() == AlgorithmFamily::Hmac, secret_len) {
                (true, None) => {
                    return Err(self.err(
                        &field,
                        format!("{name} needs `hmac_secret`; HMAC keys are never taken from a JWKS"),
                    ));
                }
                (false, Some(_)) => {
                    return Err(self.err(&field, format!("{name} cannot be verified with `hmac_secret`")));
                }
                (true, Some(len)) if len < hmac_min_secret(alg) => {
                    return Err(self.err(
                        &field,
                        format!(
                            "{name} needs a secret of at least {} bytes; this one has {len}",
                            hmac_min_secret(alg)
                        ),
                    ));
                }
                _ => {}
            }
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
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

    fn header_name(&self, field: &str, name: &str) -> Result<String, ConfigError> {
        let lower = name.to_ascii_lowercase();
        if !valid_token(&lower) {
            return Err(self.err(field, format!("`{name}` is not a valid HTTP header name")));
        }
        if [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
        ]
        .contains(&lower.as_str())
        {
            return Err(self.err(field, format!("`{name}` cannot carry identity")));
        }
        Ok(lower)
    }

    fn keys(&self, field: &str, raw: RawKeys) -> Result<KeySettings, ConfigError> {
        let d = KeySettings::default();
        let k = KeySettings {
            refresh_interval: raw.refresh_interval.unwrap_or(d.refresh_interval),
            min_refetch_interval: raw.min_refetch_interval.unwrap_or(d.min_refetch_interval),
            max_stale: raw.max_stale.unwrap_or(d.max_stale),
            fetch_timeout: raw.fetch_timeout.unwrap_or(d.fetch_timeout),
            refetch_wait: raw.refetch_wait.unwrap_or(d.refetch_wait),
        };
        let check = |name: &str, ok: bool, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(self.err(format!("{field}.{name}"), why))
            }
        };
        check(
            "refresh_interval",
            k.refresh_interval >= Duration::from_secs(1),
            "must be at least 1s",
        )?;
        check(
            "min_refetch_interval",
            k.min_refetch_interval >= Duration::from_millis(100),
            "must be at least 100ms",
        )?;
        check(
            "fetch_timeout",
            !k.fetch_timeout.is_zero() && k.fetch_timeout <= Duration::from_secs(60),
            "must be between 1ms and 60s",
        )?;
        check(
            "refetch_wait",
            k.refetch_wait <= Duration::from_secs(1),
            "must be at most 1s (Envoy's ext_authz timeout defaults to 200ms)",
        )?;
        check(
            "max_stale",
            k.max_stale >= k.refresh_interval,
            "must be at least refresh_interval",
        )?;
        Ok(k)
    }
}

/// `application/at+jwt` and `AT+JWT` both mean `at+jwt` (RFC 7515 §4.1.9).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
}

/// Whether `s` is an RFC 9110 token (§5.6.2): what a header name, a cookie name or a method is.
pub(crate) fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A provider's key source fields as written: `jwks_uri`, `discovery`, `jwks_file`,
/// `hmac_secret`.
type RawKeySource = (Option<String>, Option<bool>, Option<PathBuf>, Option<RawSecret>);

fn check_http_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(format!("`{text}` must be an http(s) URL with a host")),
    }
}

#[cfg(test)]
mod tests;
