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
use crate::store::{ClaimRequest, QueuedRow, StoreError, WorkerInfo};

pub use partition::Partition;
pub use shared::Sharing;

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

/// Runs `step`, within `budget` when there is one.
async fn bounded<T>(
    budget: Option<Duration>,
    step: impl std::future::Future<Output = T>,
) -> Option<T> {
    match budget {
        Some(b) => tokio::time::timeout(b, step).await.ok(),
        None => Some(step.await),
    }
}

/// A worker's standing on a shared store.
struct Worker {
    sharing: Sharing,
    started_at: i64,
    /// When the leases were last renewed (this host's clock).
    renewed: Instant,
    data: shared::DataChecks,
    draining: bool,
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

    /// As a worker: claims runs until this worker's slots are full or nothing more may
    /// start anywhere.
    async fn claim_what_fits(&mut self, queued: &[QueuedRow]) -> Result<(), StoreError> {
        let per_challenge = self.per_challenge_limits(queued).await?;
        while !self.queue.is_full() {
            let Some(w) = &self.worker else { break };
            if w.draining {
                break;
            }
            let policy = shared::Policy {
                host_id: w.sharing.host_id.clone(),
                global_concurrency: w.sharing.global_concurrency,
                per_challenge: per_challenge.clone(),
                refused: w.data.excluded(),
                partition: (self.pacing.time_partition, self.pacing.slice),
            };
            let req = ClaimRequest {
                worker_id: w.sharing.worker_id.clone(),
                host_id: w.sharing.host_id.clone(),
                lease_ttl_ms: shared::millis(w.sharing.lease_ttl),
            };
            let asked = Instant::now();
            let claimed = self
                .runner
                .store
                .claim(req, Box::new(move |view| shared::decide(view, &policy)))
                .await?;
            let Some(claim) = claimed else { break };
            self.runner.telemetry.claim_seconds.observe(asked.elapsed());
            self.runner.telemetry.claimed();
            if !self.data_matches(&claim.row.challenge_id).await {
                let worker_id = self.worker.as_ref().map(|w| w.sharing.worker_id.clone());
                self.runner
                    .store
                    .unreserve(&claim.row.id, worker_id.as_deref().unwrap_or_default())
                    .await?;
                continue;
            }
            debug!(submission_id = %claim.row.id, lease_until = claim.lease_until, "claimed");
            self.spawn_run(claim.row);
        }
        self.gauge_live();
        Ok(())
    }

    /// As a worker: whether this host's copy of the challenge's data is known to digest as
    /// the challenge recorded. Unknown, the digest is computed in the background (a large
    /// folder takes a while, and the loop must keep turning) and the challenge waits.
    async fn data_matches(&mut self, id: &ChallengeId) -> bool {
        let Ok(Some(c)) = self.runner.store.get_challenge(id).await else {
            return true; // the run itself reports a vanished challenge
        };
        let recorded = c.facts.data_digest.clone();
        if recorded.is_empty() {
            return true; // stored before digests were kept
        }
        let Some(w) = &mut self.worker else {
            return true;
        };
        if let Some(ok) = w.data.known(id, &recorded) {
            return ok;
        }
        if w.data.start_check(id.clone()) {
            let root = crate::run::plan::DataLayout::of(&self.runner.host.data_root, &c)
                .root()
                .to_owned();
            let id = id.clone();
            self.digests.spawn_blocking(move || {
                let local = crate::datadir::digest(&root).ok();
                (id, recorded, local)
            });
        }
        false
    }

    /// Records a finished digest of this host's copy of a challenge's data; a mismatch is
    /// logged, counted and shown in the registry.
    async fn data_checked(&mut self, id: ChallengeId, recorded: String, local: Option<String>) {
        let ok = local.as_deref() == Some(recorded.as_str());
        if ok {
            info!(challenge_id = %id, "this host's copy of the challenge data matches");
        } else {
            error!(
                challenge_id = %id,
                recorded = %recorded,
                local = local.as_deref().unwrap_or("unreadable"),
                "refusing the challenge: this host's copy of its data differs from the data it was created with; other workers will run it"
            );
            self.runner.telemetry.data_refused();
        }
        if let Some(w) = &mut self.worker {
            w.data.record(id, recorded, ok);
        }
        if !ok {
            self.heartbeat().await;
        }
    }

    /// Runs a step that talks to the store, bounded for a worker by half a lease: a worker
    /// whose network to the database went silent (no error, no answer) must keep its loop
    /// turning, to stop its runs before their leases expire. Alone, nothing is bounded.
    async fn bounded<T>(&self, step: impl std::future::Future<Output = T>) -> Option<T> {
        bounded(self.step_budget(), step).await
    }

