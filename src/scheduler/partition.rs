//! The time partition of a Docker host: SMOKE runs, whose logs are released, and FULL
//! runs, which read private data, never hold slots on one host at the same time.

use std::time::Duration;

use crate::domain::{SubmissionKind, UnixMillis};
use crate::store::QueuedRow;

/// Which kind of run may start, so that SMOKE and FULL runs never share the host in time
/// and neither starves: the kind holding slots keeps starting for at most `slice` while the
/// other waits; then nothing starts until its runs end, and the other kind gets the host.
#[derive(Debug)]
pub struct Partition {
    enabled: bool,
    slice_ms: i64,
    phase: Option<(SubmissionKind, UnixMillis)>,
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
        Self::resume(enabled, slice, None)
    }

    /// A partition in a phase read back from where it was kept (a shared store keeps one
    /// per Docker host, for every worker on it).
    pub fn resume(
        enabled: bool,
        slice: Duration,
        phase: Option<(SubmissionKind, UnixMillis)>,
    ) -> Self {
        Self {
            enabled,
            slice_ms: slice.as_millis() as i64,
            phase,
        }
    }

    /// The phase to keep: which kind it last switched to, when.
    pub fn phase(&self) -> Option<(SubmissionKind, UnixMillis)> {
        self.phase
    }

    /// The kinds that may start now, given the kinds holding slots and the queue (oldest
    /// first).
    pub fn allowed(
        &mut self,
        live: &[SubmissionKind],
        queued: &[QueuedRow],
        now: UnixMillis,
    ) -> Vec<SubmissionKind> {
        if !self.enabled {
            return vec![SubmissionKind::Full, SubmissionKind::Smoke];
        }
        let waiting = |k: SubmissionKind| queued.iter().any(|r| r.kind == k);
        let within = |began: UnixMillis| now - began < self.slice_ms;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChallengeId, ParticipantId, SubmissionId};

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
        let t: UnixMillis = 1_000_000;
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
        let mut p = Partition::new(true, Duration::from_secs(60));
        let slice: UnixMillis = 60_000;
        let t0: UnixMillis = 1_000_000;
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
        let t0: UnixMillis = 1_000_000;
        let full = [row(1, FULL)];
        assert_eq!(p.allowed(&[], &full, t0), [FULL]);
        assert_eq!(p.allowed(&[FULL], &full, t0 + 3_600_000), [FULL]);
    }

    #[test]
    fn without_partitioning_both_kinds_run_at_once() {
        let mut p = Partition::new(false, Duration::from_secs(1));
        let queued = [row(1, FULL), row(2, SMOKE)];
        assert_eq!(p.allowed(&[FULL], &queued, 0), [FULL, SMOKE]);
    }
}
