//! Integrity of the labels and of how files relate: ids present, unique and non-empty,
//! targets that parse for the metric, class balance, the public/private split's sizes and
//! balance, test inputs whose ids match the labels exactly, and a sample disjoint from
//! the private ids.
//!
//! Owns the labels hook that reads targets during the pass, the label lookup used by the
//! leakage and ℓ-diversity checks ([`LabelMap`], bounded), and the rule for naming classes
//! in reports: a class is named by its value only if the public sample's labels have it too
//! (so the name is public already) and the value is short and not personal data; any other
//! class is `class #N`. Nothing else read from a labels file reaches a report.

use std::collections::HashMap;

use super::csv_stream::Record;
use super::idset::Sorted;
use super::leakage::TargetKind;
use super::pii;
use super::report::{
    ClassCount, Code, Finding, LabelsSummary, PartSummary, Severity, SplitSummary,
};
use super::scan::RowHook;
use crate::scoring::{Metric, Split};

/// Most classes tracked; past this a target is not a class target.
pub const MAX_CLASSES: usize = 10_000;
/// Most labels kept for lookups by id (16 bytes each): 16 MiB. Past this the map keeps a
/// uniform subset by id hash, enough for the statistical checks, and says it is partial.
pub const MAX_LABEL_MAP: usize = 1 << 20;
/// Longest class value that may be shown by name.
const MAX_SHOWN_CLASS: usize = 32;

/// Class values interned to codes, shared by `labels.csv` and `sample/labels.csv`.
#[derive(Debug, Default)]
pub struct Classes {
    /// Code of each value.
    index: HashMap<Vec<u8>, u32>,
    /// Value of each code (private).
    values: Vec<Vec<u8>>,
    /// More than [`MAX_CLASSES`] values were seen.
    pub overflow: bool,
}

impl Classes {
    fn code(&mut self, v: &[u8]) -> Option<u32> {
        if let Some(&c) = self.index.get(v) {
            return Some(c);
        }
        if self.values.len() >= MAX_CLASSES {
            self.overflow = true;
            return None;
        }
        let c = self.values.len() as u32;
        self.index.insert(v.to_vec(), c);
        self.values.push(v.to_vec());
        Some(c)
    }

    /// How each class is shown, given which classes the public sample's labels hold.
    pub fn shown(&self, in_sample: &[u64]) -> Vec<String> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let public = in_sample.get(i).is_some_and(|&n| n > 0);
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
}

/// Labels by id key, all of them or a uniform subset (ids whose key is below `threshold`).
#[derive(Debug)]
pub struct LabelMap {
    map: HashMap<u64, f64>,
    threshold: u64,
    complete: bool,
}

impl Default for LabelMap {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            threshold: u64::MAX,
            complete: true,
        }
    }
}

impl LabelMap {
    fn insert(&mut self, key: u64, label: f64) {
        if key > self.threshold {
            return;
        }
        self.map.insert(key, label);
        while self.map.len() > MAX_LABEL_MAP {
            self.threshold /= 2;
            self.complete = false;
            let t = self.threshold;
            self.map.retain(|k, _| *k <= t);
        }
    }

    /// The label of the id with this key, if kept.
    pub fn get(&self, key: u64) -> Option<f64> {
        if key > self.threshold {
            return None;
        }
        self.map.get(&key).copied()
    }

    /// Whether every label is kept.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

/// Rows of one part of the split.
#[derive(Debug, Default, Clone)]
struct PartAcc {
    rows: u64,
    classes: Vec<u64>,
}

/// Reads the targets of a labels file during its pass.
pub struct LabelsAcc<'a> {
    target: Option<usize>,
    kind: TargetKind,
    classes: &'a mut Classes,
    /// Rows per class code.
    pub counts: Vec<u64>,
    missing_target: u64,
    bad_target: u64,
    split: Option<Split>,
    parts: [PartAcc; 2],
    /// Labels by id.
    pub map: LabelMap,
}

