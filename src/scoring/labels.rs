//! The ground truth: loading `labels.csv` once into a compact, indexed, split-aware set.
//!
//! Owns [`load_labels`] and [`LabelSet`], with the whole-file checks (duplicate ids, classes,
//! a split that leaves every part usable). Ids are interned in one byte arena with a hash index
//! over it (`index`), so scoring a predictions row is one lookup and no allocation; the set also
//! offers the staged lookups the row pass pipelines. Lines are parsed into rows by
//! `label_rows`; loaded sets are kept by `labels_cache`. Errors here are for the challenge's
//! organiser (they may name columns and ids of the labels file). This module must never hand
//! label values or the public/private membership of an id to anything that reaches a
//! participant.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::scoring::csv::{self, LineReader};
use crate::scoring::errors::LabelsError;
use crate::scoring::index::{INDEX_SEED, IdIndex};
use crate::scoring::label_rows::Rows;
use crate::scoring::memory::prefetch;
use crate::scoring::metrics::Sum;
use crate::scoring::spec::{LabelSpec, TargetKind};
use crate::scoring::split::hash_id;

/// Labels lines may be long (many columns), but not unboundedly so.
const MAX_LABELS_LINE: usize = 16 << 20;

/// Target values, one per row.
#[derive(Debug)]
pub(crate) enum Targets {
    /// Class labels: each row's index into `names`.
    Classes {
        /// The distinct classes in order of first appearance.
        names: Vec<Box<[u8]>>,
        /// Class index of each row.
        of_row: Vec<u16>,
        /// Class index by name.
        by_name: HashMap<Box<[u8]>, u16>,
        /// The positive class, when the target is binary.
        positive: Option<u16>,
    },
    /// Numbers.
    Values(Vec<f64>),
}

/// The loaded ground truth of one labels file under one [`LabelSpec`].
#[derive(Debug)]
pub struct LabelSet {
    /// The spec it was loaded under; scoring checks it matches.
    spec: LabelSpec,
    /// Interned ids and their index.
    ids: IdIndex,
    /// The targets.
    pub(crate) targets: Targets,
    /// Bit per row, set when the row is public; empty when there is no split.
    public_bits: Vec<u64>,
    /// Bit per row, set when the row's class is the positive one; binary targets only. A
    /// copy of `of_row` 16 times smaller, so a shuffled file's lookups find it in cache.
    positive_bits: Vec<u64>,
    /// Rows in the public part (all rows without a split).
    public_len: usize,
    /// Total sum of squares of y_true per part (public, private, all); regression only.
    pub(crate) ss_total: [f64; 3],
}

impl LabelSet {
    /// Number of rows (ids) in the labels.
    pub fn len(&self) -> usize {
        self.ids.rows
    }

    /// Whether there are no rows (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows behind the public leaderboard (every row when there is no split).
    pub fn public_len(&self) -> usize {
        self.public_len
    }

    /// Rows behind the private leaderboard (none when there is no split).
    pub fn private_len(&self) -> usize {
        self.len() - self.public_len
    }

    /// The spec this set was loaded under.
    pub fn spec(&self) -> &LabelSpec {
        &self.spec
    }

    /// Whether the labels were split into public and private parts.
    pub fn has_split(&self) -> bool {
        self.spec.split.is_some()
    }

    /// The row holding `id`, if any. `hint` is tried first: predictions usually follow the
    /// labels' order, and comparing with the next row avoids a random memory access.
    #[inline]
    pub(crate) fn find(&self, id: &[u8], hint: usize) -> Option<usize> {
        if hint < self.len() && self.ids.id(hint) == id {
            return Some(hint);
        }
        self.ids.find(id)
    }

    /// Whether `row` holds exactly `id`: the check for a guessed row, one memory access.
    #[inline]
    pub(crate) fn row_has_id(&self, row: usize, id: &[u8]) -> bool {
        row < self.len() && self.ids.id(row) == id
    }

    /// The row of `id` (`None` inside: not in the labels) found without the hash index, while
    /// sorted ids have none yet; `None` when the pipelined lookup should be used.
    #[inline]
    pub(crate) fn find_without_index(&self, id: &[u8]) -> Option<Option<usize>> {
        self.ids.find_without_table(id)
    }

    /// The index hash of `id`, for [`Self::find_hashed`]; prefetches the slot it starts at.
    #[inline]
    pub(crate) fn hash_and_prefetch(&self, id: &[u8]) -> u64 {
        let hash = hash_id(id, INDEX_SEED);
        self.ids.prefetch(self.ids.home(hash));
        hash
    }

    /// Second step of a pipelined lookup, once the slot is cached: the likely row, whose id
    /// bounds and target it prefetches.
    #[inline]
    pub(crate) fn prefetch_candidate(&self, hash: u64) -> Option<usize> {
        let row = self.ids.candidate(hash)?;
        if self.ids.short.is_empty() {
            // ends[row - 1] shares the line with ends[row] but for one row in sixteen.
            prefetch(&self.ids.ends, row.wrapping_sub(1));
        } else {
            prefetch(&self.ids.short, row);
        }
        match &self.targets {
            Targets::Classes { .. } if !self.positive_bits.is_empty() => {}
            Targets::Classes { of_row, .. } => prefetch(of_row, row),
            Targets::Values(values) => prefetch(values, row),
        }
        Some(row)
    }

