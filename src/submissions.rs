//! Submissions as callers see them: accepting an upload (streamed to disk under its cap,
//! checked, stored content-addressed, admitted atomically against quota, idempotency key and
//! queue capacity), reading, listing, watching, cancelling, and logs.
//!
//! Ownership is enforced here: a submitter only ever finds the submissions its own token
//! created; any other id is NOT_FOUND to it. What of a submission is shown is decided by
//! `crate::release`.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::archive::{self, ArchiveFormat, ArchiveLimits};
use crate::auth::Caller;
use crate::core::Core;
use crate::domain::{
    ChallengeId, ChallengeState, DomainError, ParticipantId, Submission, SubmissionId,
    SubmissionKind, SubmissionState, Verdict, now_millis,
};
use crate::pb;
use crate::queue::StopReason;
use crate::release::{self, ViewContext};
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

/// Accepts one submission. `chunks` is the archive as the client streams it.
pub async fn submit<S>(
    core: &Arc<Core>,
    caller: &Caller,
    meta: SubmitMeta,
    mut chunks: S,
) -> Result<pb::Submission, DomainError>
where
    S: Stream<Item = Result<Bytes, DomainError>> + Unpin,
{
    let challenge = crate::challenges::get(core, &meta.challenge_id).await?;
    // A retry of an accepted submission gets it back, even if the challenge closed since.
    if let Some(key) = &meta.idempotency_key
        && let Some(existing) = find_by_key(core, caller, key).await?
    {
        return view(core, caller, &existing).await;
    }
    if challenge.state == ChallengeState::Closed {
        return Err(DomainError::precondition(
            "challenge_id",
            format!("challenge {:?} is closed", challenge.id.as_str()),
        ));
    }
    if meta.kind == SubmissionKind::Smoke {
        let dir = crate::runner::data_dir(core, &challenge).join("sample");
        if !dir.join("inputs").is_dir() || !dir.join("labels.csv").is_file() {
            return Err(DomainError::precondition(
                "kind",
                "this challenge has no public sample for SMOKE runs",
            ));
        }
    }
    let limits = challenge.limits.or_defaults(&core.config.defaults);

    // Stream the upload to a temporary file under the cap; it is deleted on every early return.
    let tmp =
        tempfile::NamedTempFile::new_in(core.paths.uploads()).map_err(DomainError::internal)?;
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
    let archive_limits = ArchiveLimits {
        max_extracted_bytes: limits.extracted_bytes.0,
        ..ArchiveLimits::default()
    };
    let format = meta.format;
    let stored = core.paths.archive(&sha256);
    tokio::task::spawn_blocking(move || -> Result<(), DomainError> {
        archive::validate(tmp.path(), format, &archive_limits)
            .map_err(|e| DomainError::invalid("archive", e.to_string()))?;
        if !stored.exists() {
            tmp.as_file().sync_all().map_err(DomainError::internal)?;
            tmp.persist(&stored).map_err(DomainError::internal)?;
        }
        Ok(())
    })
    .await
    .map_err(DomainError::internal)??;

    let s = Submission {
        id: SubmissionId::generate(),
        challenge_id: meta.challenge_id.clone(),
        participant_id: meta.participant_id.clone(),
        owner: caller.name.clone(),
        kind: meta.kind,
        state: SubmissionState::Queued,
        verdict: Verdict::Unspecified,
        message: String::new(),
        detail: String::new(),
        public_scores: Default::default(),
        private_scores: Default::default(),
        archive_sha256: sha256,
        created_at: now_millis(),
        started_at: None,
        finished_at: None,
        usage: None,
        attempts: 0,
        idempotency_key: meta.idempotency_key.clone(),
        charged: true,
    };
    let day_start = day_start(s.created_at);
    let quota = match meta.kind {
        SubmissionKind::Full => challenge.quota.full_per_day,
        SubmissionKind::Smoke => challenge.quota.smoke_per_day,
    };
    let admission = Admission {
        quota,
        count_failed: challenge.quota.count_failed,
        day_start,
        max_queued: core.config.max_queued,
    };
    match core.store.insert_submission(s, admission).await? {
        InsertOutcome::Inserted(s) => {
            tracing::info!(submission_id = %s.id, challenge_id = %s.challenge_id, kind = s.kind.as_str(), "submission queued");
            core.announce(&s);
            core.queue.wake();
            core.metrics.accepted();
            view(core, caller, &s).await
        }
        InsertOutcome::Existing(s) => view(core, caller, &s).await,
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
        InsertOutcome::QueueFull { max_queued } => Err(DomainError::Exhausted(format!(
            "the service's queue is full ({max_queued} submissions waiting); try again later"
        ))),
    }
}

