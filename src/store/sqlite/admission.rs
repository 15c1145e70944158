//! Admission: whether a new submission may be queued (its owner's idempotency key, the
//! participant's and the platform's quota for today, the queue's capacity), checked on the
//! store thread so that a check and the insert that follows it are one step.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows;
use crate::domain::{Submission, now_millis};
use crate::store::{Admission, InsertOutcome, StoreError};

/// The refusal `s` would get now, or `None` when it would be admitted.
pub(super) fn check(
    conn: &Connection,
    s: &Submission,
    admission: &Admission,
) -> Result<Option<InsertOutcome>, StoreError> {
    if let Some(key) = &s.idempotency_key {
        let existing = conn
            .query_row(
                &format!(
                    "SELECT {} FROM submissions WHERE owner = ?1 AND idempotency_key = ?2",
                    rows::SUBMISSION_COLUMNS
                ),
                params![s.owner, key],
                rows::submission_from_row,
            )
            .optional()?;
        if let Some(existing) = existing {
            return Ok(Some(InsertOutcome::Existing(existing?)));
        }
    }
    // The schedule, at the time of this very step: a deadline passes here, not when the
    // closer gets to it.
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM challenges WHERE id = ?1",
            [s.challenge_id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(body) = body {
        let challenge = rows::decode_challenge(&body)?;
        let at = now_millis();
        if challenge.refusal_at(at).is_some() {
            return Ok(Some(InsertOutcome::OutsideWindow {
                challenge: Box::new(challenge),
                at,
            }));
        }
    }
    // What counts against a quota: what is charged, or may still be (queued or running). A
    // cancelled run counts when it was charged (a started FULL run).
    let used = |participant: Option<&str>| -> Result<u32, StoreError> {
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM submissions
             WHERE challenge_id = ?1 AND owner = ?2 AND kind = ?3 AND created_at >= ?4
               AND (?5 IS NULL OR participant_id = ?5)
               AND verdict != 'internal_error'
               AND (state != 'cancelled' OR charged)
               AND (?6 OR state != 'failed')",
            params![
                s.challenge_id.as_str(),
                s.owner,
                s.kind.as_str(),
                admission.day_start,
                participant,
                admission.count_failed
            ],
            |r| r.get(0),
        )?)
    };
    if admission.quota > 0 && used(Some(s.participant_id.as_str()))? >= admission.quota {
        return Ok(Some(InsertOutcome::QuotaExceeded {
            limit: admission.quota,
        }));
    }
    if admission.platform_quota > 0 && used(None)? >= admission.platform_quota {
        return Ok(Some(InsertOutcome::PlatformQuotaExceeded {
            limit: admission.platform_quota,
        }));
    }
    let queued: u32 = conn.query_row(
        "SELECT COUNT(*) FROM submissions WHERE state = 'queued'",
        [],
        |r| r.get(0),
    )?;
    if queued >= admission.max_queued {
        return Ok(Some(InsertOutcome::QueueFull {
            max_queued: admission.max_queued,
        }));
    }
    Ok(None)
}