    /// Third step: prefetches the candidate row's id bytes, once its bounds are cached.
    #[inline]
    pub(crate) fn prefetch_id(&self, row: usize) {
        // Short ids came with their row's word, in the previous step.
        if self.ids.short.is_empty() {
            let start = if row == 0 {
                0
            } else {
                self.ids.ends[row - 1] as usize
            };
            prefetch(&self.ids.arena, start);
        }
    }

    /// The row holding `id`, whose index hash is `hash`.
    #[inline]
    pub(crate) fn find_hashed(&self, id: &[u8], hash: u64) -> Option<usize> {
        self.ids.probe(id, hash).ok()
    }

    /// Public rows before each 64-row word, for [`Self::public_rank`] (empty without a split).
    pub(crate) fn public_ranks(&self) -> Vec<u32> {
        let mut before = 0u32;
        self.public_bits
            .iter()
            .map(|word| {
                let here = before;
                before += word.count_ones();
                here
            })
            .collect()
    }

    /// The position of public `row` among the public rows, in label order.
    #[inline]
    pub(crate) fn public_rank(&self, ranks: &[u32], row: usize) -> usize {
        if self.public_bits.is_empty() {
            return row;
        }
        let below = self.public_bits[row / 64] & ((1u64 << (row % 64)) - 1);
        ranks[row / 64] as usize + below.count_ones() as usize
    }

    /// Whether `row` is in the public part.
    #[inline]
    pub(crate) fn is_public(&self, row: usize) -> bool {
        self.public_bits.is_empty() || self.public_bits[row / 64] >> (row % 64) & 1 == 1
    }

    /// The class index of `row` (0 for a numeric target).
    #[inline]
    pub(crate) fn class_of(&self, row: usize) -> usize {
        match &self.targets {
            Targets::Classes { of_row, .. } => usize::from(of_row[row]),
            Targets::Values(_) => 0,
        }
    }

    /// Whether `row`'s class is the positive one; binary targets only.
    #[inline]
    pub(crate) fn is_positive(&self, row: usize) -> bool {
        self.positive_bits[row / 64] >> (row % 64) & 1 == 1
    }

    /// The smallest and largest target value, for a numeric target with rows: what bounds
    /// the scores a regression metric releases (`crate::leakage`).
    pub fn target_range(&self) -> Option<(f64, f64)> {
        match &self.targets {
            Targets::Values(values) if !values.is_empty() => Some(
                values
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                        (lo.min(*v), hi.max(*v))
                    }),
            ),
            _ => None,
        }
    }

    /// The target value of `row` (0 for a class target).
    #[inline]
    pub(crate) fn value_of(&self, row: usize) -> f64 {
        match &self.targets {
            Targets::Values(values) => values[row],
            Targets::Classes { .. } => 0.0,
        }
    }

    /// The index of the class named `name`, if the labels have it.
    pub(crate) fn class_by_name(&self, name: &[u8]) -> Option<usize> {
        match &self.targets {
            Targets::Classes { by_name, .. } => by_name.get(name).map(|&c| usize::from(c)),
            Targets::Values(_) => None,
        }
    }

    /// Number of known classes (0 for a numeric target).
    pub(crate) fn class_count(&self) -> usize {
        match &self.targets {
            Targets::Classes { names, .. } => names.len(),
            Targets::Values(_) => 0,
        }
    }
}

