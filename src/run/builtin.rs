//! Built-in scoring, in the server: the predictions a run wrote, checked and scored against
//! the cached labels on a blocking thread, and, for the parameter-free ladder, the per-row
//! public losses kept on the host.
//!
//! A predictions problem is the participant's (INVALID_PREDICTIONS) only when
//! [`PredictionsError::is_participant_fault`] says so; a read failure or a spec that does
//! not match the labels is the service's, and ends INTERNAL_ERROR, never charged.

use std::path::PathBuf;
use std::sync::Arc;

use super::ScoringEnd;
use crate::domain::{Interruption, SubmissionId, SubmissionKind, Verdict, error_chain};
use crate::losses::LossStore;
use crate::predictions::KeptPredictions;
use crate::sandbox::RunLimits;
use crate::scoring::{self, LabelsCache, PredictionsError, ScoringSpec};
use crate::verdict;

/// What the blocking part found.
enum Found {
    Report(scoring::ScoreReport),
    Predictions(PredictionsError),
    Service(String),
}

/// Everything built-in scoring reads.
pub(super) struct BuiltinJob {
    /// The submission (names its kept losses).
    pub id: SubmissionId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// How to score.
    pub spec: ScoringSpec,
    /// The labels file for this kind of run.
    pub labels: PathBuf,
    /// The run's `predictions.csv` on the host.
    pub predictions: PathBuf,
    /// The run's limits (for the participant's message).
    pub limits: RunLimits,
}

/// Scores one run's predictions with the challenge's built-in metric; keeps a scored FULL
/// run's predictions (see `crate::predictions`) before its scores are committed, so every
/// scored FULL run a rescoring job finds has them.
pub(super) async fn score(
    job: BuiltinJob,
    labels_cache: Arc<LabelsCache>,
    losses: Arc<LossStore>,
    kept: &KeptPredictions,
) -> ScoringEnd {
    let BuiltinJob {
        id,
        kind,
        spec,
        labels,
        predictions,
        limits,
    } = job;
    let predictions_path = predictions.clone();
    let cap = spec.max_predictions_bytes;
    let found = tokio::task::spawn_blocking(move || -> Found {
        let label_spec = match spec.label_spec() {
            Ok(l) => l,
            Err(e) => return Found::Service(format!("scoring spec: {}", error_chain(&e))),
        };
        let labels = match labels_cache.get_or_load(&labels, &label_spec) {
            Ok(l) => l,
            Err(e) => return Found::Service(format!("labels: {}", error_chain(&e))),
        };
        match scoring::score_predictions(&labels, &predictions, &spec) {
            Ok(report) => Found::Report(report),
            Err(e) => Found::Predictions(e),
        }
    })
    .await;
    match found {
        Ok(Found::Report(mut report)) => {
            if let Some(row_losses) = report.public_row_losses.take()
                && let Err(e) = losses.put(&id, &row_losses).await
            {
                return ScoringEnd::Retry(Interruption::Service(format!(
                    "cannot store per-row losses: {}",
                    error_chain(&e)
                )));
            }
            if kind == SubmissionKind::Smoke {
                report.public = std::mem::take(&mut report.all);
                report.private.clear();
            } else {
                kept.keep(&id, predictions_path, cap).await;
            }
            ScoringEnd::Scored {
                public: report.public,
                private: report.private,
            }
        }
        Ok(Found::Predictions(e)) => predictions_end(&e, kind, &limits),
        Ok(Found::Service(detail)) => ScoringEnd::Retry(Interruption::Service(detail)),
        Err(e) => ScoringEnd::Retry(Interruption::Service(format!("scoring task failed: {e}"))),
    }
}

