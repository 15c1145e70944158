//! Re-identification risk: k-anonymity over the organiser's declared quasi-identifiers and
//! ℓ-diversity of the target within the groups they form.
//!
//! A group is the set of rows sharing one combination of quasi-identifier values as they are
//! in the file (as they will be published); k is the smallest group's size, ℓ the fewest
//! distinct targets in a group. The declared generalisations never change k — otherwise
//! declaring `postcode = 2` would pass a file that still holds full postcodes — they give a
//! second, "what if" k that tells the organiser what `holdout prepare pseudonymise
//! --generalise` would achieve. For each quasi-identifier it also computes k with that
//! column left out. Groups are keyed by a 128-bit hash of the combination, at most
//! [`MAX_GROUPS`] of them (beyond that, k is certainly tiny and the check says so).
//!
//! What leaves this module: sizes, counts and column names. The key of a group is personal
//! data in its own right (a group of one *is* a person's row), so it never goes into the
//! report: it is kept, for the public sample only, in `report::LocalGroups`, which the CLI prints
//! on the organiser's own terminal when asked (`--show-groups`) and which is never
//! serialised, logged or stored.

use hashbrown::HashMap;

use super::csv_stream::Record;
use super::generalise::Generalisation;
use super::report::{Code, Finding, KanonSummary, LocalGroups, Severity};
use super::rowhash::hash128;

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

/// Counts groups of one file.
#[derive(Debug)]
pub struct KanonAcc {
    /// (column index, name, declared generalisation) per quasi-identifier found.
    cols: Vec<(usize, String, Option<Generalisation>)>,
    /// Groups by key hash.
    groups: HashMap<u128, Group>,
    /// Group sizes with the declared generalisations applied, when any is declared.
    generalised: Option<HashMap<u128, u64>>,
    /// Group sizes with one column left out, per column.
    without: Vec<HashMap<u128, u64>>,
    /// Readable keys, kept only for public files.
    keys: Option<HashMap<u128, String>>,
    /// Too many groups to track.
    overflow: bool,
    /// Rows seen.
    rows: u64,
    /// Scratch for the values of a row.
    parts: Vec<String>,
}

fn encode(parts: &[String], skip: Option<usize>) -> u128 {
    let mut buf = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if Some(i) != skip {
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(p.as_bytes());
        }
    }
    hash128(&buf)
}

impl KanonAcc {
    /// Tracks the quasi-identifiers `cols`; `keep_keys` for a public file.
    pub fn new(cols: Vec<(usize, String, Option<Generalisation>)>, keep_keys: bool) -> Self {
        let without = if cols.len() > 1 {
            vec![HashMap::new(); cols.len()]
        } else {
            Vec::new()
        };
        let generalised = cols.iter().any(|c| c.2.is_some()).then(HashMap::new);
        Self {
            cols,
            groups: HashMap::new(),
            generalised,
            without,
            keys: keep_keys.then(HashMap::new),
            overflow: false,
            rows: 0,
            parts: Vec::new(),
        }
    }

