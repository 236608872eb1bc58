//! Opening Redis the one way both Redis users (revocations, rate limits) do: the URL, an ACL
//! user and password set on top of it, for `rediss://` TLS through rustls (trusting the system
//! roots or the configured private CA), and for a Redis Cluster a cluster client over the seed
//! nodes. [`Connection`] is either kind behind one command interface; [`Link`] keeps one
//! shared connection up (the rate-limit counters and the DPoP replay cache use it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value};

use crate::config::RedisConnection;

/// Opens connections to the configured Redis (one server, or a cluster).
#[derive(Clone)]
pub struct Opener {
    /// The seed server: commands when not a cluster, and subscriptions either way (classic
    /// pub/sub messages reach every node of a cluster).
    single: redis::Client,
    cluster: Option<ClusterClient>,
}

/// A connection to one server or to a cluster; cheap to clone, shared by concurrent commands.
#[derive(Clone)]
pub enum Connection {
    /// One server, multiplexed.
    Single(MultiplexedConnection),
    /// A cluster: each command goes to the node holding its keys' slot.
    Cluster(ClusterConnection),
}

impl Opener {
    /// A way to reach `c` (nothing connects yet).
    pub fn new(c: &RedisConnection) -> RedisResult<Self> {
        let single = client(c, &c.url)?;
        let cluster = match &c.cluster_nodes {
            None => None,
            Some(nodes) => {
                let mut seeds = vec![c.url.clone()];
                seeds.extend(nodes.iter().cloned());
                let mut b = ClusterClientBuilder::new(seeds);
                if let Some(user) = &c.username {
                    b = b.username(user);
                }
                if let Some(password) = &c.password {
                    b = b.password(String::from_utf8_lossy(password.expose()));
                }
                if let Some(ca) = &c.ca_pem {
                    b = b.certs(TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    });
                }
                Some(b.build()?)
            }
        };
        Ok(Self { single, cluster })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The seed server's client, for subscriptions.
    pub fn subscriber(&self) -> &redis::Client {
        &self.single
    }

    /// A connection (each command on one server then bounded by `response_timeout`, unless
    /// `None`). Unbounded in time itself: the caller bounds the wait.
    pub async fn connect(&self, response_timeout: Option<Duration>) -> RedisResult<Connection> {
        match &self.cluster {
            Some(cluster) => Ok(Connection::Cluster(cluster.get_async_connection().await?)),
            None => {
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(response_timeout);
                let c = self
                    .single
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Connection::Single(c))
            }
        }
    }
}

/// One connection shared by every command of a Redis user, (re)established in the background
/// with backoff: a command never waits for a connection, it fails at once while there is none.
pub struct Link {
    opener: Opener,
    conn: Arc<ArcSwapOption<Connection>>,
    connecting: Arc<AtomicBool>,
    /// Longest wait for one connection attempt.
    connect_timeout: Duration,
    /// Who is connecting, for the log (`rate-limit store`, `DPoP replay cache`).
    user: &'static str,
}

impl Link {
    /// A link to `c` for `user`; starts connecting in the background (call from a runtime).
    pub fn new(c: &RedisConnection, connect_timeout: Duration, user: &'static str) -> RedisResult<Self> {
        let link = Self {
            opener: Opener::new(c)?,
            conn: Arc::new(ArcSwapOption::empty()),
            connecting: Arc::default(),
            connect_timeout,
            user,
        };
        link.reconnect();
        Ok(link)
    }

    /// Whether a connection is up now.
    pub fn connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Waits, at most `limit`, for the first connection.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The connection, or `None` (and a reconnect started) while there is none.
    pub fn connection(&self) -> Option<Connection> {
        let conn = self.conn.load_full();
        if conn.is_none() {
            self.reconnect();
        }
        conn.map(|c| (*c).clone())
    }

    /// After a command's error: a broken connection is dropped and re-established.
    pub fn failed(&self, e: &redis::RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            self.conn.store(None);
            self.reconnect();
        }
    }

    /// Starts connecting unless a connection exists or is being made; retries with backoff.
    fn reconnect(&self) {
        if self.conn.load().is_some() || self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (opener, conn, connecting) = (self.opener.clone(), self.conn.clone(), self.connecting.clone());
        let (timeout, user) = (self.connect_timeout, self.user);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                // Each command bounds its own wait; the connection sets none.
                let e = match tokio::time::timeout(timeout, opener.connect(None)).await {
                    Ok(Ok(c)) => {
                        conn.store(Some(Arc::new(c)));
                        connecting.store(false, Ordering::Release);
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no connection within {timeout:?}"),
                };
                tracing::warn!("{user}: cannot connect to redis: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

impl Connection {
    /// Sends `cmd` (which names no key, e.g. `SCAN`) to the server holding `key`'s slot.
    pub async fn on_node_of(&mut self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        match self {
            Self::Single(c) => c.req_packed_command(&cmd).await,
            Self::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
                    .await
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A client for one server at `url` with `c`'s user, password and CA.
fn client(c: &RedisConnection, url: &str) -> RedisResult<redis::Client> {
    let info = url.into_connection_info()?;
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
