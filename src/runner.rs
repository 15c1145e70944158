//! Executes one submission: extract its archive into a fresh work folder, run it in the
//! sandbox, classify the outcome, score its predictions, and record the result.
//!
//! Every state change is committed to the store before it is announced. The work folder is
//! removed on every path by [`WorkDir`]'s `Drop`; the container by the backend's own guard.
//! Messages stored for FULL runs come from the verdict and the limits only (see
//! `crate::verdict`); anything the run printed or wrote goes to the admin-only `detail`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::archive::{self, ArchiveLimits};
use crate::core::Core;
use crate::domain::{
    Challenge, DomainError, Submission, SubmissionId, SubmissionKind, SubmissionState, Usage,
    Verdict, now_millis,
};
use crate::queue::{RunControl, StopReason};
use crate::sandbox::{Mount, RunLimits, RunRole, RunSpec};
use crate::scoring;
use crate::verdict;

/// A run's work folder, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "cannot remove work folder");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The run limits a challenge's submissions get, after the server's defaults.
pub fn run_limits(core: &Core, challenge: &Challenge) -> RunLimits {
    let l = challenge.limits.or_defaults(&core.config.defaults);
    RunLimits {
        wall_time: l.wall_time.0,
        memory_bytes: l.memory_bytes.0,
        cpu_millis: l.cpu_millis,
        pids: l.pids,
        output_bytes: l.output_bytes.0,
        scratch_bytes: l.scratch_bytes.0,
        gpus: l.gpus,
        log_bytes: l.log_bytes.0,
    }
}

/// The folder of a challenge's data on the host.
pub fn data_dir(core: &Core, challenge: &Challenge) -> PathBuf {
    core.config.data_root.join(&challenge.data_dir)
}

/// Runs one submission to a terminal state (or back to the queue on shutdown).
pub async fn execute(core: &Arc<Core>, id: &SubmissionId, control: &RunControl) {
    if let Err(e) = execute_inner(core, id, control).await {
        error!(error = %e, "run failed inside the service");
        fail_internal(core, id, &e.to_string()).await;
    }
}

/// Fails a non-terminal submission as INTERNAL_ERROR, uncharged, keeping `detail` for admins.
pub async fn fail_internal(core: &Core, id: &SubmissionId, detail: &str) {
    let Ok(Some(mut s)) = core.store.get_submission(id).await else {
        return;
    };
    if s.state.is_terminal() {
        return;
    }
    core.metrics.run_finished(Verdict::InternalError);
    let expected = s.state;
    s.state = SubmissionState::Failed;
    s.verdict = Verdict::InternalError;
    s.message = "the service failed while handling this submission; this is not your code's fault and is not charged"
        .into();
    s.detail = detail.to_owned();
    s.finished_at = Some(now_millis());
    s.charged = false;
    match core.store.update_submission(s.clone(), expected).await {
        Ok(true) => core.announce(&s),
        Ok(false) => {}
        Err(e) => error!(submission_id = %id, error = %e, "cannot record internal error"),
    }
}

