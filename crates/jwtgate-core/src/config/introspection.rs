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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, parse};
    use crate::config::{Config, KeySource};

    /// MINIMAL with `listen` and `introspection` blocks, secrets in a temp dir.
    fn introspection_config(listen: &str, introspection: &str, secret: &[u8]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.secret"), secret).unwrap();
        let text = format!("{listen}{MINIMAL}{introspection}");
        Config::parse(&text, "test.yaml", dir.path())
    }

    #[test]
    fn introspection_is_off_by_default_and_reads_its_clients() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.introspection.enabled);
        assert_eq!(c.listen.introspection, None);
        let c = introspection_config(
            "listen: { introspection: \"127.0.0.1:9004\" }\n",
            "introspection:\n  enabled: true\n  clients:\n    - { id: billing, secret_file: client.secret }\n    - { provider: corp, role: introspect }\n",
            b"0123456789abcdef\n",
        )
        .unwrap();
        assert_eq!(c.listen.introspection.map(|a| a.port()), Some(9004));
        assert_eq!(c.introspection.clients.len(), 2);
        match &c.introspection.clients[0] {
            IntrospectionClient::Secret { id, secret } => {
                assert_eq!((id.as_str(), secret.expose()), ("billing", &b"0123456789abcdef"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(c.introspection.clients[1].requirement().is_some());
    }

    #[test]
    fn bad_introspection_settings_are_refused_with_their_field() {
        let on = "introspection:\n  enabled: true\n  clients:\n";
        let cases: [(&str, String, &[u8], &str); 8] = [
            (
                "listen: { introspection: \"127.0.0.1:9004\" }\n",
                String::new(),
                b"0123456789abcdef",
                "listen.introspection",
            ),
            (
                "",
                "introspection: { enabled: true }\n".into(),
                b"0123456789abcdef",
                "introspection.clients",
            ),
            (
                "",
                format!("{on}    - {{ id: \"a:b\", secret_file: client.secret }}\n"),
                b"0123456789abcdef",
                "introspection.clients[0].id",
            ),
            (
                "",
                format!("{on}    - {{ id: a, secret_file: client.secret }}\n"),
                b"short",
                "introspection.clients[0].secret_file",
            ),
            (
                "",
                format!("{on}    - {{ id: a, secret_file: missing.secret }}\n"),
                b"0123456789abcdef",
                "introspection.clients[0].secret_file",
            ),
            (
                "",
                format!("{on}    - {{ provider: nobody, role: r }}\n"),
                b"0123456789abcdef",
                "introspection.clients[0].provider",
            ),
            (
                "",
                format!("{on}    - {{ id: a, provider: corp }}\n"),
                b"0123456789abcdef",
                "introspection.clients[0]",
            ),
            (
                "",
                format!(
                    "{on}    - {{ id: a, secret_file: client.secret }}\n    - {{ id: a, secret_file: client.secret }}\n"
                ),
                b"0123456789abcdef",
                "introspection.clients[1].id",
            ),
        ];
        for (listen, introspection, secret, field) in cases {
            let e = introspection_config(listen, &introspection, secret).expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let e = introspection_config(
            "listen: { introspection: \"127.0.0.1:9002\" }\n",
            &format!("{on}    - {{ provider: corp, role: r }}\n"),
            b"",
        )
        .unwrap_err();
        assert_eq!(e.field, "listen.introspection", "{e}");
        assert!(e.reason.contains("listen.http"), "{e}");
    }

    /// A provider with `introspection:` (`fields` inside it) and `extra` provider lines.
    fn introspecting(extra: &str, fields: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("idp.secret"), b"s3cret\n").unwrap();
        let text = format!(
            "providers:\n  - name: legacy\n    issuer: \"https://idp.example/\"\n{extra}    introspection:\n{fields}"
        );
        Config::parse(&text, "test.yaml", dir.path())
    }

    #[test]
    fn an_introspecting_provider_needs_no_key_source_and_gets_documented_defaults() {
        let c = introspecting(
            "",
            "      endpoint: https://idp.example/introspect\n      client_id: jwtgate\n      client_secret_file: idp.secret\n",
        )
        .unwrap();
        let p = &c.providers[0];
        assert_eq!(p.key_source, KeySource::None);
        let i = p.introspection.as_ref().unwrap();
        assert_eq!(i.endpoint.as_deref(), Some("https://idp.example/introspect"));
        assert_eq!(i.client_secret.expose(), b"s3cret");
        assert_eq!(
            (i.cache_ttl, i.negative_cache_ttl, i.timeout),
            (
                Duration::from_secs(60),
                Duration::from_secs(5),
                Duration::from_millis(500)
            )
        );
        // With discovery, the endpoint may come from the discovery document.
        let c = introspecting(
            "    discovery: true\n",
            "      client_id: jwtgate\n      client_secret_file: idp.secret\n",
        )
        .unwrap();
        assert_eq!(c.providers[0].key_source, KeySource::Discovery);
        assert_eq!(c.providers[0].introspection.as_ref().unwrap().endpoint, None);
    }

    #[test]
    fn bad_provider_introspection_settings_are_refused_with_their_field() {
        let base = "      endpoint: https://idp.example/introspect\n      client_id: jwtgate\n      client_secret_file: idp.secret\n";
        for (fields, field) in [
            (
                "      client_id: jwtgate\n      client_secret_file: idp.secret\n",
                "providers[0].introspection.endpoint",
            ),
            (
                "      endpoint: ftp://idp\n      client_id: j\n      client_secret_file: idp.secret\n",
                "providers[0].introspection.endpoint",
            ),
            (
                "      endpoint: https://idp/i\n      client_secret_file: idp.secret\n",
                "providers[0].introspection.client_id",
            ),
            (
                "      endpoint: https://idp/i\n      client_id: j\n",
                "providers[0].introspection.client_secret_file",
            ),
            (
                "      endpoint: https://idp/i\n      client_id: j\n      client_secret_file: nope\n",
                "providers[0].introspection.client_secret_file",
            ),
            (
                &format!("{base}      timeout: 0s\n"),
                "providers[0].introspection.timeout",
            ),
            (
                &format!("{base}      cache_ttl: 2h\n"),
                "providers[0].introspection.cache_ttl",
            ),
            (
                &format!("{base}      negative_cache_ttl: 10m\n"),
                "providers[0].introspection.negative_cache_ttl",
            ),
            (&format!("{base}      secret: x\n"), "providers[0].introspection"),
        ] {
            let e = introspecting("", fields).expect_err(field);
            assert!(e.field.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn refuse_token_types_default_to_refresh_tokens_and_never_list_access_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "secret").unwrap();
        let text = |extra: &str| {
            format!(
                "providers:\n  - name: o\n    issuer: https://o/\n    introspection: {{ endpoint: https://o/i, client_id: j, client_secret_file: s{extra} }}\n"
            )
        };
        let types = |extra: &str| {
            Config::parse(&text(extra), "test.yaml", dir.path()).map(|c| {
                c.providers[0]
                    .introspection
                    .as_ref()
                    .unwrap()
                    .refuse_token_types
                    .clone()
            })
        };
        assert_eq!(types("").unwrap(), ["refresh", "offline", "offlineaccess", "id"]);
        assert_eq!(types(", refuse_token_types: []").unwrap(), Vec::<String>::new());
        assert_eq!(
            types(", refuse_token_types: [REFRESH_TOKEN, Refresh, refresh-token, ID]").unwrap(),
            ["refresh", "id"]
        );
        for (bad, why) in [
            ("access_token", "every token would be refused"),
            ("Bearer", "every token would be refused"),
            ("DPoP", "every token would be refused"),
            ("N_A", "every token would be refused"),
            ("\"\"", "is not a token type"),
            ("\"a b\"", "is not a token type"),
        ] {
            let e = types(&format!(", refuse_token_types: [{bad}]")).unwrap_err();
            assert_eq!(e.field, "providers[0].introspection.refuse_token_types", "{bad}");
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }
}
