//! The run pipeline: one submission from QUEUED to a terminal state (or back to the queue).
//!
//! ```text
//!  execute ─▶ start ─▶ plan ─▶ workdir ─▶ sandbox ─▶ verdict::classify ─┬─▶ fail / cancel
//!                                                                       └─▶ begin_scoring
//!                        builtin::score | custom::score ─▶ score / reject / requeue / fail_internal
//! ```
//!
//! This module owns the run's states and nothing else: every change is a transition of the
//! domain's state machine, committed (and published) by the store. What a run gets is
//! decided purely in [`plan`]; where its files live in [`workdir`] and [`logs`]; how its
//! predictions are scored in [`builtin`] and [`custom`]. The verdict comes from the one
//! classifier, `crate::verdict`. [`Runner::execute`] tells its caller how the run ended
//! ([`RunEnd`]); it never reaches into the scheduler that called it.

pub mod builtin;
pub mod custom;
mod ending;
pub mod local;
pub mod logs;
pub mod plan;
pub mod workdir;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::domain::{
    Interruption, Submission, SubmissionId, SubmissionKind, SubmissionState, Transition,
    UnixMillis, Verdict, error_chain, now_millis,
};
use crate::losses::LossStore;
use crate::paths::Paths;
use crate::predictions::KeptPredictions;
use crate::sandbox::Backend;
use crate::scoring::LabelsCache;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;
use crate::verdict;

use self::logs::LogStore;
use self::plan::{HostSettings, PlanError, RunPlan, ScoringPlan};
use self::workdir::{WorkDir, WorkDirError};

/// Why a live run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A caller cancelled the submission: it ends CANCELLED.
    Cancelled,
    /// The service is shutting down: the submission goes back to the queue.
    Shutdown,
    /// This execution worker lost its lease on the run (it was cut off from the database,
    /// or the run was handed to another worker): stop, and write nothing that counts (the
    /// store refuses the write without the lease).
    LeaseLost,
}

/// The stop handle of one live run, held by whoever may stop it.
#[derive(Debug, Default)]
pub struct RunControl {
    /// Fired to kill the run's containers.
    pub token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl RunControl {
    /// Stops the run for `reason`; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap().get_or_insert(reason);
        self.token.cancel();
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap()
    }
}

/// How a run handed its submission back.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The submission reached a terminal state (or someone else, a cancel, moved it on).
    Finished {
        /// Under constant-time release, the run keeps its slot until its result may be
        /// shown, so that no other submission's start reveals when it ended.
        hold_slot_until: Option<UnixMillis>,
    },
    /// The engine failed under the run. Nothing is committed yet: the caller first pauses
    /// new runs (so none starts on a failed engine), then hands the submission back with
    /// [`Runner::hand_back`] and [`Interruption::Engine`].
    EngineFailed {
        /// The submission as the run left it (RUNNING or SCORING).
        submission: Box<Submission>,
        /// The engine's error, for admins.
        detail: String,
    },
    /// The run was handed back to the queue (shutdown, a transient failure of the service).
    Requeued,
}

/// A finished run before its slot deadline is known.
const FINISHED: RunEnd = RunEnd::Finished {
    hold_slot_until: None,
};

/// How scoring a run's predictions ended (built-in or custom).
#[derive(Debug)]
pub(crate) enum ScoringEnd {
    /// Exact scores: public (or sample) and private.
    Scored {
        /// Public split, or the sample for SMOKE runs.
        public: BTreeMap<String, f64>,
        /// Private split (empty for SMOKE runs).
        private: BTreeMap<String, f64>,
    },
    /// INVALID_PREDICTIONS: `message` for the participant, `detail` for admins.
    Rejected {
        /// What the submitter may read.
        message: String,
        /// What admins read.
        detail: String,
    },
    /// The service's scoring is broken for this run: INTERNAL_ERROR, not retried.
    Broken(String),
    /// A transient failure of the service: run it again (or give up after the attempts).
    Retry(Interruption),
    /// The engine failed under a custom scorer.
    EngineFailed(String),
    /// The run's token fired (a cancel or a shutdown) during scoring.
    Stopped,
}

