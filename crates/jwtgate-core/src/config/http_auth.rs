//! `http_auth:`, the HTTP door's trust settings: its schema, its validated form and its
//! validator, in one place.
//!
//! The HTTP listener serves one or more *doors*, each a path a proxy asks at, and each reading
//! the request being checked from exactly one family of headers that its configuration names —
//! never from whichever family arrives (that let a client choose the request checked behind
//! Caddy and Traefik, which pass every client header and only set their own family). For each
//! door the config also names, explicitly, the header a proxy overwrites with the client's
//! address and the one it overwrites with the client's certificate.
//!
//! - `/auth` reads `http_auth.original_request` (default `nginx`; `envoy` makes `/auth` a prefix
//!   Envoy's HTTP mode asks under);
//! - `http_auth.envoy_prefix` is a door of the `envoy` family (Envoy's HTTP mode);
//! - `http_auth.doors` adds doors when several proxies share one jwtgate.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, Provider, Validator};

/// `http_auth:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpAuth {
    /// The family `/auth` reads (`envoy`: `/auth` is a prefix). Default: `nginx`.
    pub original_request: Option<Family>,
    /// Path prefix for Envoy HTTP mode. Default: none (off).
    pub envoy_prefix: Option<String>,
    /// Addresses or CIDRs whose headers are believed. Default: loopback.
    pub trusted_proxies: Option<Vec<String>>,
    /// The header a trusted proxy overwrites with the client's address. Default: per family.
    pub client_ip_header: Option<String>,
    /// The header a trusted proxy overwrites with the client certificate. No default.
    pub client_cert_header: Option<String>,
    /// More doors, each its own path and proxy. Default: none.
    pub doors: Option<Vec<RawDoor>>,
}

/// One entry of `http_auth.doors`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDoor {
    /// The path (`envoy`: the prefix). Required.
    pub path: String,
    /// The family this door reads. Required.
    pub original_request: Family,
    /// Default: `http_auth.trusted_proxies`.
    pub trusted_proxies: Option<Vec<String>>,
    /// Default: per family.
    pub client_ip_header: Option<String>,
    /// Default: `none`.
    pub client_cert_header: Option<String>,
    /// Context a route can match (`match: { context }`), as Envoy's `context_extensions`.
    /// Default: none.
    pub context: Option<std::collections::BTreeMap<String, String>>,
}

/// Which headers describe the request being checked, by the proxy that sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI`, `X-Original-Host` (set by
    /// the operator's `proxy_set_header`, which replaces any client copy).
    Nginx,
    /// ingress-nginx `auth-url`: `X-Original-URL` (`$scheme://$http_host$request_uri`) and
    /// `X-Original-Method`, set by the controller's template.
    IngressNginx,
    /// Traefik `forwardAuth`, Caddy `forward_auth`: `X-Forwarded-Method`, `X-Forwarded-Uri`,
    /// `X-Forwarded-Host`, `X-Forwarded-Proto`.
    Forwarded,
    /// Envoy's HTTP mode (Istio `envoyExtAuthzHttp`, Envoy Gateway): the check request's own
    /// method, path below the prefix, and `Host`.
    Envoy,
}

/// Every header that names the original method, path or host in some family, in the order a
/// refusal names them when several are sent.
pub const ORIGINAL_REQUEST_HEADERS: [&str; 6] = [
    "x-original-method",
    "x-original-uri",
    "x-original-host",
    "x-original-url",
    "x-forwarded-method",
    "x-forwarded-uri",
];

