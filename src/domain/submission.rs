//! A submission and its life, as a state machine:
//!
//! ```text
//!            start              begin_scoring            score
//!  QUEUED ───────────▶ RUNNING ───────────────▶ SCORING ───────▶ SUCCEEDED
//!    │  ▲                 │  │                     │  │
//!    │  └──── requeue ────┘  └─ fail ─▶ FAILED ◀─ fail ┘  │
//!    │  ▲                                                 │
//!    │  └───────────────── requeue ──────────────────────┘
//!    └─ cancel ─▶ CANCELLED ◀─ cancel ─ RUNNING | SCORING
//!  any state but a terminal one ── fail_internal ──▶ FAILED (INTERNAL_ERROR, never charged)
//! ```
//!
//! Every change is a method here that returns a [`Transition`]: the next submission and the
//! state and attempt the stored row must still be in for the change to be written. The store
//! writes nothing else (`crate::store::Store::commit`), so a change is either legal and
//! committed, or refused here with an [`IllegalTransition`]. Outside this file a
//! [`Submission`] is read-only: it derefs to its [`SubmissionRecord`] and has no setter.
//! What a participant is charged for is decided here too, from the verdict and the
//! challenge's [`Quota`].

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use super::{
    ChallengeId, ParticipantId, Quota, ReleasePolicy, SubmissionId, SubmissionKind,
    SubmissionState, UnixMillis, Usage, Verdict,
};

/// What a participant reads when the service, not their code, ended the run.
pub const INTERNAL_ERROR_MESSAGE: &str = "the service failed while handling this submission; this is not your code's fault and is not charged";
/// What a participant reads when restarts of the service interrupted the run too often.
pub const INTERRUPTED_MESSAGE: &str = "the service stopped during this run too many times; this is not your code's fault and is not charged";
/// What a participant reads of a cancelled submission.
pub const CANCELLED_MESSAGE: &str = "the submission was cancelled";
/// What a submitter reads of a FULL run that was not scored, when the challenge releases
/// only that.
pub const NOT_SCORED_MESSAGE: &str =
    "the run was not scored; a SMOKE submission on the sample shows why a run fails";
/// What a participant reads of a scored submission.
pub const SCORED_MESSAGE: &str = "scored";

/// Every stored field of a submission. Read through a [`Submission`]; built directly only
/// by the store (reading a row back) and by tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRecord {
    /// Random id.
    pub id: SubmissionId,
    /// Its challenge.
    pub challenge_id: ChallengeId,
    /// The platform's participant id.
    pub participant_id: ParticipantId,
    /// Name of the token that created it; only that token (and admins) may see it.
    pub owner: String,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// Current state.
    pub state: SubmissionState,
    /// Verdict once terminal.
    pub verdict: Verdict,
    /// Participant-safe message, built only from the verdict and the challenge's settings.
    pub message: String,
    /// Admin-only detail (engine errors, scorer failures); never shown to submitters.
    pub detail: String,
    /// Exact public-split scores (FULL) or sample scores (SMOKE).
    pub public_scores: BTreeMap<String, f64>,
    /// Exact private-split scores (FULL only).
    pub private_scores: BTreeMap<String, f64>,
    /// SHA-256 of the archive, hex.
    pub archive_sha256: String,
    /// When it was accepted.
    pub created_at: UnixMillis,
    /// When its current attempt started running.
    pub started_at: Option<UnixMillis>,
    /// When it reached a terminal state.
    pub finished_at: Option<UnixMillis>,
    /// What the run used.
    pub usage: Option<Usage>,
    /// Runs started for it (a crash mid-run re-queues it with one more).
    pub attempts: u32,
    /// Caller's idempotency key, unique per owner.
    pub idempotency_key: Option<String>,
    /// Whether it counts against the participant's quota.
    pub charged: bool,
}

/// A submission: read-only outside this module, changed only through its transitions.
///
/// It derefs to its [`SubmissionRecord`] so that every reader keeps writing `s.state`, while
/// no code outside this file can write `s.state = ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission(SubmissionRecord);

impl Deref for Submission {
    type Target = SubmissionRecord;

    fn deref(&self) -> &SubmissionRecord {
        &self.0
    }
}

/// What a new submission is made of; everything else starts empty.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// Fresh id.
    pub id: SubmissionId,
    /// Its challenge.
    pub challenge_id: ChallengeId,
    /// The platform's participant id.
    pub participant_id: ParticipantId,
    /// The token that creates it.
    pub owner: String,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// SHA-256 of the stored archive.
    pub archive_sha256: String,
    /// Acceptance time.
    pub created_at: UnixMillis,
    /// Caller's idempotency key.
    pub idempotency_key: Option<String>,
}

