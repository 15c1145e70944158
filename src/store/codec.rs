//! How domain values are stored, shared by both engines: a submission as plain columns
//! (text, integers), scores and usage as JSON text, a challenge as one JSON document. Each
//! engine only moves these plain values in and out of its rows, so a value read from either
//! database is checked by the same code.

use std::collections::BTreeMap;

use crate::domain::{
    Challenge, ChallengeId, Job, JobId, JobKind, JobState, ParticipantId, ScoreChange, Submission,
    SubmissionId, SubmissionKind, SubmissionRecord, SubmissionState, Verdict,
};
use crate::store::{QueuedRow, StoreError};

/// Columns read for a submission, in the order of [`RawSubmission`]'s fields.
pub const SUBMISSION_COLUMNS: &str = "id, challenge_id, participant_id, owner, kind, state, verdict, message, detail, \
     public_scores, private_scores, archive_sha256, created_at, started_at, finished_at, usage, attempts, \
     idempotency_key, charged";

/// A submission's columns as stored, before they are checked.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RawSubmission {
    pub id: String,
    pub challenge_id: String,
    pub participant_id: String,
    pub owner: String,
    pub kind: String,
    pub state: String,
    pub verdict: String,
    pub message: String,
    pub detail: String,
    pub public_scores: String,
    pub private_scores: String,
    pub archive_sha256: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub usage: Option<String>,
    pub attempts: i64,
    pub idempotency_key: Option<String>,
    pub charged: bool,
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RawSubmission {
    /// The stored form of `s`.
    pub fn encode(s: &Submission) -> Result<RawSubmission, StoreError> {
        Ok(RawSubmission {
            id: s.id.as_str().to_owned(),
            challenge_id: s.challenge_id.as_str().to_owned(),
            participant_id: s.participant_id.as_str().to_owned(),
            owner: s.owner.clone(),
            kind: s.kind.as_str().to_owned(),
            state: s.state.as_str().to_owned(),
            verdict: s.verdict.as_str().to_owned(),
            message: s.message.clone(),
            detail: s.detail.clone(),
            public_scores: json(&s.public_scores)?,
            private_scores: json(&s.private_scores)?,
            archive_sha256: s.archive_sha256.clone(),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            usage: s.usage.as_ref().map(json).transpose()?,
            attempts: i64::from(s.attempts),
            idempotency_key: s.idempotency_key.clone(),
            charged: s.charged,
        })
    }

    /// The submission these columns hold, or why they hold none.
    pub fn decode(self) -> Result<Submission, StoreError> {
        Ok(Submission::from_record(SubmissionRecord {
            id: SubmissionId::parse(&self.id).map_err(|_| corrupt("submission id", &self.id))?,
            challenge_id: ChallengeId::parse(&self.challenge_id)
                .map_err(|_| corrupt("challenge id", &self.challenge_id))?,
            participant_id: ParticipantId::from_stored(self.participant_id),
            owner: self.owner,
            kind: SubmissionKind::parse_name(&self.kind)
                .ok_or_else(|| corrupt("kind", &self.kind))?,
            state: SubmissionState::parse_name(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            verdict: Verdict::parse_name(&self.verdict)
                .ok_or_else(|| corrupt("verdict", &self.verdict))?,
            message: self.message,
            detail: self.detail,
            public_scores: decode_scores(&self.public_scores)?,
            private_scores: decode_scores(&self.private_scores)?,
            archive_sha256: self.archive_sha256,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            usage: self
                .usage
                .map(|u| serde_json::from_str(&u).map_err(|_| corrupt("usage", &u)))
                .transpose()?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt("attempts", &self.attempts.to_string()))?,
            idempotency_key: self.idempotency_key,
            charged: self.charged,
        }))
    }
}

/// Scores as stored: a JSON object of numbers. A score that is not a finite number (an
/// earlier version wrote NaN as `null`) is dropped rather than failing the row.
fn decode_scores(text: &str) -> Result<BTreeMap<String, f64>, StoreError> {
    let raw: BTreeMap<String, Option<f64>> =
        serde_json::from_str(text).map_err(|_| corrupt("scores", text))?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.filter(|v| v.is_finite())?)))
        .collect())
}

