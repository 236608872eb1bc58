//! Opaque tokens (anything that is not a compact JWS), checked at the providers' OAuth 2.0
//! introspection endpoints (RFC 7662): one [`Introspector`] per provider with `introspection:`.
//!
//! Answers are kept by a keyed hash of the token ([`TokenHasher`]), never the token: an active one
//! for `cache_ttl` (never past its `exp`), an inactive one for `negative_cache_ttl`. Concurrent
//! checks of a token not yet known share one call (single flight), which runs in a task of its own
//! so that a check the proxy gives up on neither leaves it behind nor cancels it for the others; at
//! most [`MAX_IN_FLIGHT`] calls per provider are out at once. An endpoint that is down, slow or
//! answers something that is not RFC 7662 is a failure ([`Failure`]), never "the token is bad";
//! failures are not kept. What an answer says is only a set of claims: the gate checks them as it
//! checks a JWT's (time claims, audience, revocation, every route's requirements, per request).
//!
//! `jwtgate_introspections_total` counts both directions: the calls made here (`consumed`, each
//! [`Introspector`] with its own handles) and the answers jwtgate's own endpoint gives (`served`,
//! [`IntrospectionMetrics::served`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, watch};

use crate::cache::{TokenHash, TokenHasher};
use crate::config::introspection::{ProviderIntrospection, token_type};
use crate::keys::fetch;
use crate::metrics::{Families, Metrics, ProviderOutcome};
use crate::verify::ProviderKeys;

/// Longest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most calls out to one provider's endpoint at once; a check that would start one more gets
/// [`Failure::Busy`] (a flood of unknown tokens cannot pile up unbounded calls).
pub const MAX_IN_FLIGHT: usize = 256;

/// What a provider's endpoint said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `active: true`, with the answer's other members as claims.
    Active(Arc<Map<String, Value>>),
    /// `active: false`.
    Inactive,
}

/// Why a provider's endpoint gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No endpoint: discovery failed or names none.
    #[error("no introspection endpoint: {0}")]
    NoEndpoint(String),
    /// Not answered within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request failed (connection refused, reset…).
    #[error("request failed: {0}")]
    Request(String),
    /// Answered with a status other than 200.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// Answered something that is not an RFC 7662 object with a boolean `active`.
    #[error("not an RFC 7662 answer: {0}")]
    NotRfc7662(&'static str),
    /// [`MAX_IN_FLIGHT`] calls are already out.
    #[error("{MAX_IN_FLIGHT} introspections already in flight")]
    Busy,
    /// The call's task ended without an answer.
    #[error("the introspection task ended without an answer")]
    Lost,
}

/// An answer and until when it may be used.
#[derive(Clone)]
struct Kept {
    answer: Answer,
    until: Instant,
}

/// One call in flight: its outcome, once there, for every check of the same token meanwhile.
type Flight = watch::Sender<Option<Result<Answer, Failure>>>;

/// Asks one provider's introspection endpoint about opaque tokens.
pub struct Introspector {
    provider: Arc<ProviderKeys>,
    settings: ProviderIntrospection,
    client: reqwest::Client,
    /// The configured endpoint, or the one discovery named (found once).
    endpoint: OnceCell<String>,
    /// Kept answers; none with `cache.max_entries: 0`.
    kept: Option<quick_cache::sync::Cache<TokenHash, Kept>>,
    /// Keys kept answers and flights.
    hasher: TokenHasher,
    flights: Mutex<HashMap<TokenHash, Flight>>,
    counters: IntrospectionCounters,
}

impl Introspector {
    /// For `provider` (which has `introspection:`), keeping at most `capacity` answers (none
    /// with 0).
    pub fn new(
        provider: Arc<ProviderKeys>,
        settings: ProviderIntrospection,
        client: reqwest::Client,
        metrics: &Metrics,
        capacity: usize,
    ) -> Self {
        Self {
            counters: metrics
                .families::<IntrospectionMetrics>()
                .counters(&provider.config.name),
            endpoint: OnceCell::new_with(settings.endpoint.clone()),
            provider,
            settings,
            client,
            kept: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            hasher: TokenHasher::new(),
            flights: Mutex::default(),
        }
    }

    /// The provider it asks for.
    pub fn provider(&self) -> &Arc<ProviderKeys> {
        &self.provider
    }