impl<'a> LabelsAcc<'a> {
    /// A hook reading `target` as `kind`; `split` counts the parts (private labels only).
    pub fn new(
        target: Option<usize>,
        kind: TargetKind,
        classes: &'a mut Classes,
        split: Option<Split>,
    ) -> Self {
        Self {
            target,
            kind,
            classes,
            counts: Vec::new(),
            missing_target: 0,
            bad_target: 0,
            split,
            parts: Default::default(),
            map: LabelMap::default(),
        }
    }
}

impl RowHook for LabelsAcc<'_> {
    fn row(&mut self, rec: &Record<'_>, id: &[u8], key: u64) {
        let Some(t) = self.target else { return };
        let v = rec.get(t);
        if v.is_empty() {
            self.missing_target += 1;
            return;
        }
        let (label, code) = match self.kind {
            TargetKind::Classes => match self.classes.code(v) {
                Some(c) => {
                    let c = c as usize;
                    if self.counts.len() <= c {
                        self.counts.resize(c + 1, 0);
                    }
                    self.counts[c] += 1;
                    (c as f64, Some(c))
                }
                None => return,
            },
            TargetKind::Values => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            {
                Some(x) if x.is_finite() => (x, None),
                _ => {
                    self.bad_target += 1;
                    return;
                }
            },
        };
        if id.is_empty() {
            return;
        }
        self.map.insert(key, label);
        if let Some(split) = self.split {
            let part = &mut self.parts[usize::from(!split.is_public(id))];
            part.rows += 1;
            if let Some(c) = code {
                if part.classes.len() <= c {
                    part.classes.resize(c + 1, 0);
                }
                part.classes[c] += 1;
            }
        }
    }
}

/// What a labels file's pass leaves for the findings.
pub struct LabelsOutcome {
    /// Rows per class code.
    pub counts: Vec<u64>,
    /// Labels by id.
    pub map: LabelMap,
    missing_target: u64,
    bad_target: u64,
    parts: [PartAcc; 2],
}

impl LabelsAcc<'_> {
    /// Ends the pass.
    pub fn finish(self) -> LabelsOutcome {
        LabelsOutcome {
            counts: self.counts,
            map: self.map,
            missing_target: self.missing_target,
            bad_target: self.bad_target,
            parts: self.parts,
        }
    }
}

fn class_counts(counts: &[u64], names: &[String]) -> Vec<ClassCount> {
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

/// The summary and findings of a labels file (`labels.csv` or `sample/labels.csv`).
#[allow(clippy::too_many_arguments)]
pub fn labels_findings(
    rel: &str,
    rows: u64,
    ids: Option<&Sorted>,
    empty_ids: u64,
    out: &LabelsOutcome,
    metric: Option<Metric>,
    kind: TargetKind,
    overflow: bool,
    names: &[String],
) -> std::io::Result<(LabelsSummary, Vec<Finding>)> {
    let mut f = Vec::new();
    let distinct = ids.map(Sorted::distinct).transpose()?.unwrap_or(0);
    if let Some(ids) = ids {
        let dup = ids.len() - distinct;
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
    if kind == TargetKind::Classes && rows > 0 {
        if overflow {
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
                    Severity::Error,
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
                    Severity::Error,
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
    Ok((summary, f))
}

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
    for (part, name) in out.parts.iter().zip(["public", "private"]) {
        let (m, hw) = half_width(metric, part.rows, &part.classes);
        measure = m;
        if part.rows == 0 {
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
                    part.rows,
                    format!(
                        "the {name} part has {} rows: two submissions closer than ±{hw:.3} cannot be told apart (max_half_width {max_half_width})",
                        part.rows
                    ),
                )
                .file("labels.csv")
                .measure("half_width", (hw * 10000.0).round() / 10000.0),
            );
        }
        for (c, &total) in out.counts.iter().enumerate() {
            if total > 0 && part.classes.get(c).copied().unwrap_or(0) == 0 {
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
            rows: part.rows,
            classes: class_counts(&part.classes, names),
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
