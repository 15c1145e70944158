//! The shared state every part of the service works through: configuration, the store, the
//! container backend, the queue's handle, the labels cache, and the channel on which state
//! changes are announced to watchers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::auth::Tokens;
use crate::config::Config;
use crate::domain::{DomainError, Submission, SubmissionId};
use crate::queue::Queue;
use crate::sandbox::Backend;
use crate::scoring::LabelsCache;
use crate::store::{Store, StoreError};

/// Where the service keeps its files under `state_dir`.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths under `state_dir`; [`Paths::create`] makes the folders.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.to_owned(),
        }
    }

    /// Creates every folder the service writes to.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [
            self.archives(),
            self.logs_dir(),
            self.work_dir(),
            self.uploads(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("holdout.db")
    }

    /// Content-addressed archives.
    pub fn archives(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// The stored archive with this SHA-256.
    pub fn archive(&self, sha256: &str) -> PathBuf {
        self.archives().join(format!("{sha256}.bin"))
    }

    /// Folder of run logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The logs of one submission's run.
    pub fn logs(&self, id: &SubmissionId) -> PathBuf {
        self.logs_dir().join(id.as_str())
    }

    /// Folder of per-run work folders.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The work folder of one run (extracted code, output).
    pub fn work(&self, id: &SubmissionId) -> PathBuf {
        self.work_dir().join(id.as_str())
    }

    /// Per-row losses of scored submissions (parameter-free ladder).
    pub fn losses(&self) -> PathBuf {
        self.root.join("losses")
    }

    /// Uploads in progress; anything here at start is debris of a crash.
    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }
}

/// The service's shared state.
pub struct Core {
    /// Validated configuration.
    pub config: Config,
    /// Configured tokens.
    pub tokens: Tokens,
    /// Persistence.
    pub store: Store,
    /// Container engine.
    pub backend: Arc<dyn Backend>,
    /// Files under `state_dir`.
    pub paths: Paths,
    /// Labels parsed once per challenge file.
    pub labels: LabelsCache,
    /// The scheduler's handle.
    pub queue: Queue,
    /// Per-row public losses for the parameter-free ladder (never released).
    pub losses: crate::losses::LossStore,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Identifies this service's containers on a shared engine (derived from `state_dir`).
    pub instance: String,
    events: broadcast::Sender<Arc<Submission>>,
}

impl Core {
    /// Assembles the state; nothing starts running here.
    pub fn new(config: Config, store: Store, backend: Arc<dyn Backend>) -> Arc<Core> {
        let paths = Paths::new(&config.state_dir);
        let state_dir =
            std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
        let instance = crate::auth::digest(&state_dir.to_string_lossy())[..16].to_owned();
        let (events, _) = broadcast::channel(1024);
        Arc::new(Core {
            tokens: Tokens::new(&config.tokens),
            queue: Queue::new(config.concurrency as usize),
            config,
            store,
            backend,
            losses: crate::losses::LossStore::new(paths.losses()),
            paths,
            labels: LabelsCache::new(8),
            instance,
            metrics: Default::default(),
            events,
        })
    }

    /// Announces that `s` changed; call only after the change is committed.
    pub fn announce(&self, s: &Submission) {
        let _ = self.events.send(Arc::new(s.clone()));
    }

    /// A receiver of every announced change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Submission>> {
        self.events.subscribe()
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        DomainError::internal(e)
    }
}
