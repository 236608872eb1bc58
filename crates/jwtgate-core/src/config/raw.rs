//! The YAML schema exactly as users write it. Every struct refuses unknown fields; nothing here is
//! validated yet — [`super::validate`] turns these into the types the rest of jwtgate uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::admin::RawAdmin;
use super::cache::RawCache;
use super::duration::serde_text;
use super::key_cache::RawKeyCache;
use super::listen::RawListen;
use super::providers::RawProvider;
use super::redis::RawRedis;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Default: grpc `127.0.0.1:9001`, http `127.0.0.1:9002`.
    #[serde(default)]
    pub listen: RawListen,
    /// At least one.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Default: `jwtgate`.
    pub realm: Option<String>,
    /// Default: 8192. Tokens longer than this are refused before any decoding.
    pub max_token_bytes: Option<usize>,
    /// Default: 10s. How long in-flight checks may take to finish after SIGTERM.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub shutdown_grace: Option<Duration>,
    /// Default: 5s. How long jwtgate keeps serving after SIGTERM while reporting not ready.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub shutdown_drain: Option<Duration>,
    /// `routes:`, in order.
    pub routes: Option<Vec<RawRoute>>,
    /// `defaults:`.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `http_auth:`.
    #[serde(default)]
    pub http_auth: super::http_auth::RawHttpAuth,
    /// `revocation:`.
    #[serde(default)]
    pub revocation: RawRevocation,
    /// `limits:` (what a connection may hold of a listener, and for how long).
    #[serde(default)]
    pub limits: super::limits::RawLimits,
    /// `admin:` (who may call the admin API).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `cache:` (the verified-token cache).
    #[serde(default)]
    pub cache: RawCache,
    /// `log:`.
    #[serde(default)]
    pub log: RawLog,
    /// `telemetry:`.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `rate_limits:`.
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    /// `redis:` (the connection revocations and rate limits share).
    pub redis: Option<RawRedis>,
    /// `key_cache:` (fetched key sets kept on disk).
    #[serde(default)]
    pub key_cache: RawKeyCache,
    /// `introspection:` (the RFC 7662 endpoint jwtgate serves).
    #[serde(default)]
    pub introspection: RawIntrospection,
}

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

/// `rate_limits:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// `local` (default) | `redis`.
    pub store: Option<String>,
    /// `allow` (default) | `deny`: when the shared store cannot answer in time.
    pub on_store_error: Option<String>,
    /// How long a check waits for the shared store (default 20ms).
    #[serde(default, deserialize_with = "serde_text::option")]
    pub store_timeout: Option<Duration>,
    /// Whether allowed requests get `RateLimit`/`RateLimit-Policy` (default false).
    pub headers_on_allow: Option<bool>,
    /// The rules, every matching one charged.
    #[serde(default)]
    pub rules: Vec<RawRateRule>,
}

/// One rate-limit rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateRule {
    /// `[a-z0-9_-]+`, unique.
    pub name: String,
    /// Counter key parts; empty: one global counter.
    #[serde(default)]
    pub by: Vec<String>,
    /// Requests per `per`.
    pub limit: u64,
    /// The window.
    #[serde(deserialize_with = "serde_text::required")]
    pub per: Duration,
    /// Requests allowed at once (default `limit`).
    pub burst: Option<u64>,
    /// Cells one request takes (default 1).
    pub cost: Option<u64>,
    /// Which requests the rule counts (default every request).
    #[serde(rename = "match", default)]
    pub matches: RawRateMatch,
}

/// A rule's `match:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateMatch {
    /// Route names.
    #[serde(default)]
    pub routes: Vec<String>,
    /// HTTP methods.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// `telemetry:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `telemetry.tracing:`.
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `telemetry.tracing:`. Each field left out falls back to its OpenTelemetry environment
/// variable, then to the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// OTLP collector URL; unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `grpc` | `http/protobuf`.
    pub protocol: Option<String>,
    /// Share of root checks traced, 0.0 to 1.0.
    pub sample_ratio: Option<f64>,
    /// `service.name` of the resource.
    pub service_name: Option<String>,
    /// Whether spans carry the subject as `enduser.id`.
    pub record_subject: Option<bool>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Most denial lines logged per second; 0 logs none. Default 1000.
    pub denials_per_second: Option<u32>,
}

