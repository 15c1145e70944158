//! Re-identification risk: k-anonymity over the organiser's declared quasi-identifiers and
//! ℓ-diversity of the target within the groups they form.
//!
//! A group is the set of rows sharing one combination of (generalised) quasi-identifier
//! values; k is the smallest group's size, ℓ the fewest distinct targets in a group. Groups
//! are keyed by a 128-bit hash of the combination, at most [`MAX_GROUPS`] of them (beyond
//! that, k is certainly tiny and the check says so). For each quasi-identifier it also
//! computes k with that column left out, which tells the organiser what to generalise.
//!
//! What leaves this module: sizes, counts and column names. The generalised key of a group
//! is personal data in its own right (a group of one *is* a person's row), so it never goes
//! into the report: it is kept, for the public sample only, in [`LocalGroups`], which the
//! CLI prints on the organiser's own terminal when asked (`--show-groups`) and which is never
//! serialised, logged or stored.

use std::collections::HashMap;
use std::fmt;

use super::csv_stream::Record;
use super::generalise::Generalisation;
use super::idset::hash128;
use super::report::{Code, Finding, KanonSummary, Severity};

/// Most groups tracked per file.
pub const MAX_GROUPS: usize = 1 << 20;
/// Distinct targets tracked per group: ℓ above this is reported as this.
const MAX_L: usize = 8;
/// Smallest groups listed by size.
const SMALLEST: usize = 5;

/// One group.
#[derive(Debug, Default, Clone)]
struct Group {
    rows: u64,
    /// Distinct targets seen (bit patterns), up to [`MAX_L`].
    targets: Vec<u64>,
}

/// The generalised keys of a public file's smallest groups, for the organiser's terminal.
/// Never serialised; its `Debug` shows no key.
#[derive(Clone, Default, PartialEq)]
pub struct LocalGroups {
    /// (file, generalised key, rows), smallest first.
    pub groups: Vec<(String, String, u64)>,
}

impl fmt::Debug for LocalGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LocalGroups({} groups, keys redacted)",
            self.groups.len()
        )
    }
}

/// Counts groups of one file.
#[derive(Debug)]
pub struct KanonAcc {
    /// (column index, name, generalisation) per quasi-identifier found.
    cols: Vec<(usize, String, Option<Generalisation>)>,
    /// Groups by key hash.
    groups: HashMap<u128, Group>,
    /// Group sizes with one column left out, per column.
    without: Vec<HashMap<u128, u64>>,
    /// Readable keys, kept only for public files.
    keys: Option<HashMap<u128, String>>,
    /// Too many groups to track.
    overflow: bool,
    /// Rows seen.
    rows: u64,
    /// Scratch for the encoded key.
    parts: Vec<String>,
}

impl KanonAcc {
    /// Tracks the quasi-identifiers `cols`; `keep_keys` for a public file.
    pub fn new(cols: Vec<(usize, String, Option<Generalisation>)>, keep_keys: bool) -> Self {
        let without = if cols.len() > 1 {
            vec![HashMap::new(); cols.len()]
        } else {
            Vec::new()
        };
        Self {
            cols,
            groups: HashMap::new(),
            without,
            keys: keep_keys.then(HashMap::new),
            overflow: false,
            rows: 0,
            parts: Vec::new(),
        }
    }