impl Family {
    /// Whether this family reads `header`, one of [`ORIGINAL_REQUEST_HEADERS`].
    pub fn owns(self, header: &str) -> bool {
        match self {
            Self::Nginx => matches!(header, "x-original-method" | "x-original-uri" | "x-original-host"),
            // `X-Original-URI` too: the controller sets it (`$request_uri`) with `auth-method`,
            // and passes a client's copy without; it is never read, the URL is.
            Self::IngressNginx => matches!(header, "x-original-method" | "x-original-url" | "x-original-uri"),
            Self::Forwarded => matches!(header, "x-forwarded-method" | "x-forwarded-uri"),
            Self::Envoy => false,
        }
    }

    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::IngressNginx => "ingress_nginx",
            Self::Forwarded => "forwarded",
            Self::Envoy => "envoy",
        }
    }

    /// The headers it reads, for logs and `jwtgate check`.
    pub fn reads(self) -> &'static str {
        match self {
            Self::Nginx => "X-Original-Method, X-Original-URI, X-Original-Host",
            Self::IngressNginx => "X-Original-Method, X-Original-URL",
            Self::Forwarded => "X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host",
            Self::Envoy => "the check request's method, path below the prefix, Host",
        }
    }

    /// The client-address header its proxy sets, when the config names none.
    fn client_ip_header(self) -> ClientIpHeader {
        match self {
            // nginx's `proxy_set_header X-Real-IP $remote_addr` (examples/nginx.conf); the
            // controller's template sets the same.
            Self::Nginx | Self::IngressNginx => ClientIpHeader::Single("x-real-ip".into()),
            // Traefik and Caddy append (or set) X-Forwarded-For; Envoy appends to it.
            Self::Forwarded | Self::Envoy => ClientIpHeader::ForwardedFor,
        }
    }
}

/// Where a door reads the client's address (from trusted proxies only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `x-forwarded-for`: the nearest address that is not a trusted proxy, walking from the
    /// right (where each trusted proxy appends).
    ForwardedFor,
    /// A header (lower-case) holding one address, sent once (`x-real-ip`, `true-client-ip`…).
    Single(String),
    /// `none`: the peer's own address.
    Peer,
}

/// Where a door reads the client's certificate (from trusted proxies only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertHeader {
    /// Envoy's `x-forwarded-client-cert` (its first element's `Hash=`, else `Cert=`).
    Xfcc,
    /// A header (lower-case) holding the certificate as PEM (URL-encoded or not) or base64 DER.
    Encoded(String),
}

/// One door: a path on the HTTP listener, the header family it reads, and whom it believes.
#[derive(Debug, Clone)]
pub struct Door {
    /// The path (`/auth`); for the `envoy` family, the prefix the original path follows.
    pub path: String,
    /// Which headers describe the request being checked.
    pub family: Family,
    /// Peers whose headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where the client's address is read.
    pub client_ip: ClientIpHeader,
    /// Where the client certificate is read; `None`: this door has none.
    pub client_cert: Option<ClientCertHeader>,
    /// What every request through this door carries as context, for routes to match: which
    /// door (so which proxy, which Ingress) asked, from the config rather than from anything a
    /// client sent.
    pub context: Vec<(String, String)>,
}

impl ClientIpHeader {
    /// As the config writes it.
    pub fn name(&self) -> &str {
        match self {
            Self::ForwardedFor => "x-forwarded-for",
            Self::Single(name) => name,
            Self::Peer => NONE,
        }
    }
}

impl ClientCertHeader {
    /// As the config writes it.
    pub fn name(&self) -> &str {
        match self {
            Self::Xfcc => "x-forwarded-client-cert",
            Self::Encoded(name) => name,
        }
    }
}

impl Door {
    /// The certificate header as the config writes it (`none` without one).
    pub fn client_cert_name(&self) -> &str {
        self.client_cert.as_ref().map_or(NONE, ClientCertHeader::name)
    }

    /// One line saying what this door believes, and from whom.
    pub fn describe(&self) -> String {
        let proxies: Vec<String> = self.trusted_proxies.iter().map(ToString::to_string).collect();
        format!(
            "{} reads the {} family ({}); client address: {}; client certificate: {}; trusted proxies: {}",
            self.path,
            self.family.name(),
            self.family.reads(),
            self.client_ip.name(),
            self.client_cert_name(),
            if proxies.is_empty() {
                "none".to_owned()
            } else {
                proxies.join(" ")
            }
        )
    }

    /// Whether a peer's headers are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// The HTTP door's settings: every door, `/auth` first.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    doors: Vec<Door>,
}

