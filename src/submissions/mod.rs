//! Submissions as callers see them: accepting an upload ([`submit`]), reading, listing,
//! watching ([`watch`]), cancelling, and logs.
//!
//! Ownership is enforced here: a submitter only ever finds the submissions its own token
//! created; any other id is NOT_FOUND to it. What of a submission is shown is decided by
//! `crate::release`, and every value shown to a submitter is recorded by `crate::audit`.

mod selection;
mod submit;
mod watch;

use std::sync::Arc;

use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, DomainError, ParticipantId, Submission, SubmissionId, SubmissionKind,
    SubmissionState, now_millis,
};
use crate::leaderboard::Leaderboards;
use crate::paths::Paths;
use crate::queue::Queue;
use crate::release::{self, SubmissionView, ViewContext};
use crate::run::StopReason;
use crate::run::logs::{LogStore, RunLogs};
use crate::run::plan::HostSettings;
use crate::store::{QueuedRow, Store};
use crate::telemetry::Telemetry;

pub use selection::SelectionView;
pub use submit::{SubmitMeta, UploadSlots};

/// The submissions service.
#[derive(Clone)]
pub struct Submissions {
    store: Store,
    queue: Arc<Queue>,
    paths: Paths,
    logs: LogStore,
    host: HostSettings,
    max_queued: u32,
    leaderboards: Leaderboards,
    telemetry: Arc<Telemetry>,
    uploads: UploadSlots,
    upload_idle_timeout: std::time::Duration,
}

/// What [`Submissions`] is built from.
pub struct SubmissionsParts {
    /// Persistence and the change feed.
    pub store: Store,
    /// Fairness (queue positions) and the live runs (cancel).
    pub queue: Arc<Queue>,
    /// Uploads and archives.
    pub paths: Paths,
    /// Run logs.
    pub logs: LogStore,
    /// Limits and data layout.
    pub host: HostSettings,
    /// The most QUEUED submissions at once.
    pub max_queued: u32,
    /// What scored FULL runs release.
    pub leaderboards: Leaderboards,
    /// Counters.
    pub telemetry: Arc<Telemetry>,
    /// Uploads one token may have in progress.
    pub max_uploads_per_token: usize,
    /// How long an upload may send nothing.
    pub upload_idle_timeout: std::time::Duration,
}

impl Submissions {
    /// The service.
    pub fn new(p: SubmissionsParts) -> Self {
        Self {
            store: p.store,
            queue: p.queue,
            paths: p.paths,
            logs: p.logs,
            host: p.host,
            max_queued: p.max_queued,
            leaderboards: p.leaderboards,
            telemetry: p.telemetry,
            uploads: UploadSlots::new(p.max_uploads_per_token),
            upload_idle_timeout: p.upload_idle_timeout,
        }
    }

