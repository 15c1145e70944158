//! Persistence: challenges, submissions (the queue *is* this table), the audit of releases,
//! the leakage ledger, and the files the service keeps (archives, run logs, per-row losses).
//! All SQL lives in this module, behind one small interface ([`Engine`]) with two engines:
//!
//! - [`sqlite`]: one process, one host (the default): a file under `state_dir`, with one
//!   thread owning the connection so every write is serialised; archives, logs and losses
//!   are files beside it.
//! - [`postgres`]: many processes, many hosts: API replicas and execution workers share one
//!   PostgreSQL, whose transactions and row locks make admission atomic across replicas,
//!   whose `FOR UPDATE SKIP LOCKED` and leases hand runs to workers, and whose
//!   `LISTEN/NOTIFY` tells every replica of every change; archives, logs and losses are rows.
//!
//! The store is also the change feed: every submission it inserts or changes is published to
//! [`Store::subscribe`]rs after the write committed, never before, so a watcher can never
//! see a state that a crash would undo. Submissions change only through
//! [`Store::commit`] of a [`Transition`] made by the domain's state machine.

pub(crate) mod codec;
pub mod coordination;
mod engine;
pub mod postgres;
mod schedule;
pub mod sqlite;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast;

pub use coordination::{
    Claim, ClaimDecision, ClaimRequest, ClaimView, Decide, ExpiredRun, LeaseRenewal, LiveRun,
    WorkerInfo,
};
pub(crate) use engine::Engine;
pub use schedule::{CloseWhen, SelectOutcome, SelectedRow, Selection};
pub(crate) use types::readable;
pub use types::{
    Admission, BlobKind, DatabaseUrl, InsertOutcome, LeakageTotal, PendingArchive, QueuedRow,
    ReleaseRecord, StoreError,
};

use crate::domain::{
    Challenge, ChallengeId, Submission, SubmissionId, SubmissionState, Transition, UnixMillis,
};
use crate::paths::Paths;

/// How many committed changes a slow subscriber may fall behind before it is told it lagged
/// (it then re-reads what it watches).
const FEED_CAPACITY: usize = 1024;

/// Aborts the listener task when the last store handle goes.
struct ListenerGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Handle to the store and its change feed; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    feed: broadcast::Sender<Arc<Submission>>,
    /// Whether the engine publishes changes itself (PostgreSQL's `LISTEN/NOTIFY`, which
    /// also carries other processes' changes).
    engine_publishes: bool,
    /// The execution worker this handle writes for: its commits need the worker's lease.
    worker: Option<String>,
    _listener: Arc<ListenerGuard>,
}

impl Store {
    fn with_engine(engine: Arc<dyn Engine>) -> Store {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let listener = engine.listen(feed.clone());
        Store {
            engine_publishes: listener.is_some(),
            engine,
            feed,
            worker: None,
            _listener: Arc::new(ListenerGuard(listener)),
        }
    }

    /// This store, for execution worker `worker`: every commit it makes to a run then needs
    /// the worker's lease on it to be alive, so a worker that lost its lease (it was cut off,
    /// and the run was handed to another) can never write the run's result.
    pub fn for_worker(&self, worker: &str) -> Store {
        Store {
            worker: Some(worker.to_owned()),
            ..self.clone()
        }
    }

    /// Whether several processes share this store (PostgreSQL): runs are then claimed, not
    /// picked, and fairness and slots are read from the store.
    pub fn is_shared(&self) -> bool {
        self.engine_publishes
    }

