//! Execution on a shared store (PostgreSQL): this process is one worker among many.
//!
//! What changes from one process owning the queue:
//! - **Claims, not picks.** Which run to take next is decided on the picture of every
//!   worker's runs, inside the claim's transaction ([`decide`]): the global and
//!   per-challenge limits count every worker's slots, fairness uses every worker's starts,
//!   and the time partition is kept per Docker host (workers sharing an engine share it).
//! - **Leases.** A claimed run is this worker's only while its lease lives; the worker
//!   renews the leases of its running runs every third of their time to live. A renewal
//!   that reports a run lost, or no renewal for a whole time to live (the database is
//!   unreachable), stops the run: whatever it still writes is refused without the lease.
//! - **Sweeps.** Every worker hands back the runs whose worker's lease expired (it died),
//!   or cancels them when a caller asked to.
//! - **Data.** Before its first run of a challenge, a worker checks that its copy of the
//!   data digests as the challenge recorded; otherwise it refuses the challenge (a log line,
//!   a metric, the registry) and gives the run back for a worker that has the data.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::domain::{ChallengeId, SubmissionKind, UnixMillis};
use crate::queue::fair_order;
use crate::store::{ClaimDecision, ClaimView, QueuedRow};

use super::partition::Partition;

/// How long a refusal stands before the data is looked at again (an admin may have fixed
/// the copy).
const REFUSAL_RECHECK: Duration = Duration::from_secs(60);

/// Who this worker is among the workers of a shared store.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// The worker's name (its instance label): unique among the workers.
    pub worker_id: String,
    /// Its Docker host's id: workers on one engine share it, and with it a time partition.
    pub host_id: String,
    /// How long a claim or renewal holds without the next renewal.
    pub lease_ttl: Duration,
    /// Runs at once on all workers together (0 = only each worker's own slots limit).
    pub global_concurrency: u32,
}

/// The claim policy's inputs besides the shared picture.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The claiming worker's Docker host.
    pub host_id: String,
    /// Runs at once on all workers (0 = unlimited).
    pub global_concurrency: u32,
    /// Each queued challenge's runs at once, on all workers together.
    pub per_challenge: HashMap<ChallengeId, usize>,
    /// Challenges this worker refuses.
    pub refused: HashSet<ChallengeId>,
    /// Whether the time partition is on, and its slice.
    pub partition: (bool, Duration),
}

/// Picks the fairest run this worker may start now (see the module doc).
pub fn decide(view: &ClaimView, policy: &Policy) -> ClaimDecision {
    let unchanged = ClaimDecision {
        pick: None,
        phase: view.phase,
    };
    if policy.global_concurrency > 0 && view.live.len() >= policy.global_concurrency as usize {
        return unchanged;
    }
    let candidates: Vec<QueuedRow> = view
        .queued
        .iter()
        .filter(|r| !policy.refused.contains(&r.challenge_id))
        .cloned()
        .collect();
    let mut host_kinds: Vec<SubmissionKind> = view
        .live
        .iter()
        .filter(|l| l.host_id == policy.host_id)
        .map(|l| l.kind)
        .collect();
    host_kinds.sort_by_key(|k| k.as_str());
    host_kinds.dedup();
    let (enabled, slice) = policy.partition;
    let mut partition = Partition::resume(enabled, slice, view.phase);
    let allowed = partition.allowed(&host_kinds, &candidates, view.now);
    let phase = partition.phase();
    let mut running: HashMap<&ChallengeId, usize> = HashMap::new();
    for l in &view.live {
        *running.entry(&l.challenge_id).or_default() += 1;
    }
    let pick = fair_order(&candidates, &view.last_start)
        .into_iter()
        .map(|i| &candidates[i])
        .find(|row| {
            allowed.contains(&row.kind)
                && running.get(&row.challenge_id).copied().unwrap_or(0)
                    < policy
                        .per_challenge
                        .get(&row.challenge_id)
                        .copied()
                        .unwrap_or(usize::MAX)
        })
        .map(|row| row.id.clone());
    ClaimDecision { pick, phase }
}

/// What this worker knows of its copies of challenge data.
#[derive(Debug, Default)]
pub struct DataChecks {
    /// Challenge → (recorded digest, whether the local copy matched, when checked).
    checked: HashMap<ChallengeId, (String, bool, Instant)>,
    /// Challenges whose local copy is being digested.
    pending: HashSet<ChallengeId>,
}

impl DataChecks {
    /// Whether the local copy is known to match `recorded` (`None`: look again).
    pub fn known(&self, id: &ChallengeId, recorded: &str) -> Option<bool> {
        let (digest, ok, at) = self.checked.get(id)?;
        if digest != recorded || (!ok && at.elapsed() >= REFUSAL_RECHECK) {
            return None;
        }
        Some(*ok)
    }

    /// Marks a look as started; false when one is already under way.
    pub fn start_check(&mut self, id: ChallengeId) -> bool {
        self.pending.insert(id)
    }

    /// Records a look.
    pub fn record(&mut self, id: ChallengeId, recorded: String, ok: bool) {
        self.pending.remove(&id);
        self.checked.insert(id, (recorded, ok, Instant::now()));
    }

