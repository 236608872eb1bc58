//! `limits:`, what one connection may hold of a listener and for how long: its schema, its
//! validated form and its validator, in one place.
//!
//! Anyone who can reach a listener can open connections and leave them silent, send a request
//! head a byte at a time, or open streams on one HTTP/2 connection and never finish them. Each
//! costs a file descriptor and memory; unbounded, a few hundred sockets on the HTTP door stop
//! every listener (they share the process's file limit), which for Envoy with
//! `failure_mode_allow: false` is an outage. These limits bound each listener on its own.
//!
//! The defaults suit the proxies jwtgate serves: Envoy and Istio keep a few long-lived HTTP/2
//! connections per worker thread and multiplex every check over them (so a mesh of 2,000
//! sidecars with two workers each holds about 4,000 gRPC connections, each with tens of
//! checks in flight at most); nginx, Traefik and Caddy keep pools of HTTP/1.1 connections.

use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_text;
use super::{ConfigError, Validator};

/// `limits:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Default: 30s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub header_read_timeout: Option<Duration>,
    /// Default: 5m.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub idle_timeout: Option<Duration>,
    /// Default: 30s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub request_timeout: Option<Duration>,
    /// Default: 60s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub http2_keepalive_interval: Option<Duration>,
    /// Default: 20s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub http2_keepalive_timeout: Option<Duration>,
    /// Per listener; default: a share of the process's file limit, at most [`DEFAULT_MAX_CONNECTIONS`].
    #[serde(default)]
    pub max_connections: RawPerListener,
    /// Default: 128. Also spelt `max_concurrent_streams`, as issue #33 names it.
    #[serde(alias = "max_concurrent_streams")]
    pub grpc_max_concurrent_streams: Option<u32>,
    /// Default: none (`grpc_max_concurrent_streams` bounds it).
    pub grpc_concurrency_per_connection: Option<usize>,
}

/// `limits.max_connections:`, one optional number per listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerListener {
    /// The gRPC door (`listen.grpc`).
    pub grpc: Option<usize>,
    /// The HTTP door (`listen.http`).
    pub http: Option<usize>,
    /// The admin API (`listen.admin`).
    pub admin: Option<usize>,
    /// The introspection endpoint (`listen.introspection`).
    pub introspection: Option<usize>,
}

/// The listeners, by the name metrics and logs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `listen.grpc`.
    Grpc,
    /// `listen.http`.
    Http,
    /// `listen.admin`.
    Admin,
    /// `listen.introspection`.
    Introspection,
}

impl Listener {
    /// The label in `jwtgate_connections{listener}` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
            Self::Admin => "admin",
            Self::Introspection => "introspection",
        }
    }

    /// Its most connections when the config sets none and the file limit allows it.
    pub fn default_max_connections(self) -> usize {
        match self {
            Self::Grpc | Self::Http => DEFAULT_MAX_CONNECTIONS,
            Self::Introspection => 1024,
            Self::Admin => 64,
        }
    }
}

/// The door listeners' default connection cap (when the file limit allows it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// `limits:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// HTTP/1: longest from the moment a connection waits for a request head (a new connection,
    /// or a kept-alive one between requests) to the head's end. Every connection: longest to its
    /// first bytes (after the TLS handshake, which has its own 10 s).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: `GOAWAY`, its
    /// streams dropped 10 s later).
    pub idle_timeout: Duration,
    /// Longest a request may take, its body included; then it is answered 408 (HTTP) or
    /// `DEADLINE_EXCEEDED` (gRPC).
    pub request_timeout: Duration,
    /// HTTP/2 connections are pinged this often; a peer that does not answer within
    /// `http2_keepalive_timeout` is dropped. A live peer's answers keep the connection out of
    /// `idle_timeout`.
    pub http2_keepalive_interval: Duration,
    /// See `http2_keepalive_interval`.
    pub http2_keepalive_timeout: Duration,
    /// Most streams one HTTP/2 connection may have open on the gRPC and admin listeners (and
    /// HTTP/2 on the HTTP door); more are refused (`REFUSED_STREAM`).
    pub grpc_max_concurrent_streams: u32,
    /// Most checks one gRPC connection has in progress; the rest wait. `None`: the stream cap.
    pub grpc_concurrency_per_connection: Option<usize>,
    max_connections: [Option<usize>; 4],
}

impl Limits {
    /// The connection cap the config sets for `listener`, if it sets one.
    pub fn max_connections(&self, listener: Listener) -> Option<usize> {
        self.max_connections[listener as usize]
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            http2_keepalive_interval: Duration::from_secs(60),
            http2_keepalive_timeout: Duration::from_secs(20),
            grpc_max_concurrent_streams: 128,
            grpc_concurrency_per_connection: None,
            max_connections: [None; 4],
        }
    }
}

