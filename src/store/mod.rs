//! SQLite persistence: challenges, submissions (the queue *is* this table), and the audit of
//! releases. All SQL lives in this module.
//!
//! One dedicated thread owns the connection and runs the closures sent to it over a channel
//! (as rust-playground does), so no async task ever blocks on SQLite and every write is
//! serialised: a check-then-insert (quota, idempotency, queue cap) is atomic without extra
//! locking. WAL mode lets readers of the file (backups, `sqlite3`) run alongside.
//!
//! The store is also the change feed: every submission it inserts or changes is published to
//! [`Store::subscribe`]rs after the write committed, never before, so a watcher can never
//! see a state that a crash would undo. Submissions change only through
//! [`Store::commit`] of a [`Transition`] made by the domain's state machine.

mod admission;
mod audit;
mod migrations;
mod rows;

use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use crate::domain::{
    Challenge, ChallengeId, DomainError, Submission, SubmissionId, SubmissionKind, SubmissionState,
    Transition, UnixMillis,
};

pub use admission::PendingArchive;
pub use audit::{LeakageTotal, ReleaseRecord};
pub use rows::QueuedRow;

/// A storage failure; always the service's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store thread is gone (shutdown or a panic).
    #[error("store thread is gone")]
    Closed,
    /// A file the store keeps (an archive) could not be written or removed.
    #[error("store file")]
    Io(#[source] std::io::Error),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        DomainError::internal(e)
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The rows of a list that decode; each one that does not is logged and skipped, so one bad
/// row (written by a bug, or by an older version) never fails a whole listing.
fn readable<T>(rows: Vec<Result<T, StoreError>>) -> Vec<T> {
    rows.into_iter()
        .filter_map(|r| match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "skipping a stored row that cannot be read");
                None
            }
        })
        .collect()
}

/// How many committed changes a slow subscriber may fall behind before it is told it lagged
/// (it then re-reads what it watches).
const FEED_CAPACITY: usize = 1024;

/// Handle to the database thread and its change feed; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    feed: broadcast::Sender<Arc<Submission>>,
}

/// Outcome of [`Store::insert_submission`].
#[derive(Debug)]
pub enum InsertOutcome {
    /// Stored and queued.
    Inserted(Submission),
    /// The same owner already used this idempotency key: the first submission.
    Existing(Submission),
    /// The participant's quota for today is spent.
    QuotaExceeded {
        /// The quota that applies.
        limit: u32,
    },
    /// The platform's FULL quota for today (all its participants together) is spent.
    PlatformQuotaExceeded {
        /// The quota that applies.
        limit: u32,
    },
    /// The queue holds `max_queued` submissions already.
    QueueFull {
        /// The configured maximum.
        max_queued: u32,
    },
}

