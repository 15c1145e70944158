//! A SMOKE run with no server: the run pipeline's own pieces — the archive checks of an
//! upload, [`RunPlan`], [`WorkDir`], the sandbox, `crate::verdict`, built-in or custom
//! scoring and the submission's state machine — driven once, on a challenge's public sample,
//! with no queue or token (`holdout run-local`). Scoring keeps what it keeps (a custom
//! scorer's output) in a throw-away SQLite store in the run's scratch folder; no submission
//! is ever written to it.
//!
//! It gives the verdict, message and sample scores the server gives a SMOKE submission of
//! the same archive on the same data, because it decides none of them itself: every one
//! comes from the code the server runs. It never reads private data: a SMOKE plan mounts
//! only `sample/inputs` and scores against `sample/labels.csv`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ScoringEnd;
use super::builtin::{self, BuiltinJob};
use super::custom::{self, ScorerHost};
use super::ending;
use super::logs::LogStore;
use super::plan::{DataLayout, HostSettings, PlanError, RunPlan, ScoringPlan, archive_limits};
use super::workdir::{WorkDir, WorkDirError};
use crate::archive;
use crate::domain::{
    Challenge, IllegalTransition, NewSubmission, ParticipantId, ResolvedLimits, Submission,
    SubmissionId, SubmissionKind, Verdict, now_millis,
};
use crate::losses::LossStore;
use crate::paths::Paths;
use crate::sandbox::{Backend, CapturedLogs, LogTee, SandboxError};
use crate::scoring::LabelsCache;
use crate::store::{Store, StoreError};
use crate::verdict;

/// The participant a local run is recorded for.
pub const LOCAL_PARTICIPANT: &str = "local";

