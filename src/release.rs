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

use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, ParticipantId, Submission, SubmissionId, SubmissionKind,
    SubmissionState, UnixMillis, Usage, Verdict,
};

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

/// When a FULL run's terminal state may be shown to submitters under
/// `constant_time_release`: its wall-time limit after it started. `None` = no hold.
pub fn hold_until(s: &Submission, challenge: &Challenge, wall_time_ms: i64) -> Option<UnixMillis> {
    if s.kind != SubmissionKind::Full
        || !challenge.release.constant_time_release
        || !s.state.is_terminal()
    {
        return None;
    }
    if s.verdict == Verdict::Cancelled {
        return None;
    }
    s.started_at.map(|t| t + wall_time_ms)
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
    pub wall_time_ms: i64,
    /// 1-based position while queued.
    pub queue_position: Option<u32>,
    /// The scores a submitter may see for this FULL run (rounded, ladder-filtered); ignored
    /// for admins and SMOKE runs.
    pub released_full_scores: BTreeMap<String, f64>,
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
    /// End time (admins, and SMOKE runs).
    pub finished_at: Option<UnixMillis>,
    /// What the run used (admins, and SMOKE runs).
    pub usage: Option<Usage>,
    /// 1-based position while queued, 0 otherwise.
    pub queue_position: u32,
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
    let held = hold_until(s, ctx.challenge, ctx.wall_time_ms).is_some_and(|t| ctx.now < t)
        || (s.kind == SubmissionKind::Full
            && ctx.challenge.release.constant_time_release
            && s.state == SubmissionState::Scoring);
    let (state, verdict, message) = if held {
        (
            SubmissionState::Running,
            Verdict::Unspecified,
            String::new(),
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
        finished_at: None,
        usage: None,
        queue_position: if state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
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
        finished_at: s.finished_at,
        usage: s.usage.clone(),
        queue_position: if s.state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
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
