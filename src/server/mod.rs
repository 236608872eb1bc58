//! Listeners and wiring: binds the gRPC, HTTP and admin listeners, starts every provider's key
//! refresh, reports gRPC health, and shuts down gracefully on one cancellation signal.
//! The doors here translate ([`grpc`], [`http`]) and [`render`] answers; the core's gate
//! decides.

pub mod accept;
pub mod connection;
mod cork;
pub mod grpc;
pub mod http;
pub mod introspection;
pub mod metrics;
pub mod ops;
pub mod render;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use jwtgate_core::config::limits::Listener;
use jwtgate_core::config::rate_limits::LimitStore;
use jwtgate_core::config::{Config, ListenTls};
use jwtgate_core::dpop::replay::Replays;
use jwtgate_core::gate::Shared;
use jwtgate_core::keys::cache::KeyCache;
use jwtgate_core::keys::fetch;
use jwtgate_core::live::{Live, SharedGate};
use jwtgate_core::metrics::Metrics;
use jwtgate_core::ratelimit::redis::RedisCounters;
use jwtgate_core::revocation::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::metrics::{CheckDurations, WorkerThreads};
use crate::admin::{self, AdminService};
use crate::telemetry::Door;
use crate::telemetry::export::SpansDropped;
use crate::tls;

/// The gRPC service name Envoy health-checks.
pub const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// How long start waits for the shared rate-limit store's first connection.
const RATE_STORE_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// How often readiness is re-evaluated for gRPC health.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// A started jwtgate.
pub struct Running {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound admin API address.
    pub admin_addr: SocketAddr,
    /// Bound introspection address (`listen.introspection`), when configured.
    pub introspection_addr: Option<SocketAddr>,
    /// The configuration in force (reload it here).
    pub live: Arc<Live>,
    /// The revocation store.
    pub store: Arc<Store>,
    /// Cancel to drain: not ready (503 on `/readyz`, NOT_SERVING on gRPC health) while still
    /// serving; the shutdown signal implies it.
    pub draining: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until both servers have finished their in-flight requests after shutdown.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Why jwtgate could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {field} {addr}: {source}")]
    Listen {
        /// `listen.grpc`, `listen.http` or `listen.admin`.
        field: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The revocation store could not be opened.
    #[error("cannot open the revocation store: {0}")]
    Store(#[from] StoreError),
    /// The rate-limit store's URL cannot be used.
    #[error("rate_limits.store: redis: {0}")]
    RateStore(String),
    /// The DPoP replay cache's Redis URL cannot be used.
    #[error("providers[].dpop.replay: redis: {0}")]
    ReplayStore(String),
    /// The key-fetching HTTP client cannot be built.
    #[error(transparent)]
    HttpClient(#[from] fetch::ClientError),
    /// A listener's TLS files cannot be used.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

async fn bind(field: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen = |source| StartError::Listen { field, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// Runs a listener's server until it finishes, logging why if it fails.
fn serving<E: std::fmt::Display>(
    what: &'static str,
    served: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::error!("{what} server failed: {e}");
        }
    })
}

/// A listener's TLS, when its config has it.
fn listener_tls(
    files: Option<&ListenTls>,
    protocols: tls::Protocols,
) -> Result<Option<Arc<tls::ServerTls>>, StartError> {
    Ok(files.map(|f| tls::ServerTls::load(f, protocols)).transpose()?)
}

/// The disk cache of key sets; without it jwtgate serves, but a restart during an issuer outage
/// starts with no keys.
fn key_cache(config: &Config) -> Option<Arc<KeyCache>> {
    let dir = &config.key_cache.dir;
    match KeyCache::open(dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "key_cache.dir: cannot keep key sets on disk ({e}); a restart while an issuer is down will start without its keys");
            None
        }
    }
}

/// The shared rate-limit store, when the config asks for one.
async fn rate_store(config: &Config) -> Result<Option<Arc<RedisCounters>>, StartError> {
    let LimitStore::Redis { connection } = &config.rate_limits.store else {
        return Ok(None);
    };
    let store = RedisCounters::new(connection, config.rate_limits.store_timeout)
        .map_err(|e| StartError::RateStore(e.to_string()))?;
    if !store.wait_connected(RATE_STORE_CONNECT_WAIT).await {
        tracing::warn!(
            on_store_error = ?config.rate_limits.on_store_error,
            "rate-limit store: redis not reachable yet; on_store_error applies until it is"
        );
    }
    Ok(Some(store))
}

/// Binds the listeners and starts serving until `shutdown` fires.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    start_with_metrics(config, Arc::default(), shutdown).await
}