/// What `insert_submission` checks atomically with the insert.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Today's quota for this kind, per participant of a platform (0 = unlimited).
    pub quota: u32,
    /// Today's quota for this kind, per platform, all its participants together (0 =
    /// unlimited).
    pub platform_quota: u32,
    /// Whether failed runs count against it.
    pub count_failed: bool,
    /// Start of the current UTC day.
    pub day_start: UnixMillis,
    /// The most QUEUED submissions at once.
    pub max_queued: u32,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies migrations, and starts the
    /// thread that owns it. The thread ends when the last handle is dropped.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("holdout-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start store thread: {e}")))?;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Ok(Store { tx, feed })
    }

    /// A receiver of every submission inserted or changed from now on, each published after
    /// its write committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Submission>> {
        self.feed.subscribe()
    }

    fn publish(&self, s: &Submission) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.feed.send(Arc::new(s.clone()));
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

    // ----- challenges -------------------------------------------------------------------

    /// Inserts a new challenge; `Ok(false)` when the id is taken.
    pub async fn insert_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
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

    /// Replaces a stored challenge.
    pub async fn update_challenge(&self, c: Challenge) -> Result<(), StoreError> {
        self.call(move |conn| {
            let body = rows::encode_challenge(&c)?;
            conn.execute(
                "UPDATE challenges SET body = ?2 WHERE id = ?1",
                params![c.id.as_str(), body],
            )?;
            Ok(())
        })
        .await
    }

    /// One challenge.
    pub async fn get_challenge(&self, id: &ChallengeId) -> Result<Option<Challenge>, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM challenges WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            body.map(|b| rows::decode_challenge(&b)).transpose()
        })
        .await
    }

    /// Challenges in id order after `after`, at most `limit`.
    pub async fn list_challenges(
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

    // ----- submissions ------------------------------------------------------------------

    /// Inserts a QUEUED submission after checking, in the same serialised step, the owner's
    /// idempotency key, the participant's and the platform's quota for today and the queue's
    /// capacity. When admitted, `archive` is moved to its content-addressed place in the same
    /// step (so no refusal ever leaves an archive behind, and no retention removal can race
    /// an upload of the same archive); otherwise it is deleted with its temporary file.
    pub async fn insert_submission(
        &self,
        s: Submission,
        admission: Admission,
        archive: Option<PendingArchive>,
    ) -> Result<InsertOutcome, StoreError> {
        let outcome = self
            .call(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
            .await?;
        if let InsertOutcome::Inserted(s) = &outcome {
            self.publish(s);
        }
        Ok(outcome)
    }

    /// Retention: marks every terminal submission that ended before `cutoff` (and was not
    /// marked yet) as expired at `now`, and deletes each of their archives that no unexpired
    /// submission still uses. On the store thread, so no upload
    /// of the same archive can race the deletion. Returns the expired submissions' ids (their
    /// logs are the caller's to delete).
    pub async fn expire_before(
        &self,
        cutoff: UnixMillis,
        now: UnixMillis,
        paths: crate::paths::Paths,
    ) -> Result<Vec<SubmissionId>, StoreError> {
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
                if !in_use {
                    let path = paths.archive(sha);
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(StoreError::Io(e));
                    }
                }
            }
            tx.commit()?;
            Ok(readable(
                due.into_iter()
                    .map(|(id, _)| {
                        SubmissionId::parse(&id).map_err(|_| StoreError::Corrupt(format!("submission id {id:?}")))
                    })
                    .collect(),
            ))
        })
        .await
    }

    /// What [`Store::insert_submission`] would answer now, without inserting: `None` when it
    /// would admit `s`. Lets an upload be refused from its metadata, before its body is read;
    /// the insert checks again, atomically.
    pub async fn admission_refusal(
        &self,
        s: Submission,
        admission: Admission,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        self.call(move |conn| admission::check(conn, &s, &admission))
            .await
    }

    /// One submission.
    pub async fn get_submission(
        &self,
        id: &SubmissionId,
    ) -> Result<Option<Submission>, StoreError> {
        let id = id.as_str().to_owned();
        self.call(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {} FROM submissions WHERE id = ?1",
                    rows::SUBMISSION_COLUMNS
                ),
                [id],
                rows::submission_from_row,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    /// The owner's submission with this idempotency key.
    pub async fn find_by_key(
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

    /// Commits a transition if the stored row is still in the state and at the attempt the
    /// transition expects (compare-and-set), so a cancel and a run's end, or a late write of
    /// an attempt that was handed back, can never overwrite each other; then publishes it.
    /// `Ok(None)` when the row had moved on and nothing was written.
    pub async fn commit(&self, t: Transition) -> Result<Option<Submission>, StoreError> {
        let written = self
            .call(move |conn| rows::update_submission(conn, &t).map(|w| w.then(|| t.into_next())))
            .await?;
        if let Some(s) = &written {
            self.publish(s);
        }
        Ok(written)
    }

    /// Submissions of a challenge, newest first, optionally of one participant and/or one
    /// owner, before the sequence number `before` (0 = from the newest).
    pub async fn list_submissions(
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

    /// Every submission in one of `states`, oldest first.
    pub async fn submissions_in(
        &self,
        states: &[SubmissionState],
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

    /// The queue: every QUEUED submission, oldest first, in the shape the scheduler needs.
    pub async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
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

    /// Succeeded FULL submissions of a challenge, oldest first (leaderboards).
    pub async fn scored_full(&self, challenge: ChallengeId) -> Result<Vec<Submission>, StoreError> {
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
}

#[cfg(test)]
mod tests;
