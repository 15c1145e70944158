//! Maintenance jobs, their audit and re-runs in PostgreSQL. A job is a row every replica
//! reads (progress, cancel); a rescoring job's result is one transaction that first locks
//! the job's row, so a cancel made on another replica either lands before it (and nothing
//! is written) or after it (and finds the job FINISHED).

use deadpool_postgres::Object;
use tokio_postgres::Row;

use crate::domain::{JOB_ABANDONED_MESSAGE, JOB_STALE_AFTER, Job, JobState, ScoreChange};
use crate::store::codec::{self, CHANGE_COLUMNS, JOB_COLUMNS, RawChange, RawJob, RawSubmission};
use crate::store::{CommitOutcome, JobCommit, StoreError, readable};

fn raw_job(r: &Row) -> Result<RawJob, tokio_postgres::Error> {
    raw_job_at(r, 0)
}

/// A job's columns starting at column `at`.
fn raw_job_at(r: &Row, at: usize) -> Result<RawJob, tokio_postgres::Error> {
    Ok(RawJob {
        id: r.try_get(at)?,
        challenge_id: r.try_get(at + 1)?,
        kind: r.try_get(at + 2)?,
        state: r.try_get(at + 3)?,
        done: r.try_get(at + 4)?,
        total: r.try_get(at + 5)?,
        created_by: r.try_get(at + 6)?,
        created_at: r.try_get(at + 7)?,
        finished_at: r.try_get(at + 8)?,
        message: r.try_get(at + 9)?,
        beat: r.try_get(at + 10)?,
    })
}

/// Jobs, newest first, optionally of one challenge, before `before`.
pub(super) async fn list(
    client: &Object,
    challenge: Option<String>,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, Job)>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT seq, {JOB_COLUMNS} FROM jobs
                 WHERE ($1::text IS NULL OR challenge_id = $1) AND ($2::bigint = 0 OR seq < $2)
                 ORDER BY seq DESC LIMIT $3"
            ),
            &[&challenge, &before, &(limit as i64)],
        )
        .await?;
    let raw = rows
        .iter()
        .map(|r| Ok((r.try_get::<_, i64>(0)?, raw_job_at(r, 1)?)))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(readable(
        raw.into_iter()
            .map(|(seq, j)| j.decode().map(|j| (seq, j)))
            .collect(),
    ))
}

/// Inserts a RUNNING job, after ending an abandoned one of its challenge; `false` when its
/// challenge has a live one.
pub(super) async fn insert(client: &mut Object, j: &Job) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE jobs SET state = 'failed', message = $2, finished_at = $3
         WHERE challenge_id = $1 AND state = 'running' AND beat < $4",
        &[
            &j.challenge_id.as_str(),
            &JOB_ABANDONED_MESSAGE,
            &j.created_at,
            &(j.created_at - JOB_STALE_AFTER.as_millis() as i64),
        ],
    )
    .await?;
    let n = tx
        .execute(
            "INSERT INTO jobs (id, challenge_id, kind, state, done, total, created_by, created_at, finished_at, message, beat)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            &[
                &j.id.as_str(),
                &j.challenge_id.as_str(),
                &j.kind.as_str(),
                &j.state.as_str(),
                &i64::from(j.done),
                &i64::from(j.total),
                &j.created_by,
                &j.created_at,
                &j.finished_at,
                &j.message,
                &j.beat,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// One job.
pub(super) async fn get(client: &Object, id: &str) -> Result<Option<Job>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.map(|r| raw_job(&r).map_err(StoreError::from)?.decode())
        .transpose()
}

/// Records progress of a RUNNING job; its state after.
pub(super) async fn progress(
    client: &Object,
    id: &str,
    done: u32,
    total: u32,
    at: i64,
) -> Result<Option<JobState>, StoreError> {
    client
        .execute(
            "UPDATE jobs SET done = $2, total = $3, beat = $4 WHERE id = $1 AND state = 'running'",
            &[&id, &i64::from(done), &i64::from(total), &at],
        )
        .await?;
    Ok(get(client, id).await?.map(|j| j.state))
}

/// Ends a RUNNING job; the job after.
pub(super) async fn end(
    client: &Object,
    id: &str,
    state: JobState,
    message: &str,
    at: i64,
) -> Result<Option<Job>, StoreError> {
    client
        .execute(
            "UPDATE jobs SET state = $2, message = $3, finished_at = $4 WHERE id = $1 AND state = 'running'",
            &[&id, &state.as_str(), &message, &at],
        )
        .await?;
    get(client, id).await
}

