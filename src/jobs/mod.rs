//! Maintenance jobs an admin runs over a challenge: rescoring every kept FULL prediction
//! against the challenge's current labels, or under another built-in metric ([`rescore`]);
//! and running stored archives again against new data or in a new image ([`rerun`]).
//!
//! A job is a row of the store (see `crate::domain::Job`): any replica reads its progress
//! and cancels it; the process that started it does the work, in a task owned by this
//! service (stopped with the application, through its shutdown token, and waited for). The
//! work computes everything first and writes nothing; its result is committed in ONE
//! transaction at the end (the changed scores, their audit, a changed metric, the leakage
//! ledger), and only if the job is still RUNNING then. So a leaderboard is never
//! half-updated, and a cancel, a failure or a shutdown before the commit leaves everything as
//! it was.
//!
//! Neither kind charges a quota: a rescoring reads kept predictions and labels on the host;
//! a re-run's submissions belong to the job, not to a platform.

mod progress;
mod rerun;
mod rescore;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::auth::Caller;
use crate::domain::{
    ChallengeId, DomainError, JOB_ABANDONED_MESSAGE, Job, JobId, JobKind, JobState,
    LeaderboardMode, ScoreChange, Submission, SubmissionId, SubmissionKind, Verdict,
    is_rerun_owner, now_millis,
};
use crate::predictions::KeptPredictions;
use crate::run::plan::{HostSettings, scoring_spec};
use crate::scoring::Metric;
use crate::store::Store;
use crate::submissions::Submissions;

/// Which submissions a re-run job runs again: FULL ones that ended SUCCEEDED or FAILED by
/// their code, of these participants and/or with these ids (both empty = all of them).
#[derive(Debug, Clone, Default)]
pub struct RerunFilter {
    /// Only these participants' submissions.
    pub participants: Vec<String>,
    /// Only these submissions.
    pub submissions: Vec<SubmissionId>,
}

impl RerunFilter {
    fn selects(&self, s: &Submission) -> bool {
        let finished_by_code = s.kind == SubmissionKind::Full
            && (s.verdict == Verdict::Scored || s.verdict.is_participant_failure())
            && !is_rerun_owner(&s.owner);
        finished_by_code
            && (self.participants.is_empty()
                || self
                    .participants
                    .iter()
                    .any(|p| p == s.participant_id.as_str()))
            && (self.submissions.is_empty() || self.submissions.contains(&s.id))
    }
}

/// How often a watcher reads the job's row (it may run on another replica).
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// The jobs service; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    /// Re-runs are cancelled through the submissions service (here or on a worker).
    submissions: Submissions,
    host: HostSettings,
    kept: KeptPredictions,
    /// A pause between two items of a job: throttles a large rescoring on a busy host (and
    /// lets tests watch a job mid-way). Zero by default.
    pause: Duration,
    /// Fired when the application stops: running jobs end FAILED, having written nothing.
    shutdown: CancellationToken,
    /// Every job task, so shutdown can wait for them.
    tasks: TaskTracker,
}