    /// What the endpoint says about `token`: a kept answer, else one call shared with every
    /// concurrent check of the same token.
    pub async fn ask(self: &Arc<Self>, token: &str) -> Result<Answer, Failure> {
        let Some(h) = self.hasher.hash(token) else {
            // No key to keep answers or share calls by: ask alone.
            self.counters.cache_miss.inc();
            return self.call(token).await;
        };
        if let Some(kept) = self.kept.as_ref().and_then(|k| k.get(&h))
            && Instant::now() < kept.until
        {
            self.counters.cache_hit.inc();
            return Ok(kept.answer);
        }
        self.counters.cache_miss.inc();
        let mut outcome = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&h) {
                Some(flight) => flight.subscribe(),
                None if flights.len() >= MAX_IN_FLIGHT => {
                    self.counters.error.inc();
                    return Err(Failure::Busy);
                }
                None => {
                    let (flight, outcome) = watch::channel(None);
                    flights.insert(h, flight);
                    let (this, token) = (self.clone(), token.to_owned());
                    tokio::spawn(async move {
                        let result = this.call(&token).await;
                        this.land(h, result);
                    });
                    outcome
                }
            }
        };
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Err(Failure::Lost)),
            Err(_) => Err(Failure::Lost),
        }
    }

    /// A call's outcome: kept (an answer), the flight ended, every check waiting on it told.
    fn land(&self, h: TokenHash, result: Result<Answer, Failure>) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(answer) = &result {
            self.keep(h, answer);
        }
        if let Some(flight) = flights.remove(&h) {
            flight.send_replace(Some(result));
        }
    }

    fn keep(&self, h: TokenHash, answer: &Answer) {
        let ttl = match answer {
            Answer::Active(claims) => {
                let left = crate::verify::whole_seconds(claims, "exp")
                    .map(|exp| Duration::from_secs(exp.saturating_sub(crate::clock::unix())));
                left.map_or(self.settings.cache_ttl, |l| l.min(self.settings.cache_ttl))
            }
            Answer::Inactive => self.settings.negative_cache_ttl,
        };
        if let Some(kept) = &self.kept
            && !ttl.is_zero()
        {
            kept.insert(
                h,
                Kept {
                    answer: answer.clone(),
                    until: Instant::now() + ttl,
                },
            );
        }
    }

    /// One introspection request, bounded by `timeout` (discovery included); counted.
    async fn call(&self, token: &str) -> Result<Answer, Failure> {
        let timeout = self.settings.timeout;
        let outcome = match tokio::time::timeout(timeout, self.request(token)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Timeout(timeout)),
        };
        match &outcome {
            Ok(Answer::Active(_)) => {
                self.counters.active.inc();
            }
            Ok(Answer::Inactive) => {
                self.counters.inactive.inc();
            }
            Err(why) => {
                self.counters.error.inc();
                tracing::warn!(provider = %self.provider.config.name, "introspection failed: {why}");
            }
        }
        outcome
    }

    async fn request(&self, token: &str) -> Result<Answer, Failure> {
        let endpoint = self.endpoint.get_or_try_init(|| self.discover()).await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        // RFC 6749 §2.3.1: the id and the secret are form-encoded before Basic encoding.
        let encode = |b: &[u8]| form_urlencoded::byte_serialize(b).collect::<String>();
        let id = encode(self.settings.client_id.as_bytes());
        let secret = encode(self.settings.client_secret.expose());
        let mut resp = self
            .client
            .post(endpoint)
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| Failure::Request(crate::errors::chain(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(Failure::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::Request(crate::errors::chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Failure::NotRfc7662("longer than 64 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    }

    /// The discovery document's `introspection_endpoint` (its `issuer` must be the provider's).
    async fn discover(&self) -> Result<String, Failure> {
        fetch::discover(
            &self.client,
            &self.provider.config.issuer,
            "introspection_endpoint",
            self.settings.timeout,
        )
        .await
        .map_err(|e| Failure::NoEndpoint(e.to_string()))
    }
}

/// An RFC 7662 §2.2 answer: an object whose `active` is a boolean; for an active token its other
/// members are the claims.
pub fn parse(body: &[u8]) -> Result<Answer, Failure> {
    let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
        return Err(Failure::NotRfc7662("not a JSON object"));
    };
    match members.remove("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(Arc::new(members))),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(Failure::NotRfc7662("`active` is not a boolean")),
    }
}

/// The answer's token type, when `refuse` lists it: `token_use` (Ory Hydra), `typ` (Keycloak)
/// or `token_type` (RFC 7662), compared normalised ([`token_type`]: any case, separators and
/// RFC 8693's URN prefix aside, with or without `token`). A type member that is not a string,
/// or not ASCII, is refused too (as `(not a string)` or its text): no access token has one.
pub fn refused_type(refuse: &[String], claims: &Map<String, Value>) -> Option<String> {
    if refuse.is_empty() {
        return None;
    }
    for member in ["token_use", "typ", "token_type"] {
        match claims.get(member) {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => match token_type(name) {
                Some(t) if refuse.contains(&t) => return Some(t),
                Some(_) => {}
                None => return Some(name.chars().take(32).collect()),
            },
            Some(_) => return Some("(not a string)".to_owned()),
        }
    }
    None
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntrospectionLabels {
    direction: &'static str,
    provider: String,
    outcome: &'static str,
}

/// The introspection families: calls by direction, provider and outcome, and the kept answers'
/// lookups by provider.
#[derive(Debug, Default)]
pub struct IntrospectionMetrics {
    calls: Family<IntrospectionLabels, Counter>,
    kept: Family<ProviderOutcome, Counter>,
}

impl Families for IntrospectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_introspections",
            "Token introspections (RFC 7662), by direction (served: asked of jwtgate; consumed: asked by jwtgate of a provider), provider and outcome",
            m.calls.clone(),
        );
        registry.register(
            "jwtgate_introspection_cache_lookups",
            "Opaque-token checks answered from a kept introspection answer (hit) or not (miss), by provider",
            m.kept.clone(),
        );
        m
    }
}

impl IntrospectionMetrics {
    /// Counts an introspection answered by jwtgate (`direction="served"`): `outcome` is
    /// `active`, the refusal's label for an inactive token, or `unauthorized` for a caller that
    /// may not ask; `provider` is empty when no provider verified the token.
    pub fn served(&self, provider: &str, outcome: &'static str) {
        self.calls
            .get_or_create(&IntrospectionLabels {
                direction: "served",
                provider: provider.to_owned(),
                outcome,
            })
            .inc();
    }

    /// The consumed-introspection counters of `provider`: `outcome` `active`, `inactive` or
    /// `error`, and its answer-cache lookups.
    fn counters(&self, provider: &str) -> IntrospectionCounters {
        let call = |outcome| {
            self.calls
                .get_or_create(&IntrospectionLabels {
                    direction: "consumed",
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        let lookup = |outcome| {
            self.kept
                .get_or_create(&ProviderOutcome {
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        IntrospectionCounters {
            active: call("active"),
            inactive: call("inactive"),
            error: call("error"),
            cache_hit: lookup("hit"),
            cache_miss: lookup("miss"),
        }
    }
}

/// One provider's introspection counters (`direction="consumed"`) and answer-cache lookups.
#[derive(Debug)]
struct IntrospectionCounters {
    /// Calls answered `active: true`.
    active: Counter,
    /// Calls answered `active: false`.
    inactive: Counter,
    /// Calls that failed (down, slow, not RFC 7662).
    error: Counter,
    /// Checks answered from a kept answer.
    cache_hit: Counter,
    /// Checks that needed a call (or joined one in flight).
    cache_miss: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_objects_with_a_boolean_active() {
        assert_eq!(parse(br#"{"active":false,"sub":"x"}"#), Ok(Answer::Inactive));
        match parse(br#"{"active":true,"sub":"x","scope":"a"}"#) {
            Ok(Answer::Active(claims)) => {
                assert_eq!(claims.get("sub"), Some(&Value::from("x")));
                assert!(!claims.contains_key("active"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &b"[]"[..],
            b"{}",
            br#"{"active":"true"}"#,
            b"not json",
            br#"{"active":1}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(Failure::NotRfc7662(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refresh_tokens_are_told_by_hydras_keycloaks_or_rfc_7662s_member_in_any_case() {
        let refuse = vec!["refresh".to_owned(), "offline".to_owned()];
        let answer = |v: Value| v.as_object().unwrap().clone();
        for refresh in [
            serde_json::json!({"token_use": "refresh_token"}),
            serde_json::json!({"typ": "Refresh"}),
            serde_json::json!({"typ": "Offline"}),
            serde_json::json!({"token_type": "refresh_token"}),
            serde_json::json!({"token_type": "REFRESH_TOKEN", "typ": "Bearer"}),
            // Spellings other servers (and attackers) use.
            serde_json::json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
            serde_json::json!({"typ": "refresh-token"}),
            serde_json::json!({"typ": "refresh token"}),
            serde_json::json!({"typ": "RefreshToken"}),
            serde_json::json!({"typ": "Offline-Token"}),
            serde_json::json!({"typ": "\u{ff32}\u{ff25}\u{ff26}\u{ff32}\u{ff25}\u{ff33}\u{ff28}"}),
            serde_json::json!({"token_type": ["refresh_token"]}),
            serde_json::json!({"token_type": 7}),
        ] {
            assert!(refused_type(&refuse, &answer(refresh.clone())).is_some(), "{refresh}");
        }
        for access in [
            serde_json::json!({"token_use": "access_token"}),
            serde_json::json!({"typ": "Bearer"}),
            serde_json::json!({"token_type": "DPoP"}),
            serde_json::json!({"token_type": "urn:ietf:params:oauth:token-type:access_token"}),
            serde_json::json!({"token_type": null}),
            serde_json::json!({}),
        ] {
            assert_eq!(refused_type(&refuse, &answer(access.clone())), None, "{access}");
        }
        assert_eq!(refused_type(&[], &answer(serde_json::json!({"typ": "Refresh"}))), None);
    }
}
