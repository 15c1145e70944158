//! The audit's tables on PostgreSQL: every release of values to a submitter token, and the
//! leakage ledger.

use deadpool_postgres::Object;

use crate::domain::{ChallengeId, Submission, UnixMillis};
use crate::store::codec;
use crate::store::{LeakageTotal, ReleaseRecord, StoreError};

/// Appends to the release audit.
pub(super) async fn record_release(client: &Object, r: ReleaseRecord) -> Result<(), StoreError> {
    let vals = codec::encode_values(&r.values)?;
    client
        .execute(
            "INSERT INTO releases (at, token_name, challenge_id, submission_id, what, vals)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &r.at,
                &r.token_name,
                &r.challenge_id,
                &r.submission_id,
                &r.what,
                &vals,
            ],
        )
        .await?;
    Ok(())
}

/// Releases, newest first, optionally of one challenge and/or token, before `before`.
pub(super) async fn list_releases(
    client: &Object,
    challenge: Option<String>,
    token: Option<String>,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, ReleaseRecord)>, StoreError> {
    let rows = client
        .query(
            "SELECT seq, at, token_name, challenge_id, submission_id, what, vals FROM releases
             WHERE ($1::text IS NULL OR challenge_id = $1) AND ($2::text IS NULL OR token_name = $2)
               AND ($3::bigint = 0 OR seq < $3)
             ORDER BY seq DESC LIMIT $4",
            &[&challenge, &token, &before, &(limit as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                ReleaseRecord {
                    at: r.try_get(1)?,
                    token_name: r.try_get(2)?,
                    challenge_id: r.try_get(3)?,
                    submission_id: r.try_get(4)?,
                    what: r.try_get(5)?,
                    values: codec::decode_values(r.try_get(6)?)?,
                },
            ))
        })
        .collect()
}

/// Records a FULL result released to its (platform, participant), once.
pub(super) async fn record_leakage(
    client: &Object,
    s: Submission,
    bits: f64,
    at: UnixMillis,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO leakage (submission_id, challenge_id, owner, participant_id, bits, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (submission_id) DO NOTHING",
            &[
                &s.id.as_str(),
                &s.challenge_id.as_str(),
                &s.owner,
                &s.participant_id.as_str(),
                &bits,
                &at,
            ],
        )
        .await?;
    Ok(())
}

/// The ledger of a challenge, per (platform, participant), most bits first.
pub(super) async fn leakage_totals(
    client: &Object,
    challenge: ChallengeId,
) -> Result<Vec<LeakageTotal>, StoreError> {
    let rows = client
        .query(
            "SELECT owner, participant_id, COUNT(*), SUM(bits) FROM leakage WHERE challenge_id = $1
             GROUP BY owner, participant_id ORDER BY SUM(bits) DESC, owner, participant_id",
            &[&challenge.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LeakageTotal {
                owner: r.try_get(0)?,
                participant_id: r.try_get(1)?,
                results: r.try_get::<_, i64>(2)? as u32,
                bits: r.try_get(3)?,
            })
        })
        .collect()
}