/// A failure inside the service while running a submission.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("store")]
    Store(#[from] StoreError),
    #[error("the challenge of a queued submission vanished")]
    ChallengeGone,
    #[error("planning the run")]
    Plan(#[from] PlanError),
    #[error("work folder")]
    WorkDir(#[from] WorkDirError),
    #[error("illegal transition")]
    Transition(#[from] crate::domain::IllegalTransition),
}

/// Everything a run needs, built once by the application and shared by every run.
pub struct Runner {
    /// Persistence and the change feed.
    pub store: Store,
    /// Container engine.
    pub engine: Arc<dyn Backend>,
    /// Files under `state_dir`.
    pub paths: Paths,
    /// Labels parsed once per file.
    pub labels: Arc<LabelsCache>,
    /// Per-row public losses (parameter-free ladder).
    pub losses: Arc<LossStore>,
    /// Kept predictions of scored FULL runs (rescoring).
    pub kept: KeptPredictions,
    /// Run and scorer output.
    pub logs: LogStore,
    /// What planning needs from the server.
    pub host: HostSettings,
    /// Attempts before an interrupted run fails as INTERNAL_ERROR.
    pub max_attempts: u32,
    /// Counters.
    pub telemetry: Arc<Telemetry>,
}

impl Runner {
    /// Runs one queued submission to a terminal state, or back to the queue.
    pub async fn execute(&self, id: &SubmissionId, control: &RunControl) -> RunEnd {
        let end = match self.try_execute(id, control).await {
            Ok(end) => end,
            Err(e) => {
                let detail = error_chain(&e);
                error!(error = %detail, "run failed inside the service");
                self.abandon(id, &detail).await;
                FINISHED
            }
        };
        match end {
            RunEnd::Finished { .. } => RunEnd::Finished {
                hold_slot_until: self.slot_deadline(id).await,
            },
            other => other,
        }
    }

    /// When an ended run may free its slot (constant-time release), read from what was
    /// committed (by the run, or by a cancel).
    async fn slot_deadline(&self, id: &SubmissionId) -> Option<UnixMillis> {
        let s = self.store.get_submission(id).await.ok()??;
        let c = self.store.get_challenge(&s.challenge_id).await.ok()??;
        c.release.deadline_of(&s, self.host.limits(&c).wall_time.0)
    }

    /// Fails a non-terminal submission as INTERNAL_ERROR, uncharged, keeping `detail` for
    /// admins. For a run that died inside the service (an error, a panicked task).
    pub async fn abandon(&self, id: &SubmissionId, detail: &str) {
        let Ok(Some(s)) = self.store.get_submission(id).await else {
            return;
        };
        let Ok(t) = s.fail_internal(detail.to_owned(), now_millis()) else {
            return; // already terminal
        };
        if let Err(e) = self.commit(t, None).await {
            error!(submission_id = %id, error = %error_chain(&e), "cannot record internal error");
        }
    }

    /// Commits a transition; counts a terminal one, and records a FULL result in the
    /// leakage ledger at `bits` (when given). `None` when the row moved on (a cancel).
    async fn commit(
        &self,
        t: Transition,
        bits: Option<f64>,
    ) -> Result<Option<Submission>, StoreError> {
        let to = t.next().state;
        let committed = self.store.commit(t).await?;
        if committed.is_none() {
            // Cancelled meanwhile, or (an execution worker) the lease on the run was lost
            // and another worker may have it: this attempt's write must not count.
            warn!(
                to = to.as_str(),
                "write refused: the run moved on (cancelled, or this worker's lease on it expired)"
            );
        }
        if let Some(s) = &committed
            && s.state.is_terminal()
        {
            info!(verdict = s.verdict.as_str(), "run finished");
            self.telemetry.run_finished(s.verdict);
            // A job's re-run is released to nobody until its job swaps it into the original
            // (which records it then).
            if let Some(bits) = bits
                && s.kind == SubmissionKind::Full
                && !crate::domain::is_rerun_owner(&s.owner)
            {
                self.store
                    .record_leakage(s, bits, s.finished_at.unwrap_or_else(now_millis))
                    .await?;
            }
        }
        Ok(committed)
    }

    /// Hands a run back to the queue, or fails it as INTERNAL_ERROR (uncharged) after too
    /// many interrupted attempts.
    pub async fn hand_back(&self, s: &Submission, why: Interruption) {
        let committed = match s.requeue(why, self.max_attempts, now_millis()) {
            Ok(t) => self.commit(t, None).await.map(|_| ()),
            Err(e) => {
                error!(submission_id = %s.id, error = %e, "cannot hand the run back");
                return;
            }
        };
        if let Err(e) = committed {
            error!(submission_id = %s.id, error = %error_chain(&e), "cannot hand the run back");
        }
    }

    async fn requeue(&self, s: &Submission, why: Interruption) -> Result<RunEnd, RunError> {
        self.commit(s.requeue(why, self.max_attempts, now_millis())?, None)
            .await?;
        Ok(RunEnd::Requeued)
    }

    async fn try_execute(
        &self,
        id: &SubmissionId,
        control: &RunControl,
    ) -> Result<RunEnd, RunError> {
        let Some(queued) = self.store.get_submission(id).await? else {
            return Ok(FINISHED);
        };
        if queued.state != SubmissionState::Queued {
            return Ok(FINISHED);
        }
        let challenge = self
            .store
            .get_challenge(&queued.challenge_id)
            .await?
            .ok_or(RunError::ChallengeGone)?;
        let bits =
            crate::leakage::estimate(&challenge, &self.host.limits(&challenge)).bits_per_submission;
        let Some(s) = self.commit(queued.start(now_millis())?, None).await? else {
            return Ok(FINISHED); // cancelled between pick and start
        };
        self.telemetry
            .queue_wait_seconds
            .observe(std::time::Duration::from_millis(
                (now_millis() - s.created_at).max(0) as u64,
            ));
        info!(attempt = s.attempts, kind = s.kind.as_str(), "run started");

        let plan = RunPlan::new(&challenge, &s, &self.host)?;
        // Local with SQLite; fetched (once per host, checked against its hash) when the
        // archives live in PostgreSQL. A database that does not answer is transient; an
        // archive that is gone or corrupt is not.
        let archive = match self.store.archive_file(&s.archive_sha256).await {
            Ok(path) => path,
            Err(e @ StoreError::Corrupt(_)) => return Err(e.into()),
            Err(e) => {
                let why = format!("cannot fetch the archive: {}", error_chain(&e));
                return self.requeue(&s, Interruption::Service(why)).await;
            }
        };
        let work = WorkDir::prepare(
            self.paths.work(id),
            archive,
            plan.archive_limits.clone(),
            self.host.output,
            plan.run_limits.output_bytes,
        )
        .await?;
        let spec = plan.participant_spec(&work.submission(), &work.output());
        let outcome = match self.engine.run(spec, control.token.clone()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!(error = %error_chain(&e), "engine failed during the run");
                return Ok(RunEnd::EngineFailed {
                    submission: Box::new(s),
                    detail: format!("engine failed: {}", error_chain(&e)),
                });
            }
        };
        match control.reason() {
            Some(StopReason::Shutdown) => {
                info!("run stopped by shutdown, handing it back to the queue");
                return self.requeue(&s, Interruption::Shutdown).await;
            }
            Some(StopReason::LeaseLost) => {
                warn!("run stopped: this worker lost its lease on it");
                return Ok(RunEnd::Requeued);
            }
            _ => {}
        }
        self.logs.put_run(id, &outcome.logs).await;
        self.telemetry.run_seconds.observe(outcome.wall_time);
        let usage = ending::usage(&outcome);

        if let Some(c) = verdict::classify(&outcome, &plan.run_limits) {
            let t = ending::failed_run(
                &s,
                c,
                usage,
                &plan.run_limits,
                &challenge.quota,
                now_millis(),
            )?;
            self.commit(t, Some(bits)).await?;
            return Ok(FINISHED);
        }

        let Some(s) = self.commit(s.begin_scoring(usage)?, None).await? else {
            return Ok(FINISHED);
        };
        let ended = match &plan.scoring {
            ScoringPlan::Builtin(spec) => {
                let job = builtin::BuiltinJob {
                    id: id.clone(),
                    kind: s.kind,
                    spec: spec.clone(),
                    labels: plan.labels.clone(),
                    predictions: work.output().join("predictions.csv"),
                    limits: plan.run_limits.clone(),
                };
                builtin::score(job, self.labels.clone(), self.losses.clone(), &self.kept).await
            }
            ScoringPlan::Custom(scorer) => {
                custom::score(&self.scorer_host(), &plan, scorer, &work, &control.token).await
            }
        };
        let now = now_millis();
        let t = match ended {
            ScoringEnd::Scored { public, private } => s.score(public, private, now),
            ScoringEnd::Rejected { message, detail } => s.fail(
                Verdict::InvalidPredictions,
                message,
                detail,
                None,
                &challenge.quota,
                now,
            ),
            ScoringEnd::Broken(detail) => {
                // Not the participant's fault and not retried: flagged for an admin.
                error!(detail = %detail, challenge_id = %s.challenge_id, "scoring failed inside the service");
                self.telemetry.scoring_failed();
                s.fail_internal(detail, now)
            }
            ScoringEnd::Retry(why) => return self.requeue(&s, why).await,
            ScoringEnd::EngineFailed(detail) => {
                warn!(detail = %detail, "engine failed under the custom scorer");
                return Ok(RunEnd::EngineFailed {
                    submission: Box::new(s),
                    detail,
                });
            }
            ScoringEnd::Stopped if control.reason() == Some(StopReason::Shutdown) => {
                info!("scorer stopped by shutdown, handing the run back to the queue");
                return self.requeue(&s, Interruption::Shutdown).await;
            }
            ScoringEnd::Stopped if control.reason() == Some(StopReason::LeaseLost) => {
                warn!("scorer stopped: this worker lost its lease on the run");
                return Ok(RunEnd::Requeued);
            }
            ScoringEnd::Stopped => s.cancel(None, &challenge.quota, now),
        }?;
        self.commit(t, Some(bits)).await?;
        Ok(FINISHED)
    }
}