    async fn challenge(&self, id: &ChallengeId) -> Result<Challenge, DomainError> {
        self.store
            .get_challenge(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))
    }

    /// A submission the caller may see, or NOT_FOUND.
    async fn load_visible(
        &self,
        caller: &Caller,
        id: &SubmissionId,
    ) -> Result<Submission, DomainError> {
        match self.store.get_submission(id).await? {
            Some(s) if caller.is_admin() || s.owner == caller.name => Ok(s),
            _ => Err(DomainError::NotFound(format!(
                "submission {:?}",
                id.as_str()
            ))),
        }
    }

    /// The caller's view of a submission.
    async fn view(&self, caller: &Caller, s: &Submission) -> Result<SubmissionView, DomainError> {
        let challenge = self.challenge(&s.challenge_id).await?;
        let queued = if s.state == SubmissionState::Queued {
            self.store.queued().await?
        } else {
            Vec::new()
        };
        self.view_with(caller, s, &challenge, &queued).await
    }

    /// [`Self::view`] with the challenge and the queue already read, so a page of
    /// submissions reads them once rather than once per item.
    async fn view_with(
        &self,
        caller: &Caller,
        s: &Submission,
        challenge: &Challenge,
        queued: &[QueuedRow],
    ) -> Result<SubmissionView, DomainError> {
        let queue_position = if s.state == SubmissionState::Queued {
            // With a shared store, fairness is every worker's: read it from the store.
            let shared = if self.store.is_shared() {
                Some(self.store.party_starts().await?)
            } else {
                None
            };
            self.queue.position(queued, &s.id, shared.as_ref())
        } else {
            None
        };
        let released_full_scores =
            if s.kind == SubmissionKind::Full && s.state == SubmissionState::Succeeded {
                self.leaderboards.released_for(challenge, s).await?
            } else {
                Default::default()
            };
        let selected = self.is_selected(challenge, s).await?;
        let ctx = ViewContext {
            challenge,
            caller,
            now: now_millis(),
            wall_time: self.host.limits(challenge).wall_time.0,
            limits: self.host.limits(challenge),
            queue_position,
            released_full_scores,
            selected,
        };
        let v = release::submission_view(s, &ctx);
        crate::audit::submission_released(&self.store, caller, &v).await?;
        Ok(v)
    }

    /// GetSubmission.
    pub async fn get(
        &self,
        caller: &Caller,
        id: &SubmissionId,
    ) -> Result<SubmissionView, DomainError> {
        let s = self.load_visible(caller, id).await?;
        self.view(caller, &s).await
    }

    /// ListSubmissions: newest first; the page token is an opaque position.
    pub async fn list(
        &self,
        caller: &Caller,
        challenge_id: &ChallengeId,
        participant: Option<ParticipantId>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<SubmissionView>, String), DomainError> {
        let challenge = self.challenge(challenge_id).await?;
        let page = crate::paging::Page::parse(page_size, page_token, 50, 500)?;
        let owner = (!caller.is_admin()).then(|| caller.name.clone());
        let mut rows = self
            .store
            .list_submissions(
                challenge_id.clone(),
                participant.map(String::from),
                owner,
                page.before,
                page.size + 1,
            )
            .await?;
        let next = page.finish(&mut rows);
        let queued = if rows.iter().any(|(_, s)| s.state == SubmissionState::Queued) {
            self.store.queued().await?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(rows.len());
        for (_, s) in rows {
            out.push(self.view_with(caller, &s, &challenge, &queued).await?);
        }
        Ok((out, next))
    }

    /// CancelSubmission: a queued one ends at once; a running one's containers are killed
    /// and it is returned once it has ended.
    ///
    /// A FULL run under constant-time release is different: the answer must be the same
    /// whether its code had finished or not. So the cancel is committed at once, whether
    /// the run is still going (its containers are killed behind it) or has ended with a
    /// result that is still held (the result is replaced); both paths do the same work, and
    /// the view stays held (RUNNING) until the run's fixed deadline, then shows CANCELLED.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &SubmissionId,
    ) -> Result<SubmissionView, DomainError> {
        let mut changes = self.store.subscribe();
        let s = self.load_visible(caller, id).await?;
        let challenge = self.challenge(&s.challenge_id).await?;
        if s.kind == SubmissionKind::Full && challenge.release.constant_time_release {
            return self.cancel_held_alike(caller, s, &challenge).await;
        }
        match s.state {
            SubmissionState::Queued => {
                let t = s
                    .cancel(None, &challenge.quota, now_millis())
                    .map_err(DomainError::internal)?;
                if let Some(c) = self.store.commit(t).await? {
                    tracing::info!(submission_id = %id, "queued submission cancelled");
                    return self.view(caller, &c).await;
                }
            }
            SubmissionState::Running | SubmissionState::Scoring => {
                self.stop_run(id).await?;
            }
            _ => return self.view(caller, &s).await,
        }
        // Wait (bounded) for the run to record its end.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let s = self.load_visible(caller, id).await?;
            if s.state.is_terminal() {
                return self.view(caller, &s).await;
            }
            if s.state == SubmissionState::Running || s.state == SubmissionState::Scoring {
                self.queue.stop(id, StopReason::Cancelled);
            }
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep_until(deadline) => return self.view(caller, &s).await,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }

    /// Stops a live run: here if it runs here, and, with a shared store, on whichever
    /// worker runs it (it sees the request at its next lease renewal).
    async fn stop_run(&self, id: &SubmissionId) -> Result<(), DomainError> {
        if !self.queue.stop(id, StopReason::Cancelled) && self.store.is_shared() {
            self.store.request_cancel(id).await?;
        }
        Ok(())
    }

    /// The constant-time cancel of a FULL run (see [`Self::cancel`]).
    async fn cancel_held_alike(
        &self,
        caller: &Caller,
        mut s: Submission,
        challenge: &Challenge,
    ) -> Result<SubmissionView, DomainError> {
        let wall = self.host.limits(challenge).wall_time.0;
        // Two tries: the run may end between our read and our write.
        for _ in 0..2 {
            self.stop_run(&s.id).await?;
            let now = now_millis();
            let t = match s.state {
                SubmissionState::Queued | SubmissionState::Running | SubmissionState::Scoring => {
                    s.cancel(None, &challenge.quota, now)
                }
                SubmissionState::Succeeded | SubmissionState::Failed => {
                    s.cancel_held(&challenge.release, &challenge.quota, wall, now)
                }
                SubmissionState::Cancelled => break,
            };
            // Not held any more (its deadline passed): the result stands, as without the
            // policy.
            let Ok(t) = t else { break };
            match self.store.commit(t).await? {
                Some(c) => {
                    tracing::info!(submission_id = %c.id, "full run cancelled");
                    if c.started_at.is_some() {
                        let bits =
                            crate::leakage::estimate(challenge, &self.host.limits(challenge))
                                .bits_per_submission;
                        self.store.record_leakage(&c, bits, now).await?;
                    }
                    s = c;
                    break;
                }
                None => s = self.load_visible(caller, &s.id).await?,
            }
        }
        self.view(caller, &s).await
    }

    /// GetSubmissionLogs: admins any run, with a custom scorer's output appended to stderr;
    /// submitters only their own SMOKE runs, without the scorer's output. Another token's
    /// submission is PERMISSION_DENIED here (not NOT_FOUND): logs are the most sensitive
    /// thing a run leaves, and a clear refusal tells an integrator exactly which rule they
    /// hit. The id itself is random and reveals nothing.
    pub async fn logs(&self, caller: &Caller, id: &SubmissionId) -> Result<RunLogs, DomainError> {
        let s = self
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
        let mut logs = self.logs.run(id).await;
        if caller.is_admin() {
            // The organiser's scorer is the service's code: its output (why it crashed, what
            // it rejected) is for admins, after the run's own stderr.
            logs.stderr.extend(self.logs.scorer(id).await);
        }
        Ok(logs)
    }
}