    /// Adds a row, with its target when known.
    pub fn add(&mut self, rec: &Record<'_>, target: Option<f64>) {
        if self.overflow {
            return;
        }
        self.rows += 1;
        self.parts.clear();
        for (c, _, _) in &self.cols {
            self.parts
                .push(String::from_utf8_lossy(rec.get(*c)).into_owned());
        }
        let key = encode(&self.parts, None);
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            self.overflow_now();
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
            *self.without[q]
                .entry(encode(&self.parts, Some(q)))
                .or_default() += 1;
        }
        if let Some(gen_groups) = &mut self.generalised {
            let general: Vec<String> = self
                .parts
                .iter()
                .zip(&self.cols)
                .map(|(v, (_, _, g))| g.and_then(|g| g.apply(v)).unwrap_or_else(|| v.clone()))
                .collect();
            *gen_groups.entry(encode(&general, None)).or_default() += 1;
        }
    }

    /// An empty accumulator over the same columns.
    pub fn empty_like(&self) -> Self {
        Self::new(self.cols.clone(), self.keys.is_some())
    }

    /// Adds the groups another accumulator counted over other rows of the same file.
    pub fn merge(&mut self, other: KanonAcc) {
        self.rows += other.rows;
        if self.overflow || other.overflow {
            self.overflow_now();
            return;
        }
        for (k, g) in other.groups {
            let mine = self.groups.entry(k).or_default();
            mine.rows += g.rows;
            for t in g.targets {
                if mine.targets.len() < MAX_L && !mine.targets.contains(&t) {
                    mine.targets.push(t);
                }
            }
        }
        if self.groups.len() > MAX_GROUPS {
            self.overflow_now();
            return;
        }
        for (mine, theirs) in self.without.iter_mut().zip(other.without) {
            for (k, n) in theirs {
                *mine.entry(k).or_default() += n;
            }
        }
        if let (Some(mine), Some(theirs)) = (&mut self.generalised, other.generalised) {
            for (k, n) in theirs {
                *mine.entry(k).or_default() += n;
            }
        }
        if let (Some(mine), Some(theirs)) = (&mut self.keys, other.keys) {
            for (k, v) in theirs {
                mine.entry(k).or_insert(v);
            }
        }
    }

    fn overflow_now(&mut self) {
        self.overflow = true;
        self.groups = HashMap::new();
        self.generalised = None;
        self.without.iter_mut().for_each(|m| *m = HashMap::new());
        self.keys = None;
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
        let columns: Vec<String> = self.cols.iter().map(|c| c.1.clone()).collect();
        let declared: Vec<String> = self
            .cols
            .iter()
            .filter_map(|(_, n, g)| g.map(|g| format!("{n}:{g}")))
            .collect();
        let listed = columns.join(", ");
        let mut summary = KanonSummary {
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
            generalisations: declared.clone(),
            k_if_generalised: None,
        };
        let mut findings = Vec::new();
        if self.overflow {
            findings.push(
                Finding::new(
                    Code::KanonTooManyGroups,
                    Severity::Warning,
                    MAX_GROUPS as u64,
                    format!("more than {MAX_GROUPS} distinct combinations of {listed}: most rows are unique, so k is about 1; generalise these columns"),
                )
                .file(file),
            );
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
        summary.k_without = self
            .without
            .iter()
            .zip(&summary.columns)
            .map(|(m, c)| (c.clone(), m.values().copied().min().unwrap_or(0)))
            .collect();
        summary.k_if_generalised = self
            .generalised
            .as_ref()
            .and_then(|g| g.values().copied().min());
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
            let mut hint = String::new();
            if let Some(kg) = summary.k_if_generalised.filter(|&kg| kg > k) {
                let flags: Vec<String> = declared
                    .iter()
                    .map(|d| format!("--generalise {d}"))
                    .collect();
                hint = format!(
                    "; with the declared generalisations k would be {kg} (holdout prepare pseudonymise {})",
                    flags.join(" ")
                );
            } else if let Some((c, kw)) = summary
                .k_without
                .iter()
                .max_by_key(|(_, kw)| *kw)
                .filter(|(_, kw)| *kw > k)
            {
                hint = format!("; leaving out {c} alone gives k = {kw}");
            }
            findings.push(
                Finding::new(
                    Code::KanonBelowMinK,
                    if public { Severity::Error } else { Severity::Warning },
                    below.len() as u64,
                    format!("k = {k} < min_k {min_k}: {} groups ({rows_below} rows) are smaller than {min_k}; generalise or suppress them{hint}", below.len()),
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
                    format!("ℓ = {l} < {min_l}: in {low} groups every row has the same target, so knowing someone's {listed} reveals it"),
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
        summary.groups = sizes.len() as u64;
        summary.k = k;
        summary.l = l;
        summary.groups_below_min_k = below.len() as u64;
        summary.rows_below_min_k = rows_below;
        summary.smallest_groups = sizes.iter().take(SMALLEST).map(|s| s.0).collect();
        (summary, findings, local)
    }
}
