//! `routes:` and `defaults:`, what a request must present, chosen by where it goes: their
//! schema, their validated form and their validator.

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, Provider, Source, Validator};

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

/// One route: the first whose `match` holds decides what a request needs.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name for logs, metrics and `jwtgate check`.
    pub name: String,
    /// Conditions on the request.
    pub matcher: Match,
    /// What the request must present.
    pub auth: Auth,
    /// Enforce, or only log and count would-be denials.
    pub mode: Mode,
}

/// Conditions of a route; all that are given must hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// `host`, exact or `*.suffix`.
    pub host: Option<HostMatch>,
    /// `path_prefix`, `path_string_prefix`, `path` or `path_regex`, against the normalised path.
    pub path: Option<PathMatch>,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// Envoy `context_extensions` that must be present with these values.
    pub context: Vec<(String, String)>,
    /// Compare paths ignoring ASCII case (for upstreams that do).
    pub case_insensitive: bool,
}

/// A host condition; hosts compare lower-case, without port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// This host only.
    Exact(String),
    /// Any host ending in this suffix (which starts with `.`): `*.example.com` → `.example.com`.
    Suffix(String),
}

/// A path condition on the normalised path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path is this, or lies below it: `/public` holds `/public` and `/public/…`, never
    /// `/public-admin` (a prefix ending in `/` holds what starts with it).
    Prefix(String),
    /// The path starts with these characters, segment or not (`/public` holds `/public-admin`):
    /// `path_string_prefix`, what `path_prefix` meant before segments counted.
    StringPrefix(String),
    /// The path is exactly this.
    Exact(String),
    /// The whole path matches this (anchored) expression.
    Regex(Regex),
}

/// What a route asks of the request.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No token needed and none verified; client-sent identity headers are still removed.
    Public,
    /// A token is verified if present (a bad one is refused); anonymous requests pass.
    Optional,
    /// A valid token that meets these requirements.
    Required(Requirements),
}

/// Requirements on a verified token.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Any of these providers; empty means any provider.
    pub providers: Vec<String>,
    /// A valid token from each of these providers (Envoy's `requires_all`), each found in its
    /// own provider's sources; the first one's claims meet the other requirements. Empty: one
    /// token, as `providers` says.
    pub all_providers: Vec<String>,
    /// All of these scopes, from `scope` (space-delimited) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// Roles from the provider's `roles_claim`.
    pub roles: Option<Roles>,
    /// Tests on claims.
    pub claims: Vec<ClaimRule>,
}

/// A role requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    /// Every one of these roles.
    AllOf(Vec<String>),
    /// At least one of these roles.
    AnyOf(Vec<String>),
}

/// A test on the value at a claim path.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    /// Dot path, e.g. `tenant` or `org.id`.
    pub path: String,
    /// The test; an array claim passes if any element passes.
    pub test: ClaimTest,
}

/// How a claim value is tested.
#[derive(Debug, Clone)]
pub enum ClaimTest {
    /// Equal to this value (strings compare exactly; numbers and booleans by value).
    Equals(Value),
    /// Equal to one of these values.
    OneOf(Vec<Value>),
    /// A string matching this (anchored) expression.
    Regex(Regex),
}

/// Enforce a route's decision, or only report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deny what the route denies.
    Enforce,
    /// Decide fully, log and count a would-be denial, allow.
    DryRun,
}

/// What a request that matches no route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// 403 (the default): deny what nobody described.
    Deny,
    /// Treated like an `auth: public` route.
    Public,
}

/// Whether a method a route or rule lists (upper-case) holds for a request's `method`: the same
/// method, in any case; and `GET` holds `HEAD` too, which applications answer with their GET
/// handler (a `methods: [GET]` route that did not hold HEAD let `HEAD /admin` reach a weaker
/// route, then the GET handler).
pub fn method_holds(listed: &str, method: &str) -> bool {
    listed.eq_ignore_ascii_case(method) || (listed == "GET" && method.eq_ignore_ascii_case("HEAD"))
}

/// The route used when the config has no `routes:`: every request needs a valid token from any
/// provider.
pub fn default_routes() -> Vec<Route> {
    vec![Route {
        name: "default".into(),
        matcher: Match::default(),
        auth: Auth::Required(Requirements::default()),
        mode: Mode::Enforce,
    }]
}

/// Whether one token could be found through both sources: the same cookie or query
/// parameter, or the same header unless both require different scheme prefixes.
fn overlap(a: &Source, b: &Source) -> bool {
    match (a, b) {
        (Source::Header { name: n, prefix: p }, Source::Header { name: m, prefix: q }) => {
            n == m && (p.is_empty() || q.is_empty() || p.eq_ignore_ascii_case(q))
        }
        (Source::Cookie(n), Source::Cookie(m)) | (Source::Query(n), Source::Query(m)) => n == m,
        _ => false,
    }
}