async fn execute_inner(
    core: &Arc<Core>,
    id: &SubmissionId,
    control: &RunControl,
) -> Result<(), DomainError> {
    let Some(mut s) = core.store.get_submission(id).await? else {
        return Err(DomainError::internal("queued submission vanished"));
    };
    if s.state != SubmissionState::Queued {
        return Ok(());
    }
    let challenge = core
        .store
        .get_challenge(&s.challenge_id)
        .await?
        .ok_or_else(|| DomainError::internal("challenge of a queued submission vanished"))?;

    s.state = SubmissionState::Running;
    s.started_at = Some(now_millis());
    s.attempts += 1;
    if !core
        .store
        .update_submission(s.clone(), SubmissionState::Queued)
        .await?
    {
        return Ok(()); // cancelled between pick and start
    }
    core.announce(&s);
    core.metrics
        .queue_wait_seconds
        .observe(std::time::Duration::from_millis(
            (now_millis() - s.created_at).max(0) as u64,
        ));
    info!(attempt = s.attempts, kind = s.kind.as_str(), "run started");

    let work = WorkDir(core.paths.work(id));
    let limits = run_limits(core, &challenge);
    let (submission_dir, output_dir) = prepare(core, &s, &challenge, &work.0).await?;
    let data = data_dir(core, &challenge);
    let inputs = match s.kind {
        SubmissionKind::Full => data.join("inputs"),
        SubmissionKind::Smoke => data.join("sample").join("inputs"),
    };
    let mut env = challenge.runtime.env.clone();
    env.insert("HOLDOUT_KIND".into(), s.kind.as_str().into());
    let spec = RunSpec {
        submission_id: id.to_string(),
        run_name: format!("a{}", s.attempts),
        role: RunRole::Participant,
        instance: core.instance.clone(),
        image: challenge.runtime.image.clone(),
        command: challenge.runtime.command.clone(),
        env,
        isolation: challenge
            .runtime
            .isolation
            .unwrap_or(core.config.default_isolation),
        mounts: vec![
            Mount {
                host: submission_dir,
                container: "/submission".into(),
                read_only: true,
            },
            Mount {
                host: inputs,
                container: "/data".into(),
                read_only: true,
            },
        ],
        output_dir: output_dir.clone(),
        limits: limits.clone(),
    };

    let outcome = match core.backend.run(spec, control.token.clone()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            core.metrics.engine_error();
            core.queue.engine_failed();
            warn!(error = %e, "engine failed during the run");
            return requeue_or_fail(
                core,
                s,
                SubmissionState::Running,
                &format!("engine failed: {e}"),
            )
            .await;
        }
    };
    if control.reason() == Some(StopReason::Shutdown) {
        info!("run stopped by shutdown, handing it back to the queue");
        s.attempts -= 1; // the service's interruption is not an attempt of the code
        return requeue_or_fail(core, s, SubmissionState::Running, "interrupted by shutdown").await;
    }
    store_logs(core, id, &outcome.logs).await;
    core.metrics.run_seconds.observe(outcome.wall_time);
    s.usage = Some(Usage {
        wall_time: outcome.wall_time,
        peak_memory_bytes: outcome.peak_memory_bytes.unwrap_or(0),
        exit_code: outcome.exit_code,
        signal: outcome.exit_code.and_then(verdict::signal_of_exit_code),
    });

    if let Some(c) = verdict::classify(&outcome, &limits) {
        s.message = verdict::participant_message(c.verdict, &c.message, s.kind, &limits);
        s.detail = c.message;
        return finish(core, s, SubmissionState::Running, c.verdict, &challenge).await;
    }

    s.state = SubmissionState::Scoring;
    if !core
        .store
        .update_submission(s.clone(), SubmissionState::Running)
        .await?
    {
        return Ok(());
    }
    core.announce(&s);

    if let Some(custom) = challenge.scoring.custom.clone() {
        let result = crate::scorer::score(
            core,
            &challenge,
            &custom,
            id,
            s.kind,
            &output_dir,
            &work.0,
            &limits,
            &control.token,
        )
        .await;
        return match result {
            crate::scorer::CustomResult::Scores { public, private } => {
                succeed(core, s, public, private, &challenge).await
            }
            crate::scorer::CustomResult::Rejected(text) => {
                let shown = if s.kind == SubmissionKind::Smoke || custom.release_messages {
                    format!("the scorer rejected the predictions: {text}")
                } else {
                    verdict::participant_message(Verdict::InvalidPredictions, "", s.kind, &limits)
                };
                let detail = format!("scorer rejected the predictions: {text}");
                reject(core, s, shown, detail, &challenge).await
            }
            crate::scorer::CustomResult::BadPredictions(message) => {
                let shown = verdict::participant_message(
                    Verdict::InvalidPredictions,
                    &message,
                    s.kind,
                    &limits,
                );
                reject(core, s, shown, message, &challenge).await
            }
            crate::scorer::CustomResult::Failed(detail) => {
                warn!(detail = %detail, "custom scorer failed");
                fail_internal(core, id, &detail).await;
                Ok(())
            }
            crate::scorer::CustomResult::EngineFailed(detail) => {
                // As for the participant's run: the engine's failure is transient, try again.
                core.metrics.engine_error();
                core.queue.engine_failed();
                warn!(detail = %detail, "engine failed under the custom scorer");
                requeue_or_fail(core, s, SubmissionState::Scoring, &detail).await
            }
            crate::scorer::CustomResult::Stopped => {
                if control.reason() == Some(StopReason::Shutdown) {
                    info!("scorer stopped by shutdown, handing the run back to the queue");
                    s.attempts -= 1; // the service's interruption is not an attempt of the code
                    return requeue_or_fail(
                        core,
                        s,
                        SubmissionState::Scoring,
                        "interrupted by shutdown while scoring",
                    )
                    .await;
                }
                s.message = "the submission was cancelled".into();
                finish(
                    core,
                    s,
                    SubmissionState::Scoring,
                    Verdict::Cancelled,
                    &challenge,
                )
                .await
            }
        };
    }

    match score(core, &challenge, s.kind, &output_dir).await {
        Ok(mut report) => {
            if let Some(losses) = report.public_row_losses.take() {
                let core2 = core.clone();
                let id2 = id.clone();
                let stored =
                    tokio::task::spawn_blocking(move || core2.losses.put(&id2, &losses)).await;
                if !matches!(stored, Ok(Ok(()))) {
                    return requeue_or_fail(
                        core,
                        s,
                        SubmissionState::Scoring,
                        "cannot store per-row losses",
                    )
                    .await;
                }
            }
            succeed(core, s, report.public, report.private, &challenge).await
        }
        Err(ScoreFailure::Predictions(message)) => {
            let shown = verdict::participant_message(
                Verdict::InvalidPredictions,
                &message,
                s.kind,
                &limits,
            );
            reject(core, s, shown, message, &challenge).await
        }
        Err(ScoreFailure::Internal(detail)) => {
            requeue_or_fail(core, s, SubmissionState::Scoring, &detail).await
        }
    }
}

