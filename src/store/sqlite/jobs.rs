//! Maintenance jobs, their audit and re-runs, on the store thread. A job's result is one
//! `IMMEDIATE` transaction: nothing of it is visible until all of it is.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::rows;
use crate::domain::{JOB_ABANDONED_MESSAGE, JOB_STALE_AFTER, Job, JobState, ScoreChange};
use crate::store::codec::{self, CHANGE_COLUMNS, JOB_COLUMNS, RawChange, RawJob};
use crate::store::{CommitOutcome, JobCommit, StoreError, readable};

fn raw_job(r: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: r.get(0)?,
        challenge_id: r.get(1)?,
        kind: r.get(2)?,
        state: r.get(3)?,
        done: r.get(4)?,
        total: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
        message: r.get(9)?,
        beat: r.get(10)?,
    })
}

/// Inserts a RUNNING job, after ending an abandoned one of its challenge; `false` when its
/// challenge has a live one.
pub(super) fn insert(conn: &mut Connection, j: &Job) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "UPDATE jobs SET state = 'failed', message = ?2, finished_at = ?3
         WHERE challenge_id = ?1 AND state = 'running' AND beat < ?4",
        params![
            j.challenge_id.as_str(),
            JOB_ABANDONED_MESSAGE,
            j.created_at,
            j.created_at - JOB_STALE_AFTER.as_millis() as i64
        ],
    )?;
    let n = tx.execute(
        "INSERT OR IGNORE INTO jobs (id, challenge_id, kind, state, done, total, created_by, created_at, finished_at, message, beat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            j.id.as_str(),
            j.challenge_id.as_str(),
            j.kind.as_str(),
            j.state.as_str(),
            j.done,
            j.total,
            j.created_by,
            j.created_at,
            j.finished_at,
            j.message,
            j.beat
        ],
    )?;
    tx.commit()?;
    Ok(n == 1)
}

/// One job.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Job>, StoreError> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        raw_job,
    )
    .optional()?
    .map(RawJob::decode)
    .transpose()
}

