//! The PostgreSQL engine: many processes, many hosts, one database.
//!
//! API replicas and execution workers share it through a connection pool each
//! (tokio-postgres via deadpool). What must be atomic across processes is one transaction:
//! admission (idempotency key, quotas, queue capacity and the archive) runs under one
//! advisory lock, so two replicas can never both admit the last submission of a quota; a
//! claim ([`coordination`]) reads every worker's slots and reserves a run under another.
//! Every committed change of a submission is announced by a trigger (`NOTIFY`), and one
//! listening connection per process turns the announcements into this process's change
//! feed, so a submission made on one replica is watched live on another.
//!
//! Archives are rows: one per archive, its bytes in 8 MiB chunks (`bytea`, whose 1 GiB cap
//! per value is then never near; the largest archive the service accepts is 1 GiB). Every
//! worker can read them without shared storage; each fetches an archive once into its
//! state folder (checked against its SHA-256) and extracts from there. Logs and per-row
//! losses are rows too, so any replica serves them.

mod admission;
mod audit;
mod coordination;
mod files;
mod listen;
mod schedule;
mod schema;

use std::path::PathBuf;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::broadcast;
use tokio_postgres::{NoTls, Row};

use super::codec::{self, RawSubmission, SUBMISSION_COLUMNS};
use super::{
    Admission, BlobKind, Claim, ClaimRequest, CloseWhen, Decide, Engine, ExpiredRun, InsertOutcome,
    LeakageTotal, LeaseRenewal, PendingArchive, QueuedRow, ReleaseRecord, SelectOutcome,
    SelectedRow, Selection, StoreError, WorkerInfo, readable,
};
use crate::domain::{
    Challenge, ChallengeId, Submission, SubmissionId, SubmissionKind, SubmissionState, Transition,
    UnixMillis,
};
use crate::paths::Paths;

/// Connections each process keeps at most.
const POOL_SIZE: usize = 16;

/// Advisory lock key serialising admissions across replicas ("holdout" + 2).
pub(super) const ADMISSION_LOCK: i64 = 0x686f_6c64_6f75_7402;

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

/// The engine: a pool, and this process's state folder (its archive cache).
pub(crate) struct PgEngine {
    pool: Pool,
    config: tokio_postgres::Config,
    paths: Paths,
    /// Whether the change listener is listening (see [`PgEngine::listening`]).
    listening: tokio::sync::watch::Sender<bool>,
}

impl PgEngine {
    /// Connects, and brings the schema up to date.
    pub(crate) async fn connect(url: &str, paths: Paths) -> Result<PgEngine, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        if config.get_application_name().is_none() {
            config.application_name("holdout");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let engine = PgEngine {
            pool,
            config,
            paths,
            listening: tokio::sync::watch::Sender::new(false),
        };
        let mut client = engine.client().await?;
        schema::apply(&mut client).await?;
        Ok(engine)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Waits (at most ten seconds) until the change listener listens, so that no change
    /// committed after the store is handed out goes unannounced to this process.
    pub(crate) async fn listening(&self) -> Result<(), StoreError> {
        let mut rx = self.listening.subscribe();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.wait_for(|l| *l))
            .await
            .map_err(|_| StoreError::Pool("the change listener could not connect".into()))?
            .map_err(|_| StoreError::Closed)?;
        Ok(())
    }
}

/// A submission from the row's columns starting at `o` (in [`SUBMISSION_COLUMNS`] order).
fn raw_at(r: &Row, o: usize) -> Result<RawSubmission, tokio_postgres::Error> {
    Ok(RawSubmission {
        id: r.try_get(o)?,
        challenge_id: r.try_get(o + 1)?,
        participant_id: r.try_get(o + 2)?,
        owner: r.try_get(o + 3)?,
        kind: r.try_get(o + 4)?,
        state: r.try_get(o + 5)?,
        verdict: r.try_get(o + 6)?,
        message: r.try_get(o + 7)?,
        detail: r.try_get(o + 8)?,
        public_scores: r.try_get(o + 9)?,
        private_scores: r.try_get(o + 10)?,
        archive_sha256: r.try_get(o + 11)?,
        created_at: r.try_get(o + 12)?,
        started_at: r.try_get(o + 13)?,
        finished_at: r.try_get(o + 14)?,
        usage: r.try_get(o + 15)?,
        attempts: r.try_get(o + 16)?,
        idempotency_key: r.try_get(o + 17)?,
        charged: r.try_get(o + 18)?,
    })
}