/// Start of the UTC day containing `t`.
fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(86_400_000)
}

/// The caller's earlier submission with this idempotency key. The insert checks the key again
/// atomically; this early look only spares re-reading an upload that is already stored.
async fn find_by_key(
    core: &Core,
    caller: &Caller,
    key: &str,
) -> Result<Option<Submission>, DomainError> {
    Ok(core
        .store
        .find_by_key(caller.name.clone(), key.to_owned())
        .await?)
}

/// A submission the caller may see, or NOT_FOUND.
pub async fn load_visible(
    core: &Core,
    caller: &Caller,
    id: &SubmissionId,
) -> Result<Submission, DomainError> {
    match core.store.get_submission(id).await? {
        Some(s) if caller.is_admin() || s.owner == caller.name => Ok(s),
        _ => Err(DomainError::NotFound(format!(
            "submission {:?}",
            id.as_str()
        ))),
    }
}

/// The caller's view of a submission.
pub async fn view(
    core: &Core,
    caller: &Caller,
    s: &Submission,
) -> Result<pb::Submission, DomainError> {
    let challenge = crate::challenges::get(core, &s.challenge_id).await?;
    let queued = if s.state == SubmissionState::Queued {
        core.store.queued().await?
    } else {
        Vec::new()
    };
    view_with(core, caller, s, &challenge, &queued).await
}

/// [`view`] with the challenge and the queue already read, so a page of submissions reads
/// them once rather than once per item.
async fn view_with(
    core: &Core,
    caller: &Caller,
    s: &Submission,
    challenge: &crate::domain::Challenge,
    queued: &[crate::store::QueuedRow],
) -> Result<pb::Submission, DomainError> {
    let queue_position = if s.state == SubmissionState::Queued {
        core.queue.position(queued, &s.id)
    } else {
        None
    };
    let released_full_scores =
        if s.kind == SubmissionKind::Full && s.state == SubmissionState::Succeeded {
            // Only a ladder needs the participant's history to know what this run releases.
            let history = if challenge.release.mode == crate::domain::LeaderboardMode::BestSoFar {
                Vec::new()
            } else {
                core.store.scored_full(s.challenge_id.clone()).await?
            };
            crate::leaderboard::released_full_scores(&challenge, &history, s, &|h| {
                core.losses.get(&h.id)
            })
        } else {
            Default::default()
        };
    let limits = challenge.limits.or_defaults(&core.config.defaults);
    let ctx = ViewContext {
        challenge: &challenge,
        caller,
        now: now_millis(),
        wall_time_ms: limits.wall_time.0.as_millis() as i64,
        queue_position,
        released_full_scores,
    };
    let v = release::submission_view(s, &ctx);
    crate::audit::submission_released(core, caller, &v).await?;
    Ok(v)
}

/// GetSubmission.
pub async fn get(
    core: &Core,
    caller: &Caller,
    id: &SubmissionId,
) -> Result<pb::Submission, DomainError> {
    let s = load_visible(core, caller, id).await?;
    view(core, caller, &s).await
}