    /// Challenges refused now.
    pub fn refused(&self) -> HashSet<ChallengeId> {
        self.checked
            .iter()
            .filter(|(_, (_, ok, at))| !ok && at.elapsed() < REFUSAL_RECHECK)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Challenges not to claim now: refused, or still being looked at.
    pub fn excluded(&self) -> HashSet<ChallengeId> {
        let mut out = self.refused();
        out.extend(self.pending.iter().cloned());
        out
    }
}

/// When a lease renewed at `renewed` (this host's clock) surely expired, with a margin for
/// clocks and the renewal's own latency.
pub fn lease_surely_expired(renewed: Instant, ttl: Duration) -> bool {
    renewed.elapsed() >= ttl.saturating_sub(ttl / 10)
}

/// Milliseconds of a duration, for the store.
pub fn millis(d: Duration) -> UnixMillis {
    d.as_millis() as UnixMillis
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ParticipantId, SubmissionId};
    use crate::store::LiveRun;

    fn row(seq: i64, challenge: &str, participant: &str, kind: SubmissionKind) -> QueuedRow {
        QueuedRow {
            seq,
            id: SubmissionId::generate(),
            challenge_id: ChallengeId::parse(challenge).unwrap(),
            owner: "p".into(),
            participant_id: ParticipantId::parse(participant).unwrap(),
            kind,
        }
    }

    fn live(challenge: &str, kind: SubmissionKind, host: &str) -> LiveRun {
        LiveRun {
            id: SubmissionId::generate(),
            challenge_id: ChallengeId::parse(challenge).unwrap(),
            kind,
            host_id: host.into(),
        }
    }

    fn policy() -> Policy {
        Policy {
            host_id: "h1".into(),
            global_concurrency: 0,
            per_challenge: HashMap::new(),
            refused: HashSet::new(),
            partition: (true, Duration::from_secs(60)),
        }
    }

    fn view(queued: Vec<QueuedRow>, live: Vec<LiveRun>) -> ClaimView {
        ClaimView {
            now: 1_000_000,
            queued,
            live,
            last_start: HashMap::new(),
            phase: None,
        }
    }

    const FULL: SubmissionKind = SubmissionKind::Full;
    const SMOKE: SubmissionKind = SubmissionKind::Smoke;

    #[test]
    fn the_fairest_row_is_picked_across_every_workers_starts() {
        let rows = vec![
            row(1, "c", "flood", FULL),
            row(2, "c", "flood", FULL),
            row(3, "c", "alone", FULL),
        ];
        let mut v = view(rows.clone(), Vec::new());
        // "flood" got a slot on some worker most recently; "alone" never did.
        v.last_start.insert(("p".into(), "flood".into()), 7);
        assert_eq!(decide(&v, &policy()).pick, Some(rows[2].id.clone()));
    }

    #[test]
    fn global_and_per_challenge_limits_count_every_workers_runs() {
        let rows = vec![row(1, "busy", "a", FULL), row(2, "calm", "b", FULL)];
        let others = vec![live("busy", FULL, "h2"), live("busy", FULL, "h3")];
        let mut p = policy();
        p.per_challenge
            .insert(ChallengeId::parse("busy").unwrap(), 2);
        assert_eq!(
            decide(&view(rows.clone(), others.clone()), &p).pick,
            Some(rows[1].id.clone()),
            "busy is at its limit on other workers"
        );
        p.global_concurrency = 2;
        assert_eq!(decide(&view(rows, others), &p).pick, None);
    }

    #[test]
    fn the_partition_is_per_host() {
        let rows = vec![row(1, "c", "a", SMOKE)];
        // A FULL run on this host holds it: no SMOKE starts here...
        let here = vec![live("c", FULL, "h1")];
        assert_eq!(decide(&view(rows.clone(), here), &policy()).pick, None);
        // ...while a FULL run on another host does not.
        let there = vec![live("c", FULL, "h2")];
        let d = decide(&view(rows.clone(), there), &policy());
        assert_eq!(d.pick, Some(rows[0].id.clone()));
        assert_eq!(d.phase, Some((SMOKE, 1_000_000)));
    }

    #[test]
    fn refused_challenges_are_left_for_other_workers() {
        let rows = vec![row(1, "theirs", "a", FULL), row(2, "mine", "b", FULL)];
        let mut p = policy();
        p.refused.insert(ChallengeId::parse("theirs").unwrap());
        assert_eq!(
            decide(&view(rows.clone(), Vec::new()), &p).pick,
            Some(rows[1].id.clone())
        );
    }

    #[test]
    fn a_refusal_is_looked_at_again_when_the_recorded_digest_changes() {
        let mut d = DataChecks::default();
        let c = ChallengeId::parse("c").unwrap();
        assert_eq!(d.known(&c, "sha256:a"), None);
        d.record(c.clone(), "sha256:a".into(), false);
        assert_eq!(d.known(&c, "sha256:a"), Some(false));
        assert!(d.refused().contains(&c));
        assert_eq!(d.known(&c, "sha256:b"), None);
    }
}