/// Why a local run could not give a verdict: the setup, never the code under test.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The data folder has no public sample to run on.
    #[error(
        "{} has no public sample: a SMOKE run needs sample/inputs/ and sample/labels.csv",
        .0.display()
    )]
    NoSample(PathBuf),
    /// The sandbox user (uid 65534) could not read a file of the sample.
    #[error("{} is not readable by the sandbox user (uid 65534); make it world-readable", .0.display())]
    Unreadable(PathBuf),
    /// The server would refuse this archive at upload.
    #[error("the server would refuse this archive: {0}")]
    Archive(String),
    /// The challenge's scoring cannot be planned.
    #[error("planning the run")]
    Plan(#[from] PlanError),
    /// The work folder could not be made.
    #[error("work folder")]
    WorkDir(#[from] WorkDirError),
    /// The engine failed (or lacks the image or runtime).
    #[error("the container engine failed")]
    Engine(#[from] SandboxError),
    /// A bug: the state machine refused a transition.
    #[error("illegal transition")]
    Transition(#[from] IllegalTransition),
    /// Host I/O around the run failed.
    #[error("host i/o")]
    Io(#[from] std::io::Error),
    /// A blocking task failed.
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The scratch store could not be opened.
    #[error("scratch store")]
    Store(#[from] StoreError),
}

/// One local run's setting.
pub struct LocalRun {
    /// The engine the run uses.
    pub engine: Arc<dyn Backend>,
    /// The server-side settings a run is planned with (defaults, caps, data root).
    pub host: HostSettings,
    /// The challenge, with `data_dir` naming the data folder under `host.data_root`.
    pub challenge: Challenge,
    /// The archive, as it would be uploaded.
    pub archive: PathBuf,
    /// A private scratch folder (work folder, labels of a custom scorer, its logs).
    pub scratch: PathBuf,
    /// Receives the run's output live.
    pub tee: Option<LogTee>,
    /// Fired to stop the run (Ctrl-C): it ends CANCELLED.
    pub cancel: CancellationToken,
}

/// How a local run ended.
#[derive(Debug)]
pub struct LocalEnd {
    /// The submission in its terminal state, as the server would have committed it.
    pub submission: Submission,
    /// The limits it ran under.
    pub limits: ResolvedLimits,
    /// What it printed (also sent live to the tee).
    pub logs: CapturedLogs,
}

impl LocalRun {
    /// Checks the archive as an upload is checked, runs it as a SMOKE submission on the
    /// sample, and scores it: the submission's terminal state, verdict, message and scores.
    pub async fn run(self) -> Result<LocalEnd, LocalError> {
        let layout = DataLayout::of(&self.host.data_root, &self.challenge);
        if !layout.has_sample() {
            return Err(LocalError::NoSample(layout.root().to_owned()));
        }
        let inputs = layout.inputs(SubmissionKind::Smoke);
        tokio::task::spawn_blocking(move || readable_by_sandbox(&inputs)).await??;
        let limits = self.host.limits(&self.challenge);
        let sha256 = check_archive(self.archive.clone(), limits).await?;

        let queued = Submission::new(NewSubmission {
            id: SubmissionId::generate(),
            challenge_id: self.challenge.id.clone(),
            participant_id: ParticipantId::parse(LOCAL_PARTICIPANT)
                .expect("a valid participant id"),
            owner: LOCAL_PARTICIPANT.into(),
            kind: SubmissionKind::Smoke,
            archive_sha256: sha256,
            created_at: now_millis(),
            idempotency_key: None,
        });
        let s = queued.start(now_millis())?.into_next();
        let plan = RunPlan::new(&self.challenge, &s, &self.host)?;
        let work = WorkDir::prepare(
            self.scratch.join("work"),
            self.archive.clone(),
            plan.archive_limits.clone(),
            self.host.output,
            plan.run_limits.output_bytes,
        )
        .await?;
        let spec = plan.participant_spec(&work.submission(), &work.output());
        let outcome = match self.tee.clone() {
            Some(tee) => self.engine.run_teed(spec, self.cancel.clone(), tee).await?,
            None => self.engine.run(spec, self.cancel.clone()).await?,
        };
        let logs = outcome.logs.clone();
        let usage = ending::usage(&outcome);
        let quota = &self.challenge.quota;
        let end = |t: crate::domain::Transition| LocalEnd {
            submission: t.into_next(),
            limits,
            logs: logs.clone(),
        };
        if let Some(c) = verdict::classify(&outcome, &plan.run_limits) {
            let t = ending::failed_run(&s, c, usage, &plan.run_limits, quota, now_millis())?;
            return Ok(end(t));
        }

        let s = s.begin_scoring(usage)?.into_next();
        let ended = match &plan.scoring {
            ScoringPlan::Builtin(spec) => {
                let job = BuiltinJob {
                    id: s.id.clone(),
                    kind: s.kind,
                    spec: spec.clone(),
                    labels: plan.labels.clone(),
                    predictions: work.output().join("predictions.csv"),
                    limits: plan.run_limits.clone(),
                };
                let scratch = self.scratch_store().await?;
                let losses = Arc::new(LossStore::new(scratch.clone()));
                let kept = crate::predictions::KeptPredictions::new(scratch);
                builtin::score(job, Arc::new(LabelsCache::new(1)), losses, &kept).await
            }
            ScoringPlan::Custom(scorer) => {
                let logs = LogStore::new(self.scratch_store().await?);
                let host = ScorerHost {
                    engine: &*self.engine,
                    output: self.host.output,
                    logs: &logs,
                };
                custom::score(&host, &plan, scorer, &work, &self.cancel).await
            }
        };
        // The same transitions the server commits for each end of scoring; what the server
        // would retry or hand back (its own failures) is an internal error here.
        let now = now_millis();
        let t = match ended {
            ScoringEnd::Scored { public, private } => s.score(public, private, now),
            ScoringEnd::Rejected { message, detail } => s.fail(
                Verdict::InvalidPredictions,
                message,
                detail,
                None,
                quota,
                now,
            ),
            ScoringEnd::Broken(detail) | ScoringEnd::EngineFailed(detail) => {
                s.fail_internal(detail, now)
            }
            ScoringEnd::Retry(why) => s.fail_internal(format!("{why:?}"), now),
            ScoringEnd::Stopped => s.cancel(None, quota, now),
        }?;
        Ok(end(t))
    }

    /// A throw-away SQLite store in the scratch folder, for what scoring keeps.
    async fn scratch_store(&self) -> Result<Store, LocalError> {
        let dir = self.scratch.join("state");
        std::fs::create_dir_all(&dir)?;
        let paths = Paths::new(&dir);
        Ok(tokio::task::spawn_blocking(move || Store::open(&paths.database())).await??)
    }
}

/// The checks an upload gets before it is queued: the challenge's archive size, then every
/// entry (`archive::validate` under the challenge's limits). Returns the archive's SHA-256.
async fn check_archive(path: PathBuf, limits: ResolvedLimits) -> Result<String, LocalError> {
    tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&path)?.len();
        if size > limits.archive_bytes.0 {
            return Err(LocalError::Archive(format!(
                "the archive is larger than this challenge's limit of {}",
                limits.archive_bytes
            )));
        }
        if size == 0 {
            return Err(LocalError::Archive("no archive bytes were sent".into()));
        }
        archive::validate(&path, None, &archive_limits(&limits))
            .map_err(|e| LocalError::Archive(e.to_string()))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
        Ok(hex::encode(sha2::Digest::finalize(hasher)))
    })
    .await?
}

/// Every folder under `dir` must be world-searchable and every file world-readable: the run
/// is uid 65534, and the server refuses a challenge whose data it cannot read.
fn readable_by_sandbox(dir: &Path) -> Result<(), LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::symlink_metadata(&d)?;
        if meta.permissions().mode() & 0o005 != 0o005 {
            return Err(LocalError::Unreadable(d));
        }
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.permissions().mode() & 0o004 == 0 {
                return Err(LocalError::Unreadable(entry.path()));
            }
        }
    }
    Ok(())
}
