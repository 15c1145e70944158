//! Wiring: build every part, bind the port (exposed before serving, so tests can use port
//! 0), recover from the last run, then serve until a shutdown signal.
//!
//! Shutdown order: stop accepting calls and end watch streams, let live runs finish within
//! the grace period, hand the rest back to the queue (their containers removed), then return.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, AuditApi, ChallengesApi, LeaderboardsApi, SubmissionsApi};
use crate::audit::Audit;
use crate::auth::Tokens;
use crate::challenges::Challenges;
use crate::config::Config;
use crate::janitor::Janitor;
use crate::leaderboard::Leaderboards;
use crate::losses::LossStore;
use crate::paths::Paths;
use crate::pb;
use crate::queue::Queue;
use crate::run::Runner;
use crate::run::logs::LogStore;
use crate::run::plan::HostSettings;
use crate::sandbox::Backend;
use crate::sandbox::output_fs::{OutputArea, OutputMode};
use crate::scheduler::{Pacing, Scheduler};
use crate::scoring::LabelsCache;
use crate::store::Store;
use crate::submissions::{Submissions, SubmissionsParts};
use crate::telemetry::Telemetry;

/// Failures to start or run the server, each a one-line message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The state folder is unusable.
    #[error("cannot use state folder {path}: {source}")]
    StateDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The Docker engine is not reachable.
    #[error("{0}")]
    Engine(#[from] crate::sandbox::SandboxError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Recovery after a restart failed.
    #[error("cannot recover state")]
    Recover(#[from] crate::scheduler::RecoverError),
    /// Per-run output filesystems cannot be made on this host.
    #[error(
        "per-run output filesystems need root and loop devices (mkfs.ext4, mount -o loop): {0}; \
         on a host without them set output_filesystem = \"directory\" (weaker: a watcher caps /output)"
    )]
    OutputFilesystem(String),
    /// Server reflection could not be built from the descriptors.
    #[error("cannot build server reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("server error: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A built, bound, not yet serving application.
pub struct Application {
    tokens: Tokens,
    instance: String,
    audit: Audit,
    challenges: Challenges,
    submissions: Submissions,
    leaderboards: Leaderboards,
    scheduler: Scheduler,
    janitor: Janitor,
    telemetry: Arc<Telemetry>,
    metrics_listener: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    listener: TcpListener,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to the Docker engine named in the config and builds the application.
    pub async fn build(config: Config) -> Result<Application, AppError> {
        let backend = crate::sandbox::docker::DockerBackend::connect(&config.docker_host).await?;
        Self::build_with_backend(config, Arc::new(backend)).await
    }