impl HttpAuth {
    /// The door asked at `path`, and the rest of the path after an `envoy` door's prefix (empty
    /// for the others). An exact door path wins over a prefix (the config lets none lie under
    /// another).
    pub fn door<'p>(&self, path: &'p str) -> Option<(&Door, &'p str)> {
        if let Some(d) = self.doors.iter().find(|d| d.family != Family::Envoy && d.path == path) {
            return Some((d, ""));
        }
        self.doors
            .iter()
            .find(|d| d.family == Family::Envoy && crate::path::under(path, &d.path))
            .map(|d| (d, path.get(d.path.len()..).unwrap_or_default()))
    }

    /// Every door, `/auth` first, then `envoy_prefix`'s, then `doors` in order.
    pub fn doors(&self) -> &[Door] {
        &self.doors
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers)
/// as the IPv4 address it is; any other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The path of the door `http_auth.original_request` configures.
pub const AUTH_PATH: &str = "/auth";

/// Paths the HTTP listener serves itself.
const OWN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Headers the door reads, or jwtgate answers, for another purpose than a client's address or
/// certificate: never one of those.
const READ_FOR_ELSE: [&str; 10] = [
    "authorization",
    "cookie",
    "dpop",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-jwtgate-trace-id",
    "x-envoy-auth-headers-to-remove",
];

/// `none`, in `client_ip_header` and `client_cert_header`.
const NONE: &str = "none";

