//! Leakage of the target through the data: a column that predicts the label almost
//! perfectly, an exact value → label dependency, and row or id order that follows the label.
//!
//! Works on a uniform sample of a file's labelled rows (reservoir sampling with a fixed
//! seed, so a check is reproducible): at most [`SAMPLE_ROWS`] rows, fewer for wide files
//! ([`SAMPLE_CELLS`] cells in all), 16 bytes a cell. Value → label dependencies track at
//! most [`MAX_DISTINCT`] distinct values per column; a column with more is treated as
//! continuous (ordering measures only). On 100,000 rows an AUC is known to about ±0.002,
//! far finer than the 0.99 threshold, so sampling costs no power here.
//!
//! Measures, each in [0, 1] with 0 for "no information" where it can be:
//! - `auc`: binary class target, numeric column: max(AUC, 1 − AUC), ties counting half.
//! - `ordering_agreement`: more than two classes, numeric column: rows sorted by the column
//!   (ties in a fixed pseudo-random order), how much fewer class changes than chance there
//!   are between neighbours, as a kappa (1 = the column's order separates the classes).
//! - `spearman`: numeric target, numeric column: |Spearman's rank correlation|.
//! - `value_accuracy`: class target: accuracy of predicting each value's majority class, as
//!   a kappa against always predicting the majority class.
//! - `eta_squared`: numeric target, categorical column: share of the target's variance
//!   explained by the column's values.
//!
//! It must never report a value: findings carry a column name, a measure and a row count.

use std::collections::HashMap;

use super::csv_stream::Record;
use super::report::{Code, Finding, Severity};
use crate::scoring::split::mix64;

/// Most rows kept per file.
pub const SAMPLE_ROWS: usize = 100_000;
/// Most cells kept per file (rows × candidate columns), so 64 MiB at 16 bytes a cell.
pub const SAMPLE_CELLS: usize = 4_000_000;
/// Fewer labelled rows than this and no claim is made.
pub const MIN_ROWS: usize = 20;
/// A column whose measure reaches this predicts the label "almost perfectly".
pub const PREDICTIVE: f64 = 0.99;
/// Row or id order whose AUC reaches this follows the label (a Gini of 0.5).
pub const ORDER_AUC: f64 = 0.75;
/// Row or id order whose ordering agreement or |Spearman| reaches this follows the label.
pub const ORDER: f64 = 0.5;
/// Most distinct values tracked per column for value → label measures.
pub const MAX_DISTINCT: usize = 1000;

/// How labels are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Class codes.
    Classes,
    /// Numbers.
    Values,
}

/// One sampled cell: its number (NaN when not one) and a hash of its text (0 when empty).
#[derive(Debug, Clone, Copy)]
struct Cell {
    num: f64,
    hash: u64,
}

/// A reservoir of labelled rows of one file.
#[derive(Debug)]
pub struct LeakSample {
    /// Candidate columns (index in the file, name as shown).
    cols: Vec<(usize, String)>,
    /// Cells, row-major.
    cells: Vec<Cell>,
    /// Label of each kept row (a class code or a value).
    labels: Vec<f64>,
    /// Row number of each kept row in the file.
    pos: Vec<f64>,
    /// The id as a number, NaN when it is not one.
    ids: Vec<f64>,
    /// Rows kept at most.
    cap: usize,
    /// Labelled rows offered.
    seen: u64,
    /// The reservoir's random state (fixed seed).
    rng: u64,
}

fn parse_num(b: &[u8]) -> f64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(f64::NAN)
}

fn cell_hash(b: &[u8]) -> u64 {
    if b.is_empty() {
        0
    } else {
        crate::scoring::split::hash_id(b, 0x6c65_616b).max(1)
    }
}

impl LeakSample {
    /// A reservoir over `cols` (index, display name).
    pub fn new(cols: Vec<(usize, String)>) -> Self {
        let cap = SAMPLE_ROWS
            .min(SAMPLE_CELLS / cols.len().max(1))
            .max(MIN_ROWS);
        Self {
            cols,
            cells: Vec::new(),
            labels: Vec::new(),
            pos: Vec::new(),
            ids: Vec::new(),
            cap,
            seen: 0,
            rng: 0x5eed,
        }
    }

    /// Offers data row `row` (0-based) with its id and label.
    pub fn offer(&mut self, rec: &Record<'_>, row: u64, id: &[u8], label: f64) {
        self.seen += 1;
        let slot = if self.labels.len() < self.cap {
            None
        } else {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let j = mix64(self.rng) % self.seen;
            if j >= self.cap as u64 {
                return;
            }
            Some(j as usize)
        };
        let width = self.cols.len();
        let cells = self.cols.iter().map(|&(c, _)| {
            let b = rec.get(c);
            Cell {
                num: parse_num(b),
                hash: cell_hash(b),
            }
        });
        match slot {
            None => {
                self.cells.extend(cells);
                self.labels.push(label);
                self.pos.push(row as f64);
                self.ids.push(parse_num(id));
            }
            Some(j) => {
                for (k, cell) in cells.enumerate() {
                    self.cells[j * width + k] = cell;
                }
                self.labels[j] = label;
                self.pos[j] = row as f64;
                self.ids[j] = parse_num(id);
            }
        }
    }