/// A change to commit: the next submission, and what the stored row must still be for the
/// change to be written (compare-and-set). Only this module makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    expected_state: SubmissionState,
    expected_attempts: u32,
    next: Submission,
}

impl Transition {
    /// The state the stored row must be in.
    pub fn expected_state(&self) -> SubmissionState {
        self.expected_state
    }

    /// The attempt the stored row must be at: a late write from an attempt that was handed
    /// back and started again elsewhere finds a higher number and is refused.
    pub fn expected_attempts(&self) -> u32 {
        self.expected_attempts
    }

    /// The submission after the change.
    pub fn next(&self) -> &Submission {
        &self.next
    }

    /// The submission after the change, once committed.
    pub fn into_next(self) -> Submission {
        self.next
    }
}

/// The transitions, by name (for errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// QUEUED → RUNNING.
    Start,
    /// RUNNING → SCORING.
    BeginScoring,
    /// SCORING → SUCCEEDED.
    Score,
    /// RUNNING | SCORING → FAILED with a participant verdict.
    Fail,
    /// QUEUED | RUNNING | SCORING → CANCELLED.
    Cancel,
    /// SUCCEEDED | FAILED (held) → CANCELLED.
    CancelHeld,
    /// Any non-terminal state → FAILED with INTERNAL_ERROR.
    FailInternal,
    /// RUNNING | SCORING → QUEUED (or FAILED after too many attempts).
    Requeue,
    /// SUCCEEDED → SUCCEEDED with scores recomputed from its kept predictions.
    Rescore,
    /// SUCCEEDED | FAILED → the result of a re-run of the same archive.
    TakeRerun,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::BeginScoring => "begin scoring",
            Action::Score => "be scored",
            Action::Fail => "fail",
            Action::Cancel => "be cancelled",
            Action::CancelHeld => "be cancelled while its result is held",
            Action::FailInternal => "fail as an internal error",
            Action::Requeue => "be re-queued",
            Action::Rescore => "be rescored",
            Action::TakeRerun => "take a re-run's result",
        })
    }
}

/// A transition the state machine refuses: always a bug or a lost race in the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} submission cannot {action}{}", .why.map(|w| format!(" ({w})")).unwrap_or_default())]
pub struct IllegalTransition {
    /// The state it was in.
    pub from: SubmissionState,
    /// What was asked.
    pub action: Action,
    /// A further reason, when the state alone does not explain it.
    pub why: Option<&'static str>,
}

/// Why a run went back to the service before it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The container engine failed (transient: the run may be tried again).
    Engine(String),
    /// The service failed around the run (files, the store, scoring machinery).
    Service(String),
    /// The service is shutting down: not an attempt of the code, so it is given back.
    Shutdown,
    /// The run was found mid-way when the service started again (a crash, a kill, a lost
    /// lease).
    Restart,
}

impl Submission {
    /// A new QUEUED submission.
    pub fn new(n: NewSubmission) -> Submission {
        Submission(SubmissionRecord {
            id: n.id,
            challenge_id: n.challenge_id,
            participant_id: n.participant_id,
            owner: n.owner,
            kind: n.kind,
            state: SubmissionState::Queued,
            verdict: Verdict::Unspecified,
            message: String::new(),
            detail: String::new(),
            public_scores: BTreeMap::new(),
            private_scores: BTreeMap::new(),
            archive_sha256: n.archive_sha256,
            created_at: n.created_at,
            started_at: None,
            finished_at: None,
            usage: None,
            attempts: 0,
            idempotency_key: n.idempotency_key,
            charged: true,
        })
    }

    /// A submission read back from storage, as it was committed.
    pub fn from_record(record: SubmissionRecord) -> Submission {
        Submission(record)
    }

    fn refuse(&self, action: Action, why: Option<&'static str>) -> IllegalTransition {
        IllegalTransition {
            from: self.state,
            action,
            why,
        }
    }