impl Validator<'_> {
    /// `http_auth:`; `providers` for the certificate-bound ones, which need the certificate
    /// header named.
    pub(super) fn http_auth(&self, h: RawHttpAuth, providers: &[Provider]) -> Result<HttpAuth, ConfigError> {
        let trusted = self.trusted_proxies(
            "http_auth.trusted_proxies",
            h.trusted_proxies
                .unwrap_or_else(|| vec!["127.0.0.1/32".into(), "::1/128".into()]),
        )?;
        let client_cert = match (h.client_cert_header, providers.iter().position(|p| p.mtls_binding)) {
            (Some(name), _) => self.client_cert_header("http_auth.client_cert_header", &name, providers)?,
            (None, None) => None,
            (None, Some(i)) => {
                return Err(self.err(
                    "http_auth.client_cert_header",
                    format!(
                        "is required with providers[{i}].mtls_binding: name the header your proxy overwrites with the client certificate (`x-client-cert` with nginx's $ssl_client_escaped_cert, `x-forwarded-client-cert` from an Envoy that sanitises it), or `none` if certificate-bound tokens never come through the HTTP door"
                    ),
                ));
            }
        };
        // `envoy`: `/auth` is itself a prefix Envoy's HTTP mode asks under (`path_prefix: /auth`).
        let family = h.original_request.unwrap_or(Family::Nginx);
        let client_ip = |field: &str, family: Family| -> Result<ClientIpHeader, ConfigError> {
            match &h.client_ip_header {
                Some(name) => self.client_ip_header(field, name, providers),
                None => Ok(family.client_ip_header()),
            }
        };
        let mut doors = vec![Door {
            path: AUTH_PATH.into(),
            family,
            trusted_proxies: trusted.clone(),
            client_ip: client_ip("http_auth.client_ip_header", family)?,
            client_cert: client_cert.clone(),
            context: Vec::new(),
        }];
        if let Some(prefix) = h.envoy_prefix {
            doors.push(Door {
                path: self.door_path("http_auth.envoy_prefix", prefix, Family::Envoy)?,
                family: Family::Envoy,
                trusted_proxies: trusted.clone(),
                client_ip: client_ip("http_auth.client_ip_header", Family::Envoy)?,
                client_cert,
                context: Vec::new(),
            });
            self.distinct("http_auth.envoy_prefix", &doors)?;
        }
        for (i, d) in h.doors.unwrap_or_default().into_iter().enumerate() {
            let field = format!("http_auth.doors[{i}]");
            doors.push(Door {
                path: self.door_path(&format!("{field}.path"), d.path, d.original_request)?,
                family: d.original_request,
                trusted_proxies: match d.trusted_proxies {
                    Some(t) => self.trusted_proxies(&format!("{field}.trusted_proxies"), t)?,
                    None => trusted.clone(),
                },
                client_ip: match d.client_ip_header {
                    Some(name) => self.client_ip_header(&format!("{field}.client_ip_header"), &name, providers)?,
                    None => d.original_request.client_ip_header(),
                },
                client_cert: match d.client_cert_header {
                    Some(name) => self.client_cert_header(&format!("{field}.client_cert_header"), &name, providers)?,
                    None => None,
                },
                context: d.context.unwrap_or_default().into_iter().collect(),
            });
            self.distinct(&field, &doors)?;
        }
        Ok(HttpAuth { doors })
    }

    /// A door's path: `/` and more, no `?`, `#` or trailing `/`, not one of the listener's own.
    fn door_path(&self, field: &str, path: String, family: Family) -> Result<String, ConfigError> {
        if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') || path.contains(['?', '#']) {
            return Err(self.err(field, "a path like `/ext_authz`: leading `/`, no trailing `/`"));
        }
        if OWN_PATHS.contains(&path.as_str()) || (family == Family::Envoy && path == AUTH_PATH) {
            return Err(self.err(field, "collides with one of jwtgate's own paths"));
        }
        Ok(path)
    }

    /// The last door does not share a path with another, nor lie under (or hold) an `envoy`
    /// door's prefix: every path asked at reaches one door.
    fn distinct(&self, field: &str, doors: &[Door]) -> Result<(), ConfigError> {
        let Some((last, others)) = doors.split_last() else {
            return Ok(());
        };
        let under =
            |inner: &Door, outer: &Door| outer.family == Family::Envoy && crate::path::under(&inner.path, &outer.path);
        for other in others {
            if other.path == last.path || under(last, other) || under(other, last) {
                return Err(self.err(
                    field,
                    format!(
                        "`{}` and the door at `{}` overlap: each path must reach one door",
                        last.path, other.path
                    ),
                ));
            }
        }
        Ok(())
    }

    fn trusted_proxies(&self, field: &str, raw: Vec<String>) -> Result<Vec<IpNet>, ConfigError> {
        let mut nets = Vec::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| self.err(format!("{field}[{i}]"), format!("`{t}` is not an address or CIDR")))?;
            nets.push(net.trunc());
        }
        Ok(nets)
    }

    /// A header a door believes from its proxy is one of its own: not `host`, an
    /// original-request header, a token source or an identity header jwtgate answers — one
    /// header cannot be both what the proxy overwrites and what the client or jwtgate sends.
    fn believed_header(&self, field: &str, name: &str, providers: &[Provider]) -> Result<String, ConfigError> {
        let name = self.header_name(field, name)?;
        if name == "host" || ORIGINAL_REQUEST_HEADERS.contains(&name.as_str()) {
            return Err(self.err(field, format!("`{name}` names the original request")));
        }
        if READ_FOR_ELSE.contains(&name.as_str()) {
            return Err(self.err(field, format!("`{name}` is read for something else")));
        }
        for p in providers {
            let source = p
                .sources
                .iter()
                .any(|s| matches!(s, super::Source::Header { name: n, .. } if *n == name));
            let identity = p.claims_to_headers.iter().any(|(_, h)| *h == name)
                || p.payload_header.as_deref() == Some(name.as_str());
            if source || identity {
                let what = if source { "a token source" } else { "an identity header" };
                return Err(self.err(field, format!("`{name}` is {what} of provider {}", p.name)));
            }
        }
        Ok(name)
    }

    fn client_ip_header(&self, field: &str, name: &str, providers: &[Provider]) -> Result<ClientIpHeader, ConfigError> {
        if name.eq_ignore_ascii_case(NONE) {
            return Ok(ClientIpHeader::Peer);
        }
        let name = self.believed_header(field, name, providers)?;
        Ok(match name.as_str() {
            "x-forwarded-for" => ClientIpHeader::ForwardedFor,
            _ => ClientIpHeader::Single(name),
        })
    }

    fn client_cert_header(
        &self,
        field: &str,
        name: &str,
        providers: &[Provider],
    ) -> Result<Option<ClientCertHeader>, ConfigError> {
        if name.eq_ignore_ascii_case(NONE) {
            return Ok(None);
        }
        let name = self.believed_header(field, name, providers)?;
        Ok(match name.as_str() {
            "x-forwarded-client-cert" => Some(ClientCertHeader::Xfcc),
            _ => Some(ClientCertHeader::Encoded(name)),
        })
    }
}

#[cfg(test)]
mod tests;
