//! `introspection:` (who may ask jwtgate's RFC 7662 endpoint, and the admin API's `Introspect`,
//! whether a token is active) and `providers[].introspection` (how jwtgate asks a provider about
//! its opaque tokens): their schema, their validated form and their validator.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_text;
use super::routes::{Requirements, Roles};
use super::secrets::Secret;
use super::{ConfigError, Provider, Validator};

/// `introspection:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// Default: false.
    pub enabled: Option<bool>,
    /// Who may ask.
    #[serde(default)]
    pub clients: Vec<RawIntrospectionClient>,
}

/// `introspection.clients[]`: `{id, secret_file}` or `{provider, role}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospectionClient {
    /// HTTP Basic client id.
    pub id: Option<String>,
    /// File holding that client's secret.
    pub secret_file: Option<PathBuf>,
    /// A provider whose bearer tokens may ask…
    pub provider: Option<String>,
    /// …when they carry this role.
    pub role: Option<String>,
}

/// `providers[].introspection`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderIntrospection {
    /// The RFC 7662 endpoint; default: discovery's `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// jwtgate's client id at the provider.
    pub client_id: Option<String>,
    /// File holding jwtgate's client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Default: 60s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub cache_ttl: Option<Duration>,
    /// Default: 5s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub negative_cache_ttl: Option<Duration>,
    /// Default: 500ms.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub timeout: Option<Duration>,
    /// Default: `[refresh_token, offline]`. Token types (an answer's `token_use`, `typ` or
    /// `token_type`) refused as not being access tokens.
    pub refuse_token_types: Option<Vec<String>>,
}
/// Shortest client secret accepted (the same floor as `admin.token`).
const MIN_SECRET_BYTES: usize = 16;

/// `introspection:`.
#[derive(Debug, Clone, Default)]
pub struct Introspection {
    /// Whether the endpoint answers (`listen.introspection` must be set as well to serve it).
    pub enabled: bool,
    /// Who may ask; every other caller gets 401.
    pub clients: Vec<IntrospectionClient>,
}

/// One caller allowed to introspect.
#[derive(Debug, Clone)]
pub enum IntrospectionClient {
    /// HTTP Basic (RFC 7662 §2.1 with RFC 6749 §2.3.1): this client id and secret.
    Secret {
        /// `client_id`.
        id: String,
        /// The secret, read from `secret_file` at start (and at each reload).
        secret: Secret,
    },
    /// A bearer token of a configured provider that carries a role, checked on a check's path.
    Token {
        /// Provider name.
        provider: String,
        /// Role required in that provider's `roles_claim`.
        role: String,
    },
}

impl IntrospectionClient {
    /// For a token client, what its token must meet, as a route would say it.
    pub fn requirement(&self) -> Option<Requirements> {
        match self {
            Self::Secret { .. } => None,
            Self::Token { provider, role } => Some(Requirements {
                providers: vec![provider.clone()],
                roles: Some(Roles::AllOf(vec![role.clone()])),
                ..Requirements::default()
            }),
        }
    }
}

/// `providers[].introspection`: where and as whom jwtgate introspects the provider's opaque
/// tokens, and how long it keeps the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderIntrospection {
    /// The RFC 7662 endpoint; `None`: the provider's discovery document's
    /// `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// jwtgate's client id at the provider.
    pub client_id: String,
    /// jwtgate's client secret (HTTP Basic).
    pub client_secret: Secret,
    /// How long an active answer is kept (never past the token's `exp`); zero asks every time.
    pub cache_ttl: Duration,
    /// How long an inactive answer is kept; zero asks every time.
    pub negative_cache_ttl: Duration,
    /// Longest wait for the endpoint's answer.
    pub timeout: Duration,
    /// Token types refused as not being access tokens, normalised ([`token_type`]): an
    /// answer's `token_use` (Ory Hydra), `typ` (Keycloak) or `token_type` (RFC 7662) naming one
    /// is refused, and so is an answer whose type member is not a string or not ASCII. Default:
    /// refresh tokens (`refresh_token`; Keycloak's `Refresh`, `Offline`) and ID tokens
    /// (Keycloak's `ID`).
    pub refuse_token_types: Vec<String>,
}

