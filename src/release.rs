//! What may leave the host: the one place that turns a stored submission into what a caller
//! sees, by role, as a [`SubmissionView`] (a domain value; `crate::api` puts it on the
//! wire).
//!
//! Admins see everything. A submitter's view is built from an allow-list: a field appears
//! only if it is copied here on purpose, so a field added to the API later stays hidden from
//! submitters until someone decides otherwise. For FULL runs a submitter gets the state, the
//! verdict, the participant-safe message and the released (rounded, possibly
//! ladder-filtered) public scores, and nothing computed from the run's output or timing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, FailureDetail, ParticipantId, ResolvedLimits, Submission, SubmissionId,
    SubmissionKind, SubmissionState, UnixMillis, Usage, Verdict,
};
use crate::leakage::LeakageEstimate;

/// Rounds a score to `decimals` places for release.
pub fn round(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let p = 10f64.powi(decimals as i32);
    let r = (x * p).round() / p;
    if r == 0.0 { 0.0 } else { r }
}

/// Rounds every score of a map.
pub fn round_all(scores: &BTreeMap<String, f64>, decimals: u32) -> BTreeMap<String, f64> {
    scores
        .iter()
        .map(|(k, v)| (k.clone(), round(*v, decimals)))
        .collect()
}

/// Whether a FULL run's result is held from submitters under `constant_time_release`, and
/// until when: `Some(None)` while it is still running or scoring (no end yet), `Some(Some(t))`
/// once it ended, until `t` (see [`crate::domain::ReleasePolicy::release_at`]), `None` when
/// nothing is held (a SMOKE run, no constant-time release, or never started).
pub fn hold(
    s: &Submission,
    challenge: &Challenge,
    wall_time: Duration,
) -> Option<Option<UnixMillis>> {
    if s.kind != SubmissionKind::Full || !challenge.release.constant_time_release {
        return None;
    }
    s.started_at?;
    if !s.state.is_terminal() {
        return Some(None);
    }
    Some(challenge.release.deadline_of(s, wall_time))
}

/// Whether `s` is held from submitters at `now`.
pub fn is_held(
    s: &Submission,
    challenge: &Challenge,
    wall_time: Duration,
    now: UnixMillis,
) -> bool {
    match hold(s, challenge, wall_time) {
        None => false,
        Some(None) => true,
        Some(Some(t)) => now < t,
    }
}

/// What a challenge shows a caller: admins everything, with the leakage estimate;
/// submitters neither the split seed (which would let them tell public from private ids)
/// nor what the server read of the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeView {
    /// The challenge as shown.
    pub challenge: Challenge,
    /// Admins only: how much a FULL submission can release.
    pub leakage: Option<LeakageEstimate>,
}

/// The challenge as `caller` may see it.
pub fn challenge_view(c: &Challenge, caller: &Caller, limits: &ResolvedLimits) -> ChallengeView {
    if caller.is_admin() {
        return ChallengeView {
            challenge: c.clone(),
            leakage: Some(crate::leakage::estimate(c, limits)),
        };
    }
    let mut shown = c.clone();
    shown.scoring.split_seed = 0;
    shown.facts = Default::default();
    ChallengeView {
        challenge: shown,
        leakage: None,
    }
}

/// Everything a view needs besides the submission itself.
pub struct ViewContext<'a> {
    /// The submission's challenge.
    pub challenge: &'a Challenge,
    /// Who asks.
    pub caller: &'a Caller,
    /// Now, for holds.
    pub now: UnixMillis,
    /// The challenge's resolved wall-time limit, for holds.
    pub wall_time: Duration,
    /// The challenge's resolved limits: what a shown [`Usage`] is measured against.
    pub limits: ResolvedLimits,
    /// 1-based position while queued.
    pub queue_position: Option<u32>,
    /// The scores a submitter may see for this FULL run (rounded, ladder-filtered); ignored
    /// for admins and SMOKE runs.
    pub released_full_scores: BTreeMap<String, f64>,
    /// Whether the participant selected this submission for the final ranking.
    pub selected: bool,
}

