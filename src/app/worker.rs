//! `holdout worker`: an execution worker process.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::AppError;
use super::core::{Core, bind_metrics};
use crate::config::Config;
use crate::janitor::Janitor;
use crate::sandbox::Backend;
use crate::scheduler::Scheduler;
use crate::telemetry::Telemetry;

/// `holdout worker`: runs submissions claimed from a shared PostgreSQL store on this host's
/// Docker Engine, and serves nothing but its metrics.
pub struct WorkerProcess {
    scheduler: Scheduler,
    janitor: Janitor,
    telemetry: Arc<Telemetry>,
    metrics_listener: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    instance: String,
    shutdown: CancellationToken,
}

impl WorkerProcess {
    /// Connects to the Docker engine named in the config and builds the worker.
    pub async fn build(config: Config) -> Result<WorkerProcess, AppError> {
        let backend = crate::sandbox::docker::DockerBackend::connect(&config.docker_host).await?;
        Self::build_with_backend(config, Arc::new(backend)).await
    }

    /// Builds the worker on a given backend: connects, recovers its own leftovers.
    pub async fn build_with_backend(
        config: Config,
        backend: Arc<dyn Backend>,
    ) -> Result<WorkerProcess, AppError> {
        if config.database().map_err(AppError::Config)? == crate::store::DatabaseUrl::Sqlite {
            return Err(AppError::Config(
                "holdout worker needs a shared database: set database_url = \"postgres://...\" (a single server on SQLite runs its submissions itself)".into(),
            ));
        }
        let core = Core::build(&config, backend).await?;
        let (metrics_listener, metrics_addr) = bind_metrics(&config).await?;
        let scheduler = core.scheduler(&config).await?;
        core.clean_scratch().await;
        let janitor = Janitor::new(
            core.store.clone(),
            core.paths.clone(),
            core.logs.clone(),
            config.retention.0,
            core.telemetry.clone(),
        );
        Ok(WorkerProcess {
            scheduler,
            janitor,
            telemetry: core.telemetry,
            metrics_listener,
            metrics_addr,
            instance: core.host.instance,
            shutdown: CancellationToken::new(),
        })
    }

    /// The bound metrics address, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The label of this worker's containers on the engine.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A token that stops the worker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs submissions until `signal` completes or the shutdown token fires; then lets
    /// live runs finish for the grace period and hands the rest back.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()> + Send + 'static) {
        let WorkerProcess {
            scheduler,
            janitor,
            telemetry,
            metrics_listener,
            shutdown,
            ..
        } = self;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        });
        let janitor = tokio::spawn(janitor.run(shutdown.clone()));
        let metrics = metrics_listener
            .map(|l| tokio::spawn(crate::telemetry::serve(l, telemetry, shutdown.clone())));
        info!("holdout worker running");
        scheduler.run(shutdown.clone()).await;
        shutdown.cancel();
        let _ = janitor.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        info!("holdout worker stopped");
    }
}
