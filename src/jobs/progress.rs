//! A job's progress as its task records it, and the heartbeat that says the task is alive
//! (a job whose heartbeat stops, because its process died, is abandoned: see
//! `crate::domain::JOB_STALE_AFTER`).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::domain::{JOB_BEAT_EVERY, JobId, JobState, now_millis};
use crate::store::{Store, StoreError};

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
