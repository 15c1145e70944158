//! What may leave the host: the one place that turns a stored submission into what a caller
//! sees, by role.
//!
//! Admins see everything. A submitter's view is built from an allow-list: a field appears
//! only if it is copied here on purpose, so a field added to the API later stays hidden from
//! submitters until someone decides otherwise. For FULL runs a submitter gets the state, the
//! verdict, the participant-safe message and the released (rounded, possibly
//! ladder-filtered) public scores, and nothing computed from the run's output or timing.

use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::domain::{Challenge, Submission, SubmissionKind, SubmissionState, UnixMillis, Verdict};
use crate::pb;

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

/// The submission as `ctx.caller` may see it.
pub fn submission_view(s: &Submission, ctx: &ViewContext<'_>) -> pb::Submission {
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
    let mut view = pb::Submission {
        id: s.id.to_string(),
        challenge_id: s.challenge_id.to_string(),
        participant_id: s.participant_id.to_string(),
        kind: kind_to_pb(s.kind) as i32,
        state: state_to_pb(state) as i32,
        verdict: verdict_to_pb(verdict) as i32,
        message,
        archive_sha256: s.archive_sha256.clone(),
        created_at: Some(timestamp(s.created_at)),
        queue_position: if state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
        ..Default::default()
    };
    if state == SubmissionState::Succeeded {
        view.scores = match s.kind {
            SubmissionKind::Full => ctx.released_full_scores.clone().into_iter().collect(),
            SubmissionKind::Smoke => round_all(&s.public_scores, decimals).into_iter().collect(),
        };
    }
    if s.kind == SubmissionKind::Smoke {
        // A SMOKE run saw only public data: its timing and usage may be shown.
        view.finished_at = s.finished_at.map(timestamp);
        view.usage = s.usage.as_ref().map(usage_to_pb);
    }
    view
}

fn admin_view(s: &Submission, ctx: &ViewContext<'_>) -> pb::Submission {
    let decimals = ctx.challenge.release.score_decimals;
    pb::Submission {
        id: s.id.to_string(),
        challenge_id: s.challenge_id.to_string(),
        participant_id: s.participant_id.to_string(),
        kind: kind_to_pb(s.kind) as i32,
        state: state_to_pb(s.state) as i32,
        verdict: verdict_to_pb(s.verdict) as i32,
        message: if s.detail.is_empty() || s.detail == s.message {
            s.message.clone()
        } else {
            format!("{} [admin detail: {}]", s.message, s.detail)
        },
        scores: if s.state == SubmissionState::Succeeded {
            match s.kind {
                SubmissionKind::Full => ctx.released_full_scores.clone().into_iter().collect(),
                SubmissionKind::Smoke => {
                    round_all(&s.public_scores, decimals).into_iter().collect()
                }
            }
        } else {
            Default::default()
        },
        public_scores_exact: s.public_scores.clone().into_iter().collect(),
        private_scores_exact: s.private_scores.clone().into_iter().collect(),
        archive_sha256: s.archive_sha256.clone(),
        created_at: Some(timestamp(s.created_at)),
        finished_at: s.finished_at.map(timestamp),
        usage: s.usage.as_ref().map(usage_to_pb),
        queue_position: if s.state == SubmissionState::Queued {
            ctx.queue_position.unwrap_or(0)
        } else {
            0
        },
    }
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ms: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn usage_to_pb(u: &crate::domain::Usage) -> pb::RunUsage {
    pb::RunUsage {
        wall_time: prost_types::Duration::try_from(u.wall_time).ok(),
        peak_memory_bytes: u.peak_memory_bytes,
        exit_code: u.exit_code.unwrap_or(0) as i32,
        signal: u.signal.clone().unwrap_or_default(),
    }
}

/// Domain kind to wire.
pub fn kind_to_pb(k: SubmissionKind) -> pb::SubmissionKind {
    match k {
        SubmissionKind::Full => pb::SubmissionKind::Full,
        SubmissionKind::Smoke => pb::SubmissionKind::Smoke,
    }
}

/// Domain state to wire.
pub fn state_to_pb(s: SubmissionState) -> pb::SubmissionState {
    match s {
        SubmissionState::Queued => pb::SubmissionState::Queued,
        SubmissionState::Running => pb::SubmissionState::Running,
        SubmissionState::Scoring => pb::SubmissionState::Scoring,
        SubmissionState::Succeeded => pb::SubmissionState::Succeeded,
        SubmissionState::Failed => pb::SubmissionState::Failed,
        SubmissionState::Cancelled => pb::SubmissionState::Cancelled,
    }
}

/// Domain verdict to wire.
pub fn verdict_to_pb(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Unspecified => pb::Verdict::Unspecified,
        Verdict::Scored => pb::Verdict::Scored,
        Verdict::TimeLimitExceeded => pb::Verdict::TimeLimitExceeded,
        Verdict::MemoryLimitExceeded => pb::Verdict::MemoryLimitExceeded,
        Verdict::OutputLimitExceeded => pb::Verdict::OutputLimitExceeded,
        Verdict::RuntimeError => pb::Verdict::RuntimeError,
        Verdict::InvalidPredictions => pb::Verdict::InvalidPredictions,
        Verdict::Cancelled => pb::Verdict::Cancelled,
        Verdict::InternalError => pb::Verdict::InternalError,
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
