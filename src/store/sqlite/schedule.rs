//! Closing a challenge and replacing a final selection on SQLite: each one transaction on
//! the store thread (which serialises every write), so a selection and a close, or two
//! selections, never interleave.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::rows;
use crate::domain::{
    Challenge, ChallengeId, ChallengeState, SubmissionKind, SubmissionState, UnixMillis,
};
use crate::store::{CloseWhen, SelectOutcome, SelectedRow, Selection, StoreError};

fn load(tx: &Transaction<'_>, id: &str) -> Result<Option<Challenge>, StoreError> {
    let body: Option<String> = tx
        .query_row("SELECT body FROM challenges WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    body.map(|b| rows::decode_challenge(&b)).transpose()
}

fn save(tx: &Transaction<'_>, c: &Challenge) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE challenges SET body = ?2 WHERE id = ?1",
        params![c.id.as_str(), rows::encode_challenge(c)?],
    )?;
    Ok(())
}

/// Closes challenge `id` as `when` says; the challenge as stored after, and whether this
/// call closed it.
pub(super) fn close(
    conn: &mut Connection,
    id: &ChallengeId,
    now: UnixMillis,
    when: CloseWhen,
) -> Result<Option<(Challenge, bool)>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(mut c) = load(&tx, id.as_str())? else {
        return Ok(None);
    };
    let closing = match when {
        CloseWhen::Now => c.state == ChallengeState::Open,
        CloseWhen::AtDeadline => c.is_due_at(now),
    };
    if closing {
        c.mark_closed(now);
        save(&tx, &c)?;
    }
    tx.commit()?;
    Ok(Some((c, closing)))
}

/// Replaces a participant's selection after checking, in the same transaction, that the
/// challenge is open at the selection's time, the number against N, and every submission.
pub(super) fn select(conn: &mut Connection, sel: &Selection) -> Result<SelectOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(c) = load(&tx, sel.challenge_id.as_str())? else {
        return Ok(SelectOutcome::NoChallenge);
    };
    if c.release.final_selections == 0 {
        return Ok(SelectOutcome::NoSelection);
    }
    if c.is_closed_at(sel.at) {
        return Ok(SelectOutcome::Closed(Box::new(c)));
    }
    if sel.submission_ids.len() > c.release.final_selections as usize {
        return Ok(SelectOutcome::TooMany {
            limit: c.release.final_selections,
        });
    }
    for id in &sel.submission_ids {
        let row: Option<(String, String, String, String, String)> = tx
            .query_row(
                "SELECT challenge_id, owner, participant_id, kind, state FROM submissions
                 WHERE id = ?1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        match row {
            Some((_, owner, ..)) if owner != sel.owner => {
                return Ok(SelectOutcome::Foreign(id.clone()));
            }
            None => return Ok(SelectOutcome::Foreign(id.clone())),
            Some((challenge, _, participant, kind, state))
                if challenge != sel.challenge_id.as_str()
                    || participant != sel.participant_id.as_str()
                    || kind != SubmissionKind::Full.as_str()
                    || state != SubmissionState::Succeeded.as_str() =>
            {
                return Ok(SelectOutcome::NotEligible(id.clone()));
            }
            Some(_) => {}
        }
    }
    tx.execute(
        "DELETE FROM final_selections
         WHERE challenge_id = ?1 AND owner = ?2 AND participant_id = ?3",
        params![
            sel.challenge_id.as_str(),
            sel.owner,
            sel.participant_id.as_str()
        ],
    )?;
    for id in &sel.submission_ids {
        tx.execute(
            "INSERT INTO final_selections (challenge_id, owner, participant_id, submission_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                sel.challenge_id.as_str(),
                sel.owner,
                sel.participant_id.as_str(),
                id.as_str(),
                sel.at
            ],
        )?;
    }
    let now = read(
        &tx,
        &sel.challenge_id,
        Some((sel.owner.clone(), sel.participant_id.to_string())),
    )?;
    tx.commit()?;
    Ok(SelectOutcome::Selected(
        now.into_iter().map(|r| r.submission_id).collect(),
    ))
}

/// The selections of a challenge (of one participant when `party` is set), in submission
/// order.
pub(super) fn read(
    conn: &Connection,
    challenge: &ChallengeId,
    party: Option<(String, String)>,
) -> Result<Vec<SelectedRow>, StoreError> {
    let (owner, participant) = party.unzip();
    let mut stmt = conn.prepare_cached(
        "SELECT f.owner, f.participant_id, f.submission_id
         FROM final_selections f JOIN submissions s ON s.id = f.submission_id
         WHERE f.challenge_id = ?1 AND (?2 IS NULL OR (f.owner = ?2 AND f.participant_id = ?3))
         ORDER BY s.seq",
    )?;
    let rows = stmt
        .query_map(params![challenge.as_str(), owner, participant], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(owner, participant_id, id)| {
            Ok(SelectedRow {
                owner,
                participant_id,
                submission_id: crate::store::codec::submission_id(&id)?,
            })
        })
        .collect()
}
