//! One re-run job: queue a hidden re-run of each selected submission (same archive, owned by
//! the job, see `crate::domain::RERUN_OWNER_PREFIX`), let the normal pipeline run them,
//! follow them until every one has ended, then swap each original's result for its
//! re-run's in one transaction, with the audit of old and new.
//!
//! A cancel (from any replica) or a shutdown before the swap cancels the re-runs still
//! queued or running, and nothing of the originals changes.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::progress::Stop;
use crate::auth::Caller;
use crate::config::Role;
use crate::domain::{
    Challenge, Job, JobId, NewSubmission, ScoreChange, Submission, SubmissionId, SubmissionKind,
    Verdict, error_chain, now_millis, rerun_owner,
};
use crate::store::{CommitOutcome, JobCommit, Store};
use crate::submissions::Submissions;

/// How often the job reads its re-runs' states (they may run on any worker).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Everything one re-run job needs.
pub(super) struct Rerun {
    pub(super) store: Store,
    pub(super) kept: crate::predictions::KeptPredictions,
    pub(super) progress: super::progress::Progress,
    pub(super) submissions: Submissions,
    pub(super) job: Job,
    pub(super) challenge: Challenge,
    /// The submissions to run again, oldest first.
    pub(super) originals: Vec<Submission>,
    /// Bits each changed result may carry.
    pub(super) bits: f64,
}

