//! Leakage of the target through the data: a column that predicts the label almost
//! perfectly, an exact value → label dependency, and row or id order that follows the label.
//!
//! Works on a uniform sample of a file's labelled rows (the rows with the smallest
//! pseudo-random priorities, a fixed function of their position, so a check is reproducible
//! however the rows were spread over threads): at most [`SAMPLE_ROWS`] rows, fewer for wide files
//! ([`SAMPLE_CELLS`] cells in all), 16 bytes a cell. Value → label dependencies track at
//! most [`MAX_DISTINCT`](super::measures::MAX_DISTINCT) distinct values per column; a column with more is treated as
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

use std::collections::BinaryHeap;

use super::csv_stream::Record;
pub use super::measures::TargetKind;
use super::measures::{class_purity, eta_squared, ordering_measure, value_groups};
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
/// One sampled cell: its number (NaN when not one) and a hash of its text (0 when empty).
#[derive(Debug, Clone, Copy)]
struct Cell {
    num: f64,
    hash: u64,
}

/// A uniform sample of the labelled rows of one file: the rows with the smallest
/// pseudo-random priorities (a fixed function of the row's position), so the sample does not
/// depend on how rows were spread over threads, and two samples merge into the sample of
/// their union.
#[derive(Debug)]
pub struct LeakSample {
    /// Candidate columns (index in the file, name as shown).
    cols: Vec<(usize, String)>,
    /// Cells, row-major.
    cells: Vec<Cell>,
    /// Label of each kept row (a class code or a value).
    labels: Vec<f64>,
    /// Where each kept row is: (chunk of the file, row within the chunk).
    pos: Vec<(u32, u64)>,
    /// The id as a number, NaN when it is not one.
    ids: Vec<f64>,
    /// Priority of each kept row.
    priority: Vec<u64>,
    /// (priority, slot) of the kept rows, largest priority on top.
    heap: BinaryHeap<(u64, usize)>,
    /// Rows kept at most.
    cap: usize,
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
    /// A sample over `cols` (index, display name).
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
            priority: Vec::new(),
            heap: BinaryHeap::new(),
            cap,
        }
    }

    /// An empty sample over the same columns.
    pub fn empty_like(&self) -> Self {
        Self::new(self.cols.clone())
    }

    /// The slot a row of this priority goes to, if it is kept.
    fn slot_for(&mut self, priority: u64) -> Option<usize> {
        if self.labels.len() < self.cap {
            self.heap.push((priority, self.labels.len()));
            return Some(self.labels.len());
        }
        let &(top, slot) = self.heap.peek()?;
        if priority >= top {
            return None;
        }
        self.heap.pop();
        self.heap.push((priority, slot));
        Some(slot)
    }

    fn put(
        &mut self,
        slot: usize,
        cells: impl Iterator<Item = Cell>,
        label: f64,
        pos: (u32, u64),
        id: f64,
        priority: u64,
    ) {
        let width = self.cols.len();
        if slot == self.labels.len() {
            self.cells.extend(cells);
            self.labels.push(label);
            self.pos.push(pos);
            self.ids.push(id);
            self.priority.push(priority);
        } else {
            for (k, cell) in cells.enumerate() {
                self.cells[slot * width + k] = cell;
            }
            self.labels[slot] = label;
            self.pos[slot] = pos;
            self.ids[slot] = id;
            self.priority[slot] = priority;
        }
    }

    /// Offers row `row` of chunk `chunk` of the file, with its id and label.
    pub fn offer(&mut self, rec: &Record<'_>, chunk: u32, row: u64, id: &[u8], label: f64) {
        let priority = mix64((u64::from(chunk) << 40) ^ row ^ 0x5eed_1eaf);
        let Some(slot) = self.slot_for(priority) else {
            return;
        };
        let cells = self.cols.iter().map(|&(c, _)| {
            let b = rec.get(c);
            Cell {
                num: parse_num(b),
                hash: cell_hash(b),
            }
        });
        let cells: Vec<Cell> = cells.collect();
        self.put(
            slot,
            cells.into_iter(),
            label,
            (chunk, row),
            parse_num(id),
            priority,
        );
    }

    /// Adds the rows of another sample of the same file.
    pub fn merge(&mut self, other: LeakSample) {
        let width = other.cols.len();
        for i in 0..other.labels.len() {
            if let Some(slot) = self.slot_for(other.priority[i]) {
                let cells: Vec<Cell> = other.cells[i * width..(i + 1) * width].to_vec();
                self.put(
                    slot,
                    cells.into_iter(),
                    other.labels[i],
                    other.pos[i],
                    other.ids[i],
                    other.priority[i],
                );
            }
        }
    }

    /// Rows kept.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The leakage findings of this file. `order` adds the row- and id-order checks (for
    /// test files, whose order participants see).
    /// `offsets` gives the first row number of each chunk of the file.
    pub fn findings(
        &self,
        kind: TargetKind,
        file: &str,
        order: bool,
        offsets: &[u64],
    ) -> Vec<Finding> {
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
            let rows: Vec<f64> = self
                .pos
                .iter()
                .map(|&(c, r)| (offsets.get(c as usize).copied().unwrap_or(0) + r) as f64)
                .collect();
            let checks = [
                (&rows, Code::LeakRowOrder, "row order"),
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