/// [`start`], counting into `metrics` (which the trace exporter may already count into).
pub async fn start_with_metrics(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let (grpc_listener, grpc_addr) = bind("listen.grpc", config.listen.grpc).await?;
    let (http_listener, http_addr) = bind("listen.http", config.listen.http).await?;
    let (admin_listener, admin_addr) = bind("listen.admin", config.listen.admin).await?;
    let grpc_tls = listener_tls(config.listen.grpc_tls.as_ref(), tls::Protocols::Grpc)?;
    let http_tls = listener_tls(config.listen.http_tls.as_ref(), tls::Protocols::Http)?;
    let admin_tls = listener_tls(config.listen.admin_tls.as_ref(), tls::Protocols::Grpc)?;
    let introspection = match config.listen.introspection {
        Some(addr) => Some(bind("listen.introspection", addr).await?),
        None => None,
    };
    let introspection_tls = listener_tls(config.listen.introspection_tls.as_ref(), tls::Protocols::Http)?;
    let store = Store::open(&config.revocation).await?;
    // Shown (at 0) when nothing exports spans.
    metrics.families::<SpansDropped>();
    let shared = Shared {
        metrics: metrics.clone(),
        revocations: store.set().clone(),
        store: Some(store.clone()),
        rate_counters: Arc::default(),
        rate_store: rate_store(config).await?,
        key_cache: key_cache(config),
        replays: Arc::new(
            Replays::new(config.dpop_replay.as_ref()).map_err(|e| StartError::ReplayStore(e.to_string()))?,
        ),
    };
    let live = Live::start(config, fetch::client()?, shared, shutdown.clone());
    let draining = shutdown.child_token();
    let gate = live.gate().clone();
    let mut tasks = vec![tokio::spawn(store.clone().run(shutdown.clone()))];
    for tls in [&grpc_tls, &http_tls, &admin_tls, &introspection_tls]
        .into_iter()
        .flatten()
    {
        tasks.push(tokio::spawn(tls.clone().watch(metrics.clone(), shutdown.clone())));
    }
    let tls_on = |t: &Option<Arc<tls::ServerTls>>| if t.is_some() { "tls" } else { "plaintext" };
    let (grpc_mode, http_mode, admin_mode) = (tls_on(&grpc_tls), tls_on(&http_tls), tls_on(&admin_tls));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    tasks.push(tokio::spawn(report_health(
        gate.clone(),
        reporter,
        draining.clone(),
        shutdown.clone(),
    )));

    let present: Vec<Listener> = [Listener::Grpc, Listener::Http, Listener::Admin]
        .into_iter()
        .chain(introspection.as_ref().map(|_| Listener::Introspection))
        .collect();
    let files = accept::raise_file_limit();
    let (caps, over) = accept::caps(&config.limits, &present, files);
    if over {
        tracing::warn!(
            files = files.unwrap_or_default(),
            "limits.max_connections: the listeners' caps add up to more than the process's file limit allows (less {} kept for other files): a flood on one listener can still take the descriptors the others need",
            accept::RESERVED_FILES
        );
    }
    let listening = |listener: Listener, tls: Option<Arc<tls::ServerTls>>| {
        let at = present.iter().position(|&l| l == listener).unwrap_or_default();
        transport::Listening {
            bounds: accept::Bounds::new(listener, &config.limits, caps[at]),
            tls,
            metrics: metrics.clone(),
        }
    };
    let checks = metrics.families::<CheckDurations>();
    let grpc = tonic::service::Routes::new(health_service).add_service(AuthorizationServer::new(
        grpc::AuthorizationService::new(gate.clone(), checks.door(Door::Grpc)),
    ));
    let grpc = transport::serve_grpc(
        grpc,
        grpc_listener,
        listening(Listener::Grpc, grpc_tls),
        shutdown.clone(),
    );
    tasks.push(serving("gRPC", grpc));

    let router = http::router(http::HttpState {
        gate: gate.clone(),
        draining: draining.clone(),
        durations: checks.door(Door::Http),
    });
    let http = transport::serve_http(
        router,
        http_listener,
        listening(Listener::Http, http_tls),
        shutdown.clone(),
    );
    tasks.push(serving("HTTP", http));

    let admin = AdminService::new(gate.clone(), store.clone(), &config.admin, &config.revocation);
    if !admin.enabled() {
        tracing::info!("no admin.token or admin.provider configured: the admin API refuses every call");
    }
    let admin = transport::serve_grpc(
        admin::routes(admin),
        admin_listener,
        listening(Listener::Admin, admin_tls),
        shutdown.clone(),
    );
    tasks.push(serving("admin", admin));

    let introspection_addr = introspection.as_ref().map(|(_, addr)| *addr);
    if let Some((listener, addr)) = introspection {
        let router = introspection::router(gate.clone(), config.max_token_bytes);
        let mode = tls_on(&introspection_tls);
        let served = transport::serve_http(
            router,
            listener,
            listening(Listener::Introspection, introspection_tls),
            shutdown.clone(),
        );
        tasks.push(serving("introspection", served));
        tracing::info!(introspection = %addr, mode, path = introspection::PATH, "introspection endpoint listening");
    }

    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    metrics.families::<WorkerThreads>().set(workers);
    tracing::info!(grpc = %grpc_addr, grpc_mode, http = %http_addr, http_mode, admin = %admin_addr, admin_mode, providers = config.providers.len(), workers, "jwtgate listening");
    let l = &config.limits;
    let caps: Vec<String> = present
        .iter()
        .zip(&caps)
        .map(|(l, n)| format!("{}={n}", l.name()))
        .collect();
    tracing::info!(
        max_connections = %caps.join(" "),
        files = files.unwrap_or_default(),
        header_read_timeout = ?l.header_read_timeout,
        idle_timeout = ?l.idle_timeout,
        grpc_max_concurrent_streams = l.grpc_max_concurrent_streams,
        "listener limits"
    );
    for door in config.http_auth.doors() {
        let trusted: Vec<String> = door.trusted_proxies.iter().map(ToString::to_string).collect();
        tracing::info!(
            path = %door.path,
            original_request = door.family.name(),
            client_ip_header = door.client_ip.name(),
            client_cert_header = door.client_cert_name(),
            trusted_proxies = %trusted.join(" "),
            "HTTP door: reads only its own header family; a check with another family's is refused (400)"
        );
        if door.trusted_proxies.iter().any(|net| net.prefix_len() == 0) {
            tracing::warn!(path = %door.path, "HTTP door trusts every address (a /0 in trusted_proxies): any client that reaches this port names the request checked, its address and its certificate; list only the proxies' addresses");
        }
    }
    for p in config.providers.iter().filter(|p| !p.forward_token) {
        for name in p.sources.iter().filter_map(|s| match s {
            jwtgate_core::config::Source::Query(name) => Some(name),
            _ => None,
        }) {
            tracing::warn!(provider = %p.name, parameter = %name, "forward_token: false with a query source: the gRPC door has Envoy remove the parameter, but on the HTTP door the proxy must strip it itself (see docs/integrations.md, HTTP front door)");
        }
    }
    for p in config.providers.iter().filter(|p| p.audiences.is_empty()) {
        tracing::warn!(provider = %p.name, "no `audiences` configured: tokens issued for any audience are accepted");
    }
    Ok(Running {
        grpc_addr,
        http_addr,
        admin_addr,
        introspection_addr,
        live,
        store,
        draining,
        tasks,
    })
}

/// SERVING while every provider has usable keys and the revocations are loaded; NOT_SERVING
/// before that and from the drain on.
async fn report_health(
    gate: SharedGate,
    reporter: tonic_health::server::HealthReporter,
    draining: CancellationToken,
    shutdown: CancellationToken,
) {
    use tonic_health::ServingStatus;
    let mut last = None;
    loop {
        let ready = !draining.is_cancelled() && jwtgate_core::status::ready(&gate.load());
        if last != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(AUTHZ_SERVICE, status).await;
            if ready {
                tracing::info!("ready: every provider has usable keys, revocations loaded");
            }
            last = Some(ready);
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = draining.cancelled(), if !draining.is_cancelled() => {}
            () = tokio::time::sleep(HEALTH_POLL) => {}
        }
    }
}
