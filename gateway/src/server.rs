//! `sixfold-gateway serve`: opens the metadata, loads the cluster PKI, starts the cluster layer
//! and serves, until told to stop, two listeners:
//! - the public HTTP API on `listen` (HTTPS with HTTP/2 when `tls_cert`/`tls_key` are set);
//! - the internal listener on `internal_listen`, where nodes register and heartbeat over
//!   mutual TLS with their node certificates. The public port has no `/internal/*` route.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sixfold_certs::{GatewayTls, IdentityError, PeerRole, layout};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admission::AdmissionLimits;
use crate::backup::Backups;
use crate::backup::periodic::PeriodicBackups;
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::config::GatewayConfig;
use crate::http::conn_idle::ConnTimeouts;
use crate::http::listener::{self, ListenerSettings};
use crate::http::tls::{HANDSHAKE_TIMEOUT, TlsAcceptor};
use crate::http::{AppState, EdgeLimits, router};
use crate::meta::{Meta, MetaError, SharedMeta};
use crate::metrics::Metrics;
use crate::upload::UploadSettings;
use crate::upload::spool::clear_spool_dir;
use crate::upload::spool_budget::SpoolBudget;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no cluster certificates in {dir} (missing {missing}): run `sixfold-gateway certs init --dir {dir}` first",
        dir = dir.display()
    )]
    MissingCerts { dir: PathBuf, missing: &'static str },
    #[error("{0}")]
    GatewayId(#[from] crate::gateway_id::GatewayIdError),
    #[error(
        "{}: the gateway certificate names no gateway role ({reason}); it was made by an older \
         release. Re-issue it with `sixfold-gateway certs renew-gateway --dir {}` (nodes keep \
         working: the CA stays the same)",
        dir.join(layout::GATEWAY_CERT).display(),
        dir.display()
    )]
    LegacyGatewayCert { dir: PathBuf, reason: String },
    #[error("HTTPS certificate or key ({} / {}): {source}", cert.display(), key.display())]
    PublicTls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: sixfold_certs::CertsError,
    },
    #[error("cluster certificates in {}: {source}", dir.display())]
    Certs {
        dir: PathBuf,
        #[source]
        source: sixfold_certs::CertsError,
    },
    #[error("metadata {}: {source}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: MetaError,
    },
    #[error("metadata in PostgreSQL {url}: {source}")]
    PostgresMeta {
        url: String,
        #[source]
        source: MetaError,
    },
    #[error("first admin key: {0}")]
    Bootstrap(#[from] crate::auth::bootstrap::BootstrapError),
    #[error("cluster layer: {0}")]
    Cluster(#[from] ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(io::Error),
    #[error("{0}")]
    Task(String),
}

/// The upload settings a configuration asks for.
pub fn upload_settings(config: &GatewayConfig) -> UploadSettings {
    UploadSettings {
        max_file_size: config.max_file_size,
        split: config.split_policy(),
        spool_memory_bytes: config.spool_memory_bytes,
        spool_budget: SpoolBudget::new(config.spool_memory_total),
        spool_dir: config.spool_dir(),
        session_ttl: config.session_ttl,
        body_idle_timeout: config.body_idle_timeout,
        gateway_id: None,
    }
}

/// How the HTTP listener serves connections, from a configuration.
pub fn listener_settings(config: &GatewayConfig) -> ListenerSettings {
    ListenerSettings {
        timeouts: ConnTimeouts {
            header: config.header_timeout,
            keepalive: config.keepalive_timeout,
        },
        max_connections: config.max_connections,
    }
}

/// The admission limits a configuration asks for.
pub fn edge_limits(config: &GatewayConfig) -> EdgeLimits {
    let limits = |limit| AdmissionLimits {
        limit,
        queue: config.admission_queue,
        max_wait: config.admission_wait,
    };
    EdgeLimits {
        uploads: limits(config.max_uploads),
        downloads: limits(config.max_downloads),
    }
}

/// Loads the gateway's TLS configs from `dir` and checks its certificate names the gateway.
/// (A `cluster.token` from an older release is neither needed nor read.)
fn load_certs(dir: &Path) -> Result<GatewayTls, ServeError> {
    for file in [layout::CA_CERT, layout::GATEWAY_CERT, layout::GATEWAY_KEY] {
        if !dir.join(file).exists() {
            return Err(ServeError::MissingCerts {
                dir: dir.to_path_buf(),
                missing: file,
            });
        }
    }
    let certs = |source| ServeError::Certs {
        dir: dir.to_path_buf(),
        source,
    };
    let tls = GatewayTls::load(dir).map_err(certs)?;
    let legacy = |reason: String| ServeError::LegacyGatewayCert {
        dir: dir.to_path_buf(),
        reason,
    };
    match tls.identity() {
        Ok(identity) if identity.role == PeerRole::Gateway => Ok(tls),
        Ok(identity) => Err(legacy(format!("it is {}", identity.role))),
        Err(e @ IdentityError::NoRole) => Err(legacy(e.to_string())),
        Err(e) => Err(legacy(e.to_string())),
    }
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ServeError + 'a {
    move |source| ServeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    addr: SocketAddr,
    internal_addr: SocketAddr,
    https: bool,
    cluster: Cluster,
    /// Periodic metadata snapshots, when `backup_dir` is set.
    periodic_backups: Option<PeriodicBackups>,
    stop: Option<oneshot::Sender<()>>,
    http: JoinHandle<io::Result<()>>,
    internal: JoinHandle<io::Result<()>>,
    /// The S3 listener's address and task, when `s3_listen` is set.
    s3: Option<(SocketAddr, JoinHandle<io::Result<()>>)>,
    /// Aborts forgotten multipart uploads; stopped with the listeners.
    s3_sweep: Option<JoinHandle<()>>,
    /// The admin listener's address and task, when `admin_listen` is set.
    admin: Option<(SocketAddr, JoinHandle<io::Result<()>>)>,
    /// Moves parts between nodes; stopped before the cluster layer.
    rebalancer: crate::rebalance::job::Rebalancer,
}

impl RunningGateway {
    /// The address the HTTP API listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the internal (registration) listener; nodes take
    /// `--gateway https://<this>`.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The address of the S3 listener, if there is one.
    pub fn s3_addr(&self) -> Option<SocketAddr> {
        self.s3.as_ref().map(|(addr, _)| *addr)
    }

    /// The address of the admin API's own listener, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Whether the public API is served over HTTPS.
    pub fn https(&self) -> bool {
        self.https
    }

    /// The cluster layer (node registry and connections) of this gateway.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Stops accepting requests, lets running ones finish, then stops the cluster layer.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Waits for the HTTP server to end (after a shutdown), then stops the cluster layer.
    async fn wait(self) -> Result<(), ServeError> {
        let served = (&mut { self.http }).await;
        if let Some(periodic) = self.periodic_backups {
            periodic.stop().await;
        }
        if let Some((_, s3)) = self.s3 {
            match s3.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "S3 listener ended with an error"),
                Err(e) => tracing::warn!(error = %e, "S3 listener task failed"),
            }
        }
        if let Some(sweep) = self.s3_sweep {
            sweep.abort();
        }
        if let Some((_, admin)) = self.admin {
            match admin.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "admin listener ended with an error"),
                Err(e) => tracing::warn!(error = %e, "admin listener task failed"),
            }
        }
        match (&mut { self.internal }).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "internal listener ended with an error"),
            Err(e) => tracing::warn!(error = %e, "internal listener task failed"),
        }
        self.rebalancer.stop();
        self.cluster.shutdown().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Http(e)),
            Err(e) => Err(ServeError::Task(format!("HTTP server task: {e}"))),
        }
    }
}

