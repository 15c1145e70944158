//! Scheduling: which queued submission runs next, how many run at once, cancellation,
//! recovery after a crash, and handing work back on shutdown.
//!
//! The queue *is* the database: a submission is QUEUED, RUNNING or SCORING in the store
//! exactly when it is so in fact. This module keeps only what cannot outlive the process:
//! which runs are live, their cancel handles, and when each participant last got a slot.
//!
//! Fairness is round-robin across participants: the next run goes to the participant whose
//! queued submissions have had the fewest starts since they queued, earliest last start
//! first, so one participant with a hundred queued submissions delays another's single
//! submission by at most one run slot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::core::Core;
use crate::domain::{SubmissionId, SubmissionState, Verdict, now_millis};
use crate::store::QueuedRow;

/// Why a live run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A caller cancelled the submission: it ends CANCELLED.
    Cancelled,
    /// The service is shutting down: the submission goes back to the queue.
    Shutdown,
}

/// The cancel handle of one live run.
#[derive(Debug, Default)]
pub struct RunControl {
    /// Fired to kill the run's container.
    pub token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl RunControl {
    /// Stops the run for `reason`; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap().get_or_insert(reason);
        self.token.cancel();
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap()
    }
}

struct Live {
    challenge_id: String,
    control: Arc<RunControl>,
}

/// The scheduler's in-memory state, shared with the API (cancel, queue position).
pub struct Queue {
    concurrency: usize,
    /// Set when a run failed because the engine did; no run starts until a ping succeeds.
    engine_down: std::sync::atomic::AtomicBool,
    wake: Notify,
    live: Mutex<HashMap<SubmissionId, Live>>,
    last_start: Mutex<HashMap<String, u64>>,
    clock: AtomicU64,
}

impl Queue {
    /// A queue that runs at most `concurrency` submissions at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            engine_down: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            live: Mutex::new(HashMap::new()),
            last_start: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(1),
        }
    }

    /// Tells the scheduler to look at the queue again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a live run; false when it is not live here.
    pub fn stop(&self, id: &SubmissionId, reason: StopReason) -> bool {
        match self.live.lock().unwrap().get(id) {
            Some(live) => {
                live.control.stop(reason);
                true
            }
            None => false,
        }
    }

    /// Records that the engine failed a run: starts pause until it answers again.
    pub fn engine_failed(&self) {
        self.engine_down.store(true, Ordering::SeqCst);
    }

    /// How many runs are live.
    pub fn live_count(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// The order in which the queued rows would be started, fairest first.
    pub fn fair_order(&self, queued: &[QueuedRow]) -> Vec<usize> {
        let last_start = self.last_start.lock().unwrap();
        let mut rank_in_participant: HashMap<&str, u64> = HashMap::new();
        let mut keyed: Vec<(u64, u64, i64, usize)> = queued
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let rank = rank_in_participant
                    .entry(row.participant.as_str())
                    .or_default();
                let key = (
                    *rank,
                    last_start.get(&row.participant).copied().unwrap_or(0),
                    row.seq,
                    i,
                );
                *rank += 1;
                key
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|k| k.3).collect()
    }

    /// 1-based position of a queued submission in the fair order, if queued.
    pub fn position(&self, queued: &[QueuedRow], id: &SubmissionId) -> Option<u32> {
        let order = self.fair_order(queued);
        order
            .iter()
            .position(|&i| queued[i].id == id.as_str())
            .map(|p| p as u32 + 1)
    }

    /// Picks what to start now, given per-challenge concurrency limits.
    fn pick(&self, queued: &[QueuedRow], per_challenge: &HashMap<String, usize>) -> Vec<QueuedRow> {
        let live = self.live.lock().unwrap();
        let mut free = self.concurrency.saturating_sub(live.len());
        let mut running: HashMap<&str, usize> = HashMap::new();
        for l in live.values() {
            *running.entry(l.challenge_id.as_str()).or_default() += 1;
        }
        let mut picked = Vec::new();
        let mut picked_participants = HashSet::new();
        for i in self.fair_order(queued) {
            if free == 0 {
                break;
            }
            let row = &queued[i];
            if live.contains_key(
                &SubmissionId::parse(&row.id).unwrap_or_else(|_| SubmissionId::generate()),
            ) {
                continue;
            }
            let limit = per_challenge
                .get(&row.challenge_id)
                .copied()
                .unwrap_or(usize::MAX);
            let now = running.entry(row.challenge_id.as_str()).or_default();
            if *now >= limit {
                continue;
            }
            // One start per participant per pass keeps the round-robin honest when several
            // slots free up at once.
            if !picked_participants.insert(row.participant.clone()) {
                continue;
            }
            *now += 1;
            free -= 1;
            picked.push(row.clone());
        }
        picked
    }

    fn register(&self, id: SubmissionId, row: &QueuedRow) -> Arc<RunControl> {
        let control = Arc::new(RunControl::default());
        self.live.lock().unwrap().insert(
            id,
            Live {
                challenge_id: row.challenge_id.clone(),
                control: control.clone(),
            },
        );
        let tick = self.clock.fetch_add(1, Ordering::SeqCst);
        self.last_start
            .lock()
            .unwrap()
            .insert(row.participant.clone(), tick);
        control
    }

    fn unregister(&self, id: &SubmissionId) {
        self.live.lock().unwrap().remove(id);
    }

    fn stop_all(&self, reason: StopReason) {
        for live in self.live.lock().unwrap().values() {
            live.control.stop(reason);
        }
    }
}

