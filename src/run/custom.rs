//! Organisers' own scorers: the scorer image runs in the same hardened sandbox as
//! participants' code (no network, read-only root, limits), once per split, with that
//! split's labels read-only at `/labels/labels.csv`, a host-made copy of the predictions
//! read-only at `/predictions/predictions.csv`, and a writable `/output` where it must write
//! `scores.json` (see `super::plan::RunPlan::scorer_spec`).
//!
//! The scorer never sees the participant's folder: the predictions are opened on the host
//! without following links, size-checked, checked against the predictions contract
//! (`scoring::check_contract`) and copied first. A scorer that crashes, times out
//! or writes nonsense is the service's problem (INTERNAL_ERROR, uncharged), with its logs
//! kept for the admin. A scorer run is part of the submission's run: cancelling the
//! submission or shutting the service down kills it like the participant's container.

use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::logs::LogStore;
use super::plan::{MAX_SCORES_JSON, RunPlan, ScorerSplit};
use super::workdir::WorkDir;
use super::{Runner, ScoringEnd, builtin};
use crate::domain::{CustomScorer, SubmissionKind, Verdict, error_chain};
use crate::sandbox::Backend;
use crate::sandbox::output_fs::OutputMode;
use crate::scoring::{self, ScorerOutput, Split};
use crate::verdict;

/// What a custom scorer's runs need from where they run: the engine, how their `/output` is
/// capped, and where their logs are kept (for admins).
pub(super) struct ScorerHost<'a> {
    /// Container engine.
    pub engine: &'a dyn Backend,
    /// How the scorer's `/output` is capped.
    pub output: OutputMode,
    /// Where the scorer's output is kept.
    pub logs: &'a LogStore,
}

impl Runner {
    /// The server's scorer host: its engine, output mode and log store.
    pub(super) fn scorer_host(&self) -> ScorerHost<'_> {
        ScorerHost {
            engine: &*self.engine,
            output: self.host.output,
            logs: &self.logs,
        }
    }
}

/// Why one scorer run gave nothing to use.
#[derive(Debug, thiserror::Error)]
enum ScorerFailure {
    /// The scorer crashed, timed out or wrote nonsense.
    #[error("scorer ({split}) failed: {reason}")]
    Scorer {
        /// Which split.
        split: &'static str,
        /// What went wrong, for the admin.
        reason: String,
    },
    /// The engine failed.
    #[error("scorer ({split}): engine failed")]
    Engine {
        /// Which split.
        split: &'static str,
        /// The engine's error.
        #[source]
        source: crate::sandbox::SandboxError,
    },
    /// The run was stopped through its token.
    #[error("scorer stopped")]
    Stopped,
}

/// Host-side preparation failed: the predictions (the participant's) or the host (ours).
enum Prep {
    Predictions(scoring::PredictionsError),
    Host(std::io::Error),
}

/// Scores a finished run's predictions with the challenge's custom scorer.
pub(super) async fn score(
    host: &ScorerHost<'_>,
    plan: &RunPlan,
    scorer: &CustomScorer,
    work: &WorkDir,
    cancel: &CancellationToken,
) -> ScoringEnd {
    let scoring_dir = &work.scoring();
    let predictions = work.output().join("predictions.csv");
    let cap = plan.run_limits.output_bytes;
    let (labels, id_column, split, kind) = (
        plan.labels.clone(),
        plan.id_column.clone(),
        plan.split,
        plan.kind,
    );
    let dir = scoring_dir.to_owned();
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&predictions, cap, &labels, &id_column, split, kind, &dir)
    })
    .await;
    let parts = match prepared {
        Ok(Ok(parts)) => parts,
        Ok(Err(Prep::Predictions(e))) => {
            return builtin::predictions_end(&e, plan.kind, &plan.run_limits);
        }
        Ok(Err(Prep::Host(e))) => {
            return ScoringEnd::Broken(format!("scorer preparation: {}", error_chain(&e)));
        }
        Err(e) => return ScoringEnd::Broken(format!("scorer preparation task failed: {e}")),
    };
    let mut results = Vec::new();
    for (split, labels_dir) in parts {
        match run_one(host, plan, scorer, split, &labels_dir, work, cancel).await {
            Ok(ScorerOutput::Scores(s)) => results.push(s),
            Ok(ScorerOutput::Rejected(text)) => return rejected(plan, scorer, text),
            Err(ScorerFailure::Stopped) => return ScoringEnd::Stopped,
            Err(e @ ScorerFailure::Engine { .. }) => {
                return ScoringEnd::EngineFailed(error_chain(&e));
            }
            Err(e @ ScorerFailure::Scorer { .. }) => return ScoringEnd::Broken(e.to_string()),
        }
    }
    let mut it = results.into_iter();
    ScoringEnd::Scored {
        public: it.next().unwrap_or_default(),
        private: it.next().unwrap_or_default(),
    }
}