/// Makes the work folder: the extracted archive (read-only for the run) and an empty
/// `/output` the run's user can write.
async fn prepare(
    core: &Core,
    s: &Submission,
    challenge: &Challenge,
    work: &Path,
) -> Result<(PathBuf, PathBuf), DomainError> {
    let limits = challenge.limits.or_defaults(&core.config.defaults);
    let archive_path = core.paths.archive(&s.archive_sha256);
    let work = work.to_owned();
    let archive_limits = ArchiveLimits {
        max_extracted_bytes: limits.extracted_bytes.0,
        ..ArchiveLimits::default()
    };
    tokio::task::spawn_blocking(move || -> Result<(PathBuf, PathBuf), DomainError> {
        let _ = std::fs::remove_dir_all(&work);
        let submission = work.join("submission");
        let output = work.join("output");
        std::fs::create_dir_all(&submission).map_err(DomainError::internal)?;
        std::fs::create_dir_all(&output).map_err(DomainError::internal)?;
        archive::extract(&archive_path, None, &submission, &archive_limits).map_err(|e| {
            DomainError::internal(format!("stored archive no longer extracts: {e}"))
        })?;
        make_writable_for_sandbox(&output).map_err(DomainError::internal)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))
            .map_err(DomainError::internal)?;
        Ok((submission, output))
    })
    .await
    .map_err(DomainError::internal)?
}

/// The sandbox user (65534) must be able to write `/output`; when we are root we hand the
/// folder to that user, otherwise we open it to everyone (it lives in our private work dir).
pub fn make_writable_for_sandbox(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
    }
}

enum ScoreFailure {
    Predictions(String),
    Internal(String),
}

