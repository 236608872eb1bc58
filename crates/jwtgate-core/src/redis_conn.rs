//! Opening Redis the one way both Redis users (revocations, rate limits) do: the URL, an ACL
//! user and password set on top of it, and for `rediss://` TLS through rustls, trusting the
//! system roots or the configured private CA.

use redis::{IntoConnectionInfo, RedisResult, TlsCertificates};

use crate::config::RedisConnection;

/// A client for `c` (nothing connects yet).
pub fn client(c: &RedisConnection) -> RedisResult<redis::Client> {
    let info = c.url.as_str().into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &c.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &c.password {
        settings = settings.set_password(String::from_utf8_lossy(password.expose()));
    }
    let info = info.set_redis_settings(settings);
    match &c.ca_pem {
        Some(ca) => redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
}
