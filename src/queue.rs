//! The queue's in-memory half: which queued submission is fairest to run next, and the
//! registry of live runs (their stop handles, and when each participant last got a slot).
//!
//! The queue *is* the database: a submission is QUEUED, RUNNING or SCORING in the store
//! exactly when it is so in fact. This module keeps only what cannot outlive the process,
//! and decides nothing about time: the scheduler (`crate::scheduler`) drives it.
//!
//! Fairness is round-robin across participants: the next run goes to the participant whose
//! queued submissions have had the fewest starts since they queued, earliest last start
//! first, so one participant with a hundred queued submissions delays another's single
//! submission by at most one run slot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::{ChallengeId, SubmissionId, SubmissionKind, UnixMillis};
use crate::run::{RunControl, StopReason};
use crate::store::QueuedRow;

/// A participant of a platform: the unit of fairness.
pub type Party = (String, String);

/// The order in which `queued` (oldest first) would be started, fairest first, given when
/// each party last got a slot (a clock that only grows): fewest starts since queueing
/// first, then the earliest last start, then the oldest.
pub fn fair_order(queued: &[QueuedRow], last_start: &HashMap<Party, u64>) -> Vec<usize> {
    let mut rank_in_participant: HashMap<(&str, &str), u64> = HashMap::new();
    let mut keyed: Vec<(u64, u64, i64, usize)> = queued
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let rank = rank_in_participant.entry(row.party()).or_default();
            let (owner, participant) = row.party();
            let last = last_start
                .get(&(owner.to_owned(), participant.to_owned()))
                .copied()
                .unwrap_or(0);
            let key = (*rank, last, row.seq, i);
            *rank += 1;
            key
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|k| k.3).collect()
}

struct Live {
    challenge_id: ChallengeId,
    kind: SubmissionKind,
    control: Arc<RunControl>,
    /// Set once the run ended but keeps its slot until then (constant-time release).
    held_until: Option<UnixMillis>,
}

/// Fairness and the live registry, shared by the scheduler and the API (cancel, queue
/// position).
pub struct Queue {
    concurrency: usize,
    live: Mutex<HashMap<SubmissionId, Live>>,
    last_start: Mutex<HashMap<Party, u64>>,
    clock: AtomicU64,
}