/// Whether `path` is a dot-separated claim path like `sub` or `realm_access.roles`.
pub fn is_claim_path(path: &str) -> bool {
    !path.is_empty() && !path.split('.').any(str::is_empty)
}

impl Validator<'_> {
    pub(super) fn routes(&self, raw: Option<Vec<RawRoute>>, providers: &[Provider]) -> Result<Vec<Route>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(default_routes());
        };
        let mut names = HashSet::new();
        let mut routes = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            let name = r.name.unwrap_or_else(|| format!("route{i}"));
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(self.err(format!("{field}.name"), format!("`{name}` is empty or used twice")));
            }
            let matcher = self.matcher(&format!("{field}.match"), r.matcher)?;
            let auth = match (r.auth, r.require) {
                (Some(RawAuth::Public), None) => Auth::Public,
                (Some(RawAuth::Optional), None) => Auth::Optional,
                (Some(RawAuth::Public | RawAuth::Optional), Some(_)) => {
                    return Err(self.err(
                        format!("{field}.require"),
                        "only for routes that require a token (`auth: required`, the default)",
                    ));
                }
                (Some(RawAuth::Required) | None, require) => Auth::Required(self.requirements(
                    &format!("{field}.require"),
                    require.unwrap_or_default(),
                    providers,
                )?),
            };
            let mode = match r.mode {
                None | Some(RawMode::Enforce) => Mode::Enforce,
                Some(RawMode::DryRun) => Mode::DryRun,
            };
            routes.push(Route {
                name,
                matcher,
                auth,
                mode,
            });
        }
        Ok(routes)
    }

    fn matcher(&self, field: &str, m: RawMatch) -> Result<Match, ConfigError> {
        let host = match m.host {
            None => None,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                let valid =
                    |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                match h.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') && valid(&suffix[1..]) => {
                        Some(HostMatch::Suffix(suffix.into()))
                    }
                    None if valid(&h) => Some(HostMatch::Exact(h)),
                    _ => {
                        return Err(self.err(format!("{field}.host"), "use an exact host or `*.suffix`, without port"));
                    }
                }
            }
        };
        let ci = m.case_insensitive.unwrap_or(false);
        let paths = [
            m.path_prefix.is_some(),
            m.path_string_prefix.is_some(),
            m.path.is_some(),
            m.path_regex.is_some(),
        ];
        if paths.iter().filter(|p| **p).count() > 1 {
            return Err(self.err(
                field,
                "use at most one of `path_prefix`, `path_string_prefix`, `path` and `path_regex`",
            ));
        }
        let literal = |name: &str, p: String| -> Result<String, ConfigError> {
            if !p.starts_with('/') {
                return Err(self.err(format!("{field}.{name}"), "must start with `/`"));
            }
            let normal = crate::path::normalize(&p)
                .map_err(|e| self.err(format!("{field}.{name}"), format!("not a usable path: {e}")))?;
            if normal != p {
                return Err(self.err(
                    format!("{field}.{name}"),
                    format!("write it in normalised form (`{normal}`): requests are matched after normalisation"),
                ));
            }
            Ok(if ci { p.to_ascii_lowercase() } else { p })
        };
        let path = if let Some(p) = m.path_prefix {
            Some(PathMatch::Prefix(literal("path_prefix", p)?))
        } else if let Some(p) = m.path_string_prefix {
            Some(PathMatch::StringPrefix(literal("path_string_prefix", p)?))
        } else if let Some(p) = m.path {
            Some(PathMatch::Exact(literal("path", p)?))
        } else if let Some(r) = m.path_regex {
            let anchored = format!("^(?:{r})$");
            let re = regex::RegexBuilder::new(&anchored)
                .case_insensitive(ci)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| self.err(format!("{field}.path_regex"), format!("invalid expression: {e}")))?;
            Some(PathMatch::Regex(re))
        } else {
            None
        };
        let mut methods = Vec::new();
        for m in m.methods.unwrap_or_default() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(self.err(format!("{field}.methods"), format!("`{m}` is not an HTTP method")));
            }
            methods.push(m.to_ascii_uppercase());
        }
        let context = m.context.unwrap_or_default().into_iter().collect();
        Ok(Match {
            host,
            path,
            methods,
            context,
            case_insensitive: ci,
        })
    }

    fn requirements(&self, field: &str, r: RawRequire, providers: &[Provider]) -> Result<Requirements, ConfigError> {
        let (wanted, all_providers) = self.required_providers(field, r.providers, providers)?;
        let non_empty = |name: &str, v: Vec<String>| -> Result<Vec<String>, ConfigError> {
            if v.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(self.err(format!("{field}.{name}"), "entries must be non-empty without spaces"));
            }
            Ok(v)
        };
        let scopes = non_empty("scopes", r.scopes.unwrap_or_default())?;
        let roles = match r.roles {
            None => None,
            Some(RawRoles::AllOf(v)) => Some(Roles::AllOf(non_empty("roles", v)?)),
            Some(RawRoles::Rule(rule)) => match (rule.all_of, rule.any_of) {
                (Some(v), None) => Some(Roles::AllOf(non_empty("roles.all_of", v)?)),
                (None, Some(v)) if !v.is_empty() => Some(Roles::AnyOf(non_empty("roles.any_of", v)?)),
                _ => {
                    return Err(self.err(
                        format!("{field}.roles"),
                        "give a list, or exactly one of `all_of`, `any_of`",
                    ));
                }
            },
        };
        let mut claims = Vec::new();
        for (path, test) in r.claims.unwrap_or_default() {
            let f = format!("{field}.claims.{path}");
            if !is_claim_path(&path) {
                return Err(self.err(f, "a claim path is dot-separated names, like `tenant` or `org.id`"));
            }
            claims.push(ClaimRule {
                path,
                test: self.claim_test(&f, test)?,
            });
        }
        Ok(Requirements {
            providers: wanted,
            all_providers,
            scopes,
            roles,
            claims,
        })
    }

    /// `require.providers`: (any of, all of), every name a configured provider; with `all_of`,
    /// no two of them may look for their tokens in the same place.
    fn required_providers(
        &self,
        field: &str,
        raw: Option<RawProviders>,
        providers: &[Provider],
    ) -> Result<(Vec<String>, Vec<String>), ConfigError> {
        let (any_of, all_of, f) = match raw {
            None => (Vec::new(), Vec::new(), format!("{field}.providers")),
            Some(RawProviders::AnyOf(v)) => (v, Vec::new(), format!("{field}.providers")),
            Some(RawProviders::Rule(rule)) => match (rule.any_of, rule.all_of) {
                (Some(v), None) => (v, Vec::new(), format!("{field}.providers.any_of")),
                (None, Some(v)) if !v.is_empty() => (Vec::new(), v, format!("{field}.providers.all_of")),
                _ => {
                    return Err(self.err(
                        format!("{field}.providers"),
                        "give a list, or exactly one of `any_of`, `all_of` (not empty)",
                    ));
                }
            },
        };
        let list = providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
        let mut named: Vec<&Provider> = Vec::new();
        for name in any_of.iter().chain(&all_of) {
            let Some(p) = providers.iter().find(|p| &p.name == name) else {
                return Err(self.err(f, format!("no provider `{name}` (have: {list})")));
            };
            if named.iter().any(|n| n.name == *name) {
                return Err(self.err(f, format!("`{name}` is named twice")));
            }
            named.push(p);
        }
        if !all_of.is_empty() {
            for (i, a) in named.iter().enumerate() {
                for b in &named[..i] {
                    if let Some(s) = a.sources.iter().find(|s| b.sources.iter().any(|t| overlap(s, t))) {
                        return Err(self.err(
                            f,
                            format!(
                                "`{}` and `{}` both look for their token in {}: with all_of each needs a source of its own (`sources:`)",
                                b.name,
                                a.name,
                                s.describe()
                            ),
                        ));
                    }
                }
            }
        }
        Ok((any_of, all_of))
    }

    fn claim_test(&self, field: &str, t: RawClaimTest) -> Result<ClaimTest, ConfigError> {
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        match (t.equals, t.one_of, t.regex) {
            (Some(v), None, None) if scalar(&v) => Ok(ClaimTest::Equals(v)),
            (None, Some(vs), None) if !vs.is_empty() && vs.iter().all(scalar) => Ok(ClaimTest::OneOf(vs)),
            (None, None, Some(r)) => regex::RegexBuilder::new(&format!("^(?:{r})$"))
                .size_limit(1 << 20)
                .build()
                .map(ClaimTest::Regex)
                .map_err(|e| self.err(format!("{field}.regex"), format!("invalid expression: {e}"))),
            _ => Err(self.err(
                field,
                "give exactly one of `equals: VALUE`, `one_of: [VALUES]`, `regex: EXPR` (values are strings, numbers or booleans)",
            )),
        }
    }

    pub(super) fn unmatched(&self, d: &RawDefaults) -> Unmatched {
        match d.unmatched {
            None | Some(RawUnmatched::Deny) => Unmatched::Deny,
            Some(RawUnmatched::Public) => Unmatched::Public,
        }
    }
}

#[cfg(test)]
mod tests;