/// ListSubmissions: newest first; the page token is an opaque position.
pub async fn list(
    core: &Core,
    caller: &Caller,
    challenge_id: &ChallengeId,
    participant: Option<String>,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<pb::Submission>, String), DomainError> {
    let challenge = crate::challenges::get(core, challenge_id).await?;
    let page = crate::paging::Page::parse(page_size, page_token, 50, 500)?;
    let owner = (!caller.is_admin()).then(|| caller.name.clone());
    let mut rows = core
        .store
        .list_submissions(
            challenge_id.clone(),
            participant,
            owner,
            page.before,
            page.size + 1,
        )
        .await?;
    let next = page.finish(&mut rows);
    let queued = if rows.iter().any(|(_, s)| s.state == SubmissionState::Queued) {
        core.store.queued().await?
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(rows.len());
    for (_, s) in rows {
        out.push(view_with(core, caller, &s, &challenge, &queued).await?);
    }
    Ok((out, next))
}

/// CancelSubmission: a queued one ends at once; a running one's container is killed and it
/// is returned once it has ended.
pub async fn cancel(
    core: &Arc<Core>,
    caller: &Caller,
    id: &SubmissionId,
) -> Result<pb::Submission, DomainError> {
    let mut events = core.subscribe();
    let s = load_visible(core, caller, id).await?;
    match s.state {
        SubmissionState::Queued => {
            let mut c = s.clone();
            c.state = SubmissionState::Cancelled;
            c.verdict = Verdict::Cancelled;
            c.message = "the submission was cancelled".into();
            c.finished_at = Some(now_millis());
            c.charged = false;
            if core
                .store
                .update_submission(c.clone(), SubmissionState::Queued)
                .await?
            {
                tracing::info!(submission_id = %id, "queued submission cancelled");
                core.announce(&c);
                return view(core, caller, &c).await;
            }
        }
        SubmissionState::Running | SubmissionState::Scoring => {
            core.queue.stop(id, StopReason::Cancelled);
        }
        _ => return view(core, caller, &s).await,
    }
    // Wait (bounded) for the run to record its end.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = load_visible(core, caller, id).await?;
        if s.state.is_terminal() {
            return view(core, caller, &s).await;
        }
        if s.state == SubmissionState::Running || s.state == SubmissionState::Scoring {
            core.queue.stop(id, StopReason::Cancelled);
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = tokio::time::sleep_until(deadline) => return view(core, caller, &s).await,
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}

/// WatchSubmission: the current view, then each change, ending after a terminal state the
/// caller may see. Changes arrive as committed snapshots, so a quick RUNNING → SCORING →
/// SUCCEEDED is sent as three updates, not coalesced. The feeding task ends when the client
/// goes away or the service stops.
pub async fn watch(
    core: &Arc<Core>,
    caller: &Caller,
    id: &SubmissionId,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<Result<pb::Submission, DomainError>>, DomainError> {
    use tokio::sync::broadcast::error::RecvError;
    // Subscribe before reading, so no change between the read and the first event is missed.
    let mut events = core.subscribe();
    let mut current = load_visible(core, caller, id).await?;
    let (tx, rx) = mpsc::channel(16);
    let core = core.clone();
    let caller = caller.clone();
    let id = id.clone();
    tokio::spawn(async move {
        let mut last: Option<pb::Submission> = None;
        let mut dirty = true;
        loop {
            if dirty {
                let v = match view(&core, &caller, &current).await {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let terminal = matches!(
                    pb::SubmissionState::try_from(v.state),
                    Ok(pb::SubmissionState::Succeeded
                        | pb::SubmissionState::Failed
                        | pb::SubmissionState::Cancelled)
                );
                if last.as_ref() != Some(&v) {
                    if tx.send(Ok(v.clone())).await.is_err() {
                        return;
                    }
                    last = Some(v);
                }
                if terminal {
                    return;
                }
                dirty = false;
            }
            // A held terminal state (constant-time release) ends on a timer, not an event;
            // a queued one's position moves with everyone else's changes.
            let held = current.state.is_terminal();
            let queued = current.state == SubmissionState::Queued;
            let tick = std::time::Duration::from_millis(if held { 100 } else { 5_000 });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(tick) => dirty = true,
                ev = events.recv() => match ev {
                    Ok(snapshot) if snapshot.id == id => {
                        current = (*snapshot).clone();
                        dirty = true;
                        continue;
                    }
                    Ok(_) if !queued => continue,
                    Ok(_) => dirty = true,
                    Err(RecvError::Lagged(_)) => dirty = true,
                    Err(RecvError::Closed) => return,
                },
            }
            // A timer tick, a lag or a queue move: read the latest committed state.
            match load_visible(&core, &caller, &id).await {
                Ok(s) => current = s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// GetSubmissionLogs: admins any run, with a custom scorer's output appended to stderr;
/// submitters only their own SMOKE runs, without the scorer's output. Another token's
/// submission is PERMISSION_DENIED here (not NOT_FOUND): logs are the most sensitive thing a
/// run leaves, and a clear refusal tells an integrator exactly which rule they hit. The id
/// itself is random and reveals nothing.
pub async fn logs(
    core: &Core,
    caller: &Caller,
    id: &SubmissionId,
) -> Result<(Vec<u8>, Vec<u8>, bool), DomainError> {
    let s = core
        .store
        .get_submission(id)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("submission {:?}", id.as_str())))?;
    if !caller.is_admin() {
        if s.owner != caller.name {
            return Err(DomainError::PermissionDenied(
                "the logs of a submission another token created are not readable".into(),
            ));
        }
        if s.kind == SubmissionKind::Full {
            return Err(DomainError::PermissionDenied(
                "the output of a FULL run may carry private data and is readable by admins only; use a SMOKE run to see logs".into(),
            ));
        }
    }
    let (stdout, mut stderr, truncated) = crate::runner::read_logs(core, id).await;
    if caller.is_admin() {
        // The organiser's scorer is the service's code: its output (why it crashed, what it
        // rejected) is for admins, after the run's own stderr.
        stderr.extend(crate::runner::read_scorer_logs(core, id).await);
    }
    Ok((stdout, stderr, truncated))
}