impl Validator<'_> {
    pub(super) fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let positive = |field: &str, v: Option<Duration>, default: Duration| match v {
            Some(v) if v.is_zero() => Err(self.err(format!("limits.{field}"), "must be more than 0s")),
            Some(v) if v > Duration::from_secs(86_400) => {
                Err(self.err(format!("limits.{field}"), "must be at most 1d"))
            }
            v => Ok(v.unwrap_or(default)),
        };
        let header_read_timeout = positive("header_read_timeout", raw.header_read_timeout, d.header_read_timeout)?;
        let idle_timeout = positive("idle_timeout", raw.idle_timeout, d.idle_timeout)?;
        let request_timeout = positive("request_timeout", raw.request_timeout, d.request_timeout)?;
        let http2_keepalive_interval = positive(
            "http2_keepalive_interval",
            raw.http2_keepalive_interval,
            d.http2_keepalive_interval,
        )?;
        let http2_keepalive_timeout = positive(
            "http2_keepalive_timeout",
            raw.http2_keepalive_timeout,
            d.http2_keepalive_timeout,
        )?;
        if idle_timeout <= http2_keepalive_interval + http2_keepalive_timeout {
            return Err(self.err(
                "limits.idle_timeout",
                format!(
                    "must be more than http2_keepalive_interval + http2_keepalive_timeout ({}): a live HTTP/2 peer answers pings only that often, and would be dropped as idle",
                    super::duration::format(http2_keepalive_interval + http2_keepalive_timeout)
                ),
            ));
        }
        if header_read_timeout > idle_timeout {
            return Err(self.err("limits.header_read_timeout", "must be at most limits.idle_timeout"));
        }
        let grpc_max_concurrent_streams = match raw.grpc_max_concurrent_streams {
            Some(0) => return Err(self.err("limits.grpc_max_concurrent_streams", "must be at least 1")),
            v => v.unwrap_or(d.grpc_max_concurrent_streams),
        };
        if raw.grpc_concurrency_per_connection == Some(0) {
            return Err(self.err("limits.grpc_concurrency_per_connection", "must be at least 1"));
        }
        let m = raw.max_connections;
        let max_connections = [
            ("grpc", m.grpc),
            ("http", m.http),
            ("admin", m.admin),
            ("introspection", m.introspection),
        ];
        for (name, v) in max_connections {
            if v == Some(0) {
                return Err(self.err(format!("limits.max_connections.{name}"), "must be at least 1"));
            }
        }
        Ok(Limits {
            header_read_timeout,
            idle_timeout,
            request_timeout,
            http2_keepalive_interval,
            http2_keepalive_timeout,
            grpc_max_concurrent_streams,
            grpc_concurrency_per_connection: raw.grpc_concurrency_per_connection,
            max_connections: max_connections.map(|(_, v)| v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits(yaml: &str) -> Result<Limits, ConfigError> {
        let config = format!(
            "providers: [{{ name: corp, issuer: \"https://idp.example.com/\", jwks_uri: \"https://idp.example.com/keys\" }}]\n{yaml}\n"
        );
        Config::parse(&config, "test.yaml", std::path::Path::new(".")).map(|c| c.limits)
    }

    #[test]
    fn defaults_are_documented_numbers() {
        let l = limits("").expect("valid");
        assert_eq!(l, Limits::default());
        assert_eq!(l.header_read_timeout, Duration::from_secs(30));
        assert_eq!(l.max_connections(Listener::Grpc), None);
        assert_eq!(Listener::Admin.default_max_connections(), 64);
        assert_eq!(l.grpc_max_concurrent_streams, 128);
        assert_eq!(l.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn the_stream_cap_is_also_spelt_max_concurrent_streams() {
        let l = limits("limits: { max_concurrent_streams: 64 }").expect("valid");
        assert_eq!(l.grpc_max_concurrent_streams, 64);
    }

    #[test]
    fn each_listener_has_its_own_cap() {
        let l = limits("limits:\n  max_connections: { http: 10, admin: 2 }\n").expect("valid");
        assert_eq!(l.max_connections(Listener::Http), Some(10));
        assert_eq!(l.max_connections(Listener::Admin), Some(2));
        assert_eq!(l.max_connections(Listener::Grpc), None);
        assert_eq!(l.max_connections(Listener::Introspection), None);
    }

    #[test]
    fn wrong_values_are_refused_with_their_field() {
        for (yaml, field) in [
            ("limits: { idle_timeout: 0s }", "limits.idle_timeout"),
            ("limits: { idle_timeout: 60s }", "limits.idle_timeout"),
            ("limits: { header_read_timeout: 10m }", "limits.header_read_timeout"),
            (
                "limits: { max_connections: { grpc: 0 } }",
                "limits.max_connections.grpc",
            ),
            (
                "limits: { grpc_max_concurrent_streams: 0 }",
                "limits.grpc_max_concurrent_streams",
            ),
            (
                "limits: { grpc_concurrency_per_connection: 0 }",
                "limits.grpc_concurrency_per_connection",
            ),
        ] {
            let e = limits(yaml).expect_err(yaml);
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
        assert!(limits("limits: { max_connections: { envoy: 3 } }").is_err());
    }
}
