//! The SQLite engine: one file under `state_dir`, one process.
//!
//! One dedicated thread owns the connection and runs the closures sent to it over a channel
//! (as rust-playground does), so no async task ever blocks on SQLite and every write is
//! serialised: a check-then-insert (quota, idempotency, queue cap) is atomic without extra
//! locking. WAL mode lets readers of the file (backups, `sqlite3`) run alongside. Archives,
//! logs and losses are files of the state folder; an archive is created and deleted only on
//! the store thread, in the same step as the rows that refer to it.

mod admission;
mod audit;
mod jobs;
mod migrations;
mod rows;
mod schedule;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::codec;
use super::{
    Admission, BlobKind, CloseWhen, CommitOutcome, Engine, InsertOutcome, JobCommit, LeakageTotal,
    PendingArchive, QueuedRow, ReleaseRecord, SelectOutcome, SelectedRow, Selection, StoreError,
    readable,
};
use crate::domain::{
    Challenge, ChallengeId, Job, JobId, JobState, ScoreChange, Submission, SubmissionId,
    SubmissionKind, SubmissionState, Transition, UnixMillis,
};
use crate::paths::Paths;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the database thread.
pub(crate) struct SqliteEngine {
    tx: mpsc::Sender<Work>,
    paths: Paths,
}

impl SqliteEngine {
    /// Opens (creating if needed) the database at `path`, applies migrations, and starts the
    /// thread that owns it. The thread ends when the engine is dropped.
    pub(crate) fn open(path: &Path, paths: Paths) -> Result<SqliteEngine, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("holdout-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start store thread: {e}")))?;
        Ok(SqliteEngine { tx, paths })
    }

    /// Runs `f` on the store thread and waits for its result.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = done.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    fn blob_path(&self, kind: BlobKind, name: &str) -> PathBuf {
        match kind {
            BlobKind::Log => self.paths.logs_dir().join(name),
            BlobKind::Losses => self.paths.losses().join(name),
            BlobKind::Predictions => self.paths.predictions().join(name),
            BlobKind::Card => self.paths.cards().join(name),
        }
    }
}