/// Jobs, newest first, optionally of one challenge, before `before`.
pub(super) fn list(
    conn: &Connection,
    challenge: Option<String>,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, Job)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT seq, {JOB_COLUMNS} FROM jobs
         WHERE (?1 IS NULL OR challenge_id = ?1) AND (?2 = 0 OR seq < ?2)
         ORDER BY seq DESC LIMIT ?3"
    ))?;
    let raw = stmt
        .query_map(params![challenge, before, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                RawJob {
                    id: r.get(1)?,
                    challenge_id: r.get(2)?,
                    kind: r.get(3)?,
                    state: r.get(4)?,
                    done: r.get(5)?,
                    total: r.get(6)?,
                    created_by: r.get(7)?,
                    created_at: r.get(8)?,
                    finished_at: r.get(9)?,
                    message: r.get(10)?,
                    beat: r.get(11)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(readable(
        raw.into_iter()
            .map(|(seq, j)| j.decode().map(|j| (seq, j)))
            .collect(),
    ))
}

/// Records progress of a RUNNING job; its state after.
pub(super) fn progress(
    conn: &mut Connection,
    id: &str,
    done: u32,
    total: u32,
    at: i64,
) -> Result<Option<JobState>, StoreError> {
    conn.execute(
        "UPDATE jobs SET done = ?2, total = ?3, beat = ?4 WHERE id = ?1 AND state = 'running'",
        params![id, done, total, at],
    )?;
    Ok(get(conn, id)?.map(|j| j.state))
}

/// Ends a RUNNING job; the job after.
pub(super) fn end(
    conn: &mut Connection,
    id: &str,
    state: JobState,
    message: &str,
    at: i64,
) -> Result<Option<Job>, StoreError> {
    conn.execute(
        "UPDATE jobs SET state = ?2, message = ?3, finished_at = ?4 WHERE id = ?1 AND state = 'running'",
        params![id, state.as_str(), message, at],
    )?;
    get(conn, id)
}

/// Writes a rescoring job's whole result, or nothing.
pub(super) fn commit_job(
    conn: &mut Connection,
    c: &JobCommit,
) -> Result<CommitOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM jobs WHERE id = ?1",
            [c.job.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    if state.as_deref() != Some(JobState::Running.as_str()) {
        return Ok(CommitOutcome::NotRunning);
    }
    for t in &c.writes {
        if !rows::update_submission(&tx, t)? {
            // Dropping the transaction rolls back what was written so far.
            return Ok(CommitOutcome::Conflict);
        }
        let s = t.next();
        tx.execute(
            "INSERT OR IGNORE INTO leakage (submission_id, challenge_id, owner, participant_id, bits, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                format!("{}@{}", s.id.as_str(), c.job.as_str()),
                s.challenge_id.as_str(),
                s.owner,
                s.participant_id.as_str(),
                c.bits,
                c.at
            ],
        )?;
    }
    let challenge_id: String = tx.query_row(
        "SELECT challenge_id FROM jobs WHERE id = ?1",
        [c.job.as_str()],
        |r| r.get(0),
    )?;
    if c.scoring_was.is_some() || c.scoring.is_some() {
        let body: String = tx.query_row(
            "SELECT body FROM challenges WHERE id = ?1",
            [&challenge_id],
            |r| r.get(0),
        )?;
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
                "UPDATE challenges SET body = ?2 WHERE id = ?1",
                params![challenge_id, codec::encode_challenge(&stored)?],
            )?;
        }
    }
    for change in &c.changes {
        let r = RawChange::encode(change)?;
        tx.execute(
            &format!(
                "INSERT INTO rescores (challenge_id, {CHANGE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                challenge_id,
                r.job_id,
                r.submission_id,
                r.owner,
                r.participant_id,
                r.outcome,
                r.old_public,
                r.old_private,
                r.new_public,
                r.new_private,
                r.at
            ],
        )?;
    }
    tx.execute(
        "UPDATE jobs SET state = 'finished', message = ?2, finished_at = ?3, done = total WHERE id = ?1",
        params![c.job.as_str(), c.message, c.at],
    )?;
    tx.commit()?;
    Ok(CommitOutcome::Committed)
}

/// A job's audit entries, in order.
pub(super) fn changes(conn: &Connection, job: &str) -> Result<Vec<ScoreChange>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHANGE_COLUMNS} FROM rescores WHERE job_id = ?1 ORDER BY seq"
    ))?;
    let raw = stmt
        .query_map([job], |r| {
            Ok(RawChange {
                job_id: r.get(0)?,
                submission_id: r.get(1)?,
                owner: r.get(2)?,
                participant_id: r.get(3)?,
                outcome: r.get(4)?,
                old_public: r.get(5)?,
                old_private: r.get(6)?,
                new_public: r.get(7)?,
                new_private: r.get(8)?,
                at: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(readable(raw.into_iter().map(RawChange::decode).collect()))
}

/// Inserts a re-run and its mapping, only while the original's archive is kept.
pub(super) fn insert_rerun(
    conn: &mut Connection,
    job: &str,
    original: &str,
    rerun: &crate::domain::Submission,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let kept: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM submissions WHERE id = ?1 AND expired_at IS NULL)",
        [original],
        |r| r.get(0),
    )?;
    if !kept {
        return Ok(false);
    }
    rows::insert_submission(&tx, rerun)?;
    tx.execute(
        "INSERT INTO reruns (job_id, original_id, rerun_id) VALUES (?1, ?2, ?3)",
        params![job, original, rerun.id.as_str()],
    )?;
    tx.commit()?;
    Ok(true)
}

/// A job's (original, re-run) pairs, as stored.
pub(super) fn reruns_of(conn: &Connection, job: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT original_id, rerun_id FROM reruns WHERE job_id = ?1 ORDER BY original_id",
    )?;
    let out = stmt
        .query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}