/// A queued row from its stored columns.
pub fn queued_row(
    seq: i64,
    id: &str,
    challenge_id: &str,
    owner: String,
    participant_id: String,
    kind: &str,
) -> Result<QueuedRow, StoreError> {
    Ok(QueuedRow {
        seq,
        id: SubmissionId::parse(id).map_err(|_| corrupt("submission id", id))?,
        challenge_id: ChallengeId::parse(challenge_id)
            .map_err(|_| corrupt("challenge id", challenge_id))?,
        owner,
        participant_id: ParticipantId::from_stored(participant_id),
        kind: SubmissionKind::parse_name(kind).ok_or_else(|| corrupt("kind", kind))?,
    })
}

/// A submission id as stored.
pub fn submission_id(id: &str) -> Result<SubmissionId, StoreError> {
    SubmissionId::parse(id).map_err(|_| corrupt("submission id", id))
}

/// A challenge as stored: one JSON document.
pub fn encode_challenge(c: &Challenge) -> Result<String, StoreError> {
    json(c)
}

/// A challenge from its stored document.
pub fn decode_challenge(body: &str) -> Result<Challenge, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("challenge: {e}")))
}

/// A release's values as stored.
pub fn encode_values(v: &BTreeMap<String, f64>) -> Result<String, StoreError> {
    json(v)
}

/// A release's values from their stored text.
pub fn decode_values(text: &str) -> Result<BTreeMap<String, f64>, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt("release values", text))
}

/// Columns read for a job, in the order of [`RawJob`]'s fields.
pub const JOB_COLUMNS: &str = "id, challenge_id, kind, state, done, total, created_by, created_at, finished_at, message, beat";

/// A job's columns as stored, before they are checked.
#[derive(Debug, Clone)]
pub struct RawJob {
    pub id: String,
    pub challenge_id: String,
    pub kind: String,
    pub state: String,
    pub done: i64,
    pub total: i64,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub message: String,
    pub beat: i64,
}

impl RawJob {
    /// The job these columns hold, or why they hold none.
    pub fn decode(self) -> Result<Job, StoreError> {
        Ok(Job {
            id: JobId::parse(&self.id).map_err(|_| corrupt("job id", &self.id))?,
            challenge_id: ChallengeId::parse(&self.challenge_id)
                .map_err(|_| corrupt("challenge id", &self.challenge_id))?,
            kind: JobKind::parse(&self.kind).ok_or_else(|| corrupt("job kind", &self.kind))?,
            state: JobState::parse(&self.state).ok_or_else(|| corrupt("job state", &self.state))?,
            done: self.done.clamp(0, u32::MAX as i64) as u32,
            total: self.total.clamp(0, u32::MAX as i64) as u32,
            created_by: self.created_by,
            created_at: self.created_at,
            finished_at: self.finished_at,
            message: self.message,
            beat: self.beat,
        })
    }
}

/// Columns read for a rescoring audit entry, in the order of [`RawChange`]'s fields.
pub const CHANGE_COLUMNS: &str = "job_id, submission_id, owner, participant_id, outcome, \
     old_public, old_private, new_public, new_private, at";

/// An audit entry's columns as stored.
#[derive(Debug, Clone)]
pub struct RawChange {
    pub job_id: String,
    pub submission_id: String,
    pub owner: String,
    pub participant_id: String,
    pub outcome: String,
    pub old_public: String,
    pub old_private: String,
    pub new_public: String,
    pub new_private: String,
    pub at: i64,
}

impl RawChange {
    /// The stored form of `c`.
    pub fn encode(c: &ScoreChange) -> Result<RawChange, StoreError> {
        Ok(RawChange {
            job_id: c.job_id.as_str().to_owned(),
            submission_id: c.submission_id.clone(),
            owner: c.owner.clone(),
            participant_id: c.participant_id.clone(),
            outcome: c.outcome.clone(),
            old_public: json(&c.old_public)?,
            old_private: json(&c.old_private)?,
            new_public: json(&c.new_public)?,
            new_private: json(&c.new_private)?,
            at: c.at,
        })
    }

    /// The entry these columns hold.
    pub fn decode(self) -> Result<ScoreChange, StoreError> {
        Ok(ScoreChange {
            job_id: JobId::parse(&self.job_id).map_err(|_| corrupt("job id", &self.job_id))?,
            submission_id: self.submission_id,
            owner: self.owner,
            participant_id: self.participant_id,
            outcome: self.outcome,
            old_public: decode_scores(&self.old_public)?,
            old_private: decode_scores(&self.old_private)?,
            new_public: decode_scores(&self.new_public)?,
            new_private: decode_scores(&self.new_private)?,
            at: self.at,
        })
    }
}