/// What a caller may see of a submission: the allow-list. A submitter's view leaves the
/// admin-only fields empty; the wire conversion (`crate::api`) copies this and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionView {
    /// Id.
    pub id: SubmissionId,
    /// Its challenge.
    pub challenge_id: ChallengeId,
    /// The platform's participant.
    pub participant_id: ParticipantId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// The state as shown (a held FULL run shows RUNNING).
    pub state: SubmissionState,
    /// The verdict as shown.
    pub verdict: Verdict,
    /// The message as shown (admins also read the detail).
    pub message: String,
    /// Released scores: rounded, ladder-filtered for FULL runs.
    pub scores: BTreeMap<String, f64>,
    /// Exact public scores (admins only).
    pub public_scores_exact: BTreeMap<String, f64>,
    /// Exact private scores (admins only).
    pub private_scores_exact: BTreeMap<String, f64>,
    /// SHA-256 of the archive.
    pub archive_sha256: String,
    /// Acceptance time.
    pub created_at: UnixMillis,
    /// When the current attempt started (the moment it was shown RUNNING); `None` while
    /// queued.
    pub started_at: Option<UnixMillis>,
    /// End time (admins, and SMOKE runs).
    pub finished_at: Option<UnixMillis>,
    /// What the run used (admins, and SMOKE runs).
    pub usage: Option<Usage>,
    /// The limits `usage` is measured against; shown exactly when `usage` is.
    pub limits: Option<ResolvedLimits>,
    /// 1-based position while queued, 0 otherwise.
    pub queue_position: u32,
    /// Selected by its participant for the final ranking (the participant's own choice,
    /// so no more than they told the service).
    pub selected: bool,
}

impl SubmissionView {
    /// Whether the view shows a state after which nothing more will be shown.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

/// The submission as `ctx.caller` may see it.
pub fn submission_view(s: &Submission, ctx: &ViewContext<'_>) -> SubmissionView {
    if ctx.caller.is_admin() {
        return admin_view(s, ctx);
    }
    let decimals = ctx.challenge.release.score_decimals;
    // Under constant-time release the moment the code exited (RUNNING → SCORING) is as
    // telling as its end, so a FULL run shows RUNNING until its result may be announced.
    let held = is_held(s, ctx.challenge, ctx.wall_time, ctx.now);
    let (state, verdict, message) = if held {
        (
            SubmissionState::Running,
            Verdict::Unspecified,
            String::new(),
        )
    } else if s.kind == SubmissionKind::Full
        && s.verdict.is_participant_failure()
        && ctx.challenge.release.failure_detail == FailureDetail::NotScored
    {
        // The verdict is chosen by code that read private data: shown only as "not scored".
        (
            s.state,
            Verdict::NotScored,
            crate::domain::NOT_SCORED_MESSAGE.to_owned(),
        )
    } else {
        (s.state, s.verdict, s.message.clone())
    };
    let mut view = SubmissionView {
        id: s.id.clone(),
        challenge_id: s.challenge_id.clone(),
        participant_id: s.participant_id.clone(),
        kind: s.kind,
        state,
        verdict,
        message,
        scores: BTreeMap::new(),
        public_scores_exact: BTreeMap::new(),
        private_scores_exact: BTreeMap::new(),
        archive_sha256: s.archive_sha256.clone(),
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: None,
        usage: None,
        limits: None,
        queue_position: if state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
        selected: ctx.selected,
    };
    if state == SubmissionState::Succeeded {
        view.scores = match s.kind {
            SubmissionKind::Full => ctx.released_full_scores.clone(),
            SubmissionKind::Smoke => round_all(&s.public_scores, decimals),
        };
    }
    if s.kind == SubmissionKind::Smoke {
        // A SMOKE run saw only public data: its timing and usage may be shown.
        view.finished_at = s.finished_at;
        view.usage = s.usage.clone();
        view.limits = s.usage.as_ref().map(|_| ctx.limits);
    }
    view
}

fn admin_view(s: &Submission, ctx: &ViewContext<'_>) -> SubmissionView {
    let decimals = ctx.challenge.release.score_decimals;
    SubmissionView {
        id: s.id.clone(),
        challenge_id: s.challenge_id.clone(),
        participant_id: s.participant_id.clone(),
        kind: s.kind,
        state: s.state,
        verdict: s.verdict,
        message: if s.detail.is_empty() || s.detail == s.message {
            s.message.clone()
        } else {
            format!("{} [admin detail: {}]", s.message, s.detail)
        },
        scores: if s.state == SubmissionState::Succeeded {
            match s.kind {
                SubmissionKind::Full => ctx.released_full_scores.clone(),
                SubmissionKind::Smoke => round_all(&s.public_scores, decimals),
            }
        } else {
            BTreeMap::new()
        },
        public_scores_exact: s.public_scores.clone(),
        private_scores_exact: s.private_scores.clone(),
        archive_sha256: s.archive_sha256.clone(),
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        usage: s.usage.clone(),
        limits: s.usage.as_ref().map(|_| ctx.limits),
        queue_position: if s.state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
        selected: ctx.selected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_scores_are_rounded_to_the_policy() {
        assert_eq!(round(0.123456, 4), 0.1235);
        assert_eq!(round(0.97222222, 2), 0.97);
        assert_eq!(round(-0.00001, 3), 0.0);
    }
}
