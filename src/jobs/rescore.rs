//! One rescoring job: read the labels once, score each scored FULL submission's kept
//! predictions against them (off the runtime), stage every result, then commit them all in
//! one transaction. Every submission looked at gets an audit entry: changed, unchanged, or
//! skipped with the reason (its scores then stay as they were).
//!
//! Stops between items when the job's row is no longer RUNNING (a cancel from any replica)
//! or the application shuts down; in both cases nothing was written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::progress::Stop;
use crate::domain::{
    Challenge, Job, ScoreChange, Scoring, Submission, SubmissionKind, Transition, error_chain,
    now_millis,
};
use crate::predictions::{Kept, KeptPredictions};
use crate::run::plan::{DataLayout, HostSettings};
use crate::scoring::{LabelSet, ScoringSpec, load_labels, score_reader};
use crate::store::{CommitOutcome, JobCommit, Store};

/// Everything one rescoring job needs.
pub(super) struct Rescore {
    pub(super) store: Store,
    pub(super) progress: super::progress::Progress,
    pub(super) kept: KeptPredictions,
    pub(super) host: HostSettings,
    pub(super) pause: Duration,
    pub(super) job: Job,
    /// The challenge as it will be after the job (with the new metric, if one was asked).
    pub(super) challenge: Challenge,
    /// Whether the job changes the challenge's metric (written in the same commit).
    pub(super) metric_changed: bool,
    /// The challenge's scoring when the job started: the commit is refused if an
    /// UpdateChallenge changed it meanwhile (the staged scores would be of another scoring).
    pub(super) scoring_was: Scoring,
    /// How its FULL runs are scored now.
    pub(super) spec: ScoringSpec,
}

/// What the staging of one submission found.
struct Staged {
    change: ScoreChange,
    write: Option<Transition>,
}

impl Rescore {
    /// Runs the job to its end; never panics the caller, always leaves the job's row ended.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            r = self.work(&shutdown) => r,
            _ = self.progress.beat_forever() => unreachable!("the heartbeat never ends"),
        };
        self.progress.end(outcome, "rescore").await;
    }

    async fn work(&self, shutdown: &CancellationToken) -> Result<(), Stop> {
        let subs = self.store.scored_full(self.challenge.id.clone()).await?;
        let total = subs.len() as u32;
        self.progress.step(0, total).await?;
        let labels = self.labels().await?;
        let mut staged = Vec::with_capacity(subs.len());
        for (i, s) in subs.iter().enumerate() {
            if shutdown.is_cancelled() {
                return Err(Stop::Shutdown);
            }
            staged.push(self.stage(s, &labels).await?);
            self.progress.step(i as u32 + 1, total).await?;
            if !self.pause.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                    _ = tokio::time::sleep(self.pause) => {}
                }
            }
        }
        self.commit(staged).await
    }

    /// Records progress; stops when the row says the job is no longer RUNNING.
    /// The challenge's FULL labels as they are on disk now (read anew, not from the run
    /// cache: a fixed file is the point).
    async fn labels(&self) -> Result<Arc<LabelSet>, Stop> {
        let path =
            DataLayout::of(&self.host.data_root, &self.challenge).labels(SubmissionKind::Full);
        let spec = self
            .spec
            .label_spec()
            .map_err(|e| Stop::Failed(format!("scoring spec: {}", error_chain(&e))))?;
        tokio::task::spawn_blocking(move || load_labels(&path, &spec))
            .await
            .map_err(|e| Stop::Failed(format!("reading the labels: {e}")))?
            .map(Arc::new)
            .map_err(|e| Stop::Failed(format!("labels: {}", error_chain(&e))))
    }

    /// Scores one submission's kept predictions; stages the change, or a skip.
    async fn stage(&self, s: &Submission, labels: &Arc<LabelSet>) -> Result<Staged, Stop> {
        let scored = match self.kept.get(&s.id).await? {
            Kept::Gzip(bytes) => {
                let labels = labels.clone();
                let spec = self.spec.clone();
                tokio::task::spawn_blocking(move || {
                    score_reader(&labels, Kept::reader(&bytes), &spec)
                        .map(|r| (r.public, r.private))
                        .map_err(|e| format!("skipped: its kept predictions do not score: {e}"))
                })
                .await
                .map_err(|e| Stop::Failed(format!("scoring task failed: {e}")))?
            }
            Kept::NotKept(why) => Err(format!("skipped: predictions not kept ({why})")),
            Kept::Missing => Err(
                "skipped: no kept predictions (expired, or scored before they were kept)".into(),
            ),
        };
        let mut change = ScoreChange {
            job_id: self.job.id.clone(),
            submission_id: s.id.as_str().to_owned(),
            owner: s.owner.clone(),
            participant_id: s.participant_id.as_str().to_owned(),
            outcome: String::new(),
            old_public: s.public_scores.clone(),
            old_private: s.private_scores.clone(),
            new_public: s.public_scores.clone(),
            new_private: s.private_scores.clone(),
            at: now_millis(),
        };
        let (public, private): (BTreeMap<_, _>, BTreeMap<_, _>) = match scored {
            Ok(p) => p,
            Err(outcome) => {
                change.outcome = outcome;
                return Ok(Staged {
                    change,
                    write: None,
                });
            }
        };
        if public == s.public_scores && private == s.private_scores {
            change.outcome = "unchanged".into();
            return Ok(Staged {
                change,
                write: None,
            });
        }
        let write = match s.rescore(public.clone(), private.clone()) {
            Ok(t) => t,
            Err(e) => {
                change.outcome = format!("skipped: {e}");
                return Ok(Staged {
                    change,
                    write: None,
                });
            }
        };
        change.outcome = "changed".into();
        change.new_public = public;
        change.new_private = private;
        Ok(Staged {
            change,
            write: Some(write),
        })
    }

    /// Commits everything staged in one transaction.
    async fn commit(&self, staged: Vec<Staged>) -> Result<(), Stop> {
        let changed = staged.iter().filter(|s| s.change.changed()).count();
        let unchanged = staged
            .iter()
            .filter(|s| s.change.outcome == "unchanged")
            .count();
        let skipped = staged.len() - changed - unchanged;
        let message = format!(
            "rescored {} submissions: {changed} changed, {unchanged} unchanged, {skipped} skipped{}",
            staged.len(),
            if self.metric_changed {
                "; the challenge's metric changed"
            } else {
                ""
            }
        );
        let bits = crate::leakage::estimate(&self.challenge, &self.host.limits(&self.challenge))
            .bits_per_submission;
        let (changes, writes): (Vec<_>, Vec<_>) =
            staged.into_iter().map(|s| (s.change, s.write)).unzip();
        let commit = JobCommit {
            job: self.job.id.clone(),
            changes,
            writes: writes.into_iter().flatten().collect(),
            scoring_was: Some(self.scoring_was.clone()),
            scoring: self.metric_changed.then(|| self.challenge.scoring.clone()),
            bits,
            message: message.clone(),
            at: now_millis(),
        };
        match self.store.commit_job(commit).await? {
            CommitOutcome::Committed => {
                info!(job_id = %self.job.id, changed, unchanged, skipped, "rescoring committed");
                Ok(())
            }
            CommitOutcome::NotRunning => Err(Stop::NotRunning),
            CommitOutcome::Conflict => Err(Stop::Failed(
                "a submission or the challenge's scoring changed while the job ran; run the job again".into(),
            )),
        }
    }
}
