//! What `holdout serve` and `holdout worker` both build: the state folder, the store, the
//! engine, the parts of a run, and the recovered scheduler.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;

use super::AppError;
use crate::config::Config;
use crate::losses::LossStore;
use crate::paths::Paths;
use crate::queue::Queue;
use crate::run::Runner;
use crate::run::logs::LogStore;
use crate::run::plan::HostSettings;
use crate::sandbox::Backend;
use crate::sandbox::output_fs::{OutputArea, OutputMode};
use crate::scheduler::{Pacing, Scheduler, Sharing};
use crate::scoring::LabelsCache;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What both processes build: the state folder, the store, the engine, the run's parts.
pub(super) struct Core {
    pub(super) paths: Paths,
    pub(super) store: Store,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) host: HostSettings,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) losses: Arc<LossStore>,
    pub(super) logs: LogStore,
    pub(super) queue: Arc<Queue>,
}

impl Core {
    pub(super) async fn build(
        config: &Config,
        backend: Arc<dyn Backend>,
    ) -> Result<Core, AppError> {
        let paths = Paths::new(&config.state_dir);
        paths.create().map_err(|source| AppError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let database = config.database().map_err(AppError::Config)?;
        let store = Store::connect(&database, &paths).await?;
        backend.ping().await?;
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
        Ok(Core {
            telemetry: Arc::new(Telemetry::default()),
            losses: Arc::new(LossStore::new(store.clone())),
            logs: LogStore::new(store.clone()),
            queue: Arc::new(Queue::new(config.concurrency as usize)),
            paths,
            store,
            backend,
            host,
        })
    }

    /// The scheduler of this process's runs, recovered: alone on SQLite, one worker among
    /// others on PostgreSQL (its writes to a run then need its lease).
    pub(super) async fn scheduler(&self, config: &Config) -> Result<Scheduler, AppError> {
        let sharing = if self.store.is_shared() {
            let worker_id = if config.worker_name.is_empty() {
                self.host.instance.clone()
            } else {
                config.worker_name.clone()
            };
            let host_id = if config.host_id.is_empty() {
                self.backend.engine_id().await?
            } else {
                config.host_id.clone()
            };
            info!(worker = %worker_id, host = %host_id, "running submissions as an execution worker");
            Some(Sharing {
                worker_id,
                host_id,
                lease_ttl: config.lease_ttl.0,
                global_concurrency: config.global_concurrency,
            })
        } else {
            None
        };
        let store = match &sharing {
            Some(s) => self.store.for_worker(&s.worker_id),
            None => self.store.clone(),
        };
        let runner = Arc::new(Runner {
            store,
            engine: self.backend.clone(),
            paths: self.paths.clone(),
            labels: Arc::new(LabelsCache::new(8)),
            losses: self.losses.clone(),
            kept: crate::predictions::KeptPredictions::new(self.store.clone()),
            logs: self.logs.clone(),
            host: self.host.clone(),
            max_attempts: config.max_attempts,
            telemetry: self.telemetry.clone(),
        });
        let pacing = Pacing {
            grace: config.shutdown_grace.0,
            time_partition: config.time_partition,
            slice: config.partition_slice.0,
        };
        let mut scheduler = Scheduler::new(
            runner,
            self.queue.clone(),
            pacing,
            config.concurrency,
            sharing,
        );
        scheduler.recover().await?;
        Ok(scheduler)
    }

    /// Deletes stray uploads and work folders a previous process left (after recovery
    /// removed its containers).
    pub(super) async fn clean_scratch(&self) {
        for dir in [self.paths.uploads(), self.paths.work_dir()] {
            let _ = tokio::task::spawn_blocking(move || {
                // Output filesystems a crash left mounted go first: then no tree a run
                // built is ever walked.
                crate::sandbox::output_fs::unmount_all_under(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
            })
            .await;
        }
    }
}

/// Binds the metrics address, when one is configured.
pub(super) async fn bind_metrics(
    config: &Config,
) -> Result<(Option<TcpListener>, Option<SocketAddr>), AppError> {
    let listener = match config.metrics_listen.parse::<SocketAddr>() {
        Ok(addr) => Some(
            crate::telemetry::bind(addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })?,
        ),
        Err(_) => None,
    };
    let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    Ok((listener, addr))
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