/// Reads and checks a labels file: header with the id and target columns, one row per id,
/// no duplicate ids, targets of the right kind, and a split that leaves both parts usable.
pub fn load_labels(path: &Path, spec: &LabelSpec) -> Result<LabelSet, LabelsError> {
    let file = File::open(path).map_err(|e| LabelsError::file(path, e))?;
    let size_hint = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut reader = LineReader::new(file, csv::BUFFER_BYTES, MAX_LABELS_LINE);
    let header = csv::read_header(&mut reader).map_err(|e| LabelsError::header(e, path))?;
    let find = |name: &str| {
        header.find(name).ok_or_else(|| LabelsError::MissingColumn {
            column: name.to_owned(),
        })
    };
    let (id_col, target_col) = (find(&spec.id_column)?, find(&spec.target_column)?);
    let width = header.len();

    let mut rows = Rows::new(spec, size_hint, id_col, target_col, width);
    let mut line_no = reader.line_no();
    while let Some(chunk) = reader
        .next_chunk(line_no)
        .map_err(|e| LabelsError::line(e, path))?
    {
        rows.chunk(chunk, &mut line_no)?;
    }
    let Rows {
        mut short,
        mut arena,
        mut ends,
        class_names,
        class_by_name,
        mut class_of_row,
        mut values,
        public_bits,
        public_len,
        ..
    } = rows;
    let rows = short.len().max(ends.len());
    if rows == 0 {
        return Err(LabelsError::NoRows);
    }
    // shrink_to_fit on these large vectors is a cheap mremap, not a copy.
    short.shrink_to_fit();
    arena.shrink_to_fit();
    ends.shrink_to_fit();
    class_of_row.shrink_to_fit();
    values.shrink_to_fit();

    let ids = IdIndex::build(short, arena, ends).map_err(|id| LabelsError::DuplicateId { id })?;
    let targets = match spec.kind {
        TargetKind::Classes => {
            let positive = if spec.binary {
                if class_names.len() != 2 {
                    return Err(LabelsError::NotBinary {
                        found: class_names.len(),
                    });
                }
                Some(match &spec.positive_label {
                    Some(label) => {
                        *class_by_name.get(label.trim().as_bytes()).ok_or_else(|| {
                            LabelsError::UnknownPositiveLabel {
                                label: label.clone(),
                            }
                        })?
                    }
                    None => sklearn_positive(&class_names),
                })
            } else {
                None
            };
            Targets::Classes {
                names: class_names,
                of_row: class_of_row,
                by_name: class_by_name,
                positive,
            }
        }
        TargetKind::Values => Targets::Values(values),
    };
    let positive_bits = match &targets {
        Targets::Classes {
            of_row,
            positive: Some(positive),
            ..
        } => of_row
            .chunks(64)
            .map(|classes| {
                classes
                    .iter()
                    .enumerate()
                    .fold(0u64, |bits, (i, c)| bits | u64::from(c == positive) << i)
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut set = LabelSet {
        spec: spec.clone(),
        ids,
        targets,
        public_bits,
        positive_bits,
        public_len,
        ss_total: [0.0; 3],
    };
    check_split(&set)?;
    if let Targets::Values(values) = &set.targets {
        set.ss_total = [
            ss_total(
                values
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| set.is_public(*r))
                    .map(|(_, v)| *v),
            ),
            ss_total(
                values
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| !set.is_public(*r))
                    .map(|(_, v)| *v),
            ),
            ss_total(values.iter().copied()),
        ];
    }
    if spec.needs_r2 {
        check_r2(&set)?;
    }
    Ok(set)
}

/// sklearn's positive class when none is named: the greater label, numerically when every
/// label is an integer (numpy sorts an int array), otherwise by code point.
fn sklearn_positive(names: &[Box<[u8]>]) -> u16 {
    let ints: Option<Vec<i128>> = names
        .iter()
        .map(|n| {
            std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.parse::<i128>().ok())
        })
        .collect();
    let greater_first = match ints {
        Some(ints) => ints[0] > ints[1],
        None => names[0] > names[1],
    };
    if greater_first { 0 } else { 1 }
}

fn check_split(set: &LabelSet) -> Result<(), LabelsError> {
    let (public, private) = (set.public_len(), set.private_len());
    if set.has_split() {
        if public == 0 {
            return Err(LabelsError::EmptySplit {
                part: "public",
                public,
                private,
            });
        }
        if private == 0 {
            return Err(LabelsError::EmptySplit {
                part: "private",
                public,
                private,
            });
        }
    }
    if let (true, Targets::Classes { of_row, .. }) = (set.spec.both_classes_per_part, &set.targets)
    {
        // seen[part][class]: part 0 public, 1 private.
        let mut seen = [[false; 2]; 2];
        for (row, &class) in of_row.iter().enumerate() {
            seen[usize::from(!set.is_public(row))][class as usize & 1] = true;
        }
        if !(seen[0][0] && seen[0][1]) {
            return Err(LabelsError::SingleClassPart { part: "public" });
        }
        if set.has_split() && !(seen[1][0] && seen[1][1]) {
            return Err(LabelsError::SingleClassPart { part: "private" });
        }
    }
    Ok(())
}

/// Refuses labels on which r2 is undefined whatever the predictions: a part of a single row
/// (sklearn returns NaN), or a sum of squares that overflows (the ratio would be meaningless).
/// Both parts are known to hold a row (see [`check_split`]).
fn check_r2(set: &LabelSet) -> Result<(), LabelsError> {
    let reason = if !set.has_split() && set.len() < 2 {
        Some("the labels have a single row (r2 needs at least 2)")
    } else if set.has_split() && set.public_len() < 2 {
        Some(
            "the public part has a single row (r2 needs at least 2 in each part); change public_fraction or split_seed",
        )
    } else if set.has_split() && set.private_len() < 2 {
        Some(
            "the private part has a single row (r2 needs at least 2 in each part); change public_fraction or split_seed",
        )
    } else if set.ss_total.iter().any(|ss| !ss.is_finite()) {
        Some("the targets are so far apart that their sum of squares overflows")
    } else {
        None
    };
    reason.map_or(Ok(()), |reason| Err(LabelsError::R2Undefined { reason }))
}

/// Σ (y - ȳ)², with ȳ from a compensated sum, as sklearn's r2 denominator.
fn ss_total(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut sum = Sum::default();
    let mut n = 0usize;
    for v in values.clone() {
        sum.add(v);
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let mean = sum.value() / n as f64;
    let mut ss = Sum::default();
    for v in values {
        ss.add((v - mean) * (v - mean));
    }
    ss.value()
}
