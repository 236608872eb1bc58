//! A client of the admin API, for the command line: connects (bounded), carries the bearer
//! credential on every call, and pages through revocation lists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::pb;
use super::pb::admin_client::AdminClient;

/// Bound on connecting to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an admin call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The credential cannot be sent as a header.
    #[error("--admin-token is not a valid header value")]
    InvalidToken,
    /// The URL is not one to connect to.
    #[error("--admin {url}: {source}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// Nothing answered there.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// The connection error with its causes.
        reason: String,
    },
    /// The API refused or failed the call.
    #[error("{} ({:?})", .0.message(), .0.code())]
    Status(#[from] tonic::Status),
    /// A TLS option cannot be used.
    #[error("{option}: {reason}")]
    Tls {
        /// `--ca`, `--cert` or `--key`.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// Paging went in a circle.
    #[error("the admin API returned the same page twice")]
    RepeatedPage,
}

/// TLS for the admin connection (`--ca`, `--cert`, `--key`); an `https://` URL uses it, with the
/// system's roots when `ca` is not given.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificates the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for a listener with `client_ca`.
    pub cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key: Option<PathBuf>,
}

impl ClientTls {
    fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn config(&self) -> Result<ClientTlsConfig, ClientError> {
        let read = |option, path: &Path| {
            std::fs::read(path).map_err(|e| ClientError::Tls {
                option,
                reason: format!("cannot read {}: {e}", path.display()),
            })
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("--ca", ca)?)),
            None => config.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                Ok(config.identity(Identity::from_pem(read("--cert", cert)?, read("--key", key)?)))
            }
            (None, None) => Ok(config),
            (Some(_), None) => Err(ClientError::Tls {
                option: "--cert",
                reason: "needs --key".into(),
            }),
            (None, Some(_)) => Err(ClientError::Tls {
                option: "--key",
                reason: "needs --cert".into(),
            }),
        }
    }
}

/// A connection to a running jwtgate's admin API.
pub struct Client {
    inner: AdminClient<Channel>,
    credential: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// Connects to `url` (over TLS for `https://`), sending `token` (the static `admin.token`,
    /// or a provider token with the admin role) as `authorization: Bearer` on every call.
    pub async fn connect(url: &str, token: Option<&str>, tls: &ClientTls) -> Result<Self, ClientError> {
        let credential = token
            .map(|t| format!("Bearer {t}").parse().map_err(|_| ClientError::InvalidToken))
            .transpose()?;
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| ClientError::InvalidUrl {
                url: url.to_owned(),
                source,
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let endpoint = if url.starts_with("https://") {
            endpoint
                .tls_config(tls.config()?)
                .map_err(|source| ClientError::InvalidUrl {
                    url: url.to_owned(),
                    source,
                })?
        } else if tls.is_set() {
            return Err(ClientError::Tls {
                option: "--ca/--cert/--key",
                reason: format!("need an https:// --admin URL, not {url}"),
            });
        } else {
            endpoint
        };
        let channel = endpoint.connect().await.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: jwtgate_core::errors::chain(&e),
        })?;
        Ok(Self {
            inner: AdminClient::new(channel),
            credential,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(v) = &self.credential {
            req.metadata_mut().insert("authorization", v.clone());
        }
        req
    }

    /// `RevokeToken`.
    pub async fn revoke_token(&mut self, message: pb::RevokeTokenRequest) -> Result<pb::RevokeResponse, ClientError> {
        let req = self.request(message);
        Ok(self.inner.revoke_token(req).await?.into_inner())
    }

    /// `RevokeSubject`.
    pub async fn revoke_subject(
        &mut self,
        message: pb::RevokeSubjectRequest,
    ) -> Result<pb::RevokeResponse, ClientError> {
        let req = self.request(message);
        Ok(self.inner.revoke_subject(req).await?.into_inner())
    }

    /// Every revocation in force, fetched `page_size` at a time, handed to `each` page by page.
    pub async fn each_revocation(
        &mut self,
        page_size: u32,
        mut each: impl FnMut(&pb::Revocation),
    ) -> Result<(), ClientError> {
        let mut page_token = String::new();
        loop {
            let req = self.request(pb::ListRevocationsRequest {
                page_size,
                page_token: page_token.clone(),
            });
            let page = self.inner.list_revocations(req).await?.into_inner();
            page.revocations.iter().for_each(&mut each);
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            if page.next_page_token == page_token {
                return Err(ClientError::RepeatedPage);
            }
            page_token = page.next_page_token;
        }
    }

    /// `Introspect`.
    pub async fn introspect(&mut self, token: String) -> Result<pb::IntrospectResponse, ClientError> {
        let req = self.request(pb::IntrospectRequest { token });
        Ok(self.inner.introspect(req).await?.into_inner())
    }

    /// `KeyStatus`.
    pub async fn key_status(&mut self) -> Result<pb::KeyStatusResponse, ClientError> {
        let req = self.request(pb::KeyStatusRequest {});
        Ok(self.inner.key_status(req).await?.into_inner())
    }
}
