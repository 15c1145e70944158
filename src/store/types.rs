//! The store's types: what its callers pass in and get back, and its one error.

use std::path::PathBuf;

use crate::domain::{
    ChallengeId, DomainError, JobId, ParticipantId, ScoreChange, Scoring, Submission, SubmissionId,
    SubmissionKind, Transition, UnixMillis,
};

/// A storage failure; always the service's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("postgres")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store thread is gone (shutdown or a panic).
    #[error("store thread is gone")]
    Closed,
    /// A file the store keeps (an archive) could not be written or removed.
    #[error("store file")]
    Io(#[source] std::io::Error),
    /// The operation needs the other engine (execution workers need PostgreSQL).
    #[error("{0} needs a PostgreSQL store")]
    Unsupported(&'static str),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        DomainError::internal(e)
    }
}

/// The rows of a list that decode; each one that does not is logged and skipped, so one bad
/// row (written by a bug, or by an older version) never fails a whole listing.
pub(crate) fn readable<T>(rows: Vec<Result<T, StoreError>>) -> Vec<T> {
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

/// Outcome of [`super::Store::insert_submission`].
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
    /// The challenge does not accept submissions at `at` (closed, or outside its schedule):
    /// decided in the admission step itself, so a deadline that passed a moment ago is
    /// enforced before the closer marks the challenge CLOSED.
    OutsideWindow {
        /// The challenge as stored, whose schedule names the times.
        challenge: Box<crate::domain::Challenge>,
        /// When admission was decided.
        at: UnixMillis,
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

/// An upload's archive, checked and waiting in a temporary file for its submission to be
/// admitted.
#[derive(Debug)]
pub struct PendingArchive {
    /// The temporary file; deleted when this is dropped without being stored.
    pub temp: tempfile::TempPath,
    /// Its content-addressed place in the local state folder (the SQLite engine's home; the
    /// PostgreSQL engine stores the bytes as rows and uses this as a cache).
    pub dest: PathBuf,
}

impl PendingArchive {
    /// Moves the archive into its place; an identical archive already there is kept (the
    /// same bytes), and the temporary file deleted.
    pub(crate) fn persist(self) -> Result<(), StoreError> {
        if self.dest.exists() {
            return Ok(());
        }
        let file = std::fs::File::open(&self.temp).map_err(StoreError::Io)?;
        file.sync_all().map_err(StoreError::Io)?;
        self.temp
            .persist(&self.dest)
            .map_err(|e| StoreError::Io(e.error))
    }
}

/// A queued submission, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    /// Insertion order.
    pub seq: i64,
    /// Submission id.
    pub id: SubmissionId,
    /// Its challenge.
    pub challenge_id: ChallengeId,
    /// The token (platform) that owns it.
    pub owner: String,
    /// The platform's participant.
    pub participant_id: ParticipantId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
}

impl QueuedRow {
    /// The unit of fairness: a participant of a platform.
    pub fn party(&self) -> (&str, &str) {
        (self.owner.as_str(), self.participant_id.as_str())
    }
}

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

/// Kinds of small files the store keeps besides archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A run's captured output (`<id>.stdout`, `<id>.scorer-public.stderr`, ...).
    Log,
    /// A scored FULL run's per-row public losses (`<id>.f32`).
    Losses,
    /// A FULL run's predictions as it wrote them, gzipped (`<id>.csv.gz`), or the record
    /// that they were not kept (`<id>.not-kept`); read only by rescoring jobs.
    Predictions,
    /// A challenge's data cards, full and public (`<challenge id>.<sha-256>.json`).
    Card,
}

impl BlobKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Log => "log",
            BlobKind::Losses => "losses",
            BlobKind::Predictions => "predictions",
            BlobKind::Card => "card",
        }
    }
}

/// Everything a rescoring job writes, in one transaction: its audit, the submissions whose
/// scores changed, the challenge (when the job changed its metric), a leakage-ledger entry
/// per changed result (a changed score a submitter may read is another release), and the
/// job's end.
#[derive(Debug, Clone)]
pub struct JobCommit {
    /// The job; nothing is written unless it is still RUNNING.
    pub job: JobId,
    /// One audit entry per submission the job looked at.
    pub changes: Vec<ScoreChange>,
    /// The changed submissions (SUCCEEDED → SUCCEEDED with new scores).
    pub writes: Vec<Transition>,
    /// The scoring the job computed with: nothing is written unless the challenge's stored
    /// scoring still equals it (an UpdateChallenge of the scoring meanwhile is a conflict;
    /// any other change, a close, is not). `None` for a job that does not depend on it.
    pub scoring_was: Option<Scoring>,
    /// The scoring to store in the challenge (a rescoring under a new metric), applied to
    /// the challenge as stored at the commit, so no other field's update is lost.
    pub scoring: Option<Scoring>,
    /// Bits each changed result may carry (the challenge's leakage estimate).
    pub bits: f64,
    /// The job's closing summary.
    pub message: String,
    /// When.
    pub at: UnixMillis,
}

/// How a [`JobCommit`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was written; the job is FINISHED.
    Committed,
    /// The job was no longer RUNNING (cancelled): nothing was written.
    NotRunning,
    /// A submission, or the challenge's scoring, had changed under the job: nothing was
    /// written.
    Conflict,
}

/// Where the database is: `sqlite:` (default, under `state_dir`) or `postgres://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// The SQLite file in `state_dir`.
    Sqlite,
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `database_url` from the config: empty or `sqlite:` for the default file.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "sqlite:" || raw == "sqlite" {
            Ok(DatabaseUrl::Sqlite)
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(raw.to_owned()))
        } else {
            Err(format!(
                "database_url {raw:?} must be empty, \"sqlite:\" or \"postgres://...\""
            ))
        }
    }
}
