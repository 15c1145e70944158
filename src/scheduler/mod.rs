//! The scheduler: recovery after a start, the loop that starts what fits, and the hand-back
//! on shutdown. It owns every run task (one `JoinSet`), reacts to how each run ended
//! ([`RunEnd`]), and is the only code that decides *when* a run starts; *which* one is
//! `crate::queue`'s fairness, *how* it runs is `crate::run`'s.
//!
//! It wakes on every change the store publishes (a new submission, a run's end, a cancel),
//! when a held slot frees, and every two seconds in case a wake-up was lost. After the
//! engine failed a run, no run starts until the engine answers a ping again.
//!
//! On a shared store (PostgreSQL) this process is one execution worker among many: it
//! claims runs instead of picking them, keeps leases on them, hands back the runs of dead
//! workers and checks its copy of a challenge's data first ([`shared`]).
//!
//! Two leakage rules live here, because both are about *when*:
//! - **Time partitioning** ([`Partition`]): SMOKE runs, whose logs are released, and FULL
//!   runs, which read private data, never hold slots on one host at the same time; one kind
//!   starts for at most a slice while the other waits, then the host drains and switches.
//!   With workers, the phase is kept in the store per Docker host.
//! - **Held slots**: under constant-time release a FULL run keeps its slot until its result
//!   may be shown, so no other submission's start reveals when it really ended.

mod partition;
pub mod shared;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::domain::{
    ChallengeId, Interruption, SubmissionId, SubmissionState, error_chain, now_millis,
};
use crate::queue::Queue;
use crate::run::{RunEnd, Runner, StopReason};
use crate::sandbox::SandboxError;
use crate::store::{QueuedRow, StoreError};

pub use partition::Partition;
pub use shared::Sharing;
use worker::{Worker, bounded};

/// How often the scheduler looks for containers of this instance that no run owns.
const ORPHAN_SWEEP: Duration = Duration::from_secs(10);

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

/// How the scheduler paces runs.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// On shutdown, how long live runs may finish before they are handed back.
    pub grace: Duration,
    /// Whether SMOKE and FULL runs are kept apart in time.
    pub time_partition: bool,
    /// How long one kind may keep starting while the other waits.
    pub slice: Duration,
}

/// Starts runs as slots free up; owned by the application.
pub struct Scheduler {
    runner: Arc<Runner>,
    queue: Arc<Queue>,
    pacing: Pacing,
    partition: Partition,
    engine_down: bool,
    tasks: JoinSet<RunEnd>,
    running: HashMap<tokio::task::Id, SubmissionId>,
    /// Set when this process is an execution worker on a shared store.
    worker: Option<Worker>,
    /// This process's slots.
    slots: u32,
    /// Digests of this host's copies of challenge data being computed (a worker).
    digests: JoinSet<(ChallengeId, String, Option<String>)>,
}

impl Scheduler {
    /// A scheduler that runs submissions with `runner`, as fairly as `queue` orders them,
    /// paced by `pacing`, with `slots` runs at once here; `sharing` makes it an execution
    /// worker of a shared store (the runner's store must then be
    /// [`crate::store::Store::for_worker`] of the same name).
    pub fn new(
        runner: Arc<Runner>,
        queue: Arc<Queue>,
        pacing: Pacing,
        slots: u32,
        sharing: Option<Sharing>,
    ) -> Self {
        if let Some(s) = &sharing {
            runner.telemetry.set_worker(&s.worker_id, &s.host_id);
        }
        Self {
            runner,
            queue,
            pacing,
            partition: Partition::new(pacing.time_partition, pacing.slice),
            engine_down: false,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            worker: sharing.map(|sharing| Worker {
                sharing,
                started_at: now_millis(),
                renewed: Instant::now(),
                data: shared::DataChecks::default(),
                draining: false,
            }),
            slots,
            digests: JoinSet::new(),
        }
    }

