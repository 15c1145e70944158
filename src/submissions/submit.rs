//! Accepting an upload: refused from its metadata when it cannot be admitted, then streamed
//! to disk under the challenge's size cap and an idle deadline, hashed, every entry checked,
//! and admitted atomically (idempotency key, quotas, queue capacity) with its archive moved
//! to its content-addressed place in the same step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::Submissions;
use crate::archive::{self, ArchiveFormat};
use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, DomainError, NewSubmission, ParticipantId, Submission, SubmissionId,
    SubmissionKind, now_millis,
};
use crate::release::SubmissionView;
use crate::run::plan::{DataLayout, archive_limits};
use crate::store::{Admission, InsertOutcome, PendingArchive};

/// The metadata of an upload, parsed at the edge.
#[derive(Debug, Clone)]
pub struct SubmitMeta {
    /// Target challenge.
    pub challenge_id: ChallengeId,
    /// The platform's participant id.
    pub participant_id: ParticipantId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// Declared format; `None` = detect from the bytes.
    pub format: Option<ArchiveFormat>,
    /// Caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// Declared SHA-256 (hex), checked when present.
    pub sha256: Option<String>,
}

/// Start of the UTC day containing `t`.
fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(86_400_000)
}

/// The uploads each token has in progress, capped per token, so that no platform can hold
/// the server's descriptors or disk with uploads that never finish.
#[derive(Clone, Debug)]
pub struct UploadSlots {
    max: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One upload in progress; its slot frees when this is dropped.
#[derive(Debug)]
pub struct UploadSlot {
    token: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl UploadSlots {
    /// At most `max` uploads per token at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::default(),
        }
    }

    /// A slot for `token`, or `None` when it has `max` uploads in progress.
    pub fn acquire(&self, token: &str) -> Option<UploadSlot> {
        let mut held = self.held.lock().unwrap();
        let n = held.entry(token.to_owned()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            token: token.to_owned(),
            held: self.held.clone(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap();
        if let Some(n) = held.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.token);
            }
        }
    }
}

