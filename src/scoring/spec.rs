//! The scoring configuration of a challenge, checked once, and how its labels must be read.
//!
//! Owns [`ScoringSpec`] (what the organiser chose: columns, metrics, threshold, split, caps),
//! its check ([`SpecError`], for the organiser), and the [`LabelSpec`] it derives: everything
//! that decides how a labels file is loaded, so a loaded set can be cached under it. It must
//! never read a file: whatever the files hold, a spec that passes here can score them.

use crate::scoring::metrics::Metric;
use crate::scoring::split::Split;

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
    /// Also return the primary metric's loss on each public row, for the parameter-free
    /// Ladder ([`ScoreReport::public_row_losses`](crate::scoring::ScoreReport)).
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
            needs_r2: self.metrics.contains(&Metric::R2),
        })
    }

    /// The metric that ranks the leaderboard (the first one).
    pub fn primary_metric(&self) -> Option<Metric> {
        self.metrics.first().copied()
    }
}

/// What the target column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// Class labels, compared as trimmed strings.
    Classes,
    /// Finite numbers (regression).
    Values,
}

/// How to read a labels file; derived from a [`crate::scoring::ScoringSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSpec {
    /// Name of the id column.
    pub id_column: String,
    /// Name of the target column.
    pub target_column: String,
    /// Whether targets are classes or numbers.
    pub kind: TargetKind,
    /// The public/private split, if any.
    pub split: Option<Split>,
    /// The positive class of a binary target; `None` picks sklearn's (the greater label).
    pub positive_label: Option<String>,
    /// The metrics need exactly two classes (ROC AUC, log loss, or a threshold).
    pub binary: bool,
    /// Every non-empty part must hold both classes (ROC AUC is undefined otherwise).
    pub both_classes_per_part: bool,
    /// r2 is computed, so every part must hold at least two rows and a finite sum of squares
    /// (r2 is undefined otherwise, whatever the predictions).
    pub needs_r2: bool,
}
