//! What a pass over one predictions file computes, derived once from the spec and the labels.
//!
//! Owns [`Plan`]: the kind of prediction the column holds, the columns found in the header, the
//! metrics' needs (classes, score keys, a probability check, a threshold), the sizes known in
//! advance from the labels, and the row losses every pass writes into. It must never read the
//! predictions: two passes over two halves of a file share one plan, read-only.

use std::sync::atomic::AtomicU32;

use crate::scoring::ScoringSpec;
use crate::scoring::errors::PredictionsError;
use crate::scoring::labels::{LabelSet, Targets};
use crate::scoring::metrics::Metric;

/// What the prediction column holds for this spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prediction {
    /// A class label.
    Class,
    /// A score or probability for the positive class.
    Score,
    /// A number for a regression target.
    Value,
}

/// Everything the passes over one predictions file share, read-only.
pub(crate) struct Plan<'a> {
    /// The ground truth.
    pub(crate) labels: &'a LabelSet,
    /// What the prediction column holds.
    pub(crate) kind: Prediction,
    /// Index of the id column.
    pub(crate) id_col: usize,
    /// Index of the prediction column.
    pub(crate) pred_col: usize,
    /// Fields per line, from the header.
    pub(crate) width: usize,
    /// Probabilities must lie in [0, 1] (log loss is computed).
    pub(crate) check_probability: bool,
    /// Class metrics are computed (from a threshold, for scores).
    pub(crate) wants_classes: bool,
    /// Score keys are collected for ROC AUC.
    pub(crate) wants_keys: bool,
    /// Scores `>=` this predict the positive class.
    pub(crate) threshold: Option<f64>,
    /// The positive class, for binary targets.
    pub(crate) positive: Option<usize>,
    /// The negative class, for binary targets.
    pub(crate) negative: Option<usize>,
    /// Known classes of the labels (0 for numbers).
    pub(crate) classes: usize,
    /// Score keys per part (public, private) and truth (negative, positive), to reserve.
    pub(crate) key_counts: [[usize; 2]; 2],
    /// The metric whose loss is recorded for each public row, when asked for and defined.
    pub(crate) loss_metric: Option<Metric>,
    /// Each public row's loss as f32 bits, by public rank; written by every pass.
    pub(crate) losses: Vec<AtomicU32>,
    /// Public rows before each 64-row word, for the public rank of a row.
    pub(crate) public_ranks: Vec<u32>,
}

impl<'a> Plan<'a> {
    /// Checks the spec against the labels and derives what a pass computes; the columns are
    /// filled in when the header is read.
    pub(crate) fn new(labels: &'a LabelSet, spec: &ScoringSpec) -> Result<Self, PredictionsError> {
        let label_spec = spec
            .label_spec()
            .map_err(|_| PredictionsError::SpecMismatch)?;
        if &label_spec != labels.spec() {
            return Err(PredictionsError::SpecMismatch);
        }
        let kind = match &labels.targets {
            Targets::Values(_) => Prediction::Value,
            Targets::Classes { .. }
                if spec.metrics.iter().any(|m| m.needs_scores()) || spec.threshold.is_some() =>
            {
                Prediction::Score
            }
            Targets::Classes { .. } => Prediction::Class,
        };
        let (class_of_row, positive) = match &labels.targets {
            Targets::Classes {
                of_row, positive, ..
            } => (&of_row[..], positive.map(usize::from)),
            Targets::Values(_) => (&[][..], None),
        };
        if kind == Prediction::Score && positive.is_none() {
            return Err(PredictionsError::SpecMismatch);
        }
        let wants_keys = spec.metrics.contains(&Metric::RocAuc);
        let mut key_counts = [[0usize; 2]; 2];
        if wants_keys {
            // Exact sizes are known from the labels, so the key vectors never reallocate.
            for (row, &class) in class_of_row.iter().enumerate() {
                key_counts[usize::from(!labels.is_public(row))]
                    [usize::from(Some(class as usize) == positive)] += 1;
            }
        }
        let loss_metric = spec
            .primary_metric()
            .filter(|m| spec.want_row_losses && m.has_row_losses());
        let losses_len = if loss_metric.is_some() {
            labels.public_len()
        } else {
            0
        };
        Ok(Plan {
            labels,
            kind,
            id_col: 0,
            pred_col: 0,
            width: 0,
            check_probability: spec.metrics.contains(&Metric::LogLoss),
            wants_classes: spec.metrics.iter().any(|m| m.compares_classes()),
            wants_keys,
            threshold: spec.threshold,
            positive,
            negative: positive.map(|p| 1 - p),
            classes: labels.class_count(),
            key_counts,
            loss_metric,
            losses: (0..losses_len).map(|_| AtomicU32::new(0)).collect(),
            public_ranks: if loss_metric.is_some() {
                labels.public_ranks()
            } else {
                Vec::new()
            },
        })
    }
}