    fn require(
        &self,
        action: Action,
        allowed: &[SubmissionState],
    ) -> Result<(), IllegalTransition> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(self.refuse(action, None))
        }
    }

    /// The transition to `next`, expecting the current state and attempt.
    fn to(&self, next: SubmissionRecord) -> Transition {
        Transition {
            expected_state: self.state,
            expected_attempts: self.attempts,
            next: Submission(next),
        }
    }

    /// QUEUED → RUNNING: a new attempt starts now.
    pub fn start(&self, now: UnixMillis) -> Result<Transition, IllegalTransition> {
        self.require(Action::Start, &[SubmissionState::Queued])?;
        let mut next = self.0.clone();
        next.state = SubmissionState::Running;
        next.started_at = Some(now);
        next.attempts += 1;
        Ok(self.to(next))
    }

    /// RUNNING → SCORING: the code exited cleanly; `usage` is what its run used.
    pub fn begin_scoring(&self, usage: Usage) -> Result<Transition, IllegalTransition> {
        self.require(Action::BeginScoring, &[SubmissionState::Running])?;
        let mut next = self.0.clone();
        next.state = SubmissionState::Scoring;
        next.usage = Some(usage);
        Ok(self.to(next))
    }

    /// SCORING → SUCCEEDED with the exact scores; always charged.
    pub fn score(
        &self,
        public: BTreeMap<String, f64>,
        private: BTreeMap<String, f64>,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        self.require(Action::Score, &[SubmissionState::Scoring])?;
        if public
            .values()
            .chain(private.values())
            .any(|v| !v.is_finite())
        {
            return Err(self.refuse(Action::Score, Some("a score is not finite")));
        }
        let mut next = self.0.clone();
        next.state = SubmissionState::Succeeded;
        next.verdict = Verdict::Scored;
        next.message = SCORED_MESSAGE.into();
        next.public_scores = public;
        next.private_scores = private;
        next.finished_at = Some(now);
        next.charged = true;
        Ok(self.to(next))
    }

    /// RUNNING | SCORING → FAILED with a verdict that blames the code (a limit, a crash,
    /// invalid predictions). `message` is what the participant may read, `detail` the
    /// admin's; `usage` replaces what was recorded when given. Charged as `quota` says.
    pub fn fail(
        &self,
        verdict: Verdict,
        message: String,
        detail: String,
        usage: Option<Usage>,
        quota: &Quota,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        self.require(
            Action::Fail,
            &[SubmissionState::Running, SubmissionState::Scoring],
        )?;
        if !verdict.is_participant_failure() {
            return Err(self.refuse(
                Action::Fail,
                Some("only a verdict that blames the code fails a run"),
            ));
        }
        let mut next = self.0.clone();
        next.state = SubmissionState::Failed;
        next.verdict = verdict;
        next.message = message;
        next.detail = detail;
        if usage.is_some() {
            next.usage = usage;
        }
        next.finished_at = Some(now);
        next.charged = quota.charges(verdict);
        Ok(self.to(next))
    }

    /// QUEUED | RUNNING | SCORING → CANCELLED; `usage` is recorded when the run had one.
    /// A queued submission is never charged; a FULL run that had started is charged like a
    /// failed one (so cancelling at a chosen moment is no free probe of whether the code
    /// was still running).
    pub fn cancel(
        &self,
        usage: Option<Usage>,
        quota: &Quota,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        self.require(
            Action::Cancel,
            &[
                SubmissionState::Queued,
                SubmissionState::Running,
                SubmissionState::Scoring,
            ],
        )?;
        let mut next = self.0.clone();
        next.state = SubmissionState::Cancelled;
        next.verdict = Verdict::Cancelled;
        next.message = CANCELLED_MESSAGE.into();
        if usage.is_some() {
            next.usage = usage;
        }
        next.finished_at = Some(now);
        next.charged = self.kind == SubmissionKind::Full
            && self.state != SubmissionState::Queued
            && quota.charges(Verdict::RuntimeError);
        Ok(self.to(next))
    }

    /// SUCCEEDED | FAILED → CANCELLED, for a FULL run whose result is still held under
    /// constant-time release (its deadline, per `policy`, is after `now`): a cancel must
    /// answer the same whether the code had finished or not, so it applies to a held result
    /// too. Charged like a failed run; the exact scores stay for admins.
    pub fn cancel_held(
        &self,
        policy: &ReleasePolicy,
        quota: &Quota,
        wall_time: Duration,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        self.require(
            Action::CancelHeld,
            &[SubmissionState::Succeeded, SubmissionState::Failed],
        )?;
        if policy.deadline_of(self, wall_time).is_none_or(|t| now >= t) {
            return Err(self.refuse(Action::CancelHeld, Some("its result is not held")));
        }
        let mut next = self.0.clone();
        next.state = SubmissionState::Cancelled;
        next.verdict = Verdict::Cancelled;
        next.message = CANCELLED_MESSAGE.into();
        next.finished_at = Some(now);
        next.charged = quota.charges(Verdict::RuntimeError);
        Ok(self.to(next))
    }

    /// Any non-terminal state → FAILED with INTERNAL_ERROR, never charged; `detail` is for
    /// admins.
    pub fn fail_internal(
        &self,
        detail: String,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        if self.state.is_terminal() {
            return Err(self.refuse(Action::FailInternal, None));
        }
        Ok(self.to(self.internal_error(INTERNAL_ERROR_MESSAGE, detail, now)))
    }

    fn internal_error(&self, message: &str, detail: String, now: UnixMillis) -> SubmissionRecord {
        let mut next = self.0.clone();
        next.state = SubmissionState::Failed;
        next.verdict = Verdict::InternalError;
        next.message = message.into();
        next.detail = detail;
        next.finished_at = Some(now);
        next.charged = false;
        next
    }

    /// SUCCEEDED → SUCCEEDED with new exact scores, recomputed by an admin's rescoring job
    /// from the run's kept predictions (after a labels fix, or under another built-in
    /// metric). Nothing else changes: not the verdict, the finish time or the charge.
    pub fn rescore(
        &self,
        public: BTreeMap<String, f64>,
        private: BTreeMap<String, f64>,
    ) -> Result<Transition, IllegalTransition> {
        self.require(Action::Rescore, &[SubmissionState::Succeeded])?;
        if public
            .values()
            .chain(private.values())
            .any(|v| !v.is_finite())
        {
            return Err(self.refuse(Action::Rescore, Some("a score is not finite")));
        }
        let mut next = self.0.clone();
        next.public_scores = public;
        next.private_scores = private;
        Ok(self.to(next))
    }

    /// SUCCEEDED | FAILED → the result of `rerun`, a re-run of the same archive (against
    /// new data, or in a new image) that ended SUCCEEDED or FAILED by its code: its state,
    /// verdict, messages, scores and usage replace this one's. Its identity, times, attempts
    /// and charge stay: a re-run is the service's doing, never charged. An INTERNAL_ERROR
    /// result, or a re-run of something else, is refused.
    pub fn take_rerun(&self, rerun: &Submission) -> Result<Transition, IllegalTransition> {
        self.require(
            Action::TakeRerun,
            &[SubmissionState::Succeeded, SubmissionState::Failed],
        )?;
        let usable = matches!(
            rerun.state,
            SubmissionState::Succeeded | SubmissionState::Failed
        ) && rerun.verdict != Verdict::InternalError;
        if !usable {
            return Err(self.refuse(Action::TakeRerun, Some("the re-run has no usable result")));
        }
        if rerun.archive_sha256 != self.archive_sha256 || rerun.kind != self.kind {
            return Err(self.refuse(Action::TakeRerun, Some("not a re-run of this submission")));
        }
        let mut next = self.0.clone();
        next.state = rerun.state;
        next.verdict = rerun.verdict;
        next.message = rerun.message.clone();
        next.detail = rerun.detail.clone();
        next.public_scores = rerun.public_scores.clone();
        next.private_scores = rerun.private_scores.clone();
        next.usage = rerun.usage.clone();
        Ok(self.to(next))
    }

    /// RUNNING | SCORING → QUEUED, to be run again; or FAILED with INTERNAL_ERROR (never
    /// charged) once `max_attempts` attempts of the code were interrupted. A shutdown is not
    /// an attempt of the code, so it gives its attempt back.
    pub fn requeue(
        &self,
        why: Interruption,
        max_attempts: u32,
        now: UnixMillis,
    ) -> Result<Transition, IllegalTransition> {
        self.require(
            Action::Requeue,
            &[SubmissionState::Running, SubmissionState::Scoring],
        )?;
        let mut next = self.0.clone();
        let detail = match &why {
            Interruption::Engine(d) | Interruption::Service(d) => Some(d.clone()),
            Interruption::Shutdown => {
                next.attempts = next.attempts.saturating_sub(1);
                Some(if self.state == SubmissionState::Scoring {
                    "interrupted by shutdown while scoring".to_owned()
                } else {
                    "interrupted by shutdown".to_owned()
                })
            }
            Interruption::Restart => None,
        };
        if next.attempts >= max_attempts {
            let (message, detail) = match (why, detail) {
                (Interruption::Restart, _) => (
                    INTERRUPTED_MESSAGE,
                    format!(
                        "interrupted by a service restart after {} attempts",
                        next.attempts
                    ),
                ),
                (_, detail) => (INTERNAL_ERROR_MESSAGE, detail.unwrap_or_default()),
            };
            let mut failed = Submission(next).internal_error(message, detail, now);
            failed.attempts = self.attempts;
            return Ok(self.to(failed));
        }
        next.state = SubmissionState::Queued;
        next.started_at = None;
        next.usage = None;
        if let Some(detail) = detail {
            next.detail = detail;
        }
        Ok(self.to(next))
    }
}

#[cfg(test)]
#[path = "submission_tests.rs"]
mod tests;
