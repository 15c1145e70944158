//! Maintenance jobs an admin starts over a whole challenge (rescoring its kept predictions),
//! and the audit each one leaves: per submission, the old and the new scores.
//!
//! A job is a row of the store, not a task of one process, so its progress and its cancel
//! are seen by every API replica. Its state only moves forward:
//!
//! ```text
//!  RUNNING ─▶ FINISHED    (its changes committed, all in one transaction)
//!     ├────▶ CANCELLED   (nothing it computed was written)
//!     └────▶ FAILED      (nothing it computed was written; `message` says why)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ChallengeId, DomainError, UnixMillis};

/// A job id: `j-` followed by 20 lowercase hex digits, random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(super::ids::random_id("j-"))
    }

    /// Checks the id's form; anything else cannot name a job.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if super::ids::is_random_id(raw, "j-") {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::NotFound(format!("job {raw:?}")))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Recomputes every kept FULL prediction's scores.
    Rescore,
    /// Runs stored archives again and swaps the originals' results for the new ones.
    Rerun,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Rescore => "rescore",
            JobKind::Rerun => "rerun",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "rescore" => Some(JobKind::Rescore),
            "rerun" => Some(JobKind::Rerun),
            _ => None,
        }
    }
}

/// The owner of every re-run a job makes starts with this (no token may be named so).
///
/// A re-run is an ordinary submission owned by its job (`rerun:<job id>`), not by the
/// platform: so it runs through the normal pipeline (scheduler, fairness, sandbox, workers)
/// while counting against nobody's quota, taking no participant's fair share, showing in
/// no submitter's listing or reads, and holding no leaderboard entry.
pub const RERUN_OWNER_PREFIX: &str = "rerun:";

/// The owner of the re-runs of job `id`.
pub fn rerun_owner(id: &JobId) -> String {
    format!("{RERUN_OWNER_PREFIX}{id}")
}

/// Whether `owner` is a job's (the submission is a re-run).
pub fn is_rerun_owner(owner: &str) -> bool {
    owner.starts_with(RERUN_OWNER_PREFIX)
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Computing; nothing written yet.
    Running,
    /// Its changes are committed.
    Finished,
    /// Cancelled before its commit: nothing changed.
    Cancelled,
    /// Failed before its commit: nothing changed.
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "running" => Some(JobState::Running),
            "finished" => Some(JobState::Finished),
            "cancelled" => Some(JobState::Cancelled),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        self != JobState::Running
    }
}

/// A maintenance job over one challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Random id.
    pub id: JobId,
    /// The challenge it works on.
    pub challenge_id: ChallengeId,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Items handled so far.
    pub done: u32,
    /// Items to handle.
    pub total: u32,
    /// The admin token that started it.
    pub created_by: String,
    /// When it started.
    pub created_at: UnixMillis,
    /// When it ended.
    pub finished_at: Option<UnixMillis>,
    /// Why it failed, or a summary once it finished.
    pub message: String,
    /// The last heartbeat of the process working on it (see [`JOB_STALE_AFTER`]).
    pub beat: UnixMillis,
}

/// How often the process working on a job records that it is alive.
pub const JOB_BEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A RUNNING job whose process has not beaten for this long is abandoned (its process died):
/// it is ended FAILED, having written nothing, when it is next read or when another job is
/// started on its challenge.
pub const JOB_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What an abandoned job's message says.
pub const JOB_ABANDONED_MESSAGE: &str =
    "abandoned: the server working on it stopped; nothing was changed";

impl Job {
    /// A new RUNNING job with nothing done.
    pub fn start(
        challenge_id: ChallengeId,
        kind: JobKind,
        created_by: String,
        now: UnixMillis,
    ) -> Job {
        Job {
            id: JobId::generate(),
            challenge_id,
            kind,
            state: JobState::Running,
            done: 0,
            total: 0,
            created_by,
            created_at: now,
            finished_at: None,
            message: String::new(),
            beat: now,
        }
    }

    /// Whether the job is RUNNING with no heartbeat since `JOB_STALE_AFTER` before `now`.
    pub fn is_abandoned(&self, now: UnixMillis) -> bool {
        self.state == JobState::Running
            && now - self.beat > JOB_STALE_AFTER.as_millis() as UnixMillis
    }
}

/// What a rescoring job did to one submission: the audit entry, admin-only.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChange {
    /// The job.
    pub job_id: JobId,
    /// The submission.
    pub submission_id: String,
    /// Its (platform, participant).
    pub owner: String,
    /// Its participant.
    pub participant_id: String,
    /// "changed", "unchanged", or "skipped: <why>" (its scores were left as they were); a
    /// re-run's "changed" names the verdicts ("changed: scored -> runtime_error").
    pub outcome: String,
    /// Exact public scores before.
    pub old_public: BTreeMap<String, f64>,
    /// Exact private scores before.
    pub old_private: BTreeMap<String, f64>,
    /// Exact public scores after (the old ones when skipped).
    pub new_public: BTreeMap<String, f64>,
    /// Exact private scores after (the old ones when skipped).
    pub new_private: BTreeMap<String, f64>,
    /// When the job computed it.
    pub at: UnixMillis,
}

impl ScoreChange {
    /// Whether the scores it records differ.
    pub fn changed(&self) -> bool {
        self.outcome.starts_with("changed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_round_trips_and_rejects_other_shapes() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(id.as_str()).unwrap(), id);
        assert!(JobId::parse("s-0123456789abcdef0123").is_err());
        assert!(JobId::parse("j-xyz").is_err());
    }

    #[test]
    fn job_states_and_kinds_round_trip_through_their_names() {
        for s in [
            JobState::Running,
            JobState::Finished,
            JobState::Cancelled,
            JobState::Failed,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(s.is_terminal(), s != JobState::Running);
        }
        assert_eq!(JobKind::parse("rescore"), Some(JobKind::Rescore));
        assert_eq!(JobKind::parse("rerun"), Some(JobKind::Rerun));
        let id = JobId::generate();
        assert!(is_rerun_owner(&rerun_owner(&id)));
        assert!(!is_rerun_owner("platform-a"));
        assert_eq!(JobKind::parse("nope"), None);
    }

    #[test]
    fn a_running_job_without_a_beat_for_a_minute_is_abandoned() {
        let j = Job::start(
            ChallengeId::parse("c").unwrap(),
            JobKind::Rescore,
            "admin".into(),
            1_000,
        );
        assert!(!j.is_abandoned(1_000 + 60_000));
        assert!(j.is_abandoned(1_000 + 60_001));
        let ended = Job {
            state: JobState::Finished,
            ..j
        };
        assert!(!ended.is_abandoned(i64::MAX));
    }
}