    /// Opens (creating if needed) the SQLite database at `path`; its archives, logs and
    /// losses are the files of the state folder that holds it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let paths = Paths::new(path.parent().unwrap_or(Path::new(".")));
        Ok(Self::with_engine(Arc::new(sqlite::SqliteEngine::open(
            path, paths,
        )?)))
    }

    /// Connects to the database `url` names for a service whose state folder is `paths`
    /// (the SQLite file's home, or the PostgreSQL engine's local archive cache).
    pub async fn connect(url: &DatabaseUrl, paths: &Paths) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite => Self::open(&paths.database()),
            DatabaseUrl::Postgres(url) => {
                let engine = Arc::new(postgres::PgEngine::connect(url, paths.clone()).await?);
                let store = Self::with_engine(engine.clone());
                engine.listening().await?;
                Ok(store)
            }
        }
    }

    /// A receiver of every submission inserted or changed from now on, each published after
    /// its write committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Submission>> {
        self.feed.subscribe()
    }

    fn publish(&self, s: &Submission) {
        if !self.engine_publishes {
            // No subscriber is not an error: nobody is watching.
            let _ = self.feed.send(Arc::new(s.clone()));
        }
    }

    /// Inserts a new challenge; `Ok(false)` when the id is taken.
    pub async fn insert_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        self.engine.insert_challenge(c).await
    }

    /// Replaces a stored challenge, only while its stored state is still `c.state`: an
    /// update read before a close (by an admin, or by the closer on any replica) must not
    /// reopen it. `Ok(false)` when the state changed meanwhile (read it again).
    pub async fn update_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        self.engine.update_challenge(c).await
    }

    /// Closes challenge `id` in one transaction (a compare-and-set on its state, so every
    /// replica may try): `CloseWhen::Now` closes an open one, `CloseWhen::AtDeadline` only
    /// one whose `closes_at` is at or before `now`. Returns the challenge as stored after,
    /// and whether this call closed it; `None` when there is no such challenge.
    pub async fn close_challenge(
        &self,
        id: &ChallengeId,
        now: UnixMillis,
        when: CloseWhen,
    ) -> Result<Option<(Challenge, bool)>, StoreError> {
        self.engine.close_challenge(id.clone(), now, when).await
    }

    /// Replaces a participant's final selection, in one transaction that checks the
    /// challenge is open at `sel.at`, the count against its `final_selections`, and that
    /// every submission is the participant's scored FULL one.
    pub async fn select_submissions(&self, sel: Selection) -> Result<SelectOutcome, StoreError> {
        self.engine.select_submissions(sel).await
    }

    /// The final selections of a challenge (of one (owner, participant) when `party` is
    /// set), in submission order.
    pub async fn selections(
        &self,
        challenge: &ChallengeId,
        party: Option<(String, String)>,
    ) -> Result<Vec<SelectedRow>, StoreError> {
        self.engine.selections(challenge.clone(), party).await
    }

    /// One challenge.
    pub async fn get_challenge(&self, id: &ChallengeId) -> Result<Option<Challenge>, StoreError> {
        self.engine.get_challenge(id.clone()).await
    }

    /// Challenges in id order after `after`, at most `limit`.
    pub async fn list_challenges(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<Challenge>, StoreError> {
        self.engine.list_challenges(after, limit).await
    }

    /// Inserts a QUEUED submission after checking, in the same step, the owner's
    /// idempotency key, the participant's and the platform's quota for today and the queue's
    /// capacity. When admitted, `archive` is stored in the same step (so no refusal ever
    /// leaves an archive behind, and no retention removal can race an upload of the same
    /// archive); otherwise it is deleted with its temporary file.
    pub async fn insert_submission(
        &self,
        s: Submission,
        admission: Admission,
        archive: Option<PendingArchive>,
    ) -> Result<InsertOutcome, StoreError> {
        let outcome = self.engine.insert_submission(s, admission, archive).await?;
        if let InsertOutcome::Inserted(s) = &outcome {
            self.publish(s);
        }
        Ok(outcome)
    }

    /// What [`Store::insert_submission`] would answer now, without inserting: `None` when it
    /// would admit `s`. Lets an upload be refused from its metadata, before its body is read;
    /// the insert checks again, atomically.
    pub async fn admission_refusal(
        &self,
        s: Submission,
        admission: Admission,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        self.engine.admission_refusal(s, admission).await
    }

    /// Retention: marks every terminal submission that ended before `cutoff` (and was not
    /// marked yet) as expired at `now`, and deletes each of their archives that no unexpired
    /// submission still uses, in the step that marks them (so no upload of the same archive
    /// can race the deletion). Returns the expired submissions' ids (their logs are the
    /// caller's to delete).
    pub async fn expire_before(
        &self,
        cutoff: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<SubmissionId>, StoreError> {
        self.engine.expire_before(cutoff, now).await
    }

    /// One submission.
    pub async fn get_submission(
        &self,
        id: &SubmissionId,
    ) -> Result<Option<Submission>, StoreError> {
        self.engine.get_submission(id.clone()).await
    }

    /// The owner's submission with this idempotency key.
    pub async fn find_by_key(
        &self,
        owner: String,
        key: String,
    ) -> Result<Option<Submission>, StoreError> {
        self.engine.find_by_key(owner, key).await
    }

    /// Commits a transition if the stored row is still in the state and at the attempt the
    /// transition expects (compare-and-set), so a cancel and a run's end, or a late write of
    /// an attempt that was handed back, can never overwrite each other; an execution
    /// worker's write also needs its lease to be alive. Then publishes it. `Ok(None)` when
    /// the row had moved on and nothing was written.
    pub async fn commit(&self, t: Transition) -> Result<Option<Submission>, StoreError> {
        let written = self.engine.commit(t, self.worker.clone()).await?;
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
        self.engine
            .list_submissions(challenge, participant, owner, before, limit)
            .await
    }

    /// Every submission in one of `states`, oldest first.
    pub async fn submissions_in(
        &self,
        states: &[SubmissionState],
    ) -> Result<Vec<Submission>, StoreError> {
        self.engine.submissions_in(states.to_vec()).await
    }

    /// The queue: every QUEUED submission, oldest first, in the shape the scheduler needs.
    pub async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        self.engine.queued().await
    }

    /// Succeeded FULL submissions of a challenge, oldest first (leaderboards).
    pub async fn scored_full(&self, challenge: ChallengeId) -> Result<Vec<Submission>, StoreError> {
        self.engine.scored_full(challenge).await
    }

    /// Appends to the release audit.
    pub async fn record_release(&self, r: ReleaseRecord) -> Result<(), StoreError> {
        self.engine.record_release(r).await
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
        self.engine
            .list_releases(challenge, token, before, limit)
            .await
    }

    /// Records that a FULL result was released to its (platform, participant), carrying at
    /// most `bits`; a result is counted once, however often it is read.
    pub async fn record_leakage(
        &self,
        s: &Submission,
        bits: f64,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.engine.record_leakage(s.clone(), bits, at).await
    }

    /// The ledger of a challenge, per (platform, participant), most bits first.
    pub async fn leakage_totals(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<LeakageTotal>, StoreError> {
        self.engine.leakage_totals(challenge).await
    }

    /// Stores a small file of `kind` under `name` (replacing one of that name).
    pub async fn put_blob(
        &self,
        kind: BlobKind,
        name: String,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.engine.put_blob(kind, name, data).await
    }

    /// A small file of `kind`, if stored.
    pub async fn get_blob(
        &self,
        kind: BlobKind,
        name: String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get_blob(kind, name).await
    }

    /// Deletes every file of `kind` whose name starts with `prefix`.
    pub async fn delete_blobs(&self, kind: BlobKind, prefix: String) -> Result<(), StoreError> {
        self.engine.delete_blobs(kind, prefix).await
    }

    /// A local file holding the archive with this SHA-256 (fetched into the local cache
    /// first when the archives live in the database).
    pub async fn archive_file(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        self.engine.archive_file(sha256.to_owned()).await
    }

    /// Execution workers: in one transaction, reads what every worker holds and what is
    /// queued ([`ClaimView`]), lets `decide` pick, and reserves the pick for `req`'s worker
    /// under a lease.
    pub async fn claim(
        &self,
        req: ClaimRequest,
        decide: Decide,
    ) -> Result<Option<Claim>, StoreError> {
        self.engine.claim(req, decide).await
    }

    /// Execution workers: expires every lease `worker` holds (it restarted: its runs are
    /// dead), so the next sweep hands them back.
    pub async fn release_leases(&self, worker: &str) -> Result<(), StoreError> {
        self.engine.release_leases(worker.to_owned()).await
    }

    /// Execution workers: gives back a reservation that never started (the worker refuses
    /// the challenge), for another worker to claim.
    pub async fn unreserve(&self, id: &SubmissionId, worker: &str) -> Result<(), StoreError> {
        self.engine.unreserve(id.clone(), worker.to_owned()).await
    }

    /// Execution workers: extends the leases of `live` runs of `worker`; says which it no
    /// longer holds and which a caller asked to cancel.
    pub async fn renew_leases(
        &self,
        worker: String,
        live: Vec<SubmissionId>,
        ttl_ms: i64,
    ) -> Result<LeaseRenewal, StoreError> {
        self.engine.renew_leases(worker, live, ttl_ms).await
    }

    /// Runs whose worker's lease expired (it died, or lost the database).
    pub async fn expired_runs(&self) -> Result<Vec<ExpiredRun>, StoreError> {
        self.engine.expired_runs().await
    }

    /// Commits a transition of a run whose lease expired, only if it still is expired.
    pub async fn commit_expired(&self, t: Transition) -> Result<Option<Submission>, StoreError> {
        let written = self.engine.commit_expired(t).await?;
        if let Some(s) = &written {
            self.publish(s);
        }
        Ok(written)
    }

    /// Asks whichever worker runs `id` to stop it (a cancel made on another replica).
    pub async fn request_cancel(&self, id: &SubmissionId) -> Result<(), StoreError> {
        self.engine.request_cancel(id.clone()).await
    }

    /// Keeps an ended run's slot taken until `until`, for every worker (constant-time
    /// release).
    pub async fn hold_slot(&self, id: &SubmissionId, until: UnixMillis) -> Result<(), StoreError> {
        self.engine.hold_slot(id.clone(), until).await
    }

    /// When each (platform, participant) last got a run slot, across all workers.
    pub async fn party_starts(&self) -> Result<HashMap<(String, String), u64>, StoreError> {
        self.engine.party_starts().await
    }

    /// Records a worker's heartbeat.
    pub async fn heartbeat(&self, w: WorkerInfo) -> Result<(), StoreError> {
        self.engine.heartbeat(w).await
    }

    /// Every worker that ever beat, most recent first.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        self.engine.workers().await
    }
}

#[cfg(test)]
mod tests;
