//! What execution workers share through the store (PostgreSQL only): claims of queued runs,
//! leases on them, and the worker registry. The store only reads and writes these; which
//! run a worker should take is decided by the caller's policy (`crate::scheduler`), handed
//! to [`super::Store::claim`] as a function of a [`ClaimView`] so the decision and the
//! reservation happen in one transaction.

use std::collections::HashMap;

use crate::domain::{ChallengeId, Submission, SubmissionId, SubmissionKind, UnixMillis};
use crate::store::QueuedRow;

/// A run that holds a slot somewhere: reserved by a worker, running, scoring, or ended with
/// its slot held (constant-time release).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRun {
    /// The submission.
    pub id: SubmissionId,
    /// Its challenge (per-challenge concurrency).
    pub challenge_id: ChallengeId,
    /// FULL or SMOKE (time partition).
    pub kind: SubmissionKind,
    /// The Docker host it runs on (time partition is per host).
    pub host_id: String,
}

/// Everything a claim decision may look at, read in the claim's transaction.
#[derive(Debug, Clone)]
pub struct ClaimView {
    /// The database's clock.
    pub now: UnixMillis,
    /// Queued runs no live worker has reserved, oldest first.
    pub queued: Vec<QueuedRow>,
    /// Every run holding a slot, on any host.
    pub live: Vec<LiveRun>,
    /// When each (platform, participant) with queued runs last got a slot, anywhere.
    pub last_start: HashMap<(String, String), u64>,
    /// The claiming worker's host's partition phase: which kind it last switched to, when.
    pub phase: Option<(SubmissionKind, UnixMillis)>,
}

/// What a claim decided.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimDecision {
    /// The run to reserve, if any.
    pub pick: Option<SubmissionId>,
    /// The host's partition phase from now on.
    pub phase: Option<(SubmissionKind, UnixMillis)>,
}

/// The decision a claim runs inside its transaction.
pub type Decide = Box<dyn FnOnce(&ClaimView) -> ClaimDecision + Send>;

/// Who claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The worker (its instance name, unique).
    pub worker_id: String,
    /// Its Docker host (workers sharing an engine share this).
    pub host_id: String,
    /// How long the reservation holds without a renewal.
    pub lease_ttl_ms: i64,
}

/// A reserved run.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The run.
    pub row: QueuedRow,
    /// Its lease, by the database's clock.
    pub lease_until: UnixMillis,
}

/// What a lease renewal found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseRenewal {
    /// Runs this worker no longer holds (its lease expired and was taken over, or the run
    /// was ended by someone else): stop them, commit nothing.
    pub lost: Vec<SubmissionId>,
    /// Runs a caller asked to cancel (on any replica).
    pub cancel: Vec<SubmissionId>,
}

/// A run whose worker's lease expired.
#[derive(Debug, Clone)]
pub struct ExpiredRun {
    /// The submission as stored (RUNNING or SCORING).
    pub submission: Submission,
    /// Whether a caller asked to cancel it meanwhile.
    pub cancel_requested: bool,
}

/// A worker as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Its instance name.
    pub id: String,
    /// Its Docker host.
    pub host_id: String,
    /// Runs it takes at once.
    pub slots: u32,
    /// Runs it holds now.
    pub live: u32,
    /// When it started.
    pub started_at: UnixMillis,
    /// Its last heartbeat (the database's clock).
    pub last_beat: UnixMillis,
    /// "running", "draining" or "stopped".
    pub state: String,
    /// Challenges it refuses (its data differs), with why.
    pub refused: Vec<String>,
    /// Its build.
    pub version: String,
    /// Leases it holds now (filled in by [`super::Store::workers`]).
    pub leases: u32,
}
