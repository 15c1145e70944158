//! Accepting an upload: streamed to disk under the challenge's size cap, hashed, every
//! entry checked, stored content-addressed, then admitted atomically against the
//! participant's quota, the owner's idempotency key and the queue's capacity.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::Submissions;
use crate::archive::{self, ArchiveFormat};
use crate::auth::Caller;
use crate::domain::{
    ChallengeId, ChallengeState, DomainError, NewSubmission, ParticipantId, Submission,
    SubmissionId, SubmissionKind, now_millis,
};
use crate::release::SubmissionView;
use crate::run::plan::{DataLayout, archive_limits};
use crate::store::{Admission, InsertOutcome};

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

impl Submissions {
    /// Accepts one submission. `chunks` is the archive as the client streams it.
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
        if challenge.state == ChallengeState::Closed {
            return Err(DomainError::precondition(
                "challenge_id",
                format!("challenge {:?} is closed", challenge.id.as_str()),
            ));
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

        // Stream the upload to a temporary file under the cap; it is deleted on every early
        // return.
        let tmp =
            tempfile::NamedTempFile::new_in(self.paths.uploads()).map_err(DomainError::internal)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(DomainError::internal)?);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = chunks.next().await {
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
        let stored = self.paths.archive(&sha256);
        tokio::task::spawn_blocking(move || -> Result<(), DomainError> {
            archive::validate(tmp.path(), format, &checks)
                .map_err(|e| DomainError::invalid("archive", e.to_string()))?;
            if !stored.exists() {
                tmp.as_file().sync_all().map_err(DomainError::internal)?;
                tmp.persist(&stored)
                    .map_err(|e| DomainError::internal(e.error))?;
            }
            Ok(())
        })
        .await
        .map_err(DomainError::internal)??;

        let s = Submission::new(NewSubmission {
            id: SubmissionId::generate(),
            challenge_id: meta.challenge_id.clone(),
            participant_id: meta.participant_id.clone(),
            owner: caller.name.clone(),
            kind: meta.kind,
            archive_sha256: sha256,
            created_at: now_millis(),
            idempotency_key: meta.idempotency_key.clone(),
        });
        let day_start = day_start(s.created_at);
        let quota = match meta.kind {
            SubmissionKind::Full => challenge.quota.full_per_day,
            SubmissionKind::Smoke => challenge.quota.smoke_per_day,
        };
        let admission = Admission {
            quota,
            platform_quota: match meta.kind {
                SubmissionKind::Full => challenge.quota.platform_full_per_day,
                SubmissionKind::Smoke => 0,
            },
            count_failed: challenge.quota.count_failed,
            day_start,
            max_queued: self.max_queued,
        };
        match self.store.insert_submission(s, admission).await? {
            InsertOutcome::Inserted(s) => {
                tracing::info!(submission_id = %s.id, challenge_id = %s.challenge_id, kind = s.kind.as_str(), "submission queued");
                self.telemetry.accepted();
                self.view(caller, &s).await
            }
            InsertOutcome::Existing(s) => self.view(caller, &s).await,
            InsertOutcome::QuotaExceeded { limit } => {
                let reset = chrono::DateTime::from_timestamp_millis(day_start + 86_400_000)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                Err(DomainError::Exhausted(format!(
                    "participant {:?} has used its quota of {limit} {} submission(s) per UTC day on challenge {:?}; it resets at {reset}",
                    meta.participant_id.as_str(),
                    meta.kind.as_str().to_uppercase(),
                    meta.challenge_id.as_str()
                )))
            }
            InsertOutcome::PlatformQuotaExceeded { limit } => {
                let reset = chrono::DateTime::from_timestamp_millis(day_start + 86_400_000)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                Err(DomainError::Exhausted(format!(
                    "this platform has used its quota of {limit} FULL submission(s) per UTC day on challenge {:?}, all its participants together; it resets at {reset}",
                    meta.challenge_id.as_str()
                )))
            }
            InsertOutcome::QueueFull { max_queued } => Err(DomainError::Exhausted(format!(
                "the service's queue is full ({max_queued} submissions waiting); try again later"
            ))),
        }
    }
}
