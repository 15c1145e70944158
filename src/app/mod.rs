//! Wiring: build every part, bind the port (exposed before serving, so tests can use port
//! 0), recover from the last run, then serve until a shutdown signal.
//!
//! Two processes are built here. [`Application`] (`holdout serve`) serves the API and, with
//! `execution = "local"`, runs submissions too: alone on SQLite, or as one worker among
//! others on PostgreSQL. [`WorkerProcess`] (`holdout worker`) only runs submissions,
//! claimed from PostgreSQL, and serves its metrics.
//!
//! Shutdown order: stop accepting calls and end watch streams, let live runs finish within
//! the grace period, hand the rest back to the queue (their containers removed), then return.

mod core;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::core::{Core, bind_metrics};
pub use worker::WorkerProcess;

use crate::api::{self, AuditApi, ChallengesApi, LeaderboardsApi, SubmissionsApi};
use crate::audit::Audit;
use crate::auth::Tokens;
use crate::challenges::Challenges;
use crate::challenges::closer::Closer;
use crate::config::{Config, Execution};
use crate::janitor::Janitor;
use crate::leaderboard::Leaderboards;
use crate::pb;
use crate::sandbox::Backend;
use crate::scheduler::Scheduler;
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
    /// The configuration does not fit the command.
    #[error("{0}")]
    Config(String),
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
    /// None when this process serves the API only.
    scheduler: Option<Scheduler>,
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
        let core = Core::build(&config, backend.clone()).await?;
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
        let (metrics_listener, metrics_addr) = bind_metrics(&config).await?;
        let scheduler = match config.execution {
            Execution::Workers => None,
            Execution::Local => Some(core.scheduler(&config).await?),
        };
        core.clean_scratch().await;
        let Core {
            paths,
            store,
            host,
            telemetry,
            losses,
            logs,
            queue,
            ..
        } = core;
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
        let challenges = Challenges::new(store.clone(), backend, host.clone());
        // Deadlines that passed while no server ran close before the first call is served.
        if let Err(e) = challenges.close_due(crate::domain::now_millis()).await {
            tracing::error!(error = %crate::domain::error_chain(&e), "closing challenges past their deadline at start failed");
        }
        Ok(Application {
            tokens: Tokens::new(&config.tokens),
            instance: host.instance.clone(),
            audit: Audit::new(store, host, config.lease_ttl.0),
            challenges,
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

        let scheduler = scheduler.map(|s| tokio::spawn(s.run(shutdown.clone())));
        let janitor = tokio::spawn(janitor.run(shutdown.clone()));
        let closer = tokio::spawn(Closer::new(challenges.clone()).run(shutdown.clone()));
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
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        let _ = janitor.await;
        let _ = closer.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        info!("holdout stopped");
        served.map_err(AppError::from)
    }
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