/// `revocation:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// `embedded` (default) or `redis`.
    pub store: Option<RawStoreKind>,
    /// Embedded: the directory of the database file.
    pub path: Option<PathBuf>,
    /// Redis: `redis://host:port/db`.
    pub url: Option<String>,
    /// Redis: prefix of every key jwtgate writes.
    pub key_prefix: Option<String>,
    /// Redis: the pub/sub channel.
    pub channel: Option<String>,
    /// How long a subject cut-off is kept when the provider sets no `max_lifetime`.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub subject_retention: Option<Duration>,
    /// How often expired revocations are purged.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub purge_interval: Option<Duration>,
}

/// Which revocation store.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStoreKind {
    /// redb on local disk.
    Embedded,
    /// Redis, shared by replicas.
    Redis,
}

/// `defaults:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `unmatched: deny | public`.
    pub unmatched: Option<RawUnmatched>,
}

/// What a request that matches no route gets.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawUnmatched {
    /// Deny with 403.
    Deny,
    /// Treat as public.
    Public,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Route name.
    pub name: Option<String>,
    /// `match:` conditions.
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// `auth: public | optional | required`.
    pub auth: Option<RawAuth>,
    /// `require:` requirements.
    pub require: Option<RawRequire>,
    /// `mode: enforce | dry_run`.
    pub mode: Option<RawMode>,
}

/// `match:` of a route; every given condition must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Exact host or `*.suffix`.
    pub host: Option<String>,
    /// Path prefix, by whole segments.
    pub path_prefix: Option<String>,
    /// Path prefix, by characters.
    pub path_string_prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Regular expression for the whole path.
    pub path_regex: Option<String>,
    /// HTTP methods.
    pub methods: Option<Vec<String>>,
    /// Envoy context extensions.
    pub context: Option<BTreeMap<String, String>>,
    /// Match paths ignoring ASCII case.
    pub case_insensitive: Option<bool>,
}

/// `auth:` of a route.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAuth {
    /// Treat as public.
    Public,
    /// Verify a token if present.
    Optional,
    /// A valid token is required.
    Required,
}

/// `mode:` of a route.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    /// Enforce decisions.
    Enforce,
    /// Log and count would-be denials; allow.
    DryRun,
}

/// `require:` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    /// Any of these providers, or `{ any_of | all_of }`.
    pub providers: Option<RawProviders>,
    /// All of these scopes.
    pub scopes: Option<Vec<String>>,
    /// Roles required.
    pub roles: Option<RawRoles>,
    /// Claim tests by dot path.
    pub claims: Option<BTreeMap<String, RawClaimTest>>,
}

/// `providers: [a, b]` (any of them) or `providers: { any_of: [a, b] }` / `{ all_of: [a, b] }`
/// (a token of each, every one from its own provider's sources).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawProviders {
    /// A list: any of them.
    AnyOf(Vec<String>),
    /// `{ any_of | all_of }`.
    Rule(RawProviderRule),
}

/// The map form of `providers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderRule {
    /// A token from any one of these providers.
    pub any_of: Option<Vec<String>>,
    /// A token from each of these providers.
    pub all_of: Option<Vec<String>>,
}

/// `roles: [a, b]` (all of them) or `roles: { any_of: [a, b] }` / `{ all_of: [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRoles {
    /// A list: all of them.
    AllOf(Vec<String>),
    /// `{ all_of | any_of }`.
    Rule(RawRoleRule),
}

/// The map form of `roles:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleRule {
    /// All of these roles.
    pub all_of: Option<Vec<String>>,
    /// Any of these roles.
    pub any_of: Option<Vec<String>>,
}

/// A test on one claim: exactly one of `equals`, `one_of`, `regex`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimTest {
    /// Equal to this value.
    pub equals: Option<serde_json::Value>,
    /// Equal to one of these values.
    pub one_of: Option<Vec<serde_json::Value>>,
    /// Matches this expression.
    pub regex: Option<String>,
}

/// `providers[].dpop`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// `off`, `optional` or `required`; default `off`.
    pub mode: Option<String>,
    /// Default: 60s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub proof_max_age: Option<Duration>,
    /// Default: ES256, ES384, EdDSA, RS256, PS256.
    pub algorithms: Option<Vec<String>>,
    /// `local` or `redis`; default `local`.
    pub replay: Option<String>,
    /// Default: 100ms.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub replay_timeout: Option<Duration>,
}

/// `providers[].mtls_binding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtlsBinding {
    /// `off` or `required`; default `off`.
    pub mode: Option<String>,
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
