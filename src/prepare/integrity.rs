//! Integrity of a labels file: ids unique and non-empty, targets present and parsable for
//! the metric (classes for class metrics, finite numbers for regression), class balance.
//!
//! Owns the rule for naming classes in reports: a class is named by its value only if the
//! public sample's labels have it too (so the name is public already) and the value is
//! short and not personal data; any other class is `class #N`. Nothing else read from a
//! labels file reaches a report.

use super::leakage::TargetKind;
use super::pii;
use super::report::{ClassCount, Code, Finding, LabelsSummary, Severity};
use super::targets::{Classes, LabelsOutcome, MAX_CLASSES};
use crate::scoring::Metric;

/// Longest class value that may be shown by name.
const MAX_SHOWN_CLASS: usize = 32;

/// How each class of `classes` is shown in reports: by its value when the public sample's
/// labels hold it too (so it is public already) and the value is short and not personal
/// data; otherwise `class #N`, N being its order of first appearance.
pub fn class_names(classes: &Classes, sample: Option<&LabelsOutcome>) -> Vec<String> {
    classes
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let public = sample.is_some_and(|s| {
                s.classes
                    .find(v)
                    .is_some_and(|c| s.counts.get(c).is_some_and(|&n| n > 0))
            });
            let plain = v.len() <= MAX_SHOWN_CLASS
                && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                && pii::scan_cell(v, 9999).hits == 0;
            if public && plain {
                String::from_utf8_lossy(v).into_owned()
            } else {
                format!("class #{}", i + 1)
            }
        })
        .collect()
}

/// Rows per class, most frequent first, named as shown.
pub fn class_counts(counts: &[u64], names: &[String]) -> Vec<ClassCount> {
    let mut v: Vec<ClassCount> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| ClassCount {
            class: names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class #{}", i + 1)),
            rows: n,
        })
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.rows));
    v
}

/// The summary and findings of a labels file (`labels.csv` or `sample/labels.csv`); `ids`
/// is (rows with an id, distinct ids) when the id column exists.
#[allow(clippy::too_many_arguments)]
pub fn labels_findings(
    rel: &str,
    rows: u64,
    ids: Option<(u64, u64)>,
    empty_ids: u64,
    out: &LabelsOutcome,
    metric: Option<Metric>,
    kind: TargetKind,
    names: &[String],
) -> (LabelsSummary, Vec<Finding>) {
    let mut f = Vec::new();
    let distinct = ids.map_or(0, |i| i.1);
    if let Some((with_id, distinct)) = ids {
        let dup = with_id - distinct;
        if dup > 0 {
            f.push(
                Finding::new(
                    Code::LabelsDuplicateId,
                    Severity::Error,
                    dup,
                    format!("{dup} rows repeat an id of an earlier row"),
                )
                .file(rel)
                .total(rows),
            );
        }
    }
    if empty_ids > 0 {
        f.push(
            Finding::new(
                Code::LabelsEmptyId,
                Severity::Error,
                empty_ids,
                format!("{empty_ids} rows have an empty id"),
            )
            .file(rel)
            .total(rows),
        );
    }
    if out.missing_target > 0 {
        let n = out.missing_target;
        f.push(
            Finding::new(
                Code::LabelsMissingTarget,
                Severity::Error,
                n,
                format!("{n} rows have no target"),
            )
            .file(rel)
            .total(rows),
        );
    }
    if out.bad_target > 0 {
        let n = out.bad_target;
        f.push(
            Finding::new(
                Code::LabelsBadTarget,
                Severity::Error,
                n,
                format!("{n} targets are not finite numbers, which a regression metric needs"),
            )
            .file(rel)
            .total(rows),
        );
    }
    let classes = class_counts(&out.counts, names);
    // The sample's labels only score SMOKE runs: a sample short of classes is a warning.
    let class_severity = if rel.starts_with("sample/") {
        Severity::Warning
    } else {
        Severity::Error
    };
    if kind == TargetKind::Classes && rows > 0 {
        if out.classes.overflow {
            f.push(
                Finding::new(
                    Code::LabelsTooManyClasses,
                    Severity::Warning,
                    MAX_CLASSES as u64,
                    format!(
                        "more than {MAX_CLASSES} distinct targets: is this a regression target?"
                    ),
                )
                .file(rel),
            );
        }
        let n = classes.len() as u64;
        let class_metric = metric.is_some_and(|m| !m.is_regression());
        if class_metric && n < 2 {
            f.push(
                Finding::new(
                    Code::LabelsSingleClass,
                    class_severity,
                    n,
                    "fewer than two classes: every submission would score the same",
                )
                .file(rel),
            );
        }
        if let Some(m) = metric.filter(|m| m.needs_scores())
            && n != 2
        {
            f.push(
                Finding::new(
                    Code::LabelsNotBinary,
                    class_severity,
                    n,
                    format!("{m} needs exactly two classes, found {n}"),
                )
                .file(rel),
            );
        }
        if let Some(rarest) = classes.last() {
            f.push(
                Finding::new(
                    Code::LabelsClassBalance,
                    Severity::Info,
                    n,
                    format!(
                        "{n} classes; the rarest has {} rows ({:.1}%)",
                        rarest.rows,
                        100.0 * rarest.rows as f64 / rows as f64
                    ),
                )
                .file(rel)
                .total(rows),
            );
        }
    }
    let summary = LabelsSummary {
        file: rel.to_owned(),
        rows,
        distinct_ids: distinct,
        classes,
    };
    (summary, f)
}
