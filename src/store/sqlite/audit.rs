//! The audit's tables: every release of values to a submitter token, and the leakage
//! ledger (one row per FULL result released, with the bits it could carry).

use rusqlite::{Connection, params};

use crate::domain::Submission;
use crate::store::{LeakageTotal, ReleaseRecord, StoreError, codec};

/// Records a FULL result released to its (platform, participant), once.
pub(super) fn record_leakage(
    conn: &mut Connection,
    s: &Submission,
    bits: f64,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO leakage (submission_id, challenge_id, owner, participant_id, bits, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        s.id.as_str(),
        s.challenge_id.as_str(),
        s.owner,
        s.participant_id.as_str(),
        bits,
        at
    ])?;
    Ok(())
}

/// The ledger of a challenge, per (platform, participant), most bits first.
pub(super) fn leakage_totals(
    conn: &mut Connection,
    challenge: &str,
) -> Result<Vec<LeakageTotal>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT owner, participant_id, COUNT(*), SUM(bits) FROM leakage WHERE challenge_id = ?1
         GROUP BY owner, participant_id ORDER BY SUM(bits) DESC, owner, participant_id",
    )?;
    let out = stmt
        .query_map([challenge], |r| {
            Ok(LeakageTotal {
                owner: r.get(0)?,
                participant_id: r.get(1)?,
                results: r.get(2)?,
                bits: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

/// Appends to the release audit.
pub(super) fn record_release(conn: &mut Connection, r: &ReleaseRecord) -> Result<(), StoreError> {
    let vals = codec::encode_values(&r.values)?;
    conn.prepare_cached(
        "INSERT INTO releases (at, token_name, challenge_id, submission_id, what, vals) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![r.at, r.token_name, r.challenge_id, r.submission_id, r.what, vals])?;
    Ok(())
}

/// Releases, newest first, optionally of one challenge and/or token, before `before`.
pub(super) fn list_releases(
    conn: &mut Connection,
    challenge: Option<String>,
    token: Option<String>,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, ReleaseRecord)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, token_name, challenge_id, submission_id, what, vals FROM releases
         WHERE (?1 IS NULL OR challenge_id = ?1) AND (?2 IS NULL OR token_name = ?2) AND (?3 = 0 OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(params![challenge, token, before, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(seq, at, token_name, challenge_id, submission_id, what, vals)| {
                let values = codec::decode_values(&vals)?;
                Ok((
                    seq,
                    ReleaseRecord {
                        at,
                        token_name,
                        challenge_id,
                        submission_id,
                        what,
                        values,
                    },
                ))
            },
        )
        .collect()
}
