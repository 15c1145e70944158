//! Organisers' own scorers: the scorer image runs in the same hardened sandbox as
//! participants' code (no network, read-only root, limits), once per split, with that
//! split's labels read-only at `/labels/labels.csv`, a host-made copy of the predictions
//! read-only at `/predictions/predictions.csv`, and a writable `/output` where it must write
//! `scores.json`.
//!
//! The scorer never sees the participant's folder: the predictions are opened on the host
//! without following links, size-checked and copied first. A scorer that crashes, times out
//! or writes nonsense is the service's problem (INTERNAL_ERROR, uncharged), with its logs
//! kept for the admin. A scorer run is part of the submission's run: cancelling the
//! submission or shutting the service down kills it like the participant's container.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::domain::{Challenge, CustomScorer, SubmissionId, SubmissionKind};
use crate::sandbox::{Mount, RunLimits, RunRole, RunSpec};
use crate::scoring::{self, ScorerOutput, Split};

/// Largest scores.json read.
const MAX_SCORES_JSON: u64 = 1 << 20;

/// What a custom scorer decided.
pub enum CustomResult {
    /// Public and private (or sample) scores.
    Scores {
        /// Public split, or the sample for SMOKE runs.
        public: BTreeMap<String, f64>,
        /// Private split (empty for SMOKE runs).
        private: BTreeMap<String, f64>,
    },
    /// The scorer rejected the predictions with this (capped) text.
    Rejected(String),
    /// The scorer or the service failed; the text is for the admin.
    Failed(String),
    /// The predictions file itself is unusable (missing, link, too big...).
    BadPredictions(String),
    /// The engine failed under the scorer (transient: the run may be tried again).
    EngineFailed(String),
    /// The run's cancellation token fired (a cancel or a shutdown) and the scorer was killed.
    Stopped,
}

/// Why one scorer run produced no output to use.
enum RunFailure {
    /// The scorer crashed, timed out or wrote nonsense.
    Scorer(String),
    /// The engine failed.
    Engine(String),
    /// The run was stopped through its token.
    Stopped,
}

/// Scores a finished run's predictions with the challenge's custom scorer.
#[allow(clippy::too_many_arguments)]
pub async fn score(
    core: &Arc<Core>,
    challenge: &Challenge,
    scorer: &CustomScorer,
    id: &SubmissionId,
    kind: SubmissionKind,
    output_dir: &Path,
    work: &Path,
    limits: &RunLimits,
    cancel: &CancellationToken,
) -> CustomResult {
    let labels = crate::runner::labels_path(core, challenge, kind);
    let split = Split {
        public_fraction: challenge.scoring.public_fraction,
        seed: challenge.scoring.split_seed,
    };
    let id_column = challenge.scoring.id_column.clone();
    let predictions = output_dir.join("predictions.csv");
    let scoring_dir = work.join("scoring");
    let cap = limits.output_bytes;
    let prepared = tokio::task::spawn_blocking({
        let scoring_dir = scoring_dir.clone();
        move || {
            prepare(
                &predictions,
                cap,
                &labels,
                &id_column,
                split,
                kind,
                &scoring_dir,
            )
        }
    })
    .await;
    let parts = match prepared {
        Ok(Ok(parts)) => parts,
        Ok(Err(Prep::Predictions(m))) => return CustomResult::BadPredictions(m),
        Ok(Err(Prep::Internal(m))) => return CustomResult::Failed(m),
        Err(e) => return CustomResult::Failed(format!("scorer preparation task failed: {e}")),
    };
    let mut results = Vec::new();
    for (name, labels_dir) in &parts {
        match run_one(
            core,
            challenge,
            scorer,
            id,
            name,
            labels_dir,
            &scoring_dir,
            limits,
            cancel,
        )
        .await
        {
            Ok(ScorerOutput::Scores(s)) => results.push(s),
            Ok(ScorerOutput::Rejected(m)) => return CustomResult::Rejected(m),
            Err(RunFailure::Scorer(m)) => return CustomResult::Failed(m),
            Err(RunFailure::Engine(m)) => return CustomResult::EngineFailed(m),
            Err(RunFailure::Stopped) => return CustomResult::Stopped,
        }
    }
    let mut it = results.into_iter();
    let public = it.next().unwrap_or_default();
    let private = it.next().unwrap_or_default();
    CustomResult::Scores { public, private }
}

enum Prep {
    Predictions(String),
    Internal(String),
}