/// The scoring spec a challenge's built-in metric implies.
pub fn scoring_spec(
    challenge: &Challenge,
    kind: SubmissionKind,
    limits: &RunLimits,
) -> Result<scoring::ScoringSpec, String> {
    let b = challenge
        .scoring
        .builtin
        .as_ref()
        .ok_or("custom scorers are not supported yet")?;
    let metric = scoring::Metric::from_name(&b.metric)
        .ok_or_else(|| format!("unknown metric {:?}", b.metric))?;
    Ok(scoring::ScoringSpec {
        id_column: challenge.scoring.id_column.clone(),
        target_column: b.target_column.clone(),
        prediction_column: if b.prediction_column.is_empty() {
            b.target_column.clone()
        } else {
            b.prediction_column.clone()
        },
        positive_label: (!b.positive_label.is_empty()).then(|| b.positive_label.clone()),
        metrics: vec![metric],
        threshold: None,
        split: match kind {
            SubmissionKind::Full => Some(scoring::Split {
                public_fraction: challenge.scoring.public_fraction,
                seed: challenge.scoring.split_seed,
            }),
            SubmissionKind::Smoke => None,
        },
        max_predictions_bytes: limits.output_bytes,
        want_row_losses: kind == SubmissionKind::Full
            && challenge.release.mode == crate::domain::LeaderboardMode::LadderParameterFree,
    })
}

/// The labels file a kind of run is scored against.
pub fn labels_path(core: &Core, challenge: &Challenge, kind: SubmissionKind) -> PathBuf {
    let data = data_dir(core, challenge);
    match kind {
        SubmissionKind::Full => data.join("labels.csv"),
        SubmissionKind::Smoke => data.join("sample").join("labels.csv"),
    }
}

async fn score(
    core: &Arc<Core>,
    challenge: &Challenge,
    kind: SubmissionKind,
    output_dir: &Path,
) -> Result<scoring::ScoreReport, ScoreFailure> {
    let limits = run_limits(core, challenge);
    let spec = scoring_spec(challenge, kind, &limits).map_err(ScoreFailure::Internal)?;
    let labels_path = labels_path(core, challenge, kind);
    let predictions = output_dir.join("predictions.csv");
    let core = core.clone();
    tokio::task::spawn_blocking(move || {
        let label_spec = spec
            .label_spec()
            .map_err(|e| ScoreFailure::Internal(format!("scoring spec: {e}")))?;
        let labels = core
            .labels
            .get_or_load(&labels_path, &label_spec)
            .map_err(|e| ScoreFailure::Internal(format!("labels: {e}")))?;
        let mut report = scoring::score_predictions(&labels, &predictions, &spec)
            .map_err(|e| ScoreFailure::Predictions(e.to_string()))?;
        if kind == SubmissionKind::Smoke {
            report.public = std::mem::take(&mut report.all);
            report.private.clear();
        }
        Ok(report)
    })
    .await
    .map_err(|e| ScoreFailure::Internal(format!("scoring task failed: {e}")))?
}

/// Records a scored run.
async fn succeed(
    core: &Core,
    mut s: Submission,
    public: BTreeMap<String, f64>,
    private: BTreeMap<String, f64>,
    challenge: &Challenge,
) -> Result<(), DomainError> {
    s.message = "scored".into();
    s.public_scores = public;
    s.private_scores = private;
    finish(
        core,
        s,
        SubmissionState::Scoring,
        Verdict::Scored,
        challenge,
    )
    .await
}

/// Records INVALID_PREDICTIONS with what the participant may see and the admin's detail.
async fn reject(
    core: &Core,
    mut s: Submission,
    shown: String,
    detail: String,
    challenge: &Challenge,
) -> Result<(), DomainError> {
    s.message = shown;
    s.detail = detail;
    finish(
        core,
        s,
        SubmissionState::Scoring,
        Verdict::InvalidPredictions,
        challenge,
    )
    .await
}