/// Every row's submission that decodes (see [`readable`]).
fn submissions(rows: &[Row], o: usize) -> Result<Vec<Submission>, StoreError> {
    let raw = rows
        .iter()
        .map(|r| raw_at(r, o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(readable(
        raw.into_iter().map(RawSubmission::decode).collect(),
    ))
}

fn one(row: Option<Row>) -> Result<Option<Submission>, StoreError> {
    row.map(|r| raw_at(&r, 0).map_err(StoreError::from)?.decode())
        .transpose()
}

#[async_trait::async_trait]
impl Engine for PgEngine {
    async fn insert_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        let body = codec::encode_challenge(&c)?;
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO challenges (id, body, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&c.id.as_str(), &body, &c.created_at],
            )
            .await?;
        Ok(n == 1)
    }

    async fn update_challenge(&self, c: Challenge) -> Result<bool, StoreError> {
        let body = codec::encode_challenge(&c)?;
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE challenges SET body = $2
                 WHERE id = $1 AND (body::jsonb ->> 'state') = $3",
                &[&c.id.as_str(), &body, &c.state.as_str()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn close_challenge(
        &self,
        id: ChallengeId,
        now: UnixMillis,
        when: CloseWhen,
    ) -> Result<Option<(Challenge, bool)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let out = schedule::close(&tx, &id, now, when).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn select_submissions(&self, sel: Selection) -> Result<SelectOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let out = schedule::select(&tx, &sel).await?;
        if matches!(out, SelectOutcome::Selected(_)) {
            tx.commit().await?;
        }
        Ok(out)
    }

    async fn selections(
        &self,
        challenge: ChallengeId,
        party: Option<(String, String)>,
    ) -> Result<Vec<SelectedRow>, StoreError> {
        let client = self.client().await?;
        schedule::read(&**client, &challenge, party).await
    }

    async fn get_challenge(&self, id: ChallengeId) -> Result<Option<Challenge>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT body FROM challenges WHERE id = $1", &[&id.as_str()])
            .await?;
        row.map(|r| codec::decode_challenge(r.get(0))).transpose()
    }

    async fn list_challenges(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<Challenge>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM challenges WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await?;
        Ok(readable(
            rows.iter()
                .map(|r| codec::decode_challenge(r.get(0)))
                .collect(),
        ))
    }

    async fn insert_submission(
        &self,
        s: Submission,
        admission: Admission,
        archive: Option<PendingArchive>,
    ) -> Result<InsertOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADMISSION_LOCK])
            .await?;
        if let Some(refused) = admission::check(&tx, &s, &admission).await? {
            return Ok(refused);
        }
        if let Some(a) = &archive {
            admission::store_archive(&tx, &s.archive_sha256, &a.temp).await?;
        }
        admission::insert(&tx, &s).await?;
        tx.commit().await?;
        if let Some(a) = archive {
            // This host's cache: a local run needs no fetch. Losing it costs a fetch only.
            let _ = tokio::task::spawn_blocking(move || a.persist()).await;
        }
        Ok(InsertOutcome::Inserted(s))
    }

    async fn admission_refusal(
        &self,
        s: Submission,
        admission: Admission,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        admission::check(&tx, &s, &admission).await
    }

    async fn get_submission(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = $1"),
                &[&id.as_str()],
            )
            .await?;
        one(row)
    }

    async fn find_by_key(
        &self,
        owner: String,
        key: String,
    ) -> Result<Option<Submission>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE owner = $1 AND idempotency_key = $2"
                ),
                &[&owner, &key],
            )
            .await?;
        one(row)
    }

    async fn commit(
        &self,
        t: Transition,
        worker: Option<String>,
    ) -> Result<Option<Submission>, StoreError> {
        let written =
            coordination::update(&self.client().await?, &t, worker.as_deref(), false).await?;
        Ok(written.then(|| t.into_next()))
    }

    async fn list_submissions(
        &self,
        challenge: ChallengeId,
        participant: Option<String>,
        owner: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Submission)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT seq, {SUBMISSION_COLUMNS} FROM submissions
                     WHERE challenge_id = $1 AND ($2::text IS NULL OR participant_id = $2)
                       AND ($3::text IS NULL OR owner = $3) AND ($4::bigint = 0 OR seq < $4)
                     ORDER BY seq DESC LIMIT $5"
                ),
                &[
                    &challenge.as_str(),
                    &participant,
                    &owner,
                    &before,
                    &(limit as i64),
                ],
            )
            .await?;
        let raw = rows
            .iter()
            .map(|r| Ok((r.try_get::<_, i64>(0)?, raw_at(r, 1)?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        Ok(readable(
            raw.into_iter()
                .map(|(seq, r)| r.decode().map(|s| (seq, s)))
                .collect(),
        ))
    }

    async fn submissions_in(
        &self,
        states: Vec<SubmissionState>,
    ) -> Result<Vec<Submission>, StoreError> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE state = ANY($1) ORDER BY seq"
                ),
                &[&states],
            )
            .await?;
        submissions(&rows, 0)
    }

    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, id, challenge_id, owner, participant_id, kind FROM submissions
                 WHERE state = 'queued' ORDER BY seq",
                &[],
            )
            .await?;
        Ok(readable(
            rows.iter().map(coordination::queued_row).collect(),
        ))
    }

    async fn scored_full(&self, challenge: ChallengeId) -> Result<Vec<Submission>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {SUBMISSION_COLUMNS} FROM submissions
                     WHERE challenge_id = $1 AND kind = $2 AND state = 'succeeded' ORDER BY seq"
                ),
                &[&challenge.as_str(), &SubmissionKind::Full.as_str()],
            )
            .await?;
        submissions(&rows, 0)
    }

    async fn expire_before(
        &self,
        cutoff: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<SubmissionId>, StoreError> {
        files::expire_before(&mut self.client().await?, &self.paths, cutoff, now).await
    }

    async fn record_release(&self, r: ReleaseRecord) -> Result<(), StoreError> {
        audit::record_release(&self.client().await?, r).await
    }

    async fn list_releases(
        &self,
        challenge: Option<String>,
        token: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ReleaseRecord)>, StoreError> {
        audit::list_releases(&self.client().await?, challenge, token, before, limit).await
    }

    async fn record_leakage(
        &self,
        s: Submission,
        bits: f64,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        audit::record_leakage(&self.client().await?, s, bits, at).await
    }

    async fn leakage_totals(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<LeakageTotal>, StoreError> {
        audit::leakage_totals(&self.client().await?, challenge).await
    }

    async fn put_blob(
        &self,
        kind: BlobKind,
        name: String,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        files::put_blob(&self.client().await?, kind, name, data).await
    }

    async fn get_blob(&self, kind: BlobKind, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        files::get_blob(&self.client().await?, kind, name).await
    }

    async fn delete_blobs(&self, kind: BlobKind, prefix: String) -> Result<(), StoreError> {
        files::delete_blobs(&self.client().await?, kind, prefix).await
    }

    async fn archive_file(&self, sha256: String) -> Result<PathBuf, StoreError> {
        let dest = self.paths.archive(&sha256);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Ok(dest);
        }
        files::fetch_archive(&self.client().await?, &sha256, &dest).await?;
        Ok(dest)
    }

    async fn claim(&self, req: ClaimRequest, decide: Decide) -> Result<Option<Claim>, StoreError> {
        coordination::claim(&mut self.client().await?, &req, decide).await
    }

    async fn release_leases(&self, worker: String) -> Result<(), StoreError> {
        coordination::release_leases(&self.client().await?, &worker).await
    }

    async fn unreserve(&self, id: SubmissionId, worker: String) -> Result<(), StoreError> {
        coordination::unreserve(&self.client().await?, &id, &worker).await
    }

    async fn renew_leases(
        &self,
        worker: String,
        live: Vec<SubmissionId>,
        ttl_ms: i64,
    ) -> Result<LeaseRenewal, StoreError> {
        coordination::renew_leases(&self.client().await?, &worker, &live, ttl_ms).await
    }

    async fn expired_runs(&self) -> Result<Vec<ExpiredRun>, StoreError> {
        coordination::expired_runs(&self.client().await?).await
    }

    async fn commit_expired(&self, t: Transition) -> Result<Option<Submission>, StoreError> {
        let written = coordination::update(&self.client().await?, &t, None, true).await?;
        Ok(written.then(|| t.into_next()))
    }

    async fn request_cancel(&self, id: SubmissionId) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET cancel_requested = TRUE WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(())
    }

    async fn hold_slot(&self, id: SubmissionId, until: UnixMillis) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE submissions SET slot_until = $2 WHERE id = $1",
                &[&id.as_str(), &until],
            )
            .await?;
        Ok(())
    }

    async fn party_starts(
        &self,
    ) -> Result<std::collections::HashMap<(String, String), u64>, StoreError> {
        coordination::party_starts(&self.client().await?).await
    }

    async fn heartbeat(&self, w: WorkerInfo) -> Result<(), StoreError> {
        coordination::heartbeat(&self.client().await?, &w).await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        coordination::workers(&self.client().await?).await
    }

    fn listen(
        &self,
        feed: broadcast::Sender<std::sync::Arc<Submission>>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        Some(tokio::spawn(listen::run(
            self.config.clone(),
            self.pool.clone(),
            feed,
            self.listening.clone(),
        )))
    }
}