    fn encode(parts: &[String], skip: Option<usize>) -> u128 {
        let mut buf = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(p.as_bytes());
        }
        hash128(&buf)
    }

    /// Adds a row, with its target when known.
    pub fn add(&mut self, rec: &Record<'_>, target: Option<f64>) {
        if self.overflow {
            return;
        }
        self.rows += 1;
        self.parts.clear();
        for (c, _, g) in &self.cols {
            let raw = String::from_utf8_lossy(rec.get(*c));
            let v = match g {
                Some(g) => g.apply(&raw).unwrap_or_else(|| raw.trim().to_owned()),
                None => raw.trim().to_owned(),
            };
            self.parts.push(v);
        }
        let key = Self::encode(&self.parts, None);
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            self.overflow = true;
            self.groups = HashMap::new();
            self.without.iter_mut().for_each(|m| *m = HashMap::new());
            self.keys = None;
            return;
        }
        let g = self.groups.entry(key).or_default();
        g.rows += 1;
        if let Some(t) = target
            && g.targets.len() < MAX_L
            && !g.targets.contains(&t.to_bits())
        {
            g.targets.push(t.to_bits());
        }
        if let Some(keys) = &mut self.keys {
            keys.entry(key).or_insert_with(|| self.parts.join(" | "));
        }
        for q in 0..self.without.len() {
            let k = Self::encode(&self.parts, Some(q));
            *self.without[q].entry(k).or_default() += 1;
        }
    }

    /// The summary, findings (errors for a public file) and, for a public file, the keys of
    /// its smallest groups.
    pub fn finish(
        self,
        file: &str,
        public: bool,
        min_k: u64,
        min_l: u64,
        with_targets: bool,
    ) -> (KanonSummary, Vec<Finding>, LocalGroups) {
        let columns: Vec<String> = self
            .cols
            .iter()
            .map(|(_, n, g)| match g {
                Some(g) => format!("{n}:{g}"),
                None => n.clone(),
            })
            .collect();
        let listed = columns.join(", ");
        let mut findings = Vec::new();
        if self.overflow {
            findings.push(
                Finding::new(
                    Code::KanonTooManyGroups,
                    Severity::Warning,
                    MAX_GROUPS as u64,
                    format!(
                        "more than {MAX_GROUPS} distinct combinations of {listed}: most rows are unique, so k is about 1; generalise these columns"
                    ),
                )
                .file(file),
            );
            let summary = KanonSummary {
                file: file.to_owned(),
                columns,
                rows: self.rows,
                groups: MAX_GROUPS as u64,
                k: None,
                l: None,
                groups_below_min_k: 0,
                rows_below_min_k: 0,
                smallest_groups: Vec::new(),
                k_without: Vec::new(),
            };
            return (summary, findings, LocalGroups::default());
        }
        let mut sizes: Vec<(u64, u128)> = self.groups.iter().map(|(k, g)| (g.rows, *k)).collect();
        sizes.sort_unstable();
        let k = sizes.first().map(|s| s.0);
        let l = (with_targets && !self.groups.is_empty()).then(|| {
            self.groups
                .values()
                .map(|g| g.targets.len() as u64)
                .min()
                .unwrap_or(0)
        });
        let below: Vec<&(u64, u128)> = sizes.iter().filter(|s| s.0 < min_k).collect();
        let rows_below: u64 = below.iter().map(|s| s.0).sum();
        let k_without: Vec<(String, u64)> = self
            .without
            .iter()
            .zip(&columns)
            .map(|(m, c)| (c.clone(), m.values().copied().min().unwrap_or(0)))
            .collect();
        if let Some(k) = k {
            findings.push(
                Finding::new(
                    Code::KanonK,
                    Severity::Info,
                    k,
                    format!(
                        "k = {k} over {listed} ({} groups, {} rows)",
                        sizes.len(),
                        self.rows
                    ),
                )
                .file(file)
                .total(sizes.len() as u64)
                .measure("k", k as f64),
            );
        }
        if let Some(k) = k.filter(|&k| k < min_k) {
            let hint = k_without
                .iter()
                .max_by_key(|(_, kw)| *kw)
                .filter(|(_, kw)| *kw > k)
                .map(|(c, kw)| format!("; leaving out {c} alone gives k = {kw}"))
                .unwrap_or_default();
            findings.push(
                Finding::new(
                    Code::KanonBelowMinK,
                    if public { Severity::Error } else { Severity::Warning },
                    below.len() as u64,
                    format!(
                        "k = {k} < min_k {min_k}: {} groups ({rows_below} rows) are smaller than {min_k}; generalise or suppress them{hint}",
                        below.len()
                    ),
                )
                .file(file)
                .total(sizes.len() as u64)
                .measure("k", k as f64),
            );
        }
        if let Some(l) = l.filter(|&l| l < min_l) {
            let low = self
                .groups
                .values()
                .filter(|g| (g.targets.len() as u64) < min_l)
                .count();
            findings.push(
                Finding::new(
                    Code::KanonLowDiversity,
                    Severity::Warning,
                    low as u64,
                    format!(
                        "ℓ = {l} < {min_l}: in {low} groups every row has the same target, so knowing someone's {listed} reveals it"
                    ),
                )
                .file(file)
                .total(sizes.len() as u64)
                .measure("l", l as f64),
            );
        }
        let local = match &self.keys {
            Some(keys) if public => LocalGroups {
                groups: sizes
                    .iter()
                    .take(SMALLEST)
                    .filter(|s| s.0 < min_k)
                    .map(|(n, h)| {
                        (
                            file.to_owned(),
                            keys.get(h).cloned().unwrap_or_default(),
                            *n,
                        )
                    })
                    .collect(),
            },
            _ => LocalGroups::default(),
        };
        let summary = KanonSummary {
            file: file.to_owned(),
            columns,
            rows: self.rows,
            groups: sizes.len() as u64,
            k,
            l,
            groups_below_min_k: below.len() as u64,
            rows_below_min_k: rows_below,
            smallest_groups: sizes.iter().take(SMALLEST).map(|s| s.0).collect(),
            k_without,
        };
        (summary, findings, local)
    }
}