/// Reconciles the store with the engine after a start: removes every container this
/// instance left behind, then hands RUNNING/SCORING submissions back to the queue (or fails
/// them as INTERNAL_ERROR, uncharged, after `max_attempts`). Stray uploads and work folders
/// are deleted.
pub async fn recover(core: &Core) -> Result<(), crate::domain::DomainError> {
    let owned = core
        .backend
        .list_owned()
        .await
        .map_err(crate::domain::DomainError::internal)?;
    for c in owned.iter().filter(|c| c.instance == core.instance) {
        warn!(container = %c.container_id, submission_id = %c.submission_id, "removing container left by a previous run");
        if let Err(e) = core.backend.remove(&c.container_id).await {
            error!(container = %c.container_id, error = %e, "cannot remove leftover container");
        }
    }
    for mut s in core
        .store
        .submissions_in(&[SubmissionState::Running, SubmissionState::Scoring])
        .await?
    {
        let expected = s.state;
        if s.attempts >= core.config.max_attempts {
            s.state = SubmissionState::Failed;
            s.verdict = Verdict::InternalError;
            s.message = "the service stopped during this run too many times; this is not your code's fault and is not charged".into();
            s.detail = format!(
                "interrupted by a service restart after {} attempts",
                s.attempts
            );
            s.finished_at = Some(now_millis());
            s.charged = false;
            warn!(submission_id = %s.id, attempts = s.attempts, "run interrupted too often, failing as internal error");
        } else {
            s.state = SubmissionState::Queued;
            s.started_at = None;
            info!(submission_id = %s.id, attempts = s.attempts, "re-queueing run interrupted by a restart");
        }
        if core.store.update_submission(s.clone(), expected).await? {
            core.announce(&s);
        }
    }
    for dir in [core.paths.uploads(), core.paths.work_dir()] {
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
        })
        .await;
    }
    Ok(())
}

/// Runs the scheduler until `shutdown` fires, then lets live runs finish for the configured
/// grace period, stops the rest and hands them back to the queue. Every run task is owned
/// by this function's `JoinSet`, so none outlives it.
pub async fn run_scheduler(core: Arc<Core>, shutdown: CancellationToken) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut task_ids: HashMap<tokio::task::Id, SubmissionId> = HashMap::new();
    loop {
        if let Err(e) = start_what_fits(&core, &mut tasks, &mut task_ids).await {
            error!(error = %e, "scheduler cannot read the queue");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = core.queue.wake.notified() => {}
            Some(done) = tasks.join_next_with_id() => reap(&core, done, &mut task_ids).await,
            // A periodic look covers wake-ups lost to races and errors that cleared.
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    let grace = core.config.shutdown_grace.0;
    info!(
        live = core.queue.live_count(),
        grace_ms = grace.as_millis() as u64,
        "scheduler stopping, waiting for live runs"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next_with_id() => match done {
                Some(done) => reap(&core, done, &mut task_ids).await,
                None => break,
            },
            _ = &mut deadline => {
                info!(live = core.queue.live_count(), "grace period over, handing live runs back to the queue");
                core.queue.stop_all(StopReason::Shutdown);
                while let Some(done) = tasks.join_next_with_id().await {
                    reap(&core, done, &mut task_ids).await;
                }
                break;
            }
        }
    }
}