/// Opens the metadata the config names: PostgreSQL when `metadata` is a URL, else redb in the
/// data dir (also handed back, for the snapshots that only redb has).
async fn open_metadata(
    config: &GatewayConfig,
    clock: crate::clock::SharedClock,
) -> Result<(SharedMeta, Option<Meta>), ServeError> {
    if let Some(target) = &config.metadata {
        let meta = crate::meta_postgres::PostgresMeta::open_with_clock(
            &target.url,
            &target.settings,
            clock,
        )
        .await
        .map_err(|source| ServeError::PostgresMeta {
            url: crate::meta_postgres::redacted(&target.url),
            source,
        })?;
        return Ok((Arc::new(meta), None));
    }
    let meta_path = config.meta_path();
    let opening = meta_path.clone();
    let meta = tokio::task::spawn_blocking(move || Meta::open_with_clock(opening, clock))
        .await
        .map_err(|e| ServeError::Task(format!("metadata open task: {e}")))?
        .map_err(|source| ServeError::Meta {
            path: meta_path.clone(),
            source,
        })?;
    Ok((Arc::new(meta.clone()), Some(meta)))
}

/// Starts everything and returns once the HTTP listener is bound.
pub async fn start(config: &GatewayConfig) -> Result<RunningGateway, ServeError> {
    sixfold_certs::install_crypto_provider();
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(io_error("cannot create data dir", data_dir))?;
    let spool_dir = config.spool_dir();
    std::fs::create_dir_all(&spool_dir).map_err(io_error("cannot create spool dir", &spool_dir))?;
    let stale =
        clear_spool_dir(&spool_dir).map_err(io_error("cannot clear spool dir", &spool_dir))?;
    if stale > 0 {
        tracing::info!(files = stale, "removed spool files of interrupted uploads");
    }
    let tls = load_certs(&config.certs_dir)?;
    let gateway_id = crate::gateway_id::load_or_create(data_dir)?;
    let public_tls = match &config.tls {
        Some(files) => Some(
            TlsAcceptor::public_from_files(&files.cert, &files.key).map_err(|source| {
                ServeError::PublicTls {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let internal_tls = TlsAcceptor::new(tls.internal_server_config(), HANDSHAKE_TIMEOUT);

    // The one clock every component of this process reads.
    let clock = crate::clock::system();
    let (meta, redb) = open_metadata(config, clock.clone()).await?;
    let stale = if config.replace_stale_admin_token {
        crate::auth::bootstrap::StaleToken::MoveAside
    } else {
        crate::auth::bootstrap::StaleToken::Refuse
    };
    crate::auth::bootstrap::ensure_first_admin(meta.as_ref(), &config.admin_token_file, stale)
        .await?;

    let cluster_config = ClusterConfig {
        heartbeat_interval: config.heartbeat_interval,
        down_after: config.down_after,
        cleanup_interval: config.cleanup_interval,
        session_ttl: config.session_ttl,
        orphan_grace: config.orphan_grace,
        orphan_scan_interval: config.orphan_scan_interval,
        orphan_scan_delay: config.orphan_scan_delay,
        mtu: config.mtu,
        request_timeout: config.node_timeout,
        stream_window: u32::try_from(config.node_stream_window).unwrap_or(u32::MAX),
        node_max_parts: config.node_max_parts,
        clock: clock.clone(),
        gateway_id,
        gateway_name: config.listen.to_string(),
        gateway_timeout: config.gateway_timeout,
        ..ClusterConfig::default()
    };
    let cluster = Cluster::start(cluster_config, meta.clone(), tls.client_config()).await?;

    let mut listeners = Vec::with_capacity(2);
    for addr in [config.listen, config.internal_listen] {
        match TcpListener::bind(addr).await {
            Ok(listener) => listeners.push(listener),
            Err(source) => {
                cluster.shutdown().await;
                return Err(ServeError::Bind { addr, source });
            }
        }
    }
    let internal_listener = listeners
        .pop()
        .ok_or_else(|| ServeError::Task("no listener".into()))?;
    let listener = listeners
        .pop()
        .ok_or_else(|| ServeError::Task("no listener".into()))?;
    let s3_listener = match config.s3_listen {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(source) => {
                cluster.shutdown().await;
                return Err(ServeError::Bind { addr, source });
            }
        },
        None => None,
    };
    let admin_listener = match config.admin_listen {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(source) => {
                cluster.shutdown().await;
                return Err(ServeError::Bind { addr, source });
            }
        },
        None => None,
    };
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    let internal_addr = internal_listener.local_addr().map_err(ServeError::Http)?;
    let metrics = Arc::new(Metrics::new());
    metrics.attach_reconcile(Arc::clone(cluster.reconcile_stats()));
    metrics.attach_job_leases(vec![
        Arc::clone(cluster.cleanup_lease()),
        Arc::clone(cluster.rebalance_lease()),
    ]);
    // Snapshots copy redb; a PostgreSQL database is backed up with PostgreSQL's own tools.
    let backups = redb
        .clone()
        .map(|redb| Backups::new(redb, config.spool_dir()));
    if let Some(backups) = &backups {
        metrics.attach_backups(Arc::clone(backups.stats()));
    }
    let periodic_backups = backups
        .as_ref()
        .and_then(|b| PeriodicBackups::start(b.clone(), &config.backup));
    let rebalancer = match crate::rebalance::job::Rebalancer::start_gated(
        meta.clone(),
        Arc::new(cluster.clone()),
        Arc::new(cluster.clone()),
        config.rebalance,
        Arc::new(cluster.clone()),
    )
    .await
    {
        Ok(job) => job,
        Err(source) => {
            cluster.shutdown().await;
            return Err(ServeError::Meta {
                path: config.meta_path(),
                source,
            });
        }
    };
    metrics.attach_rebalance(rebalancer.clone());
    let state = AppState::with_policy(
        meta,
        Arc::new(cluster.clone()),
        Arc::clone(&metrics),
        crate::upload::UploadSettings {
            gateway_id: Some(gateway_id),
            ..upload_settings(config)
        },
        edge_limits(config),
        config.auth_policy(),
    );
    let admin = crate::http::admin_nodes::router(cluster.clone())
        .merge(crate::http::admin_recover::router(
            crate::recovery::Recovery::new(cluster.clone()),
        ))
        .merge(crate::http::admin_scrub::router(
            cluster.clone(),
            state.meta().clone(),
        ));
    let admin = match backups {
        Some(backups) => admin.merge(crate::http::admin_backup::router(backups)),
        None => admin,
    };
    let admin = admin.merge(crate::http::admin_rebalance::router(rebalancer.clone()));
    let full_app = router(state.clone(), admin);
    // With an admin listener of its own, the public one refuses the admin paths.
    let app = match admin_listener {
        Some(_) => full_app.clone().layer(axum::middleware::from_fn(
            crate::http::admin_edge::refuse_admin,
        )),
        None => full_app.clone(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    // Both listeners stop together: the internal one when the public one's stop fires.
    let (internal_stop, internal_stopped) = tokio::sync::watch::channel(false);
    let settings = listener_settings(config);
    let https = public_tls.is_some();
    // The S3 listener (if any) serves with the same TLS and stops with the public one.
    let (public_tls_s3, s3_stopped) = (public_tls.clone(), internal_stop.subscribe());
    let (public_tls_admin, admin_stopped) = (public_tls.clone(), internal_stop.subscribe());
    let http_metrics = Arc::clone(&metrics);
    let http = tokio::spawn(async move {
        let served =
            listener::serve_tls(listener, app, settings, http_metrics, public_tls, async {
                let _ = stopped.await;
            })
            .await;
        let _ = internal_stop.send(true);
        served
    });
    let (s3, s3_sweep) = match s3_listener {
        Some(s3_listener) => {
            let s3_addr = s3_listener.local_addr().map_err(ServeError::Http)?;
            let s3_app = crate::s3::router(state.clone());
            let (s3_metrics, s3_tls) = (Arc::clone(&metrics), public_tls_s3);
            let mut stopped = s3_stopped;
            let task = tokio::spawn(async move {
                listener::serve_tls(
                    s3_listener,
                    s3_app,
                    settings,
                    s3_metrics,
                    s3_tls,
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )
                .await
            });
            let sweep = tokio::spawn(crate::s3::sweep_uploads(
                state.clone(),
                crate::s3::MULTIPART_UPLOAD_TTL,
            ));
            tracing::info!(s3_listen = %s3_addr, "S3 API serving");
            (Some((s3_addr, task)), Some(sweep))
        }
        None => (None, None),
    };
    let admin_task = match admin_listener {
        Some(admin_listener) => {
            let admin_addr = admin_listener.local_addr().map_err(ServeError::Http)?;
            let admin_metrics = Arc::clone(&metrics);
            let mut stopped = admin_stopped;
            let task = tokio::spawn(async move {
                listener::serve_tls(
                    admin_listener,
                    full_app,
                    settings,
                    admin_metrics,
                    public_tls_admin,
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )
                .await
            });
            tracing::info!(admin_listen = %admin_addr, "admin API serving on its own listener");
            Some((admin_addr, task))
        }
        None => None,
    };
    let internal_app = cluster.internal_router();
    let internal = tokio::spawn(async move {
        let mut stopped = internal_stopped;
        listener::serve_tls(
            internal_listener,
            internal_app,
            settings,
            metrics,
            Some(internal_tls),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        )
        .await
    });
    tracing::info!(
        listen = %addr,
        https,
        internal_listen = %internal_addr,
        data_dir = %config.data_dir.display(),
        certs_dir = %config.certs_dir.display(),
        "gateway serving"
    );
    Ok(RunningGateway {
        addr,
        internal_addr,
        https,
        cluster,
        periodic_backups,
        stop: Some(stop),
        http,
        internal,
        s3,
        s3_sweep,
        admin: admin_task,
        rebalancer,
    })
}

/// Serves until `shutdown` resolves, then stops gracefully.
pub async fn serve_until(
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await
}

/// `sixfold-gateway serve`: serves until SIGTERM or Ctrl-C.
pub async fn serve(config: &GatewayConfig) -> Result<(), ServeError> {
    serve_until(config, shutdown_signal()).await
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed by this call, not on
/// first poll, so a signal that arrives right after readiness is reported still stops the
/// gateway gracefully. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, signal = name, "cannot listen for the signal");
            None
        }
    };
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(int.as_mut()) => {},
            () = received(term.as_mut()) => {},
        }
    }
}

/// Resolves when `signal` is delivered; never when it could not be listened for.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;

    fn config(dir: &Path) -> GatewayConfig {
        let args = ServeArgs {
            data_dir: Some(dir.to_path_buf()),
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            internal_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..ServeArgs::default()
        };
        GatewayConfig::resolve(&args).expect("config")
    }

    #[tokio::test]
    async fn missing_certs_say_how_to_make_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = start(&config(dir.path())).await.err().expect("no certs");
        let text = err.to_string();
        assert!(matches!(err, ServeError::MissingCerts { .. }), "{text}");
        assert!(text.contains("sixfold-gateway certs init --dir"), "{text}");
        assert!(
            text.contains(&dir.path().join("certs").display().to_string()),
            "{text}"
        );
    }

    #[tokio::test]
    async fn starts_and_reports_unhealthy_without_nodes() {
        sixfold_certs::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        sixfold_certs::init_cluster(&config.certs_dir, &sixfold_certs::InitOptions::default())
            .expect("certs init");
        let gateway = start(&config).await.expect("start");
        let base = format!("http://{}", gateway.local_addr());
        // The first start made an admin key and left its token in the data dir.
        let token = std::fs::read_to_string(dir.path().join("admin.token")).expect("token");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()).parse().expect("header"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client");

        let health = client
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status().as_u16(), 503);
        let json: serde_json::Value = health.json().await.expect("json");
        assert_eq!(json["error"], "not_enough_nodes");
        assert_eq!(json["nodes_up"], 0);
        assert_eq!(json["metadata"], "ok");

        let nodes: serde_json::Value = client
            .get(format!("{base}/nodes"))
            .send()
            .await
            .expect("nodes")
            .json()
            .await
            .expect("json");
        assert_eq!(nodes, serde_json::json!([]));

        // The nodes' registration endpoint is not on the public port at all.
        let register = client
            .post(format!("{base}/internal/nodes/register"))
            .body("{}")
            .send()
            .await
            .expect("register");
        assert_eq!(register.status().as_u16(), 404);

        // An upload with no nodes is refused before any byte is stored.
        let upload = client
            .post(format!("{base}/files"))
            .body(vec![0u8; 10])
            .send()
            .await
            .expect("upload");
        assert_eq!(upload.status().as_u16(), 503);

        gateway.shutdown().await.expect("shutdown");
        // The metadata is closed again: a second start succeeds on the same dir.
        let again = start(&config).await.expect("restart");
        again.shutdown().await.expect("shutdown");
    }
}