/// The scorer refused the predictions: its text reaches the participant of a SMOKE run, or
/// of a FULL run when the challenge allows it; otherwise only the verdict's words do.
fn rejected(plan: &RunPlan, scorer: &CustomScorer, text: String) -> ScoringEnd {
    let message = if plan.kind == SubmissionKind::Smoke || scorer.release_messages {
        format!("the scorer rejected the predictions: {text}")
    } else {
        verdict::participant_message(Verdict::InvalidPredictions, "", plan.kind, &plan.run_limits)
    };
    ScoringEnd::Rejected {
        message,
        detail: format!("scorer rejected the predictions: {text}"),
    }
}

/// Copies the predictions (opened safely) and writes each split's labels as
/// `<dir>/<split>/labels.csv`, in the order the splits are scored.
fn prepare(
    predictions: &Path,
    cap: u64,
    labels: &Path,
    id_column: &str,
    split: Split,
    kind: SubmissionKind,
    dir: &Path,
) -> Result<Vec<(ScorerSplit, PathBuf)>, Prep> {
    std::fs::create_dir_all(dir.join("predictions")).map_err(Prep::Host)?;
    let mut src = scoring::open_predictions(predictions, cap).map_err(Prep::Predictions)?;
    // The scorer only ever sees predictions that keep the contract: breaking it is the
    // participant's INVALID_PREDICTIONS, charged, and never a free crash of the scorer.
    scoring::check_contract(labels, &mut src, id_column).map_err(|e| match e {
        scoring::ContractError::Predictions(e) => Prep::Predictions(e),
        scoring::ContractError::Labels(e) => Prep::Host(e),
    })?;
    src.seek(std::io::SeekFrom::Start(0)).map_err(Prep::Host)?;
    let copy = dir.join("predictions").join("predictions.csv");
    let mut dst = std::fs::File::create(&copy).map_err(Prep::Host)?;
    std::io::copy(&mut (&mut src).take(cap), &mut dst).map_err(Prep::Host)?;
    let mut parts = Vec::new();
    match kind {
        SubmissionKind::Smoke => {
            let d = dir.join(ScorerSplit::Sample.as_str());
            std::fs::create_dir_all(&d).map_err(Prep::Host)?;
            std::fs::copy(labels, d.join("labels.csv")).map_err(Prep::Host)?;
            parts.push((ScorerSplit::Sample, d));
        }
        SubmissionKind::Full => {
            let tmp = dir.join("split");
            std::fs::create_dir_all(&tmp).map_err(Prep::Host)?;
            let (public, private) =
                scoring::write_split_labels(labels, id_column, &split, &tmp).map_err(Prep::Host)?;
            for (split, file) in [
                (ScorerSplit::Public, public),
                (ScorerSplit::Private, private),
            ] {
                let d = dir.join(split.as_str());
                std::fs::create_dir_all(&d).map_err(Prep::Host)?;
                std::fs::rename(file, d.join("labels.csv")).map_err(Prep::Host)?;
                parts.push((split, d));
            }
        }
    }
    open_to_sandbox(dir).map_err(Prep::Host)?;
    Ok(parts)
}

/// Makes every folder under `dir` (itself included) 0755 and every file 0644, iteratively,
/// without following links, so the sandbox user can read what the scorer is given.
fn open_to_sandbox(dir: &Path) -> std::io::Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))?;
            }
        }
    }
    Ok(())
}

/// Runs the scorer on one split and reads its `scores.json`.
async fn run_one(
    host: &ScorerHost<'_>,
    plan: &RunPlan,
    scorer: &CustomScorer,
    split: ScorerSplit,
    labels_dir: &Path,
    work: &WorkDir,
    cancel: &CancellationToken,
) -> Result<ScorerOutput, ScorerFailure> {
    if cancel.is_cancelled() {
        return Err(ScorerFailure::Stopped);
    }
    let name = split.as_str();
    let fail = |reason: String| ScorerFailure::Scorer {
        split: name,
        reason,
    };
    let scoring_dir = work.scoring();
    // The scorer's /output is capped by a filesystem of its own too.
    let output = work
        .add_area(
            host.output,
            &scoring_dir.join(format!("out-{name}")),
            MAX_SCORES_JSON,
        )
        .map_err(|e| fail(crate::domain::error_chain(&e)))?;
    let spec = plan.scorer_spec(
        scorer,
        split,
        labels_dir,
        &scoring_dir.join("predictions"),
        &output,
    );
    let limits = spec.limits.clone();
    // The run's own token: a cancel or a shutdown during scoring kills the scorer too,
    // instead of waiting out its wall time.
    let outcome = host
        .engine
        .run(spec, cancel.clone())
        .await
        .map_err(|source| ScorerFailure::Engine {
            split: name,
            source,
        })?;
    host.logs
        .put_scorer(&plan.submission_id, split, &outcome.logs)
        .await;
    if outcome.cancelled {
        return Err(ScorerFailure::Stopped);
    }
    if let Some(c) = verdict::classify(&outcome, &limits) {
        return Err(fail(c.message));
    }
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut f = scoring::open_predictions(&output.join("scores.json"), MAX_SCORES_JSON)
            .map_err(|e| format!("scores.json: {e}"))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(format!("wrote no usable scores.json: {e}")))?;
    scoring::parse_scores_json(&bytes, &scorer.primary_metric).map_err(|e| fail(e.to_string()))
}