impl Queue {
    /// A queue that runs at most `concurrency` submissions at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            live: Mutex::new(HashMap::new()),
            last_start: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(1),
        }
    }

    /// Whether every run slot is taken.
    pub fn is_full(&self) -> bool {
        self.live_count() >= self.concurrency
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

    /// How many runs are live.
    pub fn live_count(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// The order in which the queued rows would be started here, fairest first.
    pub fn fair_order(&self, queued: &[QueuedRow]) -> Vec<usize> {
        fair_order(queued, &self.last_start.lock().unwrap())
    }

    /// 1-based position of a queued submission in the fair order, if queued; `shared` is
    /// when each party last got a slot on any worker (a shared store), else this process's.
    pub fn position(
        &self,
        queued: &[QueuedRow],
        id: &SubmissionId,
        shared: Option<&HashMap<Party, u64>>,
    ) -> Option<u32> {
        let order = match shared {
            Some(last_start) => fair_order(queued, last_start),
            None => self.fair_order(queued),
        };
        order
            .iter()
            .position(|&i| queued[i].id == *id)
            .map(|p| p as u32 + 1)
    }

    /// The kinds of run that hold slots now (running, or ended and held).
    pub fn live_kinds(&self) -> Vec<SubmissionKind> {
        let mut kinds: Vec<SubmissionKind> =
            self.live.lock().unwrap().values().map(|l| l.kind).collect();
        kinds.sort_by_key(|k| k.as_str());
        kinds.dedup();
        kinds
    }

    /// Keeps an ended run's slot until `until` (constant-time release).
    pub fn hold(&self, id: &SubmissionId, until: UnixMillis) {
        if let Some(l) = self.live.lock().unwrap().get_mut(id) {
            l.held_until = Some(until);
        }
    }

    /// Frees the slots whose hold has passed; returns how many.
    pub fn release_due(&self, now: UnixMillis) -> usize {
        let mut live = self.live.lock().unwrap();
        let before = live.len();
        live.retain(|_, l| l.held_until.is_none_or(|t| t > now));
        before - live.len()
    }

    /// The earliest moment a held slot frees.
    pub fn next_release(&self) -> Option<UnixMillis> {
        self.live
            .lock()
            .unwrap()
            .values()
            .filter_map(|l| l.held_until)
            .min()
    }

    /// Picks what to start now among the rows of an allowed kind, given per-challenge
    /// concurrency limits.
    pub fn pick(
        &self,
        queued: &[QueuedRow],
        per_challenge: &HashMap<ChallengeId, usize>,
        allowed: &[SubmissionKind],
    ) -> Vec<QueuedRow> {
        let live = self.live.lock().unwrap();
        let mut free = self.concurrency.saturating_sub(live.len());
        let mut running: HashMap<&ChallengeId, usize> = HashMap::new();
        for l in live.values() {
            *running.entry(&l.challenge_id).or_default() += 1;
        }
        let mut picked = Vec::new();
        let mut picked_participants = HashSet::new();
        for i in self.fair_order(queued) {
            if free == 0 {
                break;
            }
            let row = &queued[i];
            if live.contains_key(&row.id) || !allowed.contains(&row.kind) {
                continue;
            }
            let limit = per_challenge
                .get(&row.challenge_id)
                .copied()
                .unwrap_or(usize::MAX);
            let now = running.entry(&row.challenge_id).or_default();
            if *now >= limit {
                continue;
            }
            // One start per participant per pass keeps the round-robin honest when several
            // slots free up at once.
            if !picked_participants.insert(row.party()) {
                continue;
            }
            *now += 1;
            free -= 1;
            picked.push(row.clone());
        }
        picked
    }

    /// The runs live here that have not ended (not held): those whose leases a worker
    /// keeps.
    pub fn running(&self) -> Vec<SubmissionId> {
        self.live
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.held_until.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether a run of `id` holds a slot here.
    pub fn is_live(&self, id: &SubmissionId) -> bool {
        self.live.lock().unwrap().contains_key(id)
    }

    /// Records that `row` starts now; returns its stop handle.
    pub fn register(&self, row: &QueuedRow) -> Arc<RunControl> {
        let control = Arc::new(RunControl::default());
        self.live.lock().unwrap().insert(
            row.id.clone(),
            Live {
                challenge_id: row.challenge_id.clone(),
                kind: row.kind,
                control: control.clone(),
                held_until: None,
            },
        );
        let tick = self.clock.fetch_add(1, Ordering::SeqCst);
        let (owner, participant) = row.party();
        self.last_start
            .lock()
            .unwrap()
            .insert((owner.to_owned(), participant.to_owned()), tick);
        control
    }

    /// Records that a run ended.
    pub fn unregister(&self, id: &SubmissionId) {
        self.live.lock().unwrap().remove(id);
    }

    /// Stops every live run.
    pub fn stop_all(&self, reason: StopReason) {
        for live in self.live.lock().unwrap().values() {
            live.control.stop(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, participant: &str) -> QueuedRow {
        QueuedRow {
            seq,
            id: SubmissionId::parse(&format!("s-{seq:020}")).unwrap(),
            challenge_id: ChallengeId::parse("c").unwrap(),
            owner: "platform".into(),
            participant_id: crate::domain::ParticipantId::parse(participant).unwrap(),
            kind: SubmissionKind::Full,
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
            .position(|&i| queued[i].participant_id.as_str() == "alone")
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
            .map(|&i| queued[i].participant_id.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "a"]);
    }

    #[test]
    fn per_challenge_limits_hold_back_a_busy_challenge() {
        let q = Queue::new(4);
        let queued = vec![row(1, "a"), row(2, "b"), row(3, "c")];
        let mut per = HashMap::new();
        per.insert(ChallengeId::parse("c").unwrap(), 2);
        assert_eq!(q.pick(&queued, &per, &[SubmissionKind::Full]).len(), 2);
    }

    #[test]
    fn only_rows_of_an_allowed_kind_are_picked() {
        let q = Queue::new(4);
        let mut smoke = row(2, "b");
        smoke.kind = SubmissionKind::Smoke;
        let queued = vec![row(1, "a"), smoke];
        let picked = q.pick(&queued, &HashMap::new(), &[SubmissionKind::Smoke]);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].kind, SubmissionKind::Smoke);
    }

    #[test]
    fn a_held_slot_counts_until_its_deadline() {
        let q = Queue::new(1);
        let r = row(1, "a");
        q.register(&r);
        q.hold(&r.id, 1_000);
        assert!(q.is_full());
        assert_eq!(q.next_release(), Some(1_000));
        assert_eq!(q.release_due(999), 0);
        assert_eq!(q.release_due(1_000), 1);
        assert!(!q.is_full());
    }
}
