//! The scheduler: recovery after a start, the loop that starts what fits, and the hand-back
//! on shutdown. It owns every run task (one `JoinSet`), reacts to how each run ended
//! ([`RunEnd`]), and is the only code that decides *when* a run starts; *which* one is
//! `crate::queue`'s fairness, *how* it runs is `crate::run`'s.
//!
//! It wakes on every change the store publishes (a new submission, a run's end, a cancel),
//! and every two seconds in case a wake-up was lost. After the engine failed a run, no run
//! starts until the engine answers a ping again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::domain::{
    ChallengeId, Interruption, SubmissionId, SubmissionState, error_chain, now_millis,
};
use crate::paths::Paths;
use crate::queue::Queue;
use crate::run::{RunEnd, Runner, StopReason};
use crate::sandbox::SandboxError;
use crate::store::{QueuedRow, StoreError};

/// Recovery could not finish; the server must not start serving.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The engine could not list this instance's containers.
    #[error("cannot list leftover containers")]
    Engine(#[from] SandboxError),
    /// The store failed.
    #[error("cannot read or re-queue interrupted runs")]
    Store(#[from] StoreError),
}

/// Starts runs as slots free up; owned by the application.
pub struct Scheduler {
    runner: Arc<Runner>,
    queue: Arc<Queue>,
    grace: Duration,
    engine_down: bool,
    tasks: JoinSet<RunEnd>,
    running: HashMap<tokio::task::Id, SubmissionId>,
}

impl Scheduler {
    /// A scheduler that runs submissions with `runner`, as fairly as `queue` orders them,
    /// and on shutdown lets live runs finish for `grace` before handing them back.
    pub fn new(runner: Arc<Runner>, queue: Arc<Queue>, grace: Duration) -> Self {
        Self {
            runner,
            queue,
            grace,
            engine_down: false,
            tasks: JoinSet::new(),
            running: HashMap::new(),
        }
    }

    /// Reconciles the store with the engine after a start: removes every container this
    /// instance left behind, then hands RUNNING/SCORING submissions back to the queue (or
    /// fails them as INTERNAL_ERROR, uncharged, after `max_attempts`). Stray uploads and
    /// work folders are deleted.
    pub async fn recover(&self, paths: &Paths) -> Result<(), RecoverError> {
        let r = &self.runner;
        let owned = r.engine.list_owned().await?;
        for c in owned.iter().filter(|c| c.instance == r.host.instance) {
            warn!(container = %c.container_id, submission_id = %c.submission_id, "removing container left by a previous run");
            if let Err(e) = r.engine.remove(&c.container_id).await {
                error!(container = %c.container_id, error = %error_chain(&e), "cannot remove leftover container");
            }
        }
        let interrupted = r
            .store
            .submissions_in(&[SubmissionState::Running, SubmissionState::Scoring])
            .await?;
        for s in interrupted {
            let Ok(t) = s.requeue(Interruption::Restart, r.max_attempts, now_millis()) else {
                continue;
            };
            if t.next().state == SubmissionState::Queued {
                info!(submission_id = %s.id, attempts = s.attempts, "re-queueing run interrupted by a restart");
            } else {
                warn!(submission_id = %s.id, attempts = s.attempts, "run interrupted too often, failing as internal error");
            }
            r.store.commit(t).await?;
        }
        for dir in [paths.uploads(), paths.work_dir()] {
            let _ = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
            })
            .await;
        }
        Ok(())
    }

    /// Runs until `shutdown` fires, then lets live runs finish for the grace period, stops
    /// the rest and hands them back to the queue. Every run task is owned here, so none
    /// outlives this function.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut changes = self.runner.store.subscribe();
        loop {
            if let Err(e) = self.start_what_fits().await {
                error!(error = %error_chain(&e), "scheduler cannot read the queue");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changes.recv() => {
                    if let Err(RecvError::Closed) = change {
                        break;
                    }
                }
                Some(done) = self.tasks.join_next_with_id() => self.reap(done).await,
                // A periodic look covers wake-ups lost to races and errors that cleared.
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
        info!(
            live = self.queue.live_count(),
            grace_ms = self.grace.as_millis() as u64,
            "scheduler stopping, waiting for live runs"
        );
        let deadline = tokio::time::sleep(self.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = self.tasks.join_next_with_id() => match done {
                    Some(done) => self.reap(done).await,
                    None => break,
                },
                _ = &mut deadline => {
                    info!(live = self.queue.live_count(), "grace period over, handing live runs back to the queue");
                    self.queue.stop_all(StopReason::Shutdown);
                    while let Some(done) = self.tasks.join_next_with_id().await {
                        self.reap(done).await;
                    }
                    break;
                }
            }
        }
    }

    /// Whether runs may start: after an engine failure, only once it answers again.
    async fn engine_ready(&mut self) -> bool {
        if !self.engine_down {
            return true;
        }
        match self.runner.engine.ping().await {
            Ok(()) => {
                info!("docker engine answers again, resuming runs");
                self.engine_down = false;
                true
            }
            Err(e) => {
                debug!(error = %e, "docker engine still unreachable, runs stay queued");
                false
            }
        }
    }

    async fn start_what_fits(&mut self) -> Result<(), StoreError> {
        let queued = self.runner.store.queued().await?;
        let telemetry = self.runner.telemetry.clone();
        telemetry
            .queue_depth
            .store(queued.len() as u64, Ordering::Relaxed);
        if queued.is_empty() || self.queue.is_full() || !self.engine_ready().await {
            return Ok(());
        }
        let per_challenge = self.per_challenge_limits(&queued).await?;
        for row in self.queue.pick(&queued, &per_challenge) {
            let control = self.queue.register(&row);
            let span = info_span!("run", submission_id = %row.id);
            let runner = self.runner.clone();
            let id = row.id.clone();
            let handle = self
                .tasks
                .spawn(async move { runner.execute(&id, &control).await }.instrument(span));
            self.running.insert(handle.id(), row.id);
        }
        telemetry
            .runs_live
            .store(self.queue.live_count() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Each queued challenge's limit on runs at once.
    async fn per_challenge_limits(
        &self,
        queued: &[QueuedRow],
    ) -> Result<HashMap<ChallengeId, usize>, StoreError> {
        let mut limits = HashMap::new();
        for row in queued {
            if limits.contains_key(&row.challenge_id) {
                continue;
            }
            let limit = match self.runner.store.get_challenge(&row.challenge_id).await? {
                Some(c) => self.runner.host.limits(&c).concurrency as usize,
                None => usize::MAX,
            };
            limits.insert(row.challenge_id.clone(), limit);
        }
        Ok(limits)
    }

    /// Cleans up after a finished run task and reacts to how it ended; a panic fails the
    /// submission as INTERNAL_ERROR.
    async fn reap(&mut self, done: Result<(tokio::task::Id, RunEnd), tokio::task::JoinError>) {
        let task_id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some(id) = self.running.remove(&task_id) else {
            return;
        };
        match done {
            Ok((_, RunEnd::EngineFailed { submission, detail })) => {
                // Pause first, so no run starts on the failed engine once this one is back
                // in the queue.
                self.runner.telemetry.engine_error();
                self.engine_down = true;
                self.runner
                    .hand_back(&submission, Interruption::Engine(detail))
                    .await;
            }
            Ok((_, RunEnd::Finished | RunEnd::Requeued)) => {}
            Err(e) => {
                error!(submission_id = %id, error = %e, "run task failed");
                self.runner
                    .abandon(&id, &format!("run task failed: {e}"))
                    .await;
            }
        }
        // Only now may the submission be picked again (it is live until here).
        self.queue.unregister(&id);
        self.runner
            .telemetry
            .runs_live
            .store(self.queue.live_count() as u64, Ordering::Relaxed);
    }
}