impl Rerun {
    /// Runs the job to its end; always leaves the job's row ended.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            r = self.work(&shutdown) => r,
            _ = self.progress.beat_forever() => unreachable!("the heartbeat never ends"),
        };
        if outcome.is_err() {
            self.cancel_reruns().await;
        }
        self.progress.end(outcome, "rerun").await;
    }

    async fn work(&self, shutdown: &CancellationToken) -> Result<(), Stop> {
        let total = self.originals.len() as u32;
        self.progress.step(0, total).await?;
        for o in &self.originals {
            let rerun = Submission::new(NewSubmission {
                id: SubmissionId::generate(),
                challenge_id: self.challenge.id.clone(),
                participant_id: o.participant_id.clone(),
                owner: rerun_owner(&self.job.id),
                kind: SubmissionKind::Full,
                archive_sha256: o.archive_sha256.clone(),
                created_at: now_millis(),
                idempotency_key: None,
            });
            // An original whose archive expired gets no re-run (audited as skipped).
            self.store.insert_rerun(&self.job.id, &o.id, rerun).await?;
        }
        let pairs: HashMap<SubmissionId, SubmissionId> = self
            .store
            .reruns_of(&self.job.id)
            .await?
            .into_iter()
            .collect();
        info!(job_id = %self.job.id, reruns = pairs.len(), "re-runs queued");
        let ended = loop {
            let mut ended = HashMap::new();
            for (original, rerun) in &pairs {
                if let Some(s) = self.store.get_submission(rerun).await?
                    && s.state.is_terminal()
                {
                    ended.insert(original.clone(), s);
                }
            }
            // Originals without a re-run count as done from the start.
            let done = ended.len() as u32 + (total - pairs.len() as u32);
            self.progress.step(done, total).await?;
            if ended.len() == pairs.len() {
                break ended;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        };
        self.commit(&ended).await
    }

    /// Swaps every usable re-run's result into its original, in one transaction.
    async fn commit(&self, ended: &HashMap<SubmissionId, Submission>) -> Result<(), Stop> {
        let mut changes = Vec::new();
        let mut writes = Vec::new();
        for o in &self.originals {
            let mut change = ScoreChange {
                job_id: self.job.id.clone(),
                submission_id: o.id.as_str().to_owned(),
                owner: o.owner.clone(),
                participant_id: o.participant_id.as_str().to_owned(),
                outcome: String::new(),
                old_public: o.public_scores.clone(),
                old_private: o.private_scores.clone(),
                new_public: o.public_scores.clone(),
                new_private: o.private_scores.clone(),
                at: now_millis(),
            };
            let Some(rerun) = ended.get(&o.id) else {
                change.outcome = "skipped: its archive had expired".into();
                changes.push(change);
                continue;
            };
            let unusable = !matches!(rerun.verdict, Verdict::Scored)
                && !rerun.verdict.is_participant_failure();
            if unusable {
                change.outcome = format!(
                    "skipped: the re-run {} ended {}",
                    rerun.id.as_str(),
                    rerun.verdict.as_str()
                );
                changes.push(change);
                continue;
            }
            let same = rerun.verdict == o.verdict
                && rerun.public_scores == o.public_scores
                && rerun.private_scores == o.private_scores;
            if same {
                change.outcome = "unchanged".into();
                changes.push(change);
                continue;
            }
            match o.take_rerun(rerun) {
                Ok(t) => {
                    change.outcome = format!(
                        "changed: {} -> {} (re-run {})",
                        o.verdict.as_str(),
                        rerun.verdict.as_str(),
                        rerun.id.as_str()
                    );
                    change.new_public = rerun.public_scores.clone();
                    change.new_private = rerun.private_scores.clone();
                    writes.push(t);
                }
                Err(e) => change.outcome = format!("skipped: {e}"),
            }
            changes.push(change);
        }
        let changed = changes.iter().filter(|c| c.changed()).count();
        let unchanged = changes.iter().filter(|c| c.outcome == "unchanged").count();
        let skipped = changes.len() - changed - unchanged;
        let message = format!(
            "re-ran {} submissions: {changed} changed, {unchanged} unchanged, {skipped} skipped",
            changes.len()
        );
        let swapped: Vec<(SubmissionId, SubmissionId)> = writes
            .iter()
            .filter_map(|t: &crate::domain::Transition| {
                let original = t.next().id.clone();
                ended.get(&original).map(|r| (r.id.clone(), original))
            })
            .collect();
        let commit = JobCommit {
            job: self.job.id.clone(),
            changes,
            writes,
            scoring_was: None,
            scoring: None,
            bits: self.bits,
            message,
            at: now_millis(),
        };
        match self.store.commit_job(commit).await? {
            CommitOutcome::Committed => {
                info!(job_id = %self.job.id, changed, unchanged, skipped, "re-run results swapped in");
                // The originals' kept predictions follow their new results, so a later
                // rescoring scores what the re-runs wrote. After the commit: a rescoring
                // started in the moment between would still read the old ones.
                for (rerun, original) in &swapped {
                    if let Err(e) = self.kept.copy(rerun, original).await {
                        warn!(submission_id = %original, error = %error_chain(&e), "cannot keep a re-run's predictions for its original");
                    }
                }
                Ok(())
            }
            CommitOutcome::NotRunning => Err(Stop::NotRunning),
            CommitOutcome::Conflict => Err(Stop::Failed(
                "a submission changed while the job ran; run the job again".into(),
            )),
        }
    }

    /// Cancels the job's re-runs still queued or running (their results are not wanted).
    async fn cancel_reruns(&self) {
        cancel_reruns_of(&self.store, &self.submissions, &self.job.id).await;
    }
}

/// Cancels the re-runs of job `id` still queued or running. Idempotent: used by the job's
/// own task when it stops before the swap, and by any replica that ends a re-run job whose
/// process is gone (a cancel, or an abandonment), so no hidden re-run is left to run for
/// nothing.
pub(super) async fn cancel_reruns_of(store: &Store, submissions: &Submissions, id: &JobId) {
    let Ok(pairs) = store.reruns_of(id).await else {
        return;
    };
    let admin = Caller {
        name: format!("job {id}"),
        role: Role::Admin,
    };
    let cancels = pairs.iter().map(|(_, rerun)| {
        let admin = admin.clone();
        async move {
            if let Ok(Some(s)) = store.get_submission(rerun).await
                && !s.state.is_terminal()
                && let Err(e) = submissions.cancel(&admin, rerun).await
            {
                warn!(submission_id = %rerun, error = %e, "cannot cancel a re-run");
            }
        }
    });
    futures::future::join_all(cancels).await;
}
