//! How domain values are stored, shared by both engines: a submission as plain columns
//! (text, integers), scores and usage as JSON text, a challenge as one JSON document. Each
//! engine only moves these plain values in and out of its rows, so a value read from either
//! database is checked by the same code.

use std::collections::BTreeMap;

use crate::domain::{
    Challenge, ChallengeId, ParticipantId, Submission, SubmissionId, SubmissionKind,
    SubmissionRecord, SubmissionState, Verdict,
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