    /// Rows kept.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The leakage findings of this file. `order` adds the row- and id-order checks (for
    /// test files, whose order participants see).
    pub fn findings(&self, kind: TargetKind, file: &str, order: bool) -> Vec<Finding> {
        let n = self.rows();
        let mut out = Vec::new();
        if n < MIN_ROWS {
            return out;
        }
        let width = self.cols.len();
        for (k, (_, name)) in self.cols.iter().enumerate() {
            let col: Vec<Cell> = (0..n).map(|r| self.cells[r * width + k]).collect();
            if let Some(f) = column_finding(&col, &self.labels, kind) {
                out.push(f.file(file).column(name));
            }
        }
        if order {
            let checks = [
                (&self.pos, Code::LeakRowOrder, "row order"),
                (&self.ids, Code::LeakIdOrder, "id order"),
            ];
            for (xs, code, what) in checks {
                let (x, y): (Vec<f64>, Vec<f64>) = xs
                    .iter()
                    .zip(&self.labels)
                    .filter(|(x, _)| x.is_finite())
                    .map(|(x, y)| (*x, *y))
                    .unzip();
                if x.len() < MIN_ROWS || x.len() * 20 < n * 19 {
                    continue;
                }
                if let Some((measure, v)) = ordering_measure(&x, &y, kind)
                    && v >= if measure == "auc" { ORDER_AUC } else { ORDER }
                {
                    out.push(
                        Finding::new(
                            code,
                            Severity::Warning,
                            x.len() as u64,
                            format!(
                                "the {what} of this test file follows the label ({measure} {v:.3} on {} sampled rows): shuffle the rows or re-key the ids",
                                x.len()
                            ),
                        )
                        .file(file)
                        .measure(measure, round3(v)),
                    );
                }
            }
        }
        out
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The strongest leak of one column, if any.
fn column_finding(col: &[Cell], labels: &[f64], kind: TargetKind) -> Option<Finding> {
    let present: Vec<usize> = (0..col.len()).filter(|&i| col[i].hash != 0).collect();
    if present.len() < MIN_ROWS {
        return None;
    }
    let hashes: Vec<u64> = present.iter().map(|&i| col[i].hash).collect();
    let ys: Vec<f64> = present.iter().map(|&i| labels[i]).collect();
    let n = present.len();
    let groups = value_groups(&hashes, &ys);
    if kind == TargetKind::Classes
        && let Some((distinct, purity, base)) = groups.as_ref().map(|g| class_purity(g, n))
        && base < 1.0
    {
        if purity == 1.0 && distinct >= 2 && distinct * 2 <= n {
            return Some(
                Finding::new(
                    Code::LeakFunctionalDependency,
                    Severity::Error,
                    n as u64,
                    format!(
                        "each of this column's {distinct} values goes with a single class on {n} sampled rows: the column gives the label away"
                    ),
                )
                .measure("value_accuracy", 1.0),
            );
        }
        let kappa = (purity - base) / (1.0 - base);
        if kappa >= PREDICTIVE && distinct * 10 <= n {
            return Some(predictive("value_accuracy", kappa, n));
        }
    }
    if kind == TargetKind::Values
        && let Some(g) = &groups
        && g.len() * 10 <= n
    {
        let eta = eta_squared(g, &ys);
        if eta >= PREDICTIVE {
            return Some(predictive("eta_squared", eta, n));
        }
    }
    let numeric: Vec<usize> = present
        .iter()
        .copied()
        .filter(|&i| col[i].num.is_finite())
        .collect();
    if numeric.len() >= MIN_ROWS && numeric.len() * 20 >= n * 19 {
        let x: Vec<f64> = numeric.iter().map(|&i| col[i].num).collect();
        let y: Vec<f64> = numeric.iter().map(|&i| labels[i]).collect();
        if let Some((measure, v)) = ordering_measure(&x, &y, kind)
            && v >= PREDICTIVE
        {
            return Some(predictive(measure, v, x.len()));
        }
    }
    None
}

fn predictive(measure: &str, v: f64, n: usize) -> Finding {
    Finding::new(
        Code::LeakPredictiveColumn,
        Severity::Error,
        n as u64,
        format!("this column alone predicts the label ({measure} {v:.3} on {n} sampled rows)"),
    )
    .measure(measure, round3(v))
}

/// Rows per (value, label), or None past [`MAX_DISTINCT`] values.
fn value_groups(hashes: &[u64], ys: &[f64]) -> Option<HashMap<u64, Vec<(u64, u64)>>> {
    let mut g: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (&h, &y) in hashes.iter().zip(ys) {
        if !g.contains_key(&h) && g.len() >= MAX_DISTINCT {
            return None;
        }
        let labels = g.entry(h).or_default();
        match labels.iter_mut().find(|(l, _)| *l == y.to_bits()) {
            Some((_, c)) => *c += 1,
            None => labels.push((y.to_bits(), 1)),
        }
    }
    Some(g)
}

/// (distinct values, accuracy of each value's majority class, majority class share).
fn class_purity(g: &HashMap<u64, Vec<(u64, u64)>>, n: usize) -> (usize, f64, f64) {
    let hits: u64 = g
        .values()
        .map(|ls| ls.iter().map(|l| l.1).max().unwrap_or(0))
        .sum();
    let mut per_class: HashMap<u64, u64> = HashMap::new();
    for ls in g.values() {
        for &(l, c) in ls {
            *per_class.entry(l).or_default() += c;
        }
    }
    let base = per_class.values().copied().max().unwrap_or(0) as f64 / n as f64;
    (g.len(), hits as f64 / n as f64, base)
}

fn eta_squared(g: &HashMap<u64, Vec<(u64, u64)>>, ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let between: f64 = g
        .values()
        .map(|ls| {
            let c: u64 = ls.iter().map(|l| l.1).sum();
            let s: f64 = ls.iter().map(|&(l, k)| f64::from_bits(l) * k as f64).sum();
            let m = s / c as f64;
            c as f64 * (m - mean).powi(2)
        })
        .sum();
    between / total
}

/// The ordering measure that fits the target: AUC, ordering agreement or Spearman.
pub fn ordering_measure(x: &[f64], y: &[f64], kind: TargetKind) -> Option<(&'static str, f64)> {
    match kind {
        TargetKind::Values => spearman(x, y).map(|r| ("spearman", r.abs())),
        TargetKind::Classes => {
            let mut classes: Vec<u64> = y.iter().map(|v| v.to_bits()).collect();
            classes.sort_unstable();
            classes.dedup();
            match classes.len() {
                0 | 1 => None,
                2 => auc(x, y, f64::from_bits(classes[1])).map(|a| ("auc", a.max(1.0 - a))),
                _ => ordering_agreement(x, y).map(|k| ("ordering_agreement", k)),
            }
        }
    }
}

fn order_by(x: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| {
        x[a].total_cmp(&x[b])
            .then(mix64(a as u64).cmp(&mix64(b as u64)))
    });
    idx
}

/// The Mann-Whitney AUC of `x` as a score for `y == positive`, ties counting half.
pub fn auc(x: &[f64], y: &[f64], positive: f64) -> Option<f64> {
    let idx = order_by(x);
    let (mut u, mut neg_below, mut pos_total) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        let (mut p, mut q) = (0.0, 0.0);
        while j < idx.len() && x[idx[j]] == x[idx[i]] {
            if y[idx[j]] == positive {
                p += 1.0;
            } else {
                q += 1.0;
            }
            j += 1;
        }
        u += p * neg_below + 0.5 * p * q;
        neg_below += q;
        pos_total += p;
        i = j;
    }
    let pairs = pos_total * neg_below;
    (pairs > 0.0).then(|| u / pairs)
}

