//! Moving submissions in and out of SQLite rows; what the values mean is `super::super::codec`.

use rusqlite::{Connection, Row, params};

use crate::domain::{Submission, Transition};
use crate::store::codec::{self, RawSubmission};
use crate::store::{QueuedRow, StoreError};

pub use crate::store::codec::SUBMISSION_COLUMNS;
pub use crate::store::codec::{decode_challenge, encode_challenge};

/// Reads a [`QueuedRow`] from `seq, id, challenge_id, owner, participant_id, kind`.
pub fn queued_from_row(r: &Row<'_>) -> rusqlite::Result<Result<QueuedRow, StoreError>> {
    let id: String = r.get(1)?;
    let challenge_id: String = r.get(2)?;
    let kind: String = r.get(5)?;
    Ok(codec::queued_row(
        r.get(0)?,
        &id,
        &challenge_id,
        r.get(3)?,
        r.get(4)?,
        &kind,
    ))
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
    let raw = RawSubmission {
        id: r.get(o)?,
        challenge_id: r.get(o + 1)?,
        participant_id: r.get(o + 2)?,
        owner: r.get(o + 3)?,
        kind: r.get(o + 4)?,
        state: r.get(o + 5)?,
        verdict: r.get(o + 6)?,
        message: r.get(o + 7)?,
        detail: r.get(o + 8)?,
        public_scores: r.get(o + 9)?,
        private_scores: r.get(o + 10)?,
        archive_sha256: r.get(o + 11)?,
        created_at: r.get(o + 12)?,
        started_at: r.get(o + 13)?,
        finished_at: r.get(o + 14)?,
        usage: r.get(o + 15)?,
        attempts: r.get(o + 16)?,
        idempotency_key: r.get(o + 17)?,
        charged: r.get(o + 18)?,
    };
    Ok(raw.decode())
}

pub fn insert_submission(conn: &Connection, s: &Submission) -> Result<(), StoreError> {
    let r = RawSubmission::encode(s)?;
    conn.execute(
        &format!(
            "INSERT INTO submissions ({SUBMISSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            r.id,
            r.challenge_id,
            r.participant_id,
            r.owner,
            r.kind,
            r.state,
            r.verdict,
            r.message,
            r.detail,
            r.public_scores,
            r.private_scores,
            r.archive_sha256,
            r.created_at,
            r.started_at,
            r.finished_at,
            r.usage,
            r.attempts,
            r.idempotency_key,
            r.charged,
        ],
    )?;
    Ok(())
}

/// Writes a transition if the row is still in its expected state and attempt.
pub fn update_submission(conn: &Connection, t: &Transition) -> Result<bool, StoreError> {
    let r = RawSubmission::encode(t.next())?;
    let n = conn.execute(
        "UPDATE submissions SET state = ?2, verdict = ?3, message = ?4, detail = ?5, public_scores = ?6,
            private_scores = ?7, started_at = ?8, finished_at = ?9, usage = ?10, attempts = ?11, charged = ?12
         WHERE id = ?1 AND state = ?13 AND attempts = ?14",
        params![
            r.id,
            r.state,
            r.verdict,
            r.message,
            r.detail,
            r.public_scores,
            r.private_scores,
            r.started_at,
            r.finished_at,
            r.usage,
            r.attempts,
            r.charged,
            t.expected_state().as_str(),
            t.expected_attempts(),
        ],
    )?;
    Ok(n == 1)
}