/// How a predictions problem ends the run: the participant's fault is INVALID_PREDICTIONS
/// (the message a FULL submitter reads says only that); the service's is INTERNAL_ERROR.
pub(super) fn predictions_end(
    e: &PredictionsError,
    kind: SubmissionKind,
    limits: &RunLimits,
) -> ScoringEnd {
    if e.is_participant_fault() {
        let detail = e.to_string();
        ScoringEnd::Rejected {
            message: verdict::participant_message(
                Verdict::InvalidPredictions,
                &detail,
                kind,
                limits,
            ),
            detail,
        }
    } else {
        ScoringEnd::Broken(format!("predictions: {}", error_chain(e)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> RunLimits {
        RunLimits {
            wall_time: Duration::from_secs(1),
            memory_bytes: 1 << 30,
            cpu_millis: 1000,
            pids: 10,
            output_bytes: 1 << 20,
            scratch_bytes: 1 << 20,
            gpus: 0,
            log_bytes: 1 << 20,
        }
    }

    /// One of each kind of predictions error, and whose fault it is. The match below makes
    /// a new variant a compile error here until it is listed.
    #[allow(dead_code)]
    fn listed(e: &PredictionsError) {
        use PredictionsError::*;
        match e {
            Missing
            | Empty
            | NotRegularFile { .. }
            | TooLarge { .. }
            | NoHeader
            | MissingColumn { .. }
            | UnparsableNumber { .. }
            | NotFinite { .. }
            | ProbabilityOutOfRange { .. }
            | EmptyPrediction { .. }
            | DuplicateId { .. }
            | UnknownIds { .. }
            | MissingIds { .. }
            | WrongFieldCount { .. }
            | InvalidUtf8 { .. }
            | UnbalancedQuotes { .. }
            | LineTooLong { .. }
            | NonFiniteMetric { .. }
            | Io(_)
            | SpecMismatch
            | UndefinedMetric { .. } => {}
        }
    }

    /// One of each kind of predictions error, and whose fault it is.
    fn every_predictions_error() -> Vec<(PredictionsError, bool)> {
        use PredictionsError::*;
        vec![
            (Missing, true),
            (Empty, true),
            (NotRegularFile { kind: "symlink" }, true),
            (TooLarge { cap_bytes: 10 }, true),
            (NoHeader, true),
            (
                MissingColumn {
                    column: "label".into(),
                },
                true,
            ),
            (UnparsableNumber { line: 2 }, true),
            (NotFinite { line: 2 }, true),
            (ProbabilityOutOfRange { line: 2 }, true),
            (EmptyPrediction { line: 2 }, true),
            (
                DuplicateId {
                    id: "7".into(),
                    line: 3,
                },
                true,
            ),
            (
                UnknownIds {
                    count: 1,
                    first: vec!["x".into()],
                },
                true,
            ),
            (MissingIds { count: 2 }, true),
            (
                WrongFieldCount {
                    line: 2,
                    expected: 2,
                    found: 3,
                },
                true,
            ),
            (InvalidUtf8 { line: 2 }, true),
            (UnbalancedQuotes { line: 2 }, true),
            (LineTooLong { line: 2 }, true),
            (
                NonFiniteMetric {
                    metric: crate::scoring::Metric::Rmse,
                },
                true,
            ),
            (Io(std::io::Error::other("disk gone")), false),
            (SpecMismatch, false),
            (
                UndefinedMetric {
                    metric: crate::scoring::Metric::Accuracy,
                },
                false,
            ),
        ]
    }

    #[test]
    fn each_predictions_error_is_charged_only_when_it_is_the_participants_fault() {
        for (e, participant) in every_predictions_error() {
            for kind in [SubmissionKind::Full, SubmissionKind::Smoke] {
                match predictions_end(&e, kind, &limits()) {
                    ScoringEnd::Rejected { message, detail } => {
                        assert!(participant, "{e:?} is the service's fault");
                        assert_eq!(detail, e.to_string());
                        if kind == SubmissionKind::Full {
                            // A FULL run's code saw private data: only the verdict's words.
                            assert_eq!(
                                message,
                                verdict::participant_message(
                                    Verdict::InvalidPredictions,
                                    "",
                                    kind,
                                    &limits()
                                )
                            );
                        } else {
                            assert_eq!(message, detail);
                        }
                    }
                    ScoringEnd::Broken(detail) => {
                        assert!(!participant, "{e:?} is the participant's fault");
                        assert!(detail.starts_with("predictions: "), "{detail}");
                    }
                    _ => panic!("{e:?}: unexpected end"),
                }
            }
        }
    }
}
