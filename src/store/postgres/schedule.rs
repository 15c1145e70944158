//! Closing a challenge and replacing a final selection on PostgreSQL, across replicas:
//! each is one transaction that first locks the challenge's row (`FOR UPDATE`), so a close
//! and a selection, or two selections of one challenge, run one after the other whichever
//! replicas make them, and every decision reads what the one before committed.

use tokio_postgres::Transaction;

use crate::domain::{
    Challenge, ChallengeId, ChallengeState, SubmissionKind, SubmissionState, UnixMillis,
};
use crate::store::codec;
use crate::store::{CloseWhen, SelectOutcome, SelectedRow, Selection, StoreError};

async fn lock(tx: &Transaction<'_>, id: &str) -> Result<Option<Challenge>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT body FROM challenges WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    row.map(|r| codec::decode_challenge(r.get(0))).transpose()
}

/// Closes challenge `id` as `when` says; the challenge as stored after, and whether this
/// call closed it.
pub(super) async fn close(
    tx: &Transaction<'_>,
    id: &ChallengeId,
    now: UnixMillis,
    when: CloseWhen,
) -> Result<Option<(Challenge, bool)>, StoreError> {
    let Some(mut c) = lock(tx, id.as_str()).await? else {
        return Ok(None);
    };
    let closing = match when {
        CloseWhen::Now => c.state == ChallengeState::Open,
        CloseWhen::AtDeadline => c.is_due_at(now),
    };
    if closing {
        c.mark_closed(now);
        tx.execute(
            "UPDATE challenges SET body = $2 WHERE id = $1",
            &[&c.id.as_str(), &codec::encode_challenge(&c)?],
        )
        .await?;
    }
    Ok(Some((c, closing)))
}

/// Replaces a participant's selection after checking, in the same transaction, that the
/// challenge is open at the selection's time, the number against N, and every submission.
pub(super) async fn select(
    tx: &Transaction<'_>,
    sel: &Selection,
) -> Result<SelectOutcome, StoreError> {
    let Some(c) = lock(tx, sel.challenge_id.as_str()).await? else {
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
        let row = tx
            .query_opt(
                "SELECT challenge_id, owner, participant_id, kind, state FROM submissions
                 WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(SelectOutcome::Foreign(id.clone()));
        };
        let (challenge, owner, participant, kind, state): (&str, &str, &str, &str, &str) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if owner != sel.owner {
            return Ok(SelectOutcome::Foreign(id.clone()));
        }
        if challenge != sel.challenge_id.as_str()
            || participant != sel.participant_id.as_str()
            || kind != SubmissionKind::Full.as_str()
            || state != SubmissionState::Succeeded.as_str()
        {
            return Ok(SelectOutcome::NotEligible(id.clone()));
        }
    }
    tx.execute(
        "DELETE FROM final_selections
         WHERE challenge_id = $1 AND owner = $2 AND participant_id = $3",
        &[
            &sel.challenge_id.as_str(),
            &sel.owner,
            &sel.participant_id.as_str(),
        ],
    )
    .await?;
    for id in &sel.submission_ids {
        tx.execute(
            "INSERT INTO final_selections (challenge_id, owner, participant_id, submission_id, at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &sel.challenge_id.as_str(),
                &sel.owner,
                &sel.participant_id.as_str(),
                &id.as_str(),
                &sel.at,
            ],
        )
        .await?;
    }
    let now = read(
        tx,
        &sel.challenge_id,
        Some((sel.owner.clone(), sel.participant_id.to_string())),
    )
    .await?;
    Ok(SelectOutcome::Selected(
        now.into_iter().map(|r| r.submission_id).collect(),
    ))
}

/// The selections of a challenge (of one participant when `party` is set), in submission
/// order.
pub(super) async fn read(
    client: &impl tokio_postgres::GenericClient,
    challenge: &ChallengeId,
    party: Option<(String, String)>,
) -> Result<Vec<SelectedRow>, StoreError> {
    let (owner, participant) = party.unzip();
    let rows = client
        .query(
            "SELECT f.owner, f.participant_id, f.submission_id
             FROM final_selections f JOIN submissions s ON s.id = f.submission_id
             WHERE f.challenge_id = $1
               AND ($2::text IS NULL OR (f.owner = $2 AND f.participant_id = $3))
             ORDER BY s.seq",
            &[&challenge.as_str(), &owner, &participant],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SelectedRow {
                owner: r.get(0),
                participant_id: r.get(1),
                submission_id: codec::submission_id(r.get(2))?,
            })
        })
        .collect()
}
