//! The scheduler: recovery after a start, the loop that starts what fits, and the hand-back
//! on shutdown. It owns every run task (one `JoinSet`), reacts to how each run ended
//! ([`RunEnd`]), and is the only code that decides *when* a run starts; *which* one is
//! `crate::queue`'s fairness, *how* it runs is `crate::run`'s.
//!
//! It wakes on every change the store publishes (a new submission, a run's end, a cancel),
//! when a held slot frees, and every two seconds in case a wake-up was lost. After the
//! engine failed a run, no run starts until the engine answers a ping again.
//!
//! Two leakage rules live here, because both are about *when*:
//! - **Time partitioning** ([`Partition`]): SMOKE runs, whose logs are released, and FULL
//!   runs, which read private data, never hold slots at the same time; one kind starts for at
//!   most a slice while the other waits, then the host drains and switches.
//! - **Held slots**: under constant-time release a FULL run keeps its slot until its result
//!   may be shown, so no other submission's start reveals when it really ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::domain::{
    ChallengeId, Interruption, SubmissionId, SubmissionKind, SubmissionState, error_chain,
    now_millis,
};
use crate::paths::Paths;
use crate::queue::Queue;
use crate::run::{RunEnd, Runner, StopReason};
use crate::sandbox::SandboxError;
use crate::store::{QueuedRow, StoreError};

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

/// Which kind of run may start, so that SMOKE and FULL runs never share the host in time
/// and neither starves: the kind holding slots keeps starting for at most `slice` while the
/// other waits; then nothing starts until its runs end, and the other kind gets the host.
#[derive(Debug)]
pub struct Partition {
    enabled: bool,
    slice: Duration,
    phase: Option<(SubmissionKind, Instant)>,
}

fn other(k: SubmissionKind) -> SubmissionKind {
    match k {
        SubmissionKind::Full => SubmissionKind::Smoke,
        SubmissionKind::Smoke => SubmissionKind::Full,
    }
}

impl Partition {
    /// A partition; `enabled = false` lets both kinds run at once.
    pub fn new(enabled: bool, slice: Duration) -> Self {
        Self {
            enabled,
            slice,
            phase: None,
        }
    }

    /// The kinds that may start now, given the kinds holding slots and the queue (oldest
    /// first).
    pub fn allowed(
        &mut self,
        live: &[SubmissionKind],
        queued: &[QueuedRow],
        now: Instant,
    ) -> Vec<SubmissionKind> {
        if !self.enabled {
            return vec![SubmissionKind::Full, SubmissionKind::Smoke];
        }
        let waiting = |k: SubmissionKind| queued.iter().any(|r| r.kind == k);
        let within = |began: Instant| now.duration_since(began) < self.slice;
        match live {
            [] => {}
            [k] => {
                let began = match self.phase {
                    Some((p, began)) if p == *k => began,
                    _ => {
                        self.phase = Some((*k, now));
                        now
                    }
                };
                // Keep starting this kind until the other has waited a whole slice.
                return if !waiting(other(*k)) || within(began) {
                    vec![*k]
                } else {
                    Vec::new()
                };
            }
            // Both kinds live cannot happen while enabled; drain to restore the rule.
            _ => return Vec::new(),
        }
        let next = match self.phase {
            Some((k, began)) if waiting(k) && (!waiting(other(k)) || within(began)) => {
                return vec![k];
            }
            Some((k, _)) if waiting(other(k)) => other(k),
            // Nothing of the phase's kind left and nothing else either, or a fresh start:
            // the kind of the oldest queued submission goes first.
            _ => match queued.first() {
                Some(r) => r.kind,
                None => {
                    self.phase = None;
                    return Vec::new();
                }
            },
        };
        self.phase = Some((next, now));
        vec![next]
    }
}

/// Starts runs as slots free up; owned by the application.
pub struct Scheduler {
    runner: Arc<Runner>,
    queue: Arc<Queue>,
    grace: Duration,
    partition: Partition,
    engine_down: bool,
    tasks: JoinSet<RunEnd>,
    running: HashMap<tokio::task::Id, SubmissionId>,
}