/// A token type as compared: without RFC 8693's `urn:ietf:params:oauth:token-type:` prefix, in
/// lower case, its letters and digits only, without a `token` suffix (`refresh_token`,
/// `Refresh`, `refresh-token`, `RefreshToken` and
/// `urn:ietf:params:oauth:token-type:refresh_token` are all `refresh`). `None` for a name with
/// characters beyond ASCII, which no type of an access token has.
pub fn token_type(name: &str) -> Option<String> {
    let name = name.trim();
    if !name.is_ascii() {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower
        .strip_prefix("urn:ietf:params:oauth:token-type:")
        .unwrap_or(&lower);
    let kept: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    Some(match kept.strip_suffix("token") {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => kept,
    })
}

/// Types that access tokens are: refusing one would refuse them all.
const ACCESS_TOKEN_TYPES: [&str; 4] = ["access", "bearer", "dpop", "na"];

impl Validator<'_> {
    /// `providers[i].introspection`; `discovery` says whether the provider has `discovery:
    /// true` (the endpoint may then come from the discovery document).
    pub(super) fn provider_introspection(
        &self,
        field: &str,
        raw: RawProviderIntrospection,
        discovery: bool,
    ) -> Result<ProviderIntrospection, ConfigError> {
        let field = format!("{field}.introspection");
        let endpoint = match raw.endpoint {
            Some(e) => {
                super::syntax::check_http_url(&e).map_err(|r| self.err(format!("{field}.endpoint"), r))?;
                Some(e)
            }
            None if discovery => None,
            None => {
                return Err(self.err(
                    format!("{field}.endpoint"),
                    "is required unless the provider has `discovery: true` (its introspection_endpoint is used)",
                ));
            }
        };
        let client_id = raw
            .client_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| self.err(format!("{field}.client_id"), "is required"))?;
        let path = raw
            .client_secret_file
            .ok_or_else(|| self.err(format!("{field}.client_secret_file"), "is required"))?;
        let secret = self.secret_file(&format!("{field}.client_secret_file"), &path)?;
        if secret.is_empty() {
            return Err(self.err(format!("{field}.client_secret_file"), "holds an empty secret"));
        }
        let cache_ttl = raw.cache_ttl.unwrap_or(Duration::from_secs(60));
        if cache_ttl > Duration::from_secs(3600) {
            return Err(self.err(format!("{field}.cache_ttl"), "must be at most 1h"));
        }
        let negative_cache_ttl = raw.negative_cache_ttl.unwrap_or(Duration::from_secs(5));
        if negative_cache_ttl > Duration::from_secs(300) {
            return Err(self.err(format!("{field}.negative_cache_ttl"), "must be at most 5m"));
        }
        let timeout = raw.timeout.unwrap_or(Duration::from_millis(500));
        if timeout.is_zero() || timeout > Duration::from_secs(10) {
            return Err(self.err(format!("{field}.timeout"), "must be between 1ms and 10s"));
        }
        let refuse_token_types = match raw.refuse_token_types {
            None => ["refresh", "offline", "offlineaccess", "id"]
                .map(str::to_owned)
                .to_vec(),
            Some(names) => {
                let mut out: Vec<String> = Vec::with_capacity(names.len());
                for name in names {
                    let t = token_type(&name).unwrap_or_default();
                    if t.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.+:".contains(&b)) {
                        return Err(self.err(
                            format!("{field}.refuse_token_types"),
                            format!("`{name}` is not a token type (letters, digits, `_`, `-`, `.`, `+`, `:`)"),
                        ));
                    }
                    if ACCESS_TOKEN_TYPES.contains(&t.as_str()) {
                        return Err(self.err(
                            format!("{field}.refuse_token_types"),
                            format!("`{name}` is what access tokens are: every token would be refused"),
                        ));
                    }
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                out
            }
        };
        Ok(ProviderIntrospection {
            refuse_token_types,
            endpoint,
            client_id,
            client_secret: Secret(secret),
            cache_ttl,
            negative_cache_ttl,
            timeout,
        })
    }

    /// `introspection:` and whether `listen.introspection` fits it.
    pub(super) fn introspection(
        &self,
        raw: RawIntrospection,
        listening: bool,
        providers: &[Provider],
    ) -> Result<Introspection, ConfigError> {
        let enabled = raw.enabled.unwrap_or(false);
        if !enabled {
            if listening {
                return Err(self.err("listen.introspection", "is set but `introspection.enabled` is not true"));
            }
            if !raw.clients.is_empty() {
                return Err(self.err(
                    "introspection.clients",
                    "are set but `introspection.enabled` is not true",
                ));
            }
            return Ok(Introspection::default());
        }
        if raw.clients.is_empty() {
            return Err(self.err(
                "introspection.clients",
                "at least one client is required: nobody could ask otherwise",
            ));
        }
        let mut ids = HashSet::new();
        let mut clients = Vec::with_capacity(raw.clients.len());
        for (i, c) in raw.clients.into_iter().enumerate() {
            let field = format!("introspection.clients[{i}]");
            let client = self.introspection_client(&field, c, providers)?;
            if let IntrospectionClient::Secret { id, .. } = &client
                && !ids.insert(id.clone())
            {
                return Err(self.err(format!("{field}.id"), format!("`{id}` is used twice")));
            }
            clients.push(client);
        }
        Ok(Introspection { enabled, clients })
    }

    fn introspection_client(
        &self,
        field: &str,
        c: RawIntrospectionClient,
        providers: &[Provider],
    ) -> Result<IntrospectionClient, ConfigError> {
        match (c.id, c.secret_file, c.provider, c.role) {
            (Some(id), Some(file), None, None) => {
                if id.is_empty() || id.contains(':') || id.chars().any(char::is_control) {
                    return Err(self.err(
                        format!("{field}.id"),
                        "must be non-empty, without `:` or control characters (HTTP Basic splits at the first `:`)",
                    ));
                }
                let bytes = self.secret_file(&format!("{field}.secret_file"), &file)?;
                if bytes.len() < MIN_SECRET_BYTES {
                    return Err(self.err(
                        format!("{field}.secret_file"),
                        format!("holds a secret shorter than {MIN_SECRET_BYTES} bytes"),
                    ));
                }
                Ok(IntrospectionClient::Secret {
                    id,
                    secret: Secret(bytes),
                })
            }
            (None, None, Some(provider), Some(role)) => {
                if !providers.iter().any(|p| p.name == provider) {
                    return Err(self.err(format!("{field}.provider"), format!("no provider `{provider}`")));
                }
                if role.is_empty() {
                    return Err(self.err(format!("{field}.role"), "is empty"));
                }
                Ok(IntrospectionClient::Token { provider, role })
            }
            (Some(_), None, None, None) => Err(self.err(format!("{field}.secret_file"), "is required with `id`")),
            (None, None, Some(_), None) => Err(self.err(format!("{field}.role"), "is required with `provider`")),
            (None, None, None, Some(_)) => Err(self.err(format!("{field}.provider"), "is required with `role`")),
            _ => Err(self.err(
                field,
                "give either `id` with `secret_file` (HTTP Basic) or `provider` with `role` (a bearer token)",
            )),
        }
    }
}