    fn step_budget(&self) -> Option<Duration> {
        self.worker.as_ref().map(|w| w.sharing.lease_ttl / 2)
    }

    fn lease_interval(&self) -> tokio::time::Interval {
        let every = self
            .worker
            .as_ref()
            .map(|w| w.sharing.lease_ttl / 3)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(100));
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    }

    /// As a worker: renews the leases of its running runs, stops those it lost (or all, if
    /// it could not renew for a whole lease), stops those a caller cancelled, beats, and
    /// hands back the runs of workers whose leases expired.
    async fn keep_leases(&mut self) {
        let Some(w) = &self.worker else { return };
        let (worker_id, ttl) = (w.sharing.worker_id.clone(), w.sharing.lease_ttl);
        let running = self.queue.running();
        let renewed = self
            .bounded(self.runner.store.renew_leases(
                worker_id,
                running.clone(),
                shared::millis(ttl),
            ))
            .await
            .unwrap_or(Err(StoreError::Pool(
                "no answer within half a lease".into(),
            )));
        match renewed {
            Ok(renewal) => {
                if let Some(w) = &mut self.worker {
                    w.renewed = Instant::now();
                }
                for id in &renewal.lost {
                    warn!(submission_id = %id, "lost the lease on a run, stopping it");
                    self.runner.telemetry.lease_lost();
                    self.queue.stop(id, StopReason::LeaseLost);
                }
                for id in &renewal.cancel {
                    info!(submission_id = %id, "cancel requested on another replica, stopping the run");
                    self.queue.stop(id, StopReason::Cancelled);
                }
            }
            Err(e) => {
                let renewed = self.worker.as_ref().map(|w| w.renewed);
                if renewed.is_some_and(|r| shared::lease_surely_expired(r, ttl))
                    && !running.is_empty()
                {
                    error!(error = %error_chain(&e), live = running.len(), "cannot renew leases for a whole lease: stopping every run (another worker may have them)");
                    for id in &running {
                        self.runner.telemetry.lease_lost();
                        self.queue.stop(id, StopReason::LeaseLost);
                    }
                } else {
                    warn!(error = %error_chain(&e), "cannot renew leases");
                }
                return;
            }
        }
        self.heartbeat().await;
        match self.bounded(self.sweep_expired_leases()).await {
            Some(Err(e)) => warn!(error = %error_chain(&e), "cannot sweep expired leases"),
            None => warn!("cannot sweep expired leases: no answer within half a lease"),
            Some(Ok(())) => {}
        }
    }

    /// Hands back (or, when a caller asked, cancels) every run whose worker's lease
    /// expired; only while it is still expired, so a late renewal and a sweep never both
    /// win.
    async fn sweep_expired_leases(&self) -> Result<(), StoreError> {
        let r = &self.runner;
        for e in r.store.expired_runs().await? {
            let s = e.submission;
            let now = now_millis();
            let t = if e.cancel_requested {
                let Some(c) = r.store.get_challenge(&s.challenge_id).await? else {
                    continue;
                };
                s.cancel(None, &c.quota, now)
            } else {
                s.requeue(Interruption::Restart, r.max_attempts, now)
            };
            let Ok(t) = t else { continue };
            let next = t.next().state;
            if r.store.commit_expired(t).await?.is_some() {
                r.telemetry.expired_lease_swept();
                warn!(submission_id = %s.id, attempts = s.attempts, next = next.as_str(), "its worker's lease expired: handed back");
            }
        }
        Ok(())
    }

    /// As a worker: records this worker in the registry (best effort).
    async fn heartbeat(&self) {
        let Some(w) = &self.worker else { return };
        let state = if w.draining {
            if self.tasks.is_empty() {
                "stopped"
            } else {
                "draining"
            }
        } else {
            "running"
        };
        let info = WorkerInfo {
            id: w.sharing.worker_id.clone(),
            host_id: w.sharing.host_id.clone(),
            slots: self.slots,
            live: self.queue.live_count() as u32,
            started_at: w.started_at,
            last_beat: 0,
            state: state.into(),
            refused: w
                .data
                .refused()
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            version: env!("CARGO_PKG_VERSION").into(),
            leases: 0,
        };
        if let Some(Err(e)) = self.bounded(self.runner.store.heartbeat(info)).await {
            debug!(error = %error_chain(&e), "cannot record the heartbeat");
        }
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
