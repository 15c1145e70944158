//! Admission on PostgreSQL: the same rules as the SQLite engine's (idempotency key, the
//! participant's and the platform's quota for today, the queue's capacity), checked in the
//! caller's transaction, which holds the admission lock; and the archive stored as rows in
//! that same transaction.

use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio_postgres::Transaction;

use super::one;
use crate::domain::{Submission, now_millis};
use crate::store::codec::{RawSubmission, SUBMISSION_COLUMNS};
use crate::store::{Admission, InsertOutcome, StoreError};

/// Bytes per stored chunk of an archive.
const CHUNK: usize = 8 << 20;

/// The refusal `s` would get now, or `None` when it would be admitted.
pub(super) async fn check(
    tx: &Transaction<'_>,
    s: &Submission,
    admission: &Admission,
) -> Result<Option<InsertOutcome>, StoreError> {
    if let Some(key) = &s.idempotency_key {
        let existing = tx
            .query_opt(
                &format!(
                    "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE owner = $1 AND idempotency_key = $2"
                ),
                &[&s.owner, key],
            )
            .await?;
        if let Some(existing) = one(existing)? {
            return Ok(Some(InsertOutcome::Existing(existing)));
        }
    }
    // The schedule, at the time of this very step: a deadline passes here, not when the
    // closer gets to it.
    let body = tx
        .query_opt(
            "SELECT body FROM challenges WHERE id = $1",
            &[&s.challenge_id.as_str()],
        )
        .await?;
    if let Some(body) = body {
        let challenge = crate::store::codec::decode_challenge(body.get(0))?;
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
    let used = async |participant: Option<&str>| -> Result<u32, StoreError> {
        let n: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM submissions
                 WHERE challenge_id = $1 AND owner = $2 AND kind = $3 AND created_at >= $4
                   AND ($5::text IS NULL OR participant_id = $5)
                   AND verdict != 'internal_error'
                   AND (state != 'cancelled' OR charged)
                   AND ($6 OR state != 'failed')",
                &[
                    &s.challenge_id.as_str(),
                    &s.owner,
                    &s.kind.as_str(),
                    &admission.day_start,
                    &participant,
                    &admission.count_failed,
                ],
            )
            .await?
            .get(0);
        Ok(n as u32)
    };
    if admission.quota > 0 && used(Some(s.participant_id.as_str())).await? >= admission.quota {
        return Ok(Some(InsertOutcome::QuotaExceeded {
            limit: admission.quota,
        }));
    }
    if admission.platform_quota > 0 && used(None).await? >= admission.platform_quota {
        return Ok(Some(InsertOutcome::PlatformQuotaExceeded {
            limit: admission.platform_quota,
        }));
    }
    let queued: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM submissions WHERE state = 'queued'",
            &[],
        )
        .await?
        .get(0);
    if queued >= i64::from(admission.max_queued) {
        return Ok(Some(InsertOutcome::QueueFull {
            max_queued: admission.max_queued,
        }));
    }
    Ok(None)
}

/// Stores an archive's bytes, unless the same archive is stored already.
pub(super) async fn store_archive(
    tx: &Transaction<'_>,
    sha256: &str,
    file: &Path,
) -> Result<(), StoreError> {
    let stored = tx
        .query_opt("SELECT 1 FROM archives WHERE sha256 = $1", &[&sha256])
        .await?;
    if stored.is_some() {
        return Ok(());
    }
    let mut f = tokio::fs::File::open(file).await.map_err(StoreError::Io)?;
    let bytes = f.metadata().await.map_err(StoreError::Io)?.len() as i64;
    tx.execute(
        "INSERT INTO archives (sha256, bytes, stored_at) VALUES ($1, $2, $3)",
        &[&sha256, &bytes, &now_millis()],
    )
    .await?;
    let mut buf = vec![0u8; CHUNK];
    let mut n: i32 = 0;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            let k = f.read(&mut buf[filled..]).await.map_err(StoreError::Io)?;
            if k == 0 {
                break;
            }
            filled += k;
        }
        if filled == 0 && n > 0 {
            break;
        }
        tx.execute(
            "INSERT INTO archive_chunks (sha256, n, data) VALUES ($1, $2, $3)",
            &[&sha256, &n, &&buf[..filled]],
        )
        .await?;
        n += 1;
        if filled < CHUNK {
            break;
        }
    }
    Ok(())
}

/// Inserts a new submission's row.
pub(super) async fn insert(tx: &Transaction<'_>, s: &Submission) -> Result<(), StoreError> {
    let r = RawSubmission::encode(s)?;
    tx.execute(
        &format!(
            "INSERT INTO submissions ({SUBMISSION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ),
        &[
            &r.id,
            &r.challenge_id,
            &r.participant_id,
            &r.owner,
            &r.kind,
            &r.state,
            &r.verdict,
            &r.message,
            &r.detail,
            &r.public_scores,
            &r.private_scores,
            &r.archive_sha256,
            &r.created_at,
            &r.started_at,
            &r.finished_at,
            &r.usage,
            &r.attempts,
            &r.idempotency_key,
            &r.charged,
        ],
    )
    .await?;
    Ok(())
}