async fn start_what_fits(
    core: &Arc<Core>,
    tasks: &mut JoinSet<()>,
    task_ids: &mut HashMap<tokio::task::Id, SubmissionId>,
) -> Result<(), crate::store::StoreError> {
    if core.queue.live_count() >= core.queue.concurrency {
        return Ok(());
    }
    if core.queue.engine_down.load(Ordering::SeqCst) {
        match core.backend.ping().await {
            Ok(()) => {
                info!("docker engine answers again, resuming runs");
                core.queue.engine_down.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::debug!(error = %e, "docker engine still unreachable, runs stay queued");
                return Ok(());
            }
        }
    }
    let queued = core.store.queued().await?;
    if queued.is_empty() {
        return Ok(());
    }
    let mut per_challenge = HashMap::new();
    for row in &queued {
        if per_challenge.contains_key(&row.challenge_id) {
            continue;
        }
        let id = crate::domain::ChallengeId::parse(&row.challenge_id).ok();
        let limit = match id {
            Some(id) => core
                .store
                .get_challenge(&id)
                .await?
                .map(|c| c.limits.or_defaults(&core.config.defaults).concurrency as usize)
                .unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        per_challenge.insert(row.challenge_id.clone(), limit);
    }
    for row in core.queue.pick(&queued, &per_challenge) {
        let Ok(id) = SubmissionId::parse(&row.id) else {
            continue;
        };
        let control = core.queue.register(id.clone(), &row);
        let span = info_span!("run", submission_id = %id);
        let core2 = core.clone();
        let id2 = id.clone();
        let handle = tasks.spawn(
            async move {
                crate::runner::execute(&core2, &id2, &control).await;
            }
            .instrument(span),
        );
        task_ids.insert(handle.id(), id);
    }
    Ok(())
}

/// Cleans up after a finished run task; a panic fails the submission as INTERNAL_ERROR.
async fn reap(
    core: &Core,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    task_ids: &mut HashMap<tokio::task::Id, SubmissionId>,
) {
    let task_id = match &done {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
    };
    let Some(id) = task_ids.remove(&task_id) else {
        return;
    };
    core.queue.unregister(&id);
    if let Err(e) = done {
        error!(submission_id = %id, error = %e, "run task failed");
        crate::runner::fail_internal(core, &id, &format!("run task failed: {e}")).await;
    }
    core.queue.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, participant: &str) -> QueuedRow {
        QueuedRow {
            seq,
            id: format!("s-{seq:020}"),
            challenge_id: "c".into(),
            participant: participant.into(),
        }
    }

    #[test]
    fn a_lone_submission_waits_for_at_most_one_slot_behind_a_flood() {
        let q = Queue::new(1);
        let mut queued: Vec<QueuedRow> = (1..=100).map(|i| row(i, "flood")).collect();
        queued.push(row(101, "alone"));
        let order = q.fair_order(&queued);
        let pos = order
            .iter()
            .position(|&i| queued[i].participant == "alone")
            .unwrap();
        assert!(pos <= 1, "lone submission is at position {pos}");
    }

    #[test]
    fn participants_take_turns() {
        let q = Queue::new(1);
        let queued: Vec<QueuedRow> = vec![
            row(1, "a"),
            row(2, "a"),
            row(3, "a"),
            row(4, "b"),
            row(5, "b"),
            row(6, "c"),
        ];
        let order: Vec<&str> = q
            .fair_order(&queued)
            .iter()
            .map(|&i| queued[i].participant.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "a"]);
    }

    #[test]
    fn per_challenge_limits_hold_back_a_busy_challenge() {
        let q = Queue::new(4);
        let queued = vec![row(1, "a"), row(2, "b"), row(3, "c")];
        let mut per = HashMap::new();
        per.insert("c".to_owned(), 2);
        assert_eq!(q.pick(&queued, &per).len(), 2);
    }
}
