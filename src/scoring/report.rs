//! The report of a scored file: every metric over each part, and the public row losses.
//!
//! Owns [`ScoreReport`] and turning the parts' totals into it: sorting score keys, merging the
//! parts into "all", evaluating every metric, and refusing a score that is not finite. It must
//! never see a row (by the time it runs, the passes have reduced the file to totals), and never
//! return a NaN or infinite score.

use std::collections::BTreeMap;

use crate::scoring::ScoringSpec;
use crate::scoring::errors::PredictionsError;
use crate::scoring::metrics::{Metric, PartTotals, auc_over, finish, sort_keys};
use crate::scoring::plan::Plan;

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

/// Turns the two parts' totals into the report: sorts score keys once per part, merges
/// counts for "all", evaluates every metric, checks that every score is finite, and hands
/// over the row losses.
pub(crate) fn report(
    plan: Plan<'_>,
    spec: &ScoringSpec,
    mut parts: [PartTotals; 2],
    rows: usize,
) -> Result<ScoreReport, PredictionsError> {
    let labels = plan.labels;
    if spec.metrics.contains(&Metric::RocAuc) {
        sort_keys(&mut parts);
    }
    let [public, private] = &parts;
    let mut all = PartTotals::new(labels.class_count());
    all.merge_counts(public);
    all.merge_counts(private);
    let scores = |totals: &PartTotals, auc_parts: &[&PartTotals], ss_total: f64| {
        spec.metrics
            .iter()
            .map(|&m| {
                let auc = if m == Metric::RocAuc {
                    auc_over(auc_parts)
                } else {
                    f64::NAN
                };
                (m.name().to_owned(), finish(m, totals, auc, ss_total))
            })
            .collect()
    };
    let public_row_losses = plan.loss_metric.map(|_| {
        plan.losses
            .into_iter()
            .map(|bits| f32::from_bits(bits.into_inner()))
            .collect()
    });
    let [ss_public, ss_private, ss_all] = labels.ss_total;
    let report = if labels.has_split() {
        ScoreReport {
            all: scores(&all, &[public, private], ss_all),
            public: scores(public, &[public], ss_public),
            private: scores(private, &[private], ss_private),
            rows,
            public_row_losses,
        }
    } else {
        let all_scores = scores(&all, &[public], ss_all);
        ScoreReport {
            public: all_scores.clone(),
            all: all_scores,
            private: Default::default(),
            rows,
            public_row_losses,
        }
    };
    check_finite(&report, spec)?;
    Ok(report)
}

/// Refuses a report with a NaN or infinite score (which would be stored and released), naming
/// the first such metric in the spec's order and never the part: whether a part overflows
/// depends on which ids are in it. Only regression metrics can overflow from predictions
/// (every other metric is bounded once the labels loader accepted the labels), so a
/// non-finite score of any other metric is the service's fault.
fn check_finite(report: &ScoreReport, spec: &ScoringSpec) -> Result<(), PredictionsError> {
    let parts = [&report.all, &report.public, &report.private];
    for &metric in &spec.metrics {
        let finite = parts
            .iter()
            .filter_map(|scores| scores.get(metric.name()))
            .all(|score| score.is_finite());
        if !finite {
            return Err(if metric.is_regression() {
                PredictionsError::NonFiniteMetric { metric }
            } else {
                PredictionsError::UndefinedMetric { metric }
            });
        }
    }
    debug_assert!(
        (report.public_row_losses.iter().flatten()).all(|loss| loss.is_finite()),
        "row losses are saturated when stored"
    );
    Ok(())
}
