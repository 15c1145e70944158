//! A job's progress as its task records it, the heartbeat that says the task is alive (a
//! job whose heartbeat stops, because its process died, is abandoned: see
//! `crate::domain::JOB_STALE_AFTER`), and how a job that stopped before its commit ends:
//! the same for every kind of job.

use std::sync::atomic::{AtomicU32, Ordering};

use tracing::{error, info, warn};

use crate::domain::{JOB_BEAT_EVERY, JobId, JobState, error_chain, now_millis};
use crate::store::{Store, StoreError};

/// Why a job's work stopped before its commit.
pub(super) enum Stop {
    /// The job's row is no longer RUNNING (cancelled).
    NotRunning,
    /// The application is shutting down.
    Shutdown,
    /// Something failed; the job ends FAILED with this message.
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(format!("store: {}", error_chain(&e)))
    }
}

/// What a job has done, shared by its work and its heartbeat.
pub(super) struct Progress {
    store: Store,
    id: JobId,
    done: AtomicU32,
    total: AtomicU32,
}

impl Progress {
    /// Progress of job `id`, nothing done yet.
    pub(super) fn new(store: Store, id: JobId) -> Self {
        Self {
            store,
            id,
            done: AtomicU32::new(0),
            total: AtomicU32::new(0),
        }
    }

    /// Records progress; `Ok(false)` when the job is no longer RUNNING (cancelled).
    pub(super) async fn set(&self, done: u32, total: u32) -> Result<bool, StoreError> {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.record().await
    }

    /// Records progress; [`Stop::NotRunning`] when the job was cancelled.
    pub(super) async fn step(&self, done: u32, total: u32) -> Result<(), Stop> {
        if self.set(done, total).await? {
            Ok(())
        } else {
            Err(Stop::NotRunning)
        }
    }

    /// Ends the job after its work returned `outcome`: a committed job has already ended
    /// and a cancelled one was ended by its cancel; anything else ends FAILED with nothing
    /// changed. `kind` names the job in the logs.
    pub(super) async fn end(&self, outcome: Result<(), Stop>, kind: &'static str) {
        let id = &self.id;
        let message = match outcome {
            Ok(()) => return,
            Err(Stop::NotRunning) => {
                info!(job_id = %id, kind, "job cancelled; nothing was changed");
                return;
            }
            Err(Stop::Shutdown) => {
                "interrupted: the server stopped before the job committed; nothing was changed"
                    .to_owned()
            }
            Err(Stop::Failed(m)) => format!("{m}; nothing was changed"),
        };
        warn!(job_id = %id, kind, message = %message, "job failed");
        let ended = self
            .store
            .end_job(id, JobState::Failed, message, now_millis())
            .await;
        if let Err(e) = ended {
            error!(job_id = %id, error = %error_chain(&e), "cannot record the end of a job");
        }
    }

    async fn record(&self) -> Result<bool, StoreError> {
        let state = self
            .store
            .job_progress(
                &self.id,
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                now_millis(),
            )
            .await?;
        Ok(state == Some(JobState::Running))
    }

    /// Beats every `JOB_BEAT_EVERY` while the job runs; never returns (the job's work is
    /// raced against it). A failed beat is retried at the next.
    pub(super) async fn beat_forever(&self) {
        loop {
            tokio::time::sleep(JOB_BEAT_EVERY).await;
            if let Err(e) = self.record().await {
                tracing::warn!(job_id = %self.id, error = %crate::domain::error_chain(&e), "job heartbeat failed");
            }
        }
    }
}