impl Submissions {
    /// Accepts one submission. `chunks` is the archive as the client streams it.
    ///
    /// Everything that can be decided from the metadata is decided before a byte of the
    /// body is read (challenge open, sample present, quota, queue capacity, the token's
    /// uploads in progress), so a refused upload costs no file and no descriptor. The body
    /// must keep flowing (`upload_idle_timeout`); an upload that fails or is refused leaves
    /// nothing on disk.
    pub async fn submit<S>(
        &self,
        caller: &Caller,
        meta: SubmitMeta,
        mut chunks: S,
    ) -> Result<SubmissionView, DomainError>
    where
        S: Stream<Item = Result<Bytes, DomainError>> + Unpin,
    {
        let challenge = self.challenge(&meta.challenge_id).await?;
        // A retry of an accepted submission gets it back, even if the challenge closed since.
        // The insert checks the key again atomically; this early look only spares re-reading
        // an upload that is already stored.
        if let Some(key) = &meta.idempotency_key
            && let Some(existing) = self
                .store
                .find_by_key(caller.name.clone(), key.clone())
                .await?
        {
            return self.view(caller, &existing).await;
        }
        // Early, from the metadata; the admission step checks the time again, atomically.
        if let Some(refused) = challenge.refusal_at(now_millis()) {
            return Err(refused);
        }
        if meta.kind == SubmissionKind::Smoke
            && !DataLayout::of(&self.host.data_root, &challenge).has_sample()
        {
            return Err(DomainError::precondition(
                "kind",
                "this challenge has no public sample for SMOKE runs",
            ));
        }
        let limits = self.host.limits(&challenge);
        let created_at = now_millis();
        let admission = admission(&challenge, &meta, created_at, self.max_queued);
        let new = |archive_sha256: String| {
            Submission::new(NewSubmission {
                id: SubmissionId::generate(),
                challenge_id: meta.challenge_id.clone(),
                participant_id: meta.participant_id.clone(),
                owner: caller.name.clone(),
                kind: meta.kind,
                archive_sha256,
                created_at,
                idempotency_key: meta.idempotency_key.clone(),
            })
        };
        if let Some(refused) = self
            .store
            .admission_refusal(new(String::new()), admission)
            .await?
        {
            return self.answer(caller, &meta, &admission, refused).await;
        }
        let _slot = self.uploads.acquire(&caller.name).ok_or_else(|| {
            DomainError::Exhausted(format!(
                "this token already has {} uploads in progress; wait for one to finish",
                self.uploads.max
            ))
        })?;

        // Stream the upload to a temporary file under the cap; it is deleted on every early
        // return.
        let tmp =
            tempfile::NamedTempFile::new_in(self.paths.uploads()).map_err(DomainError::internal)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(DomainError::internal)?);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let idle = self.upload_idle_timeout;
        loop {
            let next = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| {
                    DomainError::DeadlineExceeded(format!(
                        "the upload stalled: no data for {}",
                        crate::units::format_duration(idle)
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > limits.archive_bytes.0 {
                return Err(DomainError::invalid(
                    "archive",
                    format!(
                        "the archive is larger than this challenge's limit of {}",
                        limits.archive_bytes
                    ),
                ));
            }
            hasher.update(&chunk);
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(DomainError::internal)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(DomainError::internal)?;
        drop(file);
        if size == 0 {
            return Err(DomainError::invalid(
                "archive",
                "no archive bytes were sent",
            ));
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some(declared) = &meta.sha256
            && !declared.eq_ignore_ascii_case(&sha256)
        {
            return Err(DomainError::invalid(
                "sha256",
                format!("the archive's SHA-256 is {sha256}, not the declared {declared}"),
            ));
        }

        // Check every entry now, so a bad archive is refused before it is queued.
        let checks = archive_limits(&limits);
        let format = meta.format;
        let temp = tokio::task::spawn_blocking(move || -> Result<_, DomainError> {
            archive::validate(tmp.path(), format, &checks)
                .map_err(|e| DomainError::invalid("archive", e.to_string()))?;
            Ok(tmp.into_temp_path())
        })
        .await
        .map_err(DomainError::internal)??;
        let pending = PendingArchive {
            temp,
            dest: self.paths.archive(&sha256),
        };
        let outcome = self
            .store
            .insert_submission(new(sha256), admission, Some(pending))
            .await?;
        self.answer(caller, &meta, &admission, outcome).await
    }

    /// What an admission's outcome tells the caller.
    async fn answer(
        &self,
        caller: &Caller,
        meta: &SubmitMeta,
        admission: &Admission,
        outcome: InsertOutcome,
    ) -> Result<SubmissionView, DomainError> {
        let reset = || {
            chrono::DateTime::from_timestamp_millis(admission.day_start + 86_400_000)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default()
        };
        match outcome {
            InsertOutcome::Inserted(s) => {
                tracing::info!(submission_id = %s.id, challenge_id = %s.challenge_id, kind = s.kind.as_str(), "submission queued");
                self.telemetry.accepted();
                self.view(caller, &s).await
            }
            InsertOutcome::Existing(s) => self.view(caller, &s).await,
            InsertOutcome::QuotaExceeded { limit } => Err(DomainError::Exhausted(format!(
                "participant {:?} has used its quota of {limit} {} submission(s) per UTC day on challenge {:?}; it resets at {}",
                meta.participant_id.as_str(),
                meta.kind.as_str().to_uppercase(),
                meta.challenge_id.as_str(),
                reset()
            ))),
            InsertOutcome::PlatformQuotaExceeded { limit } => Err(DomainError::Exhausted(format!(
                "this platform has used its quota of {limit} FULL submission(s) per UTC day on challenge {:?}, all its participants together; it resets at {}",
                meta.challenge_id.as_str(),
                reset()
            ))),
            InsertOutcome::QueueFull { max_queued } => Err(DomainError::Exhausted(format!(
                "the service's queue is full ({max_queued} submissions waiting); try again later"
            ))),
            InsertOutcome::OutsideWindow { challenge, at } => Err(challenge
                .refusal_at(at)
                .unwrap_or_else(|| DomainError::internal("admission refused an open challenge"))),
        }
    }
}

/// What a new submission of `meta` to `challenge`, made at `now`, is admitted against.
fn admission(challenge: &Challenge, meta: &SubmitMeta, now: i64, max_queued: u32) -> Admission {
    let (quota, platform_quota) = match meta.kind {
        SubmissionKind::Full => (
            challenge.quota.full_per_day,
            challenge.quota.platform_full_per_day,
        ),
        SubmissionKind::Smoke => (challenge.quota.smoke_per_day, 0),
    };
    Admission {
        quota,
        platform_quota,
        count_failed: challenge.quota.count_failed,
        day_start: day_start(now),
        max_queued,
    }
}
