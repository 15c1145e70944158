//! The words of a submission's status: its kind, its state, its verdict and what its run
//! used. Plain values with their stored names; how a submission moves between states is
//! `super::submission`'s business, not this file's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// FULL runs see private data; SMOKE runs the public sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionKind {
    /// Private data; only released scores come back.
    Full,
    /// Public sample; logs and sample score come back.
    Smoke,
}

impl SubmissionKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionKind::Full => "full",
            SubmissionKind::Smoke => "smoke",
        }
    }

    /// Parses a stored name.
    pub fn parse_name(s: &str) -> Option<Self> {
        match s {
            "full" => Some(SubmissionKind::Full),
            "smoke" => Some(SubmissionKind::Smoke),
            _ => None,
        }
    }
}

/// Where a submission is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionState {
    /// Waiting for a run slot.
    Queued,
    /// Its container runs.
    Running,
    /// Its predictions are being scored.
    Scoring,
    /// Scored.
    Succeeded,
    /// Ended with a verdict other than SCORED.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl SubmissionState {
    /// Whether nothing more will happen to it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SubmissionState::Succeeded | SubmissionState::Failed | SubmissionState::Cancelled
        )
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Queued => "queued",
            SubmissionState::Running => "running",
            SubmissionState::Scoring => "scoring",
            SubmissionState::Succeeded => "succeeded",
            SubmissionState::Failed => "failed",
            SubmissionState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse_name(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => SubmissionState::Queued,
            "running" => SubmissionState::Running,
            "scoring" => SubmissionState::Scoring,
            "succeeded" => SubmissionState::Succeeded,
            "failed" => SubmissionState::Failed,
            "cancelled" => SubmissionState::Cancelled,
            _ => return None,
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not terminal yet.
    Unspecified,
    /// Scored.
    Scored,
    /// Our timer fired.
    TimeLimitExceeded,
    /// OOM-killed by the cgroup.
    MemoryLimitExceeded,
    /// /output or the log over its cap.
    OutputLimitExceeded,
    /// Non-zero exit or fatal signal.
    RuntimeError,
    /// Missing, unreadable or malformed predictions.
    InvalidPredictions,
    /// Cancelled by a caller.
    Cancelled,
    /// The service's fault; never charged.
    InternalError,
    /// Shown instead of a FULL run's failure verdict when the challenge releases only
    /// whether it was scored; never stored.
    NotScored,
}

impl Verdict {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unspecified => "unspecified",
            Verdict::Scored => "scored",
            Verdict::TimeLimitExceeded => "time_limit_exceeded",
            Verdict::MemoryLimitExceeded => "memory_limit_exceeded",
            Verdict::OutputLimitExceeded => "output_limit_exceeded",
            Verdict::RuntimeError => "runtime_error",
            Verdict::InvalidPredictions => "invalid_predictions",
            Verdict::Cancelled => "cancelled",
            Verdict::InternalError => "internal_error",
            Verdict::NotScored => "not_scored",
        }
    }

    /// Parses a stored name.
    pub fn parse_name(s: &str) -> Option<Self> {
        Some(match s {
            "unspecified" => Verdict::Unspecified,
            "scored" => Verdict::Scored,
            "time_limit_exceeded" => Verdict::TimeLimitExceeded,
            "memory_limit_exceeded" => Verdict::MemoryLimitExceeded,
            "output_limit_exceeded" => Verdict::OutputLimitExceeded,
            "runtime_error" => Verdict::RuntimeError,
            "invalid_predictions" => Verdict::InvalidPredictions,
            "cancelled" => Verdict::Cancelled,
            "internal_error" => Verdict::InternalError,
            "not_scored" => Verdict::NotScored,
            _ => return None,
        })
    }
}

/// What a run used (admin-visible).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// From start to exit.
    pub wall_time: Duration,
    /// Peak memory of the cgroup, 0 when unknown.
    pub peak_memory_bytes: u64,
    /// Exit code, when it exited.
    pub exit_code: Option<i64>,
    /// Name of the fatal signal, when one killed it.
    pub signal: Option<String>,
    /// CPU time of all its processes together (cgroup accounting), zero when unknown or
    /// recorded before it was measured.
    #[serde(default)]
    pub cpu_time: Duration,
}

impl std::fmt::Display for SubmissionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

impl Verdict {
    /// Whether the verdict blames the participant's code (a limit, a crash, bad
    /// predictions): the verdicts a run may `fail` with. SCORED, CANCELLED and INTERNAL_ERROR
    /// have transitions of their own.
    pub fn is_participant_failure(self) -> bool {
        matches!(
            self,
            Verdict::TimeLimitExceeded
                | Verdict::MemoryLimitExceeded
                | Verdict::OutputLimitExceeded
                | Verdict::RuntimeError
                | Verdict::InvalidPredictions
        )
    }
}
