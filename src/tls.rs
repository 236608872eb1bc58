//! TLS on the listeners (`listen.grpc_tls`, `listen.http_tls`, `listen.admin_tls`,
//! `listen.introspection_tls`): rustls with the aws-lc-rs provider, TLS 1.2 and 1.3, and with `client_ca` a required client certificate
//! that chains to it (mutual TLS).
//!
//! **Rotation.** A watcher looks at each file's metadata (modification time, length, inode)
//! every second — kubelet replaces a mounted Secret's files at once by swapping a symlink,
//! cert-manager rewrites them — and after a change builds a whole new rustls `ServerConfig`
//! (chain, key, client CAs). New connections get it; open connections keep the session they
//! negotiated, so rotation drops nothing. Files that cannot be used keep the config in force;
//! the reason is logged and `jwtgate_tls_reloads_total{outcome="failure"}` counts it. A key
//! written a moment after its certificate fails once (they do not match) and succeeds at the
//! next look.
//!
//! **Handshakes** (run by `server::transport`) take a task per connection, bounded in time
//! ([`HANDSHAKE_TIMEOUT`]) and in number (a connection in its handshake holds a place under the
//! listener's `limits.max_connections`), so a slow or silent client never holds up the accept
//! loop; finished connections are handed to the server in the order they finish.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use jwtgate_core::config::{Config, ConfigError, ListenTls};
use jwtgate_core::metrics::{Families, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the watcher looks at the files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = jwtgate_core::file::MAX_FILE_BYTES;

/// What a listener speaks, offered in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// gRPC: HTTP/2 only (the gRPC and admin listeners).
    Grpc,
    /// The HTTP door: HTTP/2 or HTTP/1.1.
    Http,
}

impl Protocols {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Self::Grpc => vec![b"h2".to_vec()],
            Self::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// A TLS file that cannot be used: the config field (`listen.grpc_tls.cert`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsError {
    /// The field naming the file, e.g. `listen.grpc_tls.key`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsError {
    fn new(tls: &ListenTls, name: &str, reason: String) -> Self {
        Self {
            field: format!("{}.{name}", tls.field),
            reason,
        }
    }

    /// As a config error of `file`, the way bad config is reported at start.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.display().to_string(),
            field: self.field,
            reason: self.reason,
        }
    }
}

/// Builds every configured listener's TLS config once, so that a bad file is refused at start
/// (and by `jwtgate validate-config`) with its field and reason.
pub fn check(config: &Config) -> Result<(), TlsError> {
    for (tls, protocols) in configured(config) {
        build(tls, protocols)?;
    }
    Ok(())
}

/// The configured TLS listeners' files with what each speaks.
fn configured(config: &Config) -> impl Iterator<Item = (&ListenTls, Protocols)> {
    let l = &config.listen;
    [
        (l.grpc_tls.as_ref(), Protocols::Grpc),
        (l.http_tls.as_ref(), Protocols::Http),
        (l.admin_tls.as_ref(), Protocols::Grpc),
        (l.introspection_tls.as_ref(), Protocols::Http),
    ]
    .into_iter()
    .filter_map(|(tls, p)| tls.map(|t| (t, p)))
}

/// One listener's TLS: the config in force, swapped when its files change.
#[derive(Debug)]
pub struct ServerTls {
    files: ListenTls,
    protocols: Protocols,
    current: ArcSwap<ServerConfig>,
    /// The files as they were just before the config in force was read from them.
    loaded: Stamp,
}

