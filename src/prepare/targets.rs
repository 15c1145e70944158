//! Reading the targets of a labels file during its pass: classes and their counts, missing
//! and unparsable targets, the public/private parts, and the labels kept for lookups by id
//! ([`LabelMap`], bounded).
//!
//! Each worker of a pass has its own [`LabelsAcc`]; they merge. Classes are numbered by
//! where they first appear in the file (chunk, row), so `class #N` means the same class in
//! every run however the rows were spread. Class values are private and stay here: only
//! `integrity::class_names` decides which may be shown.

use hashbrown::HashMap;

use super::csv_stream::Record;
use super::leakage::{SAMPLE_ROWS, TargetKind};
use crate::scoring::Split;

/// Most classes tracked; past this a target is not a class target.
pub const MAX_CLASSES: usize = 10_000;
/// Most labels kept for lookups by id (16 bytes each): 4 MiB, so lookups stay in cache.
/// Past this the map keeps a uniform subset by id hash, enough for the statistical checks,
/// and says it is partial; a partial map is then cut to what the leakage sample needs.
pub const MAX_LABEL_MAP: usize = 1 << 18;

/// Class values interned to codes.
#[derive(Debug, Default)]
pub struct Classes {
    /// Code of each value.
    index: HashMap<Vec<u8>, u32>,
    /// Value of each code (private).
    values: Vec<Vec<u8>>,
    /// Where each class first appears: (chunk, row).
    first: Vec<(u32, u64)>,
    /// More than [`MAX_CLASSES`] values were seen.
    pub overflow: bool,
}

impl Classes {
    fn code(&mut self, v: &[u8], pos: (u32, u64)) -> Option<u32> {
        // Most targets have a handful of classes: a scan beats hashing every row's value.
        let found = if self.values.len() <= 8 {
            self.values.iter().position(|x| x == v).map(|c| c as u32)
        } else {
            self.index.get(v).copied()
        };
        if let Some(c) = found {
            let f = &mut self.first[c as usize];
            *f = (*f).min(pos);
            return Some(c);
        }
        if self.values.len() >= MAX_CLASSES {
            self.overflow = true;
            return None;
        }
        let c = self.values.len() as u32;
        self.index.insert(v.to_vec(), c);
        self.values.push(v.to_vec());
        self.first.push(pos);
        Some(c)
    }

    /// The values, in code order (private: for naming rules only).
    pub fn values(&self) -> &[Vec<u8>] {
        &self.values
    }

    /// The code of a value, if seen.
    pub fn find(&self, v: &[u8]) -> Option<usize> {
        self.index.get(v).map(|&c| c as usize)
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
        // An id labelled twice keeps the smaller label, whatever the order rows came in;
        // the duplicate itself is reported.
        let e = self.map.entry(key).or_insert(label);
        if label.total_cmp(e).is_lt() {
            *e = label;
        }
        self.bound(MAX_LABEL_MAP);
    }

