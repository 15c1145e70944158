//! Mapping between domain types and rows.

use rusqlite::{Connection, Row, params};

use super::StoreError;
use crate::domain::{
    Challenge, ChallengeId, ParticipantId, Submission, SubmissionId, SubmissionKind,
    SubmissionRecord, SubmissionState, Transition, Verdict,
};

/// Columns read for a submission, in the order [`submission_from_row`] expects.
pub const SUBMISSION_COLUMNS: &str = "id, challenge_id, participant_id, owner, kind, state, verdict, message, detail, \
     public_scores, private_scores, archive_sha256, created_at, started_at, finished_at, usage, attempts, \
     idempotency_key, charged";

/// A queued submission, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    /// Insertion order.
    pub seq: i64,
    /// Submission id.
    pub id: SubmissionId,
    /// Its challenge.
    pub challenge_id: ChallengeId,
    /// The token (platform) that owns it.
    pub owner: String,
    /// The platform's participant.
    pub participant_id: ParticipantId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
}

impl QueuedRow {
    /// The unit of fairness: a participant of a platform.
    pub fn party(&self) -> (&str, &str) {
        (self.owner.as_str(), self.participant_id.as_str())
    }
}

/// Reads a [`QueuedRow`] from `seq, id, challenge_id, owner, participant_id, kind`.
pub fn queued_from_row(r: &Row<'_>) -> rusqlite::Result<Result<QueuedRow, StoreError>> {
    let seq: i64 = r.get(0)?;
    let id: String = r.get(1)?;
    let challenge_id: String = r.get(2)?;
    let owner: String = r.get(3)?;
    let participant_id: String = r.get(4)?;
    let kind: String = r.get(5)?;
    Ok((|| {
        Ok(QueuedRow {
            seq,
            id: SubmissionId::parse(&id).map_err(|_| corrupt("submission id", &id))?,
            challenge_id: ChallengeId::parse(&challenge_id)
                .map_err(|_| corrupt("challenge id", &challenge_id))?,
            owner,
            participant_id: ParticipantId::from_stored(participant_id),
            kind: SubmissionKind::parse_name(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        })
    })())
}

pub fn encode_challenge(c: &Challenge) -> Result<String, StoreError> {
    serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn decode_challenge(body: &str) -> Result<Challenge, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("challenge: {e}")))
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// Reads a submission from the row's columns starting at 0.
pub fn submission_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Submission, StoreError>> {
    submission_from_row_at(r, 0)
}

/// Reads a submission from the row's columns starting at `o`.
pub fn submission_from_row_at(
    r: &Row<'_>,
    o: usize,
) -> rusqlite::Result<Result<Submission, StoreError>> {
    let id: String = r.get(o)?;
    let challenge_id: String = r.get(o + 1)?;
    let participant_id: String = r.get(o + 2)?;
    let kind: String = r.get(o + 4)?;
    let state: String = r.get(o + 5)?;
    let verdict: String = r.get(o + 6)?;
    let public_scores: String = r.get(o + 9)?;
    let private_scores: String = r.get(o + 10)?;
    let usage: Option<String> = r.get(o + 15)?;
    let owner: String = r.get(o + 3)?;
    let message: String = r.get(o + 7)?;
    let detail: String = r.get(o + 8)?;
    let archive_sha256: String = r.get(o + 11)?;
    let created_at: i64 = r.get(o + 12)?;
    let started_at: Option<i64> = r.get(o + 13)?;
    let finished_at: Option<i64> = r.get(o + 14)?;
    let attempts: u32 = r.get(o + 16)?;
    let idempotency_key: Option<String> = r.get(o + 17)?;
    let charged: bool = r.get(o + 18)?;
    Ok((|| {
        Ok(Submission::from_record(SubmissionRecord {
            id: SubmissionId::parse(&id).map_err(|_| corrupt("submission id", &id))?,
            challenge_id: ChallengeId::parse(&challenge_id)
                .map_err(|_| corrupt("challenge id", &challenge_id))?,
            participant_id: ParticipantId::from_stored(participant_id),
            owner,
            kind: SubmissionKind::parse_name(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            state: SubmissionState::parse_name(&state).ok_or_else(|| corrupt("state", &state))?,
            verdict: Verdict::parse_name(&verdict).ok_or_else(|| corrupt("verdict", &verdict))?,
            message,
            detail,
            public_scores: decode_scores(&public_scores)?,
            private_scores: decode_scores(&private_scores)?,
            archive_sha256,
            created_at,
            started_at,
            finished_at,
            usage: usage
                .map(|u| serde_json::from_str(&u).map_err(|_| corrupt("usage", &u)))
                .transpose()?,
            attempts,
            idempotency_key,
            charged,
        }))
    })())
}

/// Scores as stored: a JSON object of numbers. A score that is not a finite number (an
/// earlier version wrote NaN as `null`) is dropped rather than failing the row.
fn decode_scores(text: &str) -> Result<std::collections::BTreeMap<String, f64>, StoreError> {
    let raw: std::collections::BTreeMap<String, Option<f64>> =
        serde_json::from_str(text).map_err(|_| corrupt("scores", text))?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.filter(|v| v.is_finite())?)))
        .collect())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn insert_submission(conn: &Connection, s: &Submission) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO submissions ({SUBMISSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            s.id.as_str(),
            s.challenge_id.as_str(),
            s.participant_id.as_str(),
            s.owner,
            s.kind.as_str(),
            s.state.as_str(),
            s.verdict.as_str(),
            s.message,
            s.detail,
            json(&s.public_scores)?,
            json(&s.private_scores)?,
            s.archive_sha256,
            s.created_at,
            s.started_at,
            s.finished_at,
            s.usage.as_ref().map(json).transpose()?,
            s.attempts,
            s.idempotency_key,
            s.charged,
        ],
    )?;
    Ok(())
}

/// Writes a transition if the row is still in its expected state and attempt.
pub fn update_submission(conn: &Connection, t: &Transition) -> Result<bool, StoreError> {
    let s = t.next();
    let n = conn.execute(
        "UPDATE submissions SET state = ?2, verdict = ?3, message = ?4, detail = ?5, public_scores = ?6,
            private_scores = ?7, started_at = ?8, finished_at = ?9, usage = ?10, attempts = ?11, charged = ?12
         WHERE id = ?1 AND state = ?13 AND attempts = ?14",
        params![
            s.id.as_str(),
            s.state.as_str(),
            s.verdict.as_str(),
            s.message,
            s.detail,
            json(&s.public_scores)?,
            json(&s.private_scores)?,
            s.started_at,
            s.finished_at,
            s.usage.as_ref().map(json).transpose()?,
            s.attempts,
            s.charged,
            t.expected_state().as_str(),
            t.expected_attempts(),
        ],
    )?;
    Ok(n == 1)
}