impl ServerTls {
    /// Reads and checks `files`.
    pub fn load(files: &ListenTls, protocols: Protocols) -> Result<Arc<Self>, TlsError> {
        let loaded = Stamp::of(files);
        let config = build(files, protocols)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            protocols,
            current: ArcSwap::from_pointee(config),
            loaded,
        }))
    }

    /// The listener's name in metrics: `grpc`, `http` or `admin`.
    pub fn listener(&self) -> &'static str {
        listener_name(self.files.field)
    }

    /// An acceptor for a new connection, with the certificates in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Re-reads the files whenever they change, until `shutdown`.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
        let mut seen = self.loaded.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let now = Stamp::of(&self.files);
            if now == seen {
                continue;
            }
            seen = now;
            match build(&self.files, self.protocols) {
                Ok(config) => {
                    self.current.store(Arc::new(config));
                    metrics.families::<TlsMetrics>().reloaded(self.listener(), true);
                    tracing::info!(field = self.files.field, "TLS certificate files changed: reloaded");
                }
                Err(e) => {
                    metrics.families::<TlsMetrics>().reloaded(self.listener(), false);
                    tracing::warn!(
                        field = self.files.field,
                        reason = %e,
                        "TLS certificate files changed but cannot be used: keeping the certificate in force"
                    );
                }
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerOutcome {
    listener: &'static str,
    outcome: &'static str,
}

/// The TLS families: certificate reloads (counted by [`ServerTls::watch`]) and handshakes
/// (counted by `server::transport`), by listener and outcome.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    reloads: Family<ListenerOutcome, Counter>,
    handshakes: Family<ListenerOutcome, Counter>,
}

impl Families for TlsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_tls_reloads",
            "Re-reads of a TLS listener's certificate files after they changed, by listener and outcome (a failure keeps the old certificate)",
            m.reloads.clone(),
        );
        registry.register(
            "jwtgate_tls_handshakes",
            "TLS handshakes on the listeners, by listener and outcome (success, failure, timeout)",
            m.handshakes.clone(),
        );
        m
    }
}

impl TlsMetrics {
    /// Counts a re-read of `listener`'s TLS files (`listen.grpc_tls` → `grpc`).
    fn reloaded(&self, listener: &'static str, applied: bool) {
        let outcome = if applied { "success" } else { "failure" };
        self.reloads.get_or_create(&ListenerOutcome { listener, outcome }).inc();
    }

    /// The handshake counter of `listener` for `outcome` (`success`, `failure`, `timeout`).
    pub fn handshakes(&self, listener: &'static str, outcome: &'static str) -> Counter {
        self.handshakes
            .get_or_create(&ListenerOutcome { listener, outcome })
            .clone()
    }
}

/// `listen.grpc_tls` → `grpc`.
fn listener_name(field: &'static str) -> &'static str {
    field
        .strip_prefix("listen.")
        .and_then(|f| f.strip_suffix("_tls"))
        .unwrap_or(field)
}

/// What the files looked like: per file, its modification time, length and inode, or nothing
/// when it could not be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    fn of(files: &ListenTls) -> Self {
        let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()];
        Self(
            paths
                .into_iter()
                .flatten()
                .map(|p| {
                    fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
                })
                .collect(),
        )
    }
}

fn read(tls: &ListenTls, name: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    jwtgate_core::file::read(path, MAX_PEM_BYTES)
        .map_err(|e| TlsError::new(tls, name, format!("cannot read {}: {e}", path.display())))
}

fn certificates(tls: &ListenTls, name: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(tls, name, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(tls, name, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            tls,
            name,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn build(tls: &ListenTls, protocols: Protocols) -> Result<ServerConfig, TlsError> {
    let chain = certificates(tls, "cert", &tls.cert)?;
    let pem = read(tls, "key", &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError::new(
            tls,
            "key",
            format!(
                "{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                tls.key.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(tls, "cert", e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(tls, "client_ca", path)? {
                roots.add(ca).map_err(|e| {
                    TlsError::new(
                        tls,
                        "client_ca",
                        format!("{}: not a usable CA certificate: {e}", path.display()),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::new(tls, "client_ca", format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::new(
            tls,
            "key",
            format!("{} cannot serve {}: {e}", tls.key.display(), tls.cert.display()),
        )
    })?;
    config.alpn_protocols = protocols.alpn();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_is_named_after_its_field() {
        assert_eq!(listener_name("listen.grpc_tls"), "grpc");
        assert_eq!(listener_name("listen.admin_tls"), "admin");
    }
}