impl Jobs {
    /// The service over `store`; jobs stop when `shutdown` fires.
    pub fn new(
        store: Store,
        submissions: Submissions,
        host: HostSettings,
        pause: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            kept: KeptPredictions::new(store.clone()),
            submissions,
            store,
            host,
            pause,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// Waits for every job task to end (call after the shutdown token fired).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// RescoreChallenge (admin): starts a job that recomputes the public and private scores
    /// of every scored FULL submission of the challenge from its kept predictions, with the
    /// challenge's current labels and built-in metric, or with `metric` (which then becomes
    /// the challenge's metric, in the same commit).
    ///
    /// Refused (FAILED_PRECONDITION) for a custom scorer: rescoring would run the
    /// organiser's scorer container once per kept prediction, a re-run in all but name, and
    /// is left to a re-run of the submissions. Refused too under the parameter-free ladder,
    /// whose per-row losses would have to be swapped in the same commit.
    pub async fn rescore(
        &self,
        caller: &Caller,
        challenge_id: &ChallengeId,
        metric: Option<Metric>,
    ) -> Result<Job, DomainError> {
        caller.require_admin("RescoreChallenge")?;
        let mut challenge = self
            .store
            .get_challenge(challenge_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {challenge_id}")))?;
        let scoring_was = challenge.scoring.clone();
        let Some(builtin) = challenge.scoring.builtin.as_mut() else {
            return Err(DomainError::precondition(
                "scoring",
                "the challenge uses a custom scorer; rescoring covers built-in metrics only \
                 (re-run the submissions instead)",
            ));
        };
        if challenge.release.mode == LeaderboardMode::LadderParameterFree {
            return Err(DomainError::precondition(
                "release.mode",
                "rescoring is not available under the parameter-free ladder (its per-row \
                 losses cannot be swapped with the scores)",
            ));
        }
        let metric_changed = metric.is_some_and(|m| m != builtin.metric);
        if let Some(m) = metric {
            builtin.metric = m;
        }
        let spec = scoring_spec(
            &challenge,
            crate::domain::SubmissionKind::Full,
            self.host.limits(&challenge).output_bytes.0,
        )
        .map_err(|e| DomainError::invalid("metric", crate::domain::error_chain(&e).to_string()))?;
        let job = Job::start(
            challenge_id.clone(),
            JobKind::Rescore,
            caller.name.clone(),
            now_millis(),
        );
        self.insert(job.clone()).await?;
        info!(job_id = %job.id, challenge_id = %challenge_id, metric_changed, "rescoring started");
        let work = rescore::Rescore {
            progress: progress::Progress::new(self.store.clone(), job.id.clone()),
            store: self.store.clone(),
            kept: self.kept.clone(),
            host: self.host.clone(),
            pause: self.pause,
            job: job.clone(),
            challenge,
            metric_changed,
            scoring_was,
            spec,
        };
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(work.run(shutdown));
        Ok(job)
    }

    /// RerunSubmissions (admin): starts a job that runs the selected submissions' stored
    /// archives again with the challenge as it is now (its data, its runtime image), then
    /// swaps their results in, all at once (see [`rerun`]). Works for built-in and custom
    /// scorers alike (a re-run is scored like any run); refused under the parameter-free
    /// ladder, like rescoring.
    pub async fn rerun(
        &self,
        caller: &Caller,
        challenge_id: &ChallengeId,
        filter: RerunFilter,
    ) -> Result<Job, DomainError> {
        caller.require_admin("RerunSubmissions")?;
        let challenge = self
            .store
            .get_challenge(challenge_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {challenge_id}")))?;
        if challenge.release.mode == LeaderboardMode::LadderParameterFree {
            return Err(DomainError::precondition(
                "release.mode",
                "re-running is not available under the parameter-free ladder (its per-row \
                 losses cannot be swapped with the results)",
            ));
        }
        let mut originals = Vec::new();
        let mut before = 0;
        loop {
            let page = self
                .store
                .list_submissions(challenge_id.clone(), None, None, before, 500)
                .await?;
            let Some((last, _)) = page.last() else { break };
            before = *last;
            originals.extend(
                page.into_iter()
                    .map(|(_, s)| s)
                    .filter(|s| filter.selects(s)),
            );
        }
        originals.reverse(); // oldest first
        let job = Job::start(
            challenge_id.clone(),
            JobKind::Rerun,
            caller.name.clone(),
            now_millis(),
        );
        self.insert(job.clone()).await?;
        info!(job_id = %job.id, challenge_id = %challenge_id, submissions = originals.len(), "re-run started");
        let work = rerun::Rerun {
            progress: progress::Progress::new(self.store.clone(), job.id.clone()),
            kept: self.kept.clone(),
            store: self.store.clone(),
            submissions: self.submissions.clone(),
            bits: crate::leakage::estimate(&challenge, &self.host.limits(&challenge))
                .bits_per_submission,
            job: job.clone(),
            challenge,
            originals,
        };
        self.tasks.spawn(work.run(self.shutdown.clone()));
        Ok(job)
    }

    /// GetJob (admin).
    pub async fn get(&self, caller: &Caller, id: &JobId) -> Result<Job, DomainError> {
        caller.require_admin("GetJob")?;
        self.load(id).await
    }

    /// ListJobs (admin): jobs newest first, optionally of one challenge, a page at a time;
    /// returns the page and the next page's token (empty at the end).
    pub async fn list(
        &self,
        caller: &Caller,
        challenge: Option<ChallengeId>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Job>, String), DomainError> {
        caller.require_admin("ListJobs")?;
        let page = crate::paging::Page::parse(page_size, page_token, 50, 500)?;
        let mut rows = self
            .store
            .list_jobs(
                challenge.map(|c| c.as_str().to_owned()),
                page.before,
                page.size + 1,
            )
            .await?;
        let next = page.finish(&mut rows);
        Ok((rows.into_iter().map(|(_, j)| j).collect(), next))
    }

    /// Stores a new RUNNING job, after ending (and clearing the re-runs of) an abandoned one
    /// of its challenge; FAILED_PRECONDITION while another job runs there.
    async fn insert(&self, job: Job) -> Result<(), DomainError> {
        let running = self
            .store
            .list_jobs(Some(job.challenge_id.as_str().to_owned()), 0, 8)
            .await?;
        for (_, j) in running.iter().filter(|(_, j)| j.state == JobState::Running) {
            self.load(&j.id).await?;
        }
        if !self.store.insert_job(job.clone()).await? {
            return Err(DomainError::precondition(
                "challenge_id",
                format!(
                    "challenge {} already has a running job; wait for it or cancel it",
                    job.challenge_id
                ),
            ));
        }
        Ok(())
    }

    /// The job as stored; one abandoned by its process (no heartbeat for
    /// `JOB_STALE_AFTER`) is ended FAILED first, so no watcher waits on it forever.
    async fn load(&self, id: &JobId) -> Result<Job, DomainError> {
        let job = self
            .store
            .get_job(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("job {id}")))?;
        let now = now_millis();
        if !job.is_abandoned(now) {
            return Ok(job);
        }
        tracing::warn!(job_id = %id, "job abandoned by its server; ending it");
        let ended = self
            .store
            .end_job(id, JobState::Failed, JOB_ABANDONED_MESSAGE.into(), now)
            .await?
            .unwrap_or(job);
        self.clear_reruns(&ended).await;
        Ok(ended)
    }

    /// A re-run job that ended before its swap leaves nothing queued: its task does this
    /// itself, but a job whose process died has no task left to.
    async fn clear_reruns(&self, job: &Job) {
        if job.kind == JobKind::Rerun && job.state != JobState::Finished {
            rerun::cancel_reruns_of(&self.store, &self.submissions, &job.id).await;
        }
    }

    /// CancelJob (admin): a RUNNING job ends CANCELLED and writes nothing (its task sees the
    /// state at its next item, or its commit finds it). A job that had ended is returned as
    /// it is. Works from any replica, and clears a job whose process died.
    pub async fn cancel(&self, caller: &Caller, id: &JobId) -> Result<Job, DomainError> {
        caller.require_admin("CancelJob")?;
        let job = self
            .store
            .end_job(
                id,
                JobState::Cancelled,
                format!("cancelled by {}; nothing was changed", caller.name),
                now_millis(),
            )
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("job {id}")))?;
        info!(job_id = %id, state = job.state.as_str(), "job cancel asked");
        self.clear_reruns(&job).await;
        Ok(job)
    }

    /// ListJobChanges (admin): what a job did to each submission, old and new scores.
    pub async fn changes(
        &self,
        caller: &Caller,
        id: &JobId,
    ) -> Result<Vec<ScoreChange>, DomainError> {
        caller.require_admin("ListJobChanges")?;
        self.load(id).await?;
        Ok(self.store.job_changes(id).await?)
    }

    /// WatchJob (admin): the job now, then at every change of its progress or state, ending
    /// after a terminal state. Reads the row (the job may run on another replica).
    pub async fn watch(
        &self,
        caller: &Caller,
        id: &JobId,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Result<Job, DomainError>>, DomainError> {
        caller.require_admin("WatchJob")?;
        let first = self.load(id).await?;
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut current = first;
            let mut last: Option<Job> = None;
            loop {
                if last.as_ref() != Some(&current) {
                    if tx.send(Ok(current.clone())).await.is_err() {
                        return;
                    }
                    last = Some(current.clone());
                }
                if current.state.is_terminal() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                }
                match this.load(&id).await {
                    Ok(j) => current = j,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}
