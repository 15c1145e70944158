//! The public/private split of `labels.csv` under the challenge's seed and fraction: the
//! size and class balance of each part, and whether a part is large enough for the metric
//! to separate submissions (the 95% interval half-width of the metric at that size).

use super::integrity::class_counts;
use super::report::{Code, Finding, PartSummary, Severity, SplitSummary};
use super::targets::LabelsOutcome;
use crate::scoring::Metric;

/// The 95% interval half-width of `metric` on a part of `rows` rows with these class
/// counts, and what it measures. Worst cases, so the warning never understates.
pub fn half_width(metric: Option<Metric>, rows: u64, classes: &[u64]) -> (&'static str, f64) {
    let n = rows.max(1) as f64;
    let present: Vec<f64> = classes
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64)
        .collect();
    match metric {
        Some(Metric::RocAuc) if present.len() == 2 => {
            // Hanley & McNeil (1982) at AUC = 0.5, where Q1 = Q2 = 1/3.
            let (p, q) = (present[0], present[1]);
            let var =
                (0.25 + (p - 1.0) * (1.0 / 3.0 - 0.25) + (q - 1.0) * (1.0 / 3.0 - 0.25)) / (p * q);
            (
                "roc_auc half-width at AUC 0.5 (Hanley-McNeil)",
                1.96 * var.sqrt(),
            )
        }
        Some(Metric::BalancedAccuracy | Metric::F1Macro) if !present.is_empty() => {
            let k = present.len() as f64;
            let var: f64 = present.iter().map(|c| 0.25 / c).sum::<f64>() / (k * k);
            (
                "mean per-class recall half-width, worst case p = 0.5",
                1.96 * var.sqrt(),
            )
        }
        Some(Metric::Rmse | Metric::R2) => (
            "relative half-width of the RMSE (normal errors)",
            1.96 / (2.0 * n).sqrt(),
        ),
        Some(Metric::Mae) => (
            "relative half-width of the MAE (normal errors)",
            1.96 * (std::f64::consts::FRAC_PI_2 - 1.0).sqrt() / n.sqrt(),
        ),
        _ => (
            "accuracy half-width, worst case p = 0.5",
            1.96 * (0.25 / n).sqrt(),
        ),
    }
}

/// The split's summary and findings.
pub fn split_findings(
    out: &LabelsOutcome,
    metric: Option<Metric>,
    max_half_width: f64,
    names: &[String],
) -> (SplitSummary, Vec<Finding>) {
    let mut f = Vec::new();
    let mut parts = Vec::new();
    let mut measure = "";
    for (&(rows, classes), name) in out.parts().iter().zip(["public", "private"]) {
        let (m, hw) = half_width(metric, rows, classes);
        measure = m;
        if rows == 0 {
            f.push(
                Finding::new(
                    Code::SplitEmptyPart,
                    Severity::Error,
                    0,
                    format!("the {name} part is empty: change public_fraction or the seed"),
                )
                .file("labels.csv"),
            );
        } else if hw > max_half_width {
            f.push(
                Finding::new(
                    Code::SplitPartTooSmall,
                    Severity::Warning,
                    rows,
                    format!(
                        "the {name} part has {} rows: two submissions closer than ±{hw:.3} cannot be told apart (max_half_width {max_half_width})",
                        rows
                    ),
                )
                .file("labels.csv")
                .measure("half_width", (hw * 10000.0).round() / 10000.0),
            );
        }
        for (c, &total) in out.counts.iter().enumerate() {
            if total > 0 && classes.get(c).copied().unwrap_or(0) == 0 {
                let sev = if metric == Some(Metric::RocAuc) {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let class = names
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("class #{}", c + 1));
                f.push(
                    Finding::new(
                        Code::SplitClassAbsent,
                        sev,
                        total,
                        format!("{class} ({total} rows in all) has no row in the {name} part"),
                    )
                    .file("labels.csv"),
                );
            }
        }
        parts.push(PartSummary {
            rows,
            classes: class_counts(classes, names),
            half_width: (hw * 10000.0).round() / 10000.0,
        });
    }
    let (public, private) = (parts[0].clone(), parts[1].clone());
    f.push(
        Finding::new(
            Code::SplitSizes,
            Severity::Info,
            public.rows + private.rows,
            format!(
                "public part {} rows, private part {} rows",
                public.rows, private.rows
            ),
        )
        .file("labels.csv"),
    );
    (
        SplitSummary {
            measure: measure.to_owned(),
            public,
            private,
        },
        f,
    )
}