/// Records a terminal state (derived from the verdict) and whether it counts against the
/// quota.
async fn finish(
    core: &Core,
    mut s: Submission,
    expected: SubmissionState,
    verdict: Verdict,
    challenge: &Challenge,
) -> Result<(), DomainError> {
    s.state = match verdict {
        Verdict::Scored => SubmissionState::Succeeded,
        Verdict::Cancelled => SubmissionState::Cancelled,
        _ => SubmissionState::Failed,
    };
    s.verdict = verdict;
    s.finished_at = Some(now_millis());
    s.charged = match verdict {
        Verdict::InternalError | Verdict::Cancelled => false,
        Verdict::Scored => true,
        _ => challenge.quota.count_failed,
    };
    if core.store.update_submission(s.clone(), expected).await? {
        info!(verdict = verdict.as_str(), "run finished");
        core.metrics.run_finished(verdict);
        core.announce(&s);
    }
    Ok(())
}

/// The service failed (engine gone, scorer broken): try again later, or give up uncharged.
async fn requeue_or_fail(
    core: &Core,
    mut s: Submission,
    expected: SubmissionState,
    detail: &str,
) -> Result<(), DomainError> {
    if s.attempts < core.config.max_attempts {
        s.state = SubmissionState::Queued;
        s.started_at = None;
        s.usage = None;
        s.detail = detail.to_owned();
        if core.store.update_submission(s.clone(), expected).await? {
            core.announce(&s);
            core.queue.wake();
        }
        Ok(())
    } else {
        fail_internal(core, &s.id, detail).await;
        Ok(())
    }
}

/// Stores captured output for admins (and SMOKE submitters), already capped by the sandbox.
async fn store_logs(core: &Core, id: &SubmissionId, logs: &crate::sandbox::CapturedLogs) {
    let base = core.paths.logs(id);
    let logs = logs.clone();
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::write(base.with_extension("stdout"), &logs.stdout)?;
        std::fs::write(base.with_extension("stderr"), &logs.stderr)?;
        if logs.truncated {
            std::fs::write(base.with_extension("truncated"), b"")?;
        }
        Ok(())
    })
    .await;
    if !matches!(result, Ok(Ok(()))) {
        warn!(submission_id = %id, "cannot store run logs");
    }
}

/// Stores a custom scorer run's output for admins, beside the run's own logs.
pub async fn store_scorer_logs(
    core: &Core,
    id: &SubmissionId,
    split: &str,
    logs: &crate::sandbox::CapturedLogs,
) {
    let base = core.paths.logs(id);
    let logs = logs.clone();
    let split = split.to_owned();
    let _ = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::write(
            base.with_extension(format!("scorer-{split}.stdout")),
            &logs.stdout,
        )?;
        std::fs::write(
            base.with_extension(format!("scorer-{split}.stderr")),
            &logs.stderr,
        )
    })
    .await;
}

/// The splits a custom scorer runs on, in the order it runs them.
const SCORER_SPLITS: [&str; 3] = ["sample", "public", "private"];

/// Reads the stored output of a submission's custom scorer runs, for admins only: each
/// non-empty stream under a header naming the split, ready to append to the run's stderr.
/// Empty when no scorer ran or it printed nothing.
pub async fn read_scorer_logs(core: &Core, id: &SubmissionId) -> Vec<u8> {
    let base = core.paths.logs(id);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for split in SCORER_SPLITS {
            for stream in ["stdout", "stderr"] {
                let text = std::fs::read(base.with_extension(format!("scorer-{split}.{stream}")))
                    .unwrap_or_default();
                if text.is_empty() {
                    continue;
                }
                out.extend_from_slice(
                    format!("\n===== custom scorer, {split} split, {stream} =====\n").as_bytes(),
                );
                out.extend_from_slice(&text);
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// Reads stored logs: (stdout, stderr, truncated); empty when the run left none.
pub async fn read_logs(core: &Core, id: &SubmissionId) -> (Vec<u8>, Vec<u8>, bool) {
    let base = core.paths.logs(id);
    tokio::task::spawn_blocking(move || {
        (
            std::fs::read(base.with_extension("stdout")).unwrap_or_default(),
            std::fs::read(base.with_extension("stderr")).unwrap_or_default(),
            base.with_extension("truncated").exists(),
        )
    })
    .await
    .unwrap_or_default()
}
