//! The interface both engines implement; [`super::Store`] adds the change feed on top.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::{
    Admission, BlobKind, Claim, ClaimRequest, CloseWhen, Decide, ExpiredRun, InsertOutcome,
    LeakageTotal, LeaseRenewal, PendingArchive, QueuedRow, ReleaseRecord, SelectOutcome,
    SelectedRow, Selection, StoreError, WorkerInfo,
};
use crate::domain::{
    Challenge, ChallengeId, Submission, SubmissionId, SubmissionState, Transition, UnixMillis,
};

/// What an engine does; [`Store`] adds the change feed on top. Every method is one step:
/// one transaction, or one file operation.
#[async_trait::async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    async fn insert_challenge(&self, c: Challenge) -> Result<bool, StoreError>;
    /// Writes `c` only while the stored state is still `c.state` (`false` otherwise).
    async fn update_challenge(&self, c: Challenge) -> Result<bool, StoreError>;
    /// Closes as `when` says, in one transaction; the challenge after, and whether this
    /// call closed it. `None`: no such challenge.
    async fn close_challenge(
        &self,
        id: ChallengeId,
        now: UnixMillis,
        when: CloseWhen,
    ) -> Result<Option<(Challenge, bool)>, StoreError>;
    async fn select_submissions(&self, sel: Selection) -> Result<SelectOutcome, StoreError>;
    /// `party`: (owner, participant) to read one participant's only.
    async fn selections(
        &self,
        challenge: ChallengeId,
        party: Option<(String, String)>,
    ) -> Result<Vec<SelectedRow>, StoreError>;
    async fn get_challenge(&self, id: ChallengeId) -> Result<Option<Challenge>, StoreError>;
    async fn list_challenges(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<Challenge>, StoreError>;
    async fn insert_submission(
        &self,
        s: Submission,
        admission: Admission,
        archive: Option<PendingArchive>,
    ) -> Result<InsertOutcome, StoreError>;
    async fn admission_refusal(
        &self,
        s: Submission,
        admission: Admission,
    ) -> Result<Option<InsertOutcome>, StoreError>;
    async fn get_submission(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError>;
    async fn find_by_key(
        &self,
        owner: String,
        key: String,
    ) -> Result<Option<Submission>, StoreError>;
    /// `worker`: the execution worker committing, whose lease on the run must be alive.
    async fn commit(
        &self,
        t: Transition,
        worker: Option<String>,
    ) -> Result<Option<Submission>, StoreError>;
    async fn list_submissions(
        &self,
        challenge: ChallengeId,
        participant: Option<String>,
        owner: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Submission)>, StoreError>;
    async fn submissions_in(
        &self,
        states: Vec<SubmissionState>,
    ) -> Result<Vec<Submission>, StoreError>;
    async fn queued(&self) -> Result<Vec<QueuedRow>, StoreError>;
    async fn scored_full(&self, challenge: ChallengeId) -> Result<Vec<Submission>, StoreError>;
    async fn expire_before(
        &self,
        cutoff: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<SubmissionId>, StoreError>;
    async fn record_release(&self, r: ReleaseRecord) -> Result<(), StoreError>;
    async fn list_releases(
        &self,
        challenge: Option<String>,
        token: Option<String>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ReleaseRecord)>, StoreError>;
    async fn record_leakage(
        &self,
        s: Submission,
        bits: f64,
        at: UnixMillis,
    ) -> Result<(), StoreError>;
    async fn leakage_totals(&self, challenge: ChallengeId)
    -> Result<Vec<LeakageTotal>, StoreError>;
    async fn put_blob(&self, kind: BlobKind, name: String, data: Vec<u8>)
    -> Result<(), StoreError>;
    async fn get_blob(&self, kind: BlobKind, name: String) -> Result<Option<Vec<u8>>, StoreError>;
    async fn delete_blobs(&self, kind: BlobKind, prefix: String) -> Result<(), StoreError>;
    async fn archive_file(&self, sha256: String) -> Result<PathBuf, StoreError>;

    // ----- coordination of execution workers (PostgreSQL only) ---------------------------
    async fn claim(
        &self,
        _req: ClaimRequest,
        _decide: Decide,
    ) -> Result<Option<Claim>, StoreError> {
        Err(StoreError::Unsupported("claiming runs"))
    }
    async fn release_leases(&self, _worker: String) -> Result<(), StoreError> {
        Ok(())
    }
    async fn renew_leases(
        &self,
        _worker: String,
        _live: Vec<SubmissionId>,
        _ttl_ms: i64,
    ) -> Result<LeaseRenewal, StoreError> {
        Err(StoreError::Unsupported("leases"))
    }
    async fn expired_runs(&self) -> Result<Vec<ExpiredRun>, StoreError> {
        Ok(Vec::new())
    }
    async fn commit_expired(&self, _t: Transition) -> Result<Option<Submission>, StoreError> {
        Err(StoreError::Unsupported("leases"))
    }
    async fn request_cancel(&self, _id: SubmissionId) -> Result<(), StoreError> {
        Ok(())
    }
    async fn hold_slot(&self, _id: SubmissionId, _until: UnixMillis) -> Result<(), StoreError> {
        Ok(())
    }
    async fn party_starts(&self) -> Result<HashMap<(String, String), u64>, StoreError> {
        Ok(HashMap::new())
    }
    async fn unreserve(&self, _id: SubmissionId, _worker: String) -> Result<(), StoreError> {
        Ok(())
    }
    async fn heartbeat(&self, _w: WorkerInfo) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("workers"))
    }
    async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        Ok(Vec::new())
    }
    /// Starts delivering every committed change (from any process) into `feed`; engines
    /// whose writes all come through this process deliver them in [`Store`] instead.
    fn listen(
        &self,
        _feed: broadcast::Sender<Arc<Submission>>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}