#[async_trait::async_trait]
impl Engine for SqliteEngine {
    async fn insert_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let body = rows::encode_challenge(&c)?;
            let n = conn.execute(
                "INSERT OR IGNORE INTO challenges (id, body, created_at) VALUES (?1, ?2, ?3)",
                params![c.id.as_str(), body, c.created_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn update_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let body = rows::encode_challenge(&c)?;
            let n = conn.execute(
                "UPDATE challenges SET body = ?2
                 WHERE id = ?1 AND json_extract(body, '$.state') = ?3",
                params![c.id.as_str(), body, c.state.as_str()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn close_challenge(
        &self,
        id: ChallengeId,
        now: UnixMillis,
        when: CloseWhen,
    ) -> Result<Option<(Challenge, bool)>, StoreError> {
        self.call(move |conn| schedule::close(conn, &id, now, when))
            .await
    }

    async fn select_submissions(&self, sel: Selection) -> Result<SelectOutcome, StoreError> {
        self.call(move |conn| schedule::select(conn, &sel)).await
    }

    async fn selections(
        &self,
        challenge: ChallengeId,
        party: Option<(String, String)>,
    ) -> Result<Vec<SelectedRow>, StoreError> {
        self.call(move |conn| schedule::read(conn, &challenge, party))
            .await
    }

    async fn get_challenge(&self, id: ChallengeId) -> Result<Option<Challenge>, StoreError> {
        self.call(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM challenges WHERE id = ?1",
                    [id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            body.map(|b| rows::decode_challenge(&b)).transpose()
        })
        .await
    }

    async fn list_challenges(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<Challenge>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM challenges WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let bodies = stmt
                .query_map(params![after, limit as i64], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readable(
                bodies.iter().map(|b| rows::decode_challenge(b)).collect(),
            ))
        })
        .await
    }

    async fn insert_submission(
        &self,
        s: Submission,
        admission: Admission,
        archive: Option<PendingArchive>,
    ) -> Result<InsertOutcome, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(refused) = admission::check(&tx, &s, &admission)? {
                return Ok(refused);
            }
            if let Some(a) = archive {
                a.persist()?;
            }
            rows::insert_submission(&tx, &s)?;
            tx.commit()?;
            Ok(InsertOutcome::Inserted(s))
        })
        .await
    }

    async fn admission_refusal(
        &self,
        s: Submission,
        admission: Admission,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        self.call(move |conn| admission::check(conn, &s, &admission))
            .await
    }

    async fn get_submission(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError> {
        self.call(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {} FROM submissions WHERE id = ?1",
                    rows::SUBMISSION_COLUMNS
                ),
                [id.as_str()],
                rows::submission_from_row,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    async fn find_by_key(
        &self,
        owner: String,
        key: String,
    ) -> Result<Option<Submission>, StoreError> {
        self.call(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {} FROM submissions WHERE owner = ?1 AND idempotency_key = ?2",
                    rows::SUBMISSION_COLUMNS
                ),
                params![owner, key],
                rows::submission_from_row,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    async fn commit(
        &self,
        t: Transition,
        _worker: Option<String>,
    ) -> Result<Option<Submission>, StoreError> {
        // One process runs everything: there are no leases to check.
        self.call(move |conn| rows::update_submission(conn, &t).map(|w| w.then(|| t.into_next())))
            .await
    }

    async fn list_submissions(
        &self,
        challenge: ChallengeId,
        participant: Option<String>,
        owner: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Submission)>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT seq, {} FROM submissions
                 WHERE challenge_id = ?1 AND (?2 IS NULL OR participant_id = ?2) AND (?3 IS NULL OR owner = ?3)
                   AND (?4 = 0 OR seq < ?4)
                 ORDER BY seq DESC LIMIT ?5",
                rows::SUBMISSION_COLUMNS
            ))?;
            let out = stmt
                .query_map(params![challenge.as_str(), participant, owner, before, limit as i64], |r| {
                    let seq: i64 = r.get(0)?;
                    Ok((seq, rows::submission_from_row_at(r, 1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readable(out.into_iter().map(|(seq, s)| s.map(|s| (seq, s))).collect()))
        })
        .await
    }

    async fn submissions_in(
        &self,
        states: Vec<SubmissionState>,
    ) -> Result<Vec<Submission>, StoreError> {
        let states: Vec<&'static str> = states.iter().map(|s| s.as_str()).collect();
        self.call(move |conn| {
            let placeholders = vec!["?"; states.len()].join(",");
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM submissions WHERE state IN ({placeholders}) ORDER BY seq",
                rows::SUBMISSION_COLUMNS
            ))?;
            let out = stmt
                .query_map(
                    rusqlite::params_from_iter(states.iter()),
                    rows::submission_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readable(out))
        })
        .await
    }

    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, id, challenge_id, owner, participant_id, kind FROM submissions WHERE state = 'queued' ORDER BY seq",
            )?;
            let out = stmt
                .query_map([], rows::queued_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readable(out))
        })
        .await
    }

    async fn scored_full(&self, challenge: ChallengeId) -> Result<Vec<Submission>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM submissions WHERE challenge_id = ?1 AND kind = ?2 AND state = 'succeeded' ORDER BY seq",
                rows::SUBMISSION_COLUMNS
            ))?;
            let out = stmt
                .query_map(params![challenge.as_str(), SubmissionKind::Full.as_str()], rows::submission_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readable(out))
        })
        .await
    }

    async fn expire_before(
        &self,
        cutoff: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<SubmissionId>, StoreError> {
        let paths = self.paths.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let due: Vec<(String, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, archive_sha256 FROM submissions
                     WHERE expired_at IS NULL AND finished_at IS NOT NULL AND finished_at < ?1
                       AND state IN ('succeeded', 'failed', 'cancelled')",
                )?;
                stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            for (id, _) in &due {
                tx.execute(
                    "UPDATE submissions SET expired_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
            }
            let mut shas: Vec<&String> = due.iter().map(|(_, sha)| sha).collect();
            shas.sort();
            shas.dedup();
            for sha in shas {
                let in_use: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM submissions WHERE archive_sha256 = ?1 AND expired_at IS NULL)",
                    [sha],
                    |r| r.get(0),
                )?;
                if !in_use
                    && let Err(e) = std::fs::remove_file(paths.archive(sha))
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(StoreError::Io(e));
                }
            }
            tx.commit()?;
            Ok(readable(
                due.into_iter()
                    .map(|(id, _)| {
                        SubmissionId::parse(&id)
                            .map_err(|_| StoreError::Corrupt(format!("submission id {id:?}")))
                    })
                    .collect(),
            ))
        })
        .await
    }

    async fn record_release(&self, r: ReleaseRecord) -> Result<(), StoreError> {
        self.call(move |conn| audit::record_release(conn, &r)).await
    }

    async fn list_releases(
        &self,
        challenge: Option<String>,
        token: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ReleaseRecord)>, StoreError> {
        self.call(move |conn| audit::list_releases(conn, challenge, token, before, limit))
            .await
    }

    async fn record_leakage(
        &self,
        s: Submission,
        bits: f64,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.call(move |conn| audit::record_leakage(conn, &s, bits, at))
            .await
    }

    async fn leakage_totals(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<LeakageTotal>, StoreError> {
        self.call(move |conn| audit::leakage_totals(conn, challenge.as_str()))
            .await
    }

    async fn put_blob(
        &self,
        kind: BlobKind,
        name: String,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let path = self.blob_path(kind, &name);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Written aside and renamed: a reader never sees half a file.
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, data)?;
            std::fs::rename(tmp, path)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)
    }

    async fn get_blob(&self, kind: BlobKind, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.blob_path(kind, &name);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io(e)),
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    async fn delete_blobs(&self, kind: BlobKind, prefix: String) -> Result<(), StoreError> {
        let dir = self.blob_path(kind, "");
        tokio::task::spawn_blocking(move || {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
    }

    async fn archive_file(&self, sha256: String) -> Result<PathBuf, StoreError> {
        Ok(self.paths.archive(&sha256))
    }

    async fn insert_job(&self, job: Job) -> Result<bool, StoreError> {
        self.call(move |conn| jobs::insert(conn, &job)).await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.call(move |conn| jobs::get(conn, id.as_str())).await
    }

    async fn list_jobs(
        &self,
        challenge: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Job)>, StoreError> {
        self.call(move |conn| jobs::list(conn, challenge, before, limit))
            .await
    }

    async fn job_progress(
        &self,
        id: JobId,
        done: u32,
        total: u32,
        at: UnixMillis,
    ) -> Result<Option<JobState>, StoreError> {
        self.call(move |conn| jobs::progress(conn, id.as_str(), done, total, at))
            .await
    }

    async fn end_job(
        &self,
        id: JobId,
        state: JobState,
        message: String,
        at: UnixMillis,
    ) -> Result<Option<Job>, StoreError> {
        self.call(move |conn| jobs::end(conn, id.as_str(), state, &message, at))
            .await
    }

    async fn commit_job(&self, c: JobCommit) -> Result<CommitOutcome, StoreError> {
        self.call(move |conn| jobs::commit_job(conn, &c)).await
    }

    async fn job_changes(&self, id: JobId) -> Result<Vec<ScoreChange>, StoreError> {
        self.call(move |conn| jobs::changes(conn, id.as_str()))
            .await
    }

    async fn insert_rerun(
        &self,
        job: JobId,
        original: SubmissionId,
        rerun: Submission,
    ) -> Result<bool, StoreError> {
        self.call(move |conn| jobs::insert_rerun(conn, job.as_str(), original.as_str(), &rerun))
            .await
    }

    async fn reruns_of(&self, job: JobId) -> Result<Vec<(SubmissionId, SubmissionId)>, StoreError> {
        let raw = self
            .call(move |conn| jobs::reruns_of(conn, job.as_str()))
            .await?;
        raw.iter()
            .map(|(o, r)| Ok((codec::submission_id(o)?, codec::submission_id(r)?)))
            .collect()
    }
}