/// Copies the predictions (opened safely) and writes each split's labels as
/// `<dir>/<split>/labels.csv`. Returns (split name, labels folder) in order public, private.
fn prepare(
    predictions: &Path,
    cap: u64,
    labels: &Path,
    id_column: &str,
    split: Split,
    kind: SubmissionKind,
    dir: &Path,
) -> Result<Vec<(String, PathBuf)>, Prep> {
    use std::os::unix::fs::PermissionsExt;
    let internal = |e: std::io::Error| Prep::Internal(e.to_string());
    std::fs::create_dir_all(dir.join("predictions")).map_err(internal)?;
    let mut src = scoring::open_predictions(predictions, cap)
        .map_err(|e| Prep::Predictions(e.to_string()))?;
    let copy = dir.join("predictions").join("predictions.csv");
    let mut dst = std::fs::File::create(&copy).map_err(internal)?;
    std::io::copy(&mut (&mut src).take(cap), &mut dst).map_err(internal)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).map_err(internal)?;
    let mut parts = Vec::new();
    match kind {
        SubmissionKind::Smoke => {
            let d = dir.join("sample");
            std::fs::create_dir_all(&d).map_err(internal)?;
            std::fs::copy(labels, d.join("labels.csv")).map_err(internal)?;
            parts.push(("sample".to_owned(), d));
        }
        SubmissionKind::Full => {
            let tmp = dir.join("split");
            std::fs::create_dir_all(&tmp).map_err(internal)?;
            let (public, private) =
                scoring::write_split_labels(labels, id_column, &split, &tmp).map_err(internal)?;
            for (name, file) in [("public", public), ("private", private)] {
                let d = dir.join(name);
                std::fs::create_dir_all(&d).map_err(internal)?;
                std::fs::rename(file, d.join("labels.csv")).map_err(internal)?;
                parts.push((name.to_owned(), d));
            }
        }
    }
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode))
            .map_err(internal)?;
    }
    Ok(parts)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    core: &Arc<Core>,
    challenge: &Challenge,
    scorer: &CustomScorer,
    id: &SubmissionId,
    split: &str,
    labels_dir: &Path,
    scoring_dir: &Path,
    limits: &RunLimits,
    cancel: &CancellationToken,
) -> Result<ScorerOutput, RunFailure> {
    if cancel.is_cancelled() {
        return Err(RunFailure::Stopped);
    }
    let output = scoring_dir.join(format!("out-{split}"));
    let io = |e: std::io::Error| RunFailure::Scorer(format!("scorer ({split}): {e}"));
    std::fs::create_dir_all(&output).map_err(io)?;
    crate::runner::make_writable_for_sandbox(&output).map_err(io)?;
    let spec = RunSpec {
        submission_id: id.to_string(),
        run_name: format!("scorer-{split}"),
        role: RunRole::Scorer,
        instance: core.instance.clone(),
        image: scorer.image.clone(),
        command: scorer.command.clone(),
        env: BTreeMap::from([("HOLDOUT_SPLIT".to_owned(), split.to_owned())]),
        isolation: challenge
            .runtime
            .isolation
            .unwrap_or(core.config.default_isolation),
        mounts: vec![
            Mount {
                host: labels_dir.to_owned(),
                container: "/labels".into(),
                read_only: true,
            },
            Mount {
                host: scoring_dir.join("predictions"),
                container: "/predictions".into(),
                read_only: true,
            },
        ],
        output_dir: output.clone(),
        limits: RunLimits {
            output_bytes: MAX_SCORES_JSON,
            ..limits.clone()
        },
    };
    // The run's own token: a cancel or a shutdown during scoring kills the scorer too,
    // instead of waiting out its wall time.
    let outcome = core
        .backend
        .run(spec, cancel.clone())
        .await
        .map_err(|e| RunFailure::Engine(format!("scorer ({split}): engine failed: {e}")))?;
    crate::runner::store_scorer_logs(core, id, split, &outcome.logs).await;
    if outcome.cancelled {
        return Err(RunFailure::Stopped);
    }
    if let Some(c) = crate::verdict::classify(&outcome, limits) {
        return Err(RunFailure::Scorer(format!(
            "scorer ({split}) failed: {}",
            c.message
        )));
    }
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut f = scoring::open_predictions(&output.join("scores.json"), MAX_SCORES_JSON)
            .map_err(|e| format!("scores.json: {e}"))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    })
    .await
    .map_err(|e| RunFailure::Scorer(e.to_string()))?
    .map_err(|e| {
        RunFailure::Scorer(format!("scorer ({split}) wrote no usable scores.json: {e}"))
    })?;
    scoring::parse_scores_json(&bytes, &scorer.primary_metric)
        .map_err(|e| RunFailure::Scorer(format!("scorer ({split}): {e}")))
}