/// Writes a rescoring job's whole result, or nothing.
pub(super) async fn commit_job(
    client: &mut Object,
    c: &JobCommit,
) -> Result<CommitOutcome, StoreError> {
    let tx = client.transaction().await?;
    let job = tx
        .query_opt(
            "SELECT state, challenge_id FROM jobs WHERE id = $1 FOR UPDATE",
            &[&c.job.as_str()],
        )
        .await?;
    let Some(job) = job else {
        return Ok(CommitOutcome::NotRunning);
    };
    let (state, challenge_id): (String, String) = (job.try_get(0)?, job.try_get(1)?);
    if state != JobState::Running.as_str() {
        return Ok(CommitOutcome::NotRunning);
    }
    for t in &c.writes {
        let r = RawSubmission::encode(t.next())?;
        // Terminal to terminal (a rescore, or a re-run's result): no lease is involved.
        let n = tx
            .execute(
                "UPDATE submissions SET state = $2, verdict = $3, message = $4, detail = $5,
                    public_scores = $6, private_scores = $7, usage = $8
                 WHERE id = $1 AND state = $9 AND attempts = $10",
                &[
                    &r.id,
                    &r.state,
                    &r.verdict,
                    &r.message,
                    &r.detail,
                    &r.public_scores,
                    &r.private_scores,
                    &r.usage,
                    &t.expected_state().as_str(),
                    &i64::from(t.expected_attempts()),
                ],
            )
            .await?;
        if n != 1 {
            // Dropping the transaction rolls back what was written so far.
            return Ok(CommitOutcome::Conflict);
        }
        let s = t.next();
        tx.execute(
            "INSERT INTO leakage (submission_id, challenge_id, owner, participant_id, bits, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (submission_id) DO NOTHING",
            &[
                &format!("{}@{}", s.id.as_str(), c.job.as_str()),
                &s.challenge_id.as_str(),
                &s.owner,
                &s.participant_id.as_str(),
                &c.bits,
                &c.at,
            ],
        )
        .await?;
    }
    if c.scoring_was.is_some() || c.scoring.is_some() {
        // Locked: an UpdateChallenge or a close on another replica waits for this commit.
        let body: String = tx
            .query_one(
                "SELECT body FROM challenges WHERE id = $1 FOR UPDATE",
                &[&challenge_id],
            )
            .await?
            .try_get(0)?;
        let mut stored = codec::decode_challenge(&body)?;
        if c.scoring_was
            .as_ref()
            .is_some_and(|was| *was != stored.scoring)
        {
            return Ok(CommitOutcome::Conflict);
        }
        if let Some(scoring) = &c.scoring {
            stored.scoring = scoring.clone();
            tx.execute(
                "UPDATE challenges SET body = $2 WHERE id = $1",
                &[&challenge_id, &codec::encode_challenge(&stored)?],
            )
            .await?;
        }
    }
    for change in &c.changes {
        let r = RawChange::encode(change)?;
        tx.execute(
            &format!(
                "INSERT INTO rescores (challenge_id, {CHANGE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &challenge_id,
                &r.job_id,
                &r.submission_id,
                &r.owner,
                &r.participant_id,
                &r.outcome,
                &r.old_public,
                &r.old_private,
                &r.new_public,
                &r.new_private,
                &r.at,
            ],
        )
        .await?;
    }
    tx.execute(
        "UPDATE jobs SET state = 'finished', message = $2, finished_at = $3, done = total WHERE id = $1",
        &[&c.job.as_str(), &c.message, &c.at],
    )
    .await?;
    tx.commit().await?;
    Ok(CommitOutcome::Committed)
}

/// A job's audit entries, in order.
pub(super) async fn changes(client: &Object, job: &str) -> Result<Vec<ScoreChange>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {CHANGE_COLUMNS} FROM rescores WHERE job_id = $1 ORDER BY seq"),
            &[&job],
        )
        .await?;
    let raw = rows
        .iter()
        .map(|r| {
            Ok(RawChange {
                job_id: r.try_get(0)?,
                submission_id: r.try_get(1)?,
                owner: r.try_get(2)?,
                participant_id: r.try_get(3)?,
                outcome: r.try_get(4)?,
                old_public: r.try_get(5)?,
                old_private: r.try_get(6)?,
                new_public: r.try_get(7)?,
                new_private: r.try_get(8)?,
                at: r.try_get(9)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(readable(raw.into_iter().map(RawChange::decode).collect()))
}

/// Inserts a re-run and its mapping, only while the original's archive is kept (under the
/// admission lock, which retention also takes before it deletes an archive).
pub(super) async fn insert_rerun(
    client: &mut Object,
    job: &str,
    original: &str,
    rerun: &crate::domain::Submission,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&super::ADMISSION_LOCK],
    )
    .await?;
    let kept: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM submissions WHERE id = $1 AND expired_at IS NULL)",
            &[&original],
        )
        .await?
        .try_get(0)?;
    if !kept {
        return Ok(false);
    }
    super::admission::insert(&tx, rerun).await?;
    tx.execute(
        "INSERT INTO reruns (job_id, original_id, rerun_id) VALUES ($1, $2, $3)",
        &[&job, &original, &rerun.id.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A job's (original, re-run) pairs, as stored.
pub(super) async fn reruns_of(
    client: &Object,
    job: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = client
        .query(
            "SELECT original_id, rerun_id FROM reruns WHERE job_id = $1 ORDER BY original_id",
            &[&job],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