/// How much fewer class changes than chance there are between neighbours in `x`'s order,
/// as a kappa in [0, 1] (1: the order separates the classes into runs, one per class).
pub fn ordering_agreement(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = y.len();
    let idx = order_by(x);
    let changes = idx.windows(2).filter(|w| y[w[0]] != y[w[1]]).count() as f64;
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for v in y {
        *counts.entry(v.to_bits()).or_default() += 1;
    }
    let k = counts.len() as f64;
    let n_f = n as f64;
    if n_f <= k + 1.0 {
        return None;
    }
    let sum_p2: f64 = counts.values().map(|&c| (c as f64 / n_f).powi(2)).sum();
    let expected = (n_f - 1.0) * (1.0 - sum_p2);
    let agree = |c: f64| (1.0 - (c - (k - 1.0)) / (n_f - k)).clamp(0.0, 1.0);
    let (a, chance) = (agree(changes), agree(expected));
    (chance < 1.0).then(|| ((a - chance) / (1.0 - chance)).max(0.0))
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j - 1) as f64 / 2.0 + 1.0;
        for &k in &idx[i..j] {
            r[k] = avg;
        }
        i = j;
    }
    r
}

/// Spearman's rank correlation (average ranks for ties); None when one side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_counts_with_ties_at_half() {
        let x = [0.1, 0.4, 0.35, 0.8];
        let y = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&x, &y, 1.0), Some(0.75));
        assert_eq!(auc(&[1.0, 1.0], &[0.0, 1.0], 1.0), Some(0.5));
    }

    #[test]
    fn an_order_that_separates_classes_agrees_fully_and_a_random_one_does_not() {
        let n = 3000;
        let y: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        let sorted: Vec<f64> = y.iter().map(|c| c * 10.0 + 0.5).collect();
        assert!(ordering_agreement(&sorted, &y).unwrap() > 0.99);
        let random: Vec<f64> = (0..n).map(|i| (mix64(i as u64) % 1000) as f64).collect();
        assert!(ordering_agreement(&random, &y).unwrap() < 0.1);
    }

    #[test]
    fn spearman_sees_monotone_relations_and_ignores_noise() {
        let x: Vec<f64> = (0..200).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| v.powi(3)).collect();
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let noise: Vec<f64> = (0..200).map(|i| (mix64(i) % 97) as f64).collect();
        assert!(spearman(&x, &noise).unwrap().abs() < 0.3);
    }
}
