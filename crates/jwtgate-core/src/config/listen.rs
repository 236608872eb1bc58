//! `listen:`, the listeners' addresses and TLS files: its schema, its validated form
//! ([`Listen`]) and its validator.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::secrets::LooseSecret;
use super::{ConfigError, Validator};

/// Listener addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// Admin API (gRPC).
    pub admin: Option<String>,
    /// Default: `127.0.0.1:9001`.
    pub grpc: Option<String>,
    /// Default: `127.0.0.1:9002`.
    pub http: Option<String>,
    /// TLS on the gRPC listener.
    pub grpc_tls: Option<RawListenTls>,
    /// TLS on the HTTP listener.
    pub http_tls: Option<RawListenTls>,
    /// TLS on the admin listener.
    pub admin_tls: Option<RawListenTls>,
    /// The RFC 7662 introspection endpoint (HTTP); off when unset.
    pub introspection: Option<String>,
    /// TLS on the introspection listener.
    pub introspection_tls: Option<RawListenTls>,
}

/// `listen.*_tls`: PEM files, re-read when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenTls {
    /// The certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates that client certificates must chain to; when set, clients must present one.
    pub client_ca: Option<PathBuf>,
}

/// Listener addresses.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Envoy ext_authz gRPC and gRPC health.
    pub grpc: SocketAddr,
    /// `/healthz`, `/readyz`.
    pub http: SocketAddr,
    /// Admin API (gRPC); loopback by default.
    pub admin: SocketAddr,
    /// TLS on `grpc`, when configured.
    pub grpc_tls: Option<ListenTls>,
    /// TLS on `http`, when configured.
    pub http_tls: Option<ListenTls>,
    /// TLS on `admin`, when configured.
    pub admin_tls: Option<ListenTls>,
    /// The RFC 7662 introspection endpoint (HTTP), when configured.
    pub introspection: Option<SocketAddr>,
    /// TLS on `introspection`, when configured.
    pub introspection_tls: Option<ListenTls>,
}

/// A listener's TLS files (`listen.grpc_tls`, `listen.http_tls`, `listen.admin_tls`), paths
/// resolved against the config file's directory. Read by the server, which re-reads them when
/// they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    /// The config field, e.g. `listen.grpc_tls`.
    pub field: &'static str,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; `Some` requires a client
    /// certificate (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl Validator<'_> {
    /// `listen:`: every address parsed, TLS files resolved, no two listeners on one address.
    pub(super) fn listen(&self, raw: RawListen) -> Result<Listen, ConfigError> {
        let listen = Listen {
            grpc: self.addr("listen.grpc", raw.grpc, "127.0.0.1:9001")?,
            http: self.addr("listen.http", raw.http, "127.0.0.1:9002")?,
            admin: self.addr("listen.admin", raw.admin, "127.0.0.1:9003")?,
            grpc_tls: self.listen_tls("listen.grpc_tls", raw.grpc_tls)?,
            http_tls: self.listen_tls("listen.http_tls", raw.http_tls)?,
            admin_tls: self.listen_tls("listen.admin_tls", raw.admin_tls)?,
            introspection: raw
                .introspection
                .map(|a| self.addr("listen.introspection", Some(a), ""))
                .transpose()?,
            introspection_tls: self.listen_tls("listen.introspection_tls", raw.introspection_tls)?,
        };
        if listen.introspection_tls.is_some() && listen.introspection.is_none() {
            return Err(self.err("listen.introspection_tls", "is set without `listen.introspection`"));
        }
        let mut named = vec![
            ("listen.grpc", listen.grpc),
            ("listen.http", listen.http),
            ("listen.admin", listen.admin),
        ];
        named.extend(listen.introspection.map(|a| ("listen.introspection", a)));
        for (i, (field, addr)) in named.iter().enumerate() {
            if let Some((other, _)) = named[..i].iter().find(|(_, a)| a == addr && a.port() != 0) {
                return Err(self.err(*field, format!("`{addr}` is also {other}")));
            }
        }
        Ok(listen)
    }

    fn listen_tls(&self, field: &'static str, raw: Option<RawListenTls>) -> Result<Option<ListenTls>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let path = |name: &str, p: Option<PathBuf>| match p {
            Some(p) if !p.as_os_str().is_empty() => Ok(self.base.join(p)),
            Some(_) => Err(self.err(format!("{field}.{name}"), "is empty")),
            None => Err(self.err(format!("{field}.{name}"), "is required")),
        };
        let key = path("key", raw.key)?;
        self.loose
            .borrow_mut()
            .extend(LooseSecret::of(&format!("{field}.key"), &key));
        Ok(Some(ListenTls {
            field,
            cert: path("cert", raw.cert)?,
            key,
            client_ca: raw.client_ca.map(|p| path("client_ca", Some(p))).transpose()?,
        }))
    }

    fn addr(&self, field: &str, raw: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
        let text = raw.as_deref().unwrap_or(default);
        text.parse()
            .map_err(|_| self.err(field, format!("`{text}` is not an IP:port address")))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, err};

    #[test]
    fn bad_listen_address_is_refused() {
        let e = err(&format!("listen: {{ grpc: nowhere }}\n{MINIMAL}"));
        assert_eq!(e.field, "listen.grpc");
    }
}