    /// Reconciles the store with the engine after a start: removes every container this
    /// instance left behind, then hands its RUNNING/SCORING submissions back to the queue
    /// (or fails them as INTERNAL_ERROR, uncharged, after `max_attempts`). Alone, every
    /// such submission is this process's; as a worker, only those it holds leases on (and
    /// any whose worker's lease expired).
    pub async fn recover(&mut self) -> Result<(), RecoverError> {
        let r = self.runner.clone();
        self.sweep_orphans().await?;
        if let Some(w) = &self.worker {
            r.store.release_leases(&w.sharing.worker_id).await?;
            self.sweep_expired_leases().await?;
            self.heartbeat().await;
            return Ok(());
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
        Ok(())
    }

    /// Runs until `shutdown` fires, then lets live runs finish for the grace period, stops
    /// the rest and hands them back to the queue. Every run task is owned here, so none
    /// outlives this function.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut changes = self.runner.store.subscribe();
        // Recovery just swept; a create that a dead process left in flight lands within
        // seconds, so look again soon, then every ORPHAN_SWEEP.
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(2),
            ORPHAN_SWEEP,
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leases = self.lease_interval();
        loop {
            if self.queue.release_due(now_millis()) > 0 {
                self.gauge_live();
            }
            let budget = self.step_budget();
            let step = self.start_what_fits();
            match bounded(budget, step).await {
                Some(Err(e)) => error!(error = %error_chain(&e), "scheduler cannot read the queue"),
                None => warn!("the store did not answer in time; looking again"),
                Some(Ok(())) => {}
            }
            // Wake when the next held slot frees (constant-time release).
            let next_release = self.queue.next_release().map(|t| {
                tokio::time::Instant::now()
                    + Duration::from_millis((t - now_millis()).max(0) as u64)
            });
            tokio::select! {
                _ = async { tokio::time::sleep_until(next_release.unwrap()).await }, if next_release.is_some() => {}
                _ = shutdown.cancelled() => break,
                change = changes.recv() => {
                    if let Err(RecvError::Closed) = change {
                        break;
                    }
                }
                Some(done) = self.tasks.join_next_with_id() => self.reap(done).await,
                _ = sweep.tick() => {
                    if !self.engine_down && let Err(e) = self.sweep_orphans().await {
                        debug!(error = %error_chain(&e), "cannot sweep leftover containers");
                    }
                }
                _ = leases.tick(), if self.worker.is_some() => self.keep_leases().await,
                Some(Ok((id, recorded, local))) = self.digests.join_next(), if !self.digests.is_empty() => {
                    self.data_checked(id, recorded, local).await;
                }
                // A periodic look covers wake-ups lost to races and errors that cleared.
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
        info!(
            live = self.queue.live_count(),
            grace_ms = self.pacing.grace.as_millis() as u64,
            "scheduler stopping, waiting for live runs"
        );
        if let Some(w) = &mut self.worker {
            w.draining = true;
            self.heartbeat().await;
        }
        let deadline = tokio::time::sleep(self.pacing.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = self.tasks.join_next_with_id() => match done {
                    Some(done) => self.reap(done).await,
                    None => break,
                },
                // A draining worker keeps its leases: its runs may still finish.
                _ = leases.tick(), if self.worker.is_some() => self.keep_leases().await,
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
        if self.worker.is_some() {
            self.heartbeat().await;
        }
    }

    /// Removes this instance's containers that belong to no live run: leftovers of a crash,
    /// including a create the engine finished after the process that asked for it died
    /// (which is why this also runs periodically, not only at start).
    async fn sweep_orphans(&self) -> Result<usize, SandboxError> {
        let r = &self.runner;
        let owned = r.engine.list_owned().await?;
        let mut removed = 0;
        for c in owned.iter().filter(|c| c.instance == r.host.instance) {
            let live =
                SubmissionId::parse(&c.submission_id).is_ok_and(|id| self.queue.is_live(&id));
            if live {
                continue;
            }
            warn!(container = %c.container_id, submission_id = %c.submission_id, "removing container left by a previous run");
            match r.engine.remove(&c.container_id).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    error!(container = %c.container_id, error = %error_chain(&e), "cannot remove leftover container")
                }
            }
        }
        Ok(removed)
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
        if self.worker.is_some() {
            return self.claim_what_fits(&queued).await;
        }
        let allowed = self
            .partition
            .allowed(&self.queue.live_kinds(), &queued, now_millis());
        if allowed.is_empty() {
            return Ok(());
        }
        let per_challenge = self.per_challenge_limits(&queued).await?;
        for row in self.queue.pick(&queued, &per_challenge, &allowed) {
            self.spawn_run(row);
        }
        self.gauge_live();
        Ok(())
    }

    fn spawn_run(&mut self, row: QueuedRow) {
        let control = self.queue.register(&row);
        let span = info_span!("run", submission_id = %row.id);
        let runner = self.runner.clone();
        let id = row.id.clone();
        let handle = self
            .tasks
            .spawn(async move { runner.execute(&id, &control).await }.instrument(span));
        self.running.insert(handle.id(), row.id);
    }

    fn gauge_live(&self) {
        self.runner
            .telemetry
            .runs_live
            .store(self.queue.live_count() as u64, Ordering::Relaxed);
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
            Ok((
                _,
                RunEnd::Finished {
                    hold_slot_until: Some(until),
                },
            )) if until > now_millis() => {
                // The result is held: so is the slot, until the result may be shown (on
                // every worker's host, when shared).
                self.queue.hold(&id, until);
                if self.worker.is_some()
                    && let Err(e) = self.runner.store.hold_slot(&id, until).await
                {
                    warn!(submission_id = %id, error = %error_chain(&e), "cannot record the held slot");
                }
                return;
            }
            Ok((_, RunEnd::Finished { .. } | RunEnd::Requeued)) => {}
            Err(e) => {
                error!(submission_id = %id, error = %e, "run task failed");
                self.runner
                    .abandon(&id, &format!("run task failed: {e}"))
                    .await;
            }
        }
        // Only now may the submission be picked again (it is live until here).
        self.queue.unregister(&id);
        self.gauge_live();
    }
}
