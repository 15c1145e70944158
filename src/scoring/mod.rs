//! Scoring: everything about predictions and metrics.
//!
//! Owns the predictions contract and its participant-safe errors ([`predictions`]), the row
//! pass that joins predictions with labels (`pass`), loading and caching the ground truth
//! ([`labels`], with its row parser in `label_rows` and its id index in `index`), the
//! built-in metrics ([`metrics`]), the public/private split ([`split`]), the helpers for an
//! organiser's custom scorer ([`custom`]), and the core of the `holdout score` command
//! ([`cli`]).
//!
//! ```text
//!  labels.csv ──load_labels──▶ LabelSet (ids interned + hash index, targets, split bits)
//!                                  │            cached by LabelsCache as Arc<LabelSet>
//!  predictions.csv ──open_predictions (O_NOFOLLOW, fstat, size cap)
//!        └──score_predictions: a pass over each half of the file, on two threads
//!              (on any problem: one pass from the start, for the exact first error)
//!              ─▶ per-part totals (+ public row losses) ─▶ ScoreReport {all, public, private}
//! ```
//!
//! This module never talks to containers, the store or the network, never logs, and never
//! puts a label value or an id's split membership into a message a participant can see.

pub mod cli;
mod csv;
pub mod custom;
mod index;
mod label_rows;
pub mod labels;
pub mod metrics;
mod pass;
pub mod predictions;
pub mod split;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use custom::{ScorerOutput, ScorerOutputError, parse_scores_json, write_split_labels};
pub use labels::{LabelSet, LabelSpec, LabelsCache, LabelsError, TargetKind, load_labels};
pub use metrics::Metric;
pub use predictions::{PredictionsError, open_predictions, score_predictions, score_reader};
pub use split::Split;

/// How a challenge's predictions are scored with built-in metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringSpec {
    /// The id column, in both the labels and the predictions.
    pub id_column: String,
    /// The target column in the labels.
    pub target_column: String,
    /// The prediction column in the predictions (the contract defaults it to the target).
    pub prediction_column: String,
    /// The positive class for binary metrics; `None` takes sklearn's (the greater label).
    pub positive_label: Option<String>,
    /// The metrics to compute; the first one ranks the leaderboard.
    pub metrics: Vec<Metric>,
    /// For class metrics over a score column: scores `>=` this predict the positive class.
    pub threshold: Option<f64>,
    /// The public/private split; `None` scores everything as public.
    pub split: Option<Split>,
    /// The largest predictions file accepted, in bytes.
    pub max_predictions_bytes: u64,
    /// Also return the primary metric's loss on each public row
    /// ([`ScoreReport::public_row_losses`]), for the parameter-free Ladder.
    pub want_row_losses: bool,
}

/// A scoring configuration that cannot work, whatever the files hold. For the organiser.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// No metric was named.
    #[error("at least one metric is required")]
    NoMetrics,
    /// Regression and classification metrics over one target.
    #[error(
        "{0} and {1} cannot score the same target: one is a regression metric, the other is not"
    )]
    MixedTargetKinds(Metric, Metric),
    /// Class metrics alongside score metrics share one score column, so need a threshold.
    #[error("{0} needs a threshold when scored from a probability column (alongside {1})")]
    ThresholdRequired(Metric, Metric),
    /// The threshold is NaN or infinite.
    #[error("threshold must be a finite number")]
    BadThreshold,
    /// The split's public fraction leaves a part empty by construction.
    #[error("public_fraction must be strictly between 0 and 1, got {0}")]
    BadPublicFraction(f64),
    /// An empty column name.
    #[error("{0} must not be empty")]
    EmptyColumn(&'static str),
    /// The prediction column is the id column.
    #[error("prediction_column must differ from id_column")]
    PredictionIsId,
    /// A zero size cap.
    #[error("max_predictions_bytes must be positive")]
    ZeroCap,
}

impl ScoringSpec {
    /// Checks the spec and derives how the labels must be loaded for it.
    pub fn label_spec(&self) -> Result<LabelSpec, SpecError> {
        let first = *self.metrics.first().ok_or(SpecError::NoMetrics)?;
        if let Some(other) = self
            .metrics
            .iter()
            .find(|m| m.is_regression() != first.is_regression())
        {
            return Err(SpecError::MixedTargetKinds(first, *other));
        }
        let score_metric = self.metrics.iter().find(|m| m.needs_scores());
        let class_metric = self.metrics.iter().find(|m| m.compares_classes());
        if let (Some(s), Some(c), None) = (score_metric, class_metric, self.threshold) {
            return Err(SpecError::ThresholdRequired(*c, *s));
        }
        if self.threshold.is_some_and(|t| !t.is_finite()) {
            return Err(SpecError::BadThreshold);
        }
        if let Some(split) = self.split.filter(|s| !s.is_valid()) {
            return Err(SpecError::BadPublicFraction(split.public_fraction));
        }
        for (name, value) in [
            ("id_column", &self.id_column),
            ("target_column", &self.target_column),
            ("prediction_column", &self.prediction_column),
        ] {
            if value.trim().is_empty() {
                return Err(SpecError::EmptyColumn(name));
            }
        }
        if self.prediction_column.trim() == self.id_column.trim() {
            return Err(SpecError::PredictionIsId);
        }
        if self.max_predictions_bytes == 0 {
            return Err(SpecError::ZeroCap);
        }
        let regression = first.is_regression();
        Ok(LabelSpec {
            id_column: self.id_column.trim().to_owned(),
            target_column: self.target_column.trim().to_owned(),
            kind: if regression {
                TargetKind::Values
            } else {
                TargetKind::Classes
            },
            split: self.split,
            positive_label: if regression {
                None
            } else {
                self.positive_label.clone()
            },
            binary: !regression && (score_metric.is_some() || self.threshold.is_some()),
            both_classes_per_part: self.metrics.contains(&Metric::RocAuc),
        })
    }

    /// The metric that ranks the leaderboard (the first one).
    pub fn primary_metric(&self) -> Option<Metric> {
        self.metrics.first().copied()
    }
}

/// The scores of one predictions file, keyed by metric name.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScoreReport {
    /// Over every label row.
    pub all: BTreeMap<String, f64>,
    /// Over the public part (equal to `all` when there is no split).
    pub public: BTreeMap<String, f64>,
    /// Over the private part (empty when there is no split).
    pub private: BTreeMap<String, f64>,
    /// Data rows read from the predictions file.
    pub rows: usize,
    /// When [`ScoringSpec::want_row_losses`] is set and the primary metric
    /// [`has_row_losses`](Metric::has_row_losses): that metric's loss on each public row, in
    /// the order of the public rows in the labels file (so two submissions' vectors pair up
    /// row by row, whatever order their predictions were written in). Accuracy gives 0 or 1,
    /// log_loss the row's clipped log loss, rmse and r2 the squared error, mae the absolute
    /// error. Held as f32: the Ladder compares means over many rows, and this halves memory.
    /// Private data: never shown to a participant.
    #[serde(skip)]
    pub public_row_losses: Option<Vec<f32>>,
}