    fn bound(&mut self, max: usize) {
        while self.map.len() > max {
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

fn bump(v: &mut Vec<u64>, c: usize, n: u64) {
    if v.len() <= c {
        v.resize(c + 1, 0);
    }
    v[c] += n;
}

/// Reads the targets of a labels file, for one worker.
#[derive(Debug)]
pub struct LabelsAcc {
    target: Option<usize>,
    kind: TargetKind,
    classes: Classes,
    counts: Vec<u64>,
    missing_target: u64,
    bad_target: u64,
    split: Option<Split>,
    parts: [PartAcc; 2],
    map: LabelMap,
}

impl LabelsAcc {
    /// Reads `target` as `kind`; `split` counts the parts (private labels only).
    pub fn new(target: Option<usize>, kind: TargetKind, split: Option<Split>) -> Self {
        Self {
            target,
            kind,
            classes: Classes::default(),
            counts: Vec::new(),
            missing_target: 0,
            bad_target: 0,
            split,
            parts: Default::default(),
            map: LabelMap::default(),
        }
    }

    /// An empty accumulator for another worker.
    pub fn empty_like(&self) -> Self {
        Self::new(self.target, self.kind, self.split)
    }

    /// One row, at (chunk, row), with its trimmed id and the id's key.
    pub fn row(&mut self, rec: &Record<'_>, id: &[u8], key: u64, pos: (u32, u64)) {
        let Some(t) = self.target else { return };
        let v = rec.get(t);
        if v.is_empty() {
            self.missing_target += 1;
            return;
        }
        let (label, code) = match self.kind {
            TargetKind::Classes => match self.classes.code(v, pos) {
                Some(c) => {
                    bump(&mut self.counts, c as usize, 1);
                    (f64::from(c), Some(c as usize))
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
                bump(&mut part.classes, c, 1);
            }
        }
    }

    /// Adds another worker's rows of the same file.
    pub fn merge(&mut self, o: LabelsAcc) {
        let mut remap = Vec::with_capacity(o.classes.values.len());
        for (v, &pos) in o.classes.values.iter().zip(&o.classes.first) {
            remap.push(self.classes.code(v, pos));
        }
        self.classes.overflow |= o.classes.overflow;
        let to = |c: usize| remap.get(c).copied().flatten().map(|c| c as usize);
        for (c, &n) in o.counts.iter().enumerate() {
            if let Some(m) = to(c) {
                bump(&mut self.counts, m, n);
            }
        }
        for (mine, theirs) in self.parts.iter_mut().zip(&o.parts) {
            mine.rows += theirs.rows;
            for (c, &n) in theirs.classes.iter().enumerate() {
                if let Some(m) = to(c) {
                    bump(&mut mine.classes, m, n);
                }
            }
        }
        self.missing_target += o.missing_target;
        self.bad_target += o.bad_target;
        self.map.threshold = self.map.threshold.min(o.map.threshold);
        self.map.complete &= o.map.complete;
        let t = self.map.threshold;
        self.map.map.retain(|k, _| *k <= t);
        for (k, v) in o.map.map {
            let v = match self.kind {
                TargetKind::Classes => match to(v as usize) {
                    Some(m) => m as f64,
                    None => continue,
                },
                TargetKind::Values => v,
            };
            self.map.insert(k, v);
        }
    }

    /// Ends the pass: classes renumbered by first appearance, a partial label map cut to
    /// what the leakage sample can use.
    pub fn finish(mut self) -> LabelsOutcome {
        let mut order: Vec<usize> = (0..self.classes.values.len()).collect();
        order.sort_by_key(|&c| self.classes.first[c]);
        let mut new_code = vec![0usize; order.len()];
        for (n, &c) in order.iter().enumerate() {
            new_code[c] = n;
        }
        let renumber = |v: &[u64]| {
            let mut out = vec![0; order.len()];
            for (c, &n) in v.iter().enumerate() {
                out[new_code[c]] = n;
            }
            out
        };
        let counts = renumber(&self.counts);
        for p in &mut self.parts {
            p.classes = renumber(&p.classes);
        }
        if self.kind == TargetKind::Classes {
            for v in self.map.map.values_mut() {
                *v = new_code[*v as usize] as f64;
            }
        }
        let mut classes = Classes {
            overflow: self.classes.overflow,
            ..Classes::default()
        };
        for &c in &order {
            classes.code(&self.classes.values[c], self.classes.first[c]);
        }
        if !self.map.complete {
            self.map.bound(2 * SAMPLE_ROWS);
            self.map.map.shrink_to_fit();
        }
        LabelsOutcome {
            classes,
            counts,
            map: self.map,
            missing_target: self.missing_target,
            bad_target: self.bad_target,
            parts: self.parts,
        }
    }
}

/// What a labels file's pass leaves for the findings.
pub struct LabelsOutcome {
    /// The classes, numbered by first appearance.
    pub classes: Classes,
    /// Rows per class code.
    pub counts: Vec<u64>,
    /// Labels by id.
    pub map: LabelMap,
    /// Rows with an empty target.
    pub missing_target: u64,
    /// Targets that are not finite numbers (regression).
    pub bad_target: u64,
    parts: [PartAcc; 2],
}

impl LabelsOutcome {
    /// Rows and class counts of the public and the private part.
    pub fn parts(&self) -> [(u64, &[u64]); 2] {
        [
            (self.parts[0].rows, &self.parts[0].classes),
            (self.parts[1].rows, &self.parts[1].classes),
        ]
    }
}