impl Scheduler {
    /// A scheduler that runs submissions with `runner`, as fairly as `queue` orders them,
    /// paced by `pacing`.
    pub fn new(runner: Arc<Runner>, queue: Arc<Queue>, pacing: Pacing) -> Self {
        Self {
            runner,
            queue,
            grace: pacing.grace,
            partition: Partition::new(pacing.time_partition, pacing.slice),
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
        self.sweep_orphans().await?;
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
                // Output filesystems a crash left mounted go first: then no tree a run
                // built is ever walked.
                crate::sandbox::output_fs::unmount_all_under(&dir);
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
        // Recovery just swept; a create that a dead process left in flight lands within
        // seconds, so look again soon, then every ORPHAN_SWEEP.
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(2),
            ORPHAN_SWEEP,
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.queue.release_due(now_millis()) > 0 {
                self.gauge_live();
            }
            if let Err(e) = self.start_what_fits().await {
                error!(error = %error_chain(&e), "scheduler cannot read the queue");
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
        let allowed = self
            .partition
            .allowed(&self.queue.live_kinds(), &queued, Instant::now());
        if allowed.is_empty() {
            return Ok(());
        }
        let per_challenge = self.per_challenge_limits(&queued).await?;
        for row in self.queue.pick(&queued, &per_challenge, &allowed) {
            let control = self.queue.register(&row);
            let span = info_span!("run", submission_id = %row.id);
            let runner = self.runner.clone();
            let id = row.id.clone();
            let handle = self
                .tasks
                .spawn(async move { runner.execute(&id, &control).await }.instrument(span));
            self.running.insert(handle.id(), row.id);
        }
        self.gauge_live();
        Ok(())
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
                // The result is held: so is the slot, until the result may be shown.
                self.queue.hold(&id, until);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChallengeId, ParticipantId};

    fn row(seq: i64, kind: SubmissionKind) -> QueuedRow {
        QueuedRow {
            seq,
            id: SubmissionId::generate(),
            challenge_id: ChallengeId::parse("c").unwrap(),
            owner: "p".into(),
            participant_id: ParticipantId::parse("a").unwrap(),
            kind,
        }
    }

    const FULL: SubmissionKind = SubmissionKind::Full;
    const SMOKE: SubmissionKind = SubmissionKind::Smoke;
    const NONE: [SubmissionKind; 0] = [];

    #[test]
    fn the_oldest_queued_kind_goes_first_and_the_other_never_joins_it() {
        let mut p = Partition::new(true, Duration::from_secs(60));
        let t = Instant::now();
        let queued = [row(1, SMOKE), row(2, FULL)];
        assert_eq!(p.allowed(&[], &queued, t), [SMOKE]);
        // While SMOKE holds slots, only SMOKE may start, never FULL.
        assert_eq!(p.allowed(&[SMOKE], &queued, t), [SMOKE]);
        assert_eq!(p.allowed(&[SMOKE], &[row(2, FULL)], t), [SMOKE]);
        // Once SMOKE is done, FULL gets the host.
        assert_eq!(p.allowed(&[], &[row(2, FULL)], t), [FULL]);
        assert_eq!(p.allowed(&[FULL], &[row(3, SMOKE)], t), [FULL]);
    }

    #[test]
    fn after_a_slice_the_running_kind_stops_starting_drains_and_hands_over() {
        let slice = Duration::from_secs(60);
        let mut p = Partition::new(true, slice);
        let t0 = Instant::now();
        let full = [row(1, FULL), row(2, FULL), row(3, FULL)];
        assert_eq!(p.allowed(&[], &full, t0), [FULL]);
        let both = [row(2, FULL), row(3, FULL), row(4, SMOKE)];
        // Within the slice FULL keeps starting although SMOKE waits.
        assert_eq!(p.allowed(&[FULL], &both, t0 + slice / 2), [FULL]);
        // After it, nothing starts until the FULL runs are done...
        assert_eq!(p.allowed(&[FULL], &both, t0 + slice), NONE);
        // ...then SMOKE goes, though FULL submissions are older.
        assert_eq!(p.allowed(&[], &both, t0 + slice), [SMOKE]);
        // And back to FULL once SMOKE has had its slice.
        let t1 = t0 + slice;
        assert_eq!(p.allowed(&[SMOKE], &both, t1 + slice), NONE);
        assert_eq!(p.allowed(&[], &both, t1 + slice), [FULL]);
    }

    #[test]
    fn a_lone_kind_runs_for_as_long_as_it_likes() {
        let mut p = Partition::new(true, Duration::from_secs(1));
        let t0 = Instant::now();
        let full = [row(1, FULL)];
        assert_eq!(p.allowed(&[], &full, t0), [FULL]);
        assert_eq!(
            p.allowed(&[FULL], &full, t0 + Duration::from_secs(3600)),
            [FULL]
        );
    }

    #[test]
    fn without_partitioning_both_kinds_run_at_once() {
        let mut p = Partition::new(false, Duration::from_secs(1));
        let queued = [row(1, FULL), row(2, SMOKE)];
        assert_eq!(p.allowed(&[FULL], &queued, Instant::now()), [FULL, SMOKE]);
    }
}
