//! The audit's tables: every release of values to a submitter token, and the leakage
//! ledger (one row per FULL result released, with the bits it could carry).

use rusqlite::params;

use super::{Store, StoreError};
use crate::domain::{ChallengeId, Submission, UnixMillis};

/// One release of values to a submitter token.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRecord {
    /// When.
    pub at: UnixMillis,
    /// To which token (its configured name).
    pub token_name: String,
    /// Of which challenge.
    pub challenge_id: String,
    /// Of which submission; empty for a leaderboard.
    pub submission_id: String,
    /// "submission", "leaderboard:public" or "leaderboard:private".
    pub what: String,
    /// The values released.
    pub values: std::collections::BTreeMap<String, f64>,
}

/// What the leakage ledger holds for one (platform, participant) of a challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakageTotal {
    /// The submitter token's name.
    pub owner: String,
    /// The participant.
    pub participant_id: String,
    /// FULL results released.
    pub results: u32,
    /// Their bits, added up.
    pub bits: f64,
}

impl Store {
    /// Records that a FULL result was released to its (platform, participant), carrying at
    /// most `bits`; a result is counted once, however often it is read.
    pub async fn record_leakage(
        &self,
        s: &Submission,
        bits: f64,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let (id, challenge, owner, participant) = (
            s.id.to_string(),
            s.challenge_id.to_string(),
            s.owner.clone(),
            s.participant_id.to_string(),
        );
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO leakage (submission_id, challenge_id, owner, participant_id, bits, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![id, challenge, owner, participant, bits, at])?;
            Ok(())
        })
        .await
    }

    /// The ledger of a challenge, per (platform, participant), most bits first.
    pub async fn leakage_totals(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<LeakageTotal>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT owner, participant_id, COUNT(*), SUM(bits) FROM leakage WHERE challenge_id = ?1
                 GROUP BY owner, participant_id ORDER BY SUM(bits) DESC, owner, participant_id",
            )?;
            let out = stmt
                .query_map([challenge.as_str()], |r| {
                    Ok(LeakageTotal {
                        owner: r.get(0)?,
                        participant_id: r.get(1)?,
                        results: r.get(2)?,
                        bits: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(out)
        })
        .await
    }

    /// Appends to the release audit.
    pub async fn record_release(&self, r: ReleaseRecord) -> Result<(), StoreError> {
        self.call(move |conn| {
            let vals = serde_json::to_string(&r.values).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            conn.prepare_cached(
                "INSERT INTO releases (at, token_name, challenge_id, submission_id, what, vals) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![r.at, r.token_name, r.challenge_id, r.submission_id, r.what, vals])?;
            Ok(())
        })
        .await
    }

    /// Releases, newest first, optionally of one challenge and/or token, before `before`
    /// (0 = from the newest); returns each with its position for paging.
    pub async fn list_releases(
        &self,
        challenge: Option<String>,
        token: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ReleaseRecord)>, StoreError> {
        self.call(move |conn| {
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
                .map(|(seq, at, token_name, challenge_id, submission_id, what, vals)| {
                    let values = serde_json::from_str(&vals).map_err(|_| StoreError::Corrupt(format!("release values {vals:?}")))?;
                    Ok((seq, ReleaseRecord { at, token_name, challenge_id, submission_id, what, values }))
                })
                .collect()
        })
        .await
    }
}