    /// Builds the application on a given backend: opens the store, binds the port, recovers.
    pub async fn build_with_backend(
        config: Config,
        backend: Arc<dyn Backend>,
    ) -> Result<Application, AppError> {
        let paths = Paths::new(&config.state_dir);
        paths.create().map_err(|source| AppError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let store = Store::open(&paths.database())?;
        backend.ping().await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics_listen.parse::<SocketAddr>() {
            Ok(addr) => Some(
                crate::telemetry::bind(addr)
                    .await
                    .map_err(|source| AppError::Bind { addr, source })?,
            ),
            Err(_) => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let host = HostSettings {
            data_root: config.data_root.clone(),
            defaults: config.defaults,
            caps: config.caps,
            default_isolation: config.default_isolation,
            instance: paths.instance(),
            output: config.output_filesystem,
        };
        if config.output_filesystem == OutputMode::Loop {
            check_output_filesystems(&paths).await?;
        }
        let telemetry = Arc::new(Telemetry::default());
        let losses = Arc::new(LossStore::new(store.clone()));
        let logs = LogStore::new(store.clone());
        let queue = Arc::new(Queue::new(config.concurrency as usize));
        let runner = Arc::new(Runner {
            store: store.clone(),
            engine: backend.clone(),
            paths: paths.clone(),
            labels: Arc::new(LabelsCache::new(8)),
            losses: losses.clone(),
            logs: logs.clone(),
            host: host.clone(),
            max_attempts: config.max_attempts,
            telemetry: telemetry.clone(),
        });
        let pacing = Pacing {
            grace: config.shutdown_grace.0,
            time_partition: config.time_partition,
            slice: config.partition_slice.0,
        };
        let scheduler = Scheduler::new(runner, queue.clone(), pacing);
        scheduler.recover(&paths).await?;
        let janitor = Janitor::new(
            store.clone(),
            paths.clone(),
            logs.clone(),
            config.retention.0,
            telemetry.clone(),
        );
        let leaderboards = Leaderboards::new(store.clone(), losses, host.clone());
        let submissions = Submissions::new(SubmissionsParts {
            store: store.clone(),
            queue,
            paths: paths.clone(),
            logs,
            host: host.clone(),
            max_queued: config.max_queued,
            leaderboards: leaderboards.clone(),
            telemetry: telemetry.clone(),
            max_uploads_per_token: config.max_uploads_per_token as usize,
            upload_idle_timeout: config.upload_idle_timeout.0,
        });
        Ok(Application {
            tokens: Tokens::new(&config.tokens),
            instance: host.instance.clone(),
            audit: Audit::new(store.clone(), host.clone()),
            challenges: Challenges::new(store, backend, host),
            submissions,
            leaderboards,
            scheduler,
            janitor,
            telemetry,
            metrics_listener,
            metrics_addr,
            listener,
            local_addr,
            shutdown: CancellationToken::new(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound metrics address, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The label of this instance's containers on the engine (derived from `state_dir`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `signal` completes or the shutdown token fires, then shuts down
    /// gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Application {
            tokens,
            audit,
            challenges,
            submissions,
            leaderboards,
            scheduler,
            janitor,
            telemetry,
            listener,
            local_addr,
            shutdown,
            metrics_listener,
            ..
        } = self;
        let auth = api::authenticate(Arc::new(tokens));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<pb::submissions_server::SubmissionsServer<SubmissionsApi>>()
            .await;
        health_reporter
            .set_serving::<pb::challenges_server::ChallengesServer<ChallengesApi>>()
            .await;
        health_reporter
            .set_serving::<pb::leaderboards_server::LeaderboardsServer<LeaderboardsApi>>()
            .await;
        health_reporter
            .set_serving::<pb::audit_server::AuditServer<AuditApi>>()
            .await;
        // Reflection in both versions: grpcurl speaks v1, while Python's grpcio-reflection,
        // grpc_cli and older tools still speak v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let scheduler = tokio::spawn(scheduler.run(shutdown.clone()));
        let janitor = tokio::spawn(janitor.run(shutdown.clone()));
        let metrics = metrics_listener
            .map(|l| tokio::spawn(crate::telemetry::serve(l, telemetry, shutdown.clone())));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        });

        info!(addr = %local_addr, "holdout serving");
        let serve_stop = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(pb::challenges_server::ChallengesServer::with_interceptor(
                ChallengesApi { challenges },
                auth.clone(),
            ))
            .add_service(pb::submissions_server::SubmissionsServer::with_interceptor(
                SubmissionsApi {
                    submissions,
                    shutdown: shutdown.clone(),
                },
                auth.clone(),
            ))
            .add_service(
                pb::leaderboards_server::LeaderboardsServer::with_interceptor(
                    LeaderboardsApi { leaderboards },
                    auth.clone(),
                ),
            )
            .add_service(pb::audit_server::AuditServer::with_interceptor(
                AuditApi { audit },
                auth,
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { serve_stop.cancelled().await },
            );
        let served = server.await;
        shutdown.cancel();
        info!("no longer accepting calls; waiting for the scheduler");
        let _ = scheduler.await;
        let _ = janitor.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        info!("holdout stopped");
        served.map_err(AppError::from)
    }
}

/// Makes, writes to and removes one small output filesystem, so a host that cannot (no
/// root, no loop devices) is told at start, not at its first run.
async fn check_output_filesystems(paths: &Paths) -> Result<(), AppError> {
    let dir = paths.work_dir().join("output-check");
    tokio::task::spawn_blocking(move || {
        crate::sandbox::output_fs::unmount(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let made = OutputArea::create(OutputMode::Loop, &dir, 1 << 20)
            .map_err(|e| crate::domain::error_chain(&e))
            .and_then(|area| {
                std::fs::write(area.path().join("probe"), b"ok").map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_dir_all(&dir);
        made
    })
    .await
    .map_err(|e| AppError::OutputFilesystem(e.to_string()))?
    .map_err(AppError::OutputFilesystem)
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutdown signal received");
}
