//! The per-row work of a pass, done by one or several workers whose accumulators merge:
//! column types, ids, targets, labels for the leakage sample, k-anonymity groups and
//! feature-row hashes. See [`scan`](super::scan) for how rows reach a worker.

use std::io;

use hashbrown::HashSet;

use super::columns::{ColumnAcc, ColumnPii};
use super::csv_stream::{CsvError, CsvReader, Record};
use super::idset::{Builder, Sorted};
use super::kanon::KanonAcc;
use super::leakage::{LeakSample, TargetKind};
use super::lookup::{Labeller, RowSet, id_key};
use super::rowhash::RowHasher;
use super::rowhash::hash128;
use super::targets::LabelsAcc;
use crate::scoring::split::hash_id;

/// Leading fields of a feature row whose hash prefilters the row (see [`RowSet::prefixes`]).
pub const PREFIX_FIELDS: usize = 2;
/// Bits of a prefix filter: 512 KiB, a few percent of false hits for a million prefixes.
pub const PREFIX_BITS: usize = 1 << 22;

#[inline]
fn prefix_bit(h: u64) -> usize {
    (h >> 40) as usize & (PREFIX_BITS - 1)
}

/// Marks a prefix hash.
#[inline]
pub fn set_bit(bits: &mut [u64], h: u64) {
    let b = prefix_bit(h);
    bits[b >> 6] |= 1 << (b & 63);
}

/// Whether a prefix hash may have been marked.
#[inline]
pub fn has_bit(bits: &[u64], h: u64) -> bool {
    let b = prefix_bit(h);
    bits[b >> 6] >> (b & 63) & 1 == 1
}

/// What every worker of a pass reads and none changes.
pub struct Shared<'a> {
    /// Columns in the header.
    pub(super) ncols: usize,
    /// The id column.
    pub(super) id: Option<usize>,
    /// Collect the ids' hashes.
    pub(super) want_ids: bool,
    /// Where labels come from.
    pub(super) labeller: &'a Labeller<'a>,
    /// Run the personal-data detectors.
    pub(super) pii: bool,
    /// Birth-date-like dates are up to this year.
    pub(super) max_birth_year: i32,
    /// The feature-row sets (columns, probes).
    pub(super) sets: &'a [RowSet],
}

impl Shared<'_> {
    /// Number of feature-row sets.
    pub fn set_count(&self) -> usize {
        self.sets.len()
    }
}

/// A feature-row set's state in one worker.
#[derive(Default)]
pub(super) struct WorkerSet {
    /// Collects the rows' hashes, when the set is merged later.
    pub(super) collect: Option<Builder>,
    /// Rows found among the training rows.
    pub(super) train_hits: u64,
    /// Keys of each sample map this worker's rows matched.
    pub(super) seen: Vec<HashSet<u64>>,
    /// The prefixes of collected rows (see [`PREFIX_FIELDS`]), as bits.
    pub(super) prefixes: Option<Vec<u64>>,
}

/// The per-row work of a pass, with accumulators that merge across workers.
pub struct Worker {
    /// Type counts per column.
    pub(super) cols: Vec<ColumnAcc>,
    /// Personal-data counts per column (when asked).
    pub(super) pii: Vec<ColumnPii>,
    /// The ids' hashes.
    pub(super) ids: Option<Builder>,
    /// Data rows.
    pub(super) rows: u64,
    /// Rows with an empty id.
    pub(super) empty_ids: u64,
    /// Rows with the wrong number of fields.
    pub(super) ragged: u64,
    /// Rows that are not valid UTF-8.
    pub(super) not_utf8: u64,
    /// Rows whose label was found.
    pub(super) labelled: u64,
    /// Records spanning lines.
    pub(super) multiline: u64,
    /// Per feature-row set.
    pub(super) sets: Vec<WorkerSet>,
    /// The leakage sample.
    pub(super) leak: Option<LeakSample>,
    /// k-anonymity groups.
    pub(super) kanon: Option<KanonAcc>,
    /// The targets of a labels file.
    pub(super) labels: Option<LabelsAcc>,
}

impl Worker {
    /// A worker with these accumulators.
    pub(super) fn new(
        sh: &Shared<'_>,
        leak: Option<LeakSample>,
        kanon: Option<KanonAcc>,
        labels: Option<LabelsAcc>,
    ) -> Self {
        Self {
            cols: vec![ColumnAcc::default(); sh.ncols],
            pii: if sh.pii {
                vec![ColumnPii::default(); sh.ncols]
            } else {
                Vec::new()
            },
            ids: (sh.want_ids && sh.id.is_some()).then(Builder::default),
            rows: 0,
            empty_ids: 0,
            ragged: 0,
            not_utf8: 0,
            labelled: 0,
            multiline: 0,
            sets: sh
                .sets
                .iter()
                .map(|s| WorkerSet {
                    collect: s.collect.then(Builder::default),
                    train_hits: 0,
                    seen: vec![HashSet::new(); s.samples.len()],
                    prefixes: (s.collect && s.cols.len() > PREFIX_FIELDS)
                        .then(|| vec![0; PREFIX_BITS / 64]),
                })
                .collect(),
            leak,
            kanon,
            labels,
        }
    }

    /// Another worker for the same pass.
    pub fn sibling(&self, sh: &Shared<'_>) -> Self {
        Self::new(
            sh,
            self.leak.as_ref().map(LeakSample::empty_like),
            self.kanon.as_ref().map(KanonAcc::empty_like),
            self.labels.as_ref().map(LabelsAcc::empty_like),
        )
    }

    /// One data row: row `row` of chunk `chunk`.
    pub(super) fn row(
        &mut self,
        sh: &Shared<'_>,
        rec: &Record<'_>,
        chunk: u32,
        row: u64,
    ) -> io::Result<()> {
        self.rows += 1;
        self.ragged += u64::from(rec.len() != sh.ncols);
        let line = rec.line();
        self.not_utf8 += u64::from(!line.is_ascii() && std::str::from_utf8(line).is_err());
        // A short row leaves its last columns missing.
        let mut fields = rec.fields();
        for acc in self.cols.iter_mut() {
            acc.add(fields.next().unwrap_or_default());
        }
        for (c, acc) in self.pii.iter_mut().enumerate() {
            acc.add_value(rec.get(c), sh.max_birth_year);
        }
        let id = sh.id.map_or(&b""[..], |c| rec.get(c));
        let key = if id.is_empty() {
            self.empty_ids += u64::from(sh.id.is_some());
            0
        } else {
            let h = hash128(id);
            if let Some(b) = self.ids.as_mut() {
                b.push(h)?;
            }
            id_key(h)
        };
        if let Some(labels) = self.labels.as_mut() {
            labels.row(rec, id, key, (chunk, row));
        }
        let label = match sh.labeller {
            Labeller::None => None,
            Labeller::Own(c, kind) => own_label(rec.get(*c), *kind),
            Labeller::Join(map) if !id.is_empty() => map.get(key),
            Labeller::Join(_) => None,
        };
        if let Some(l) = label {
            self.labelled += 1;
            if let Some(leak) = self.leak.as_mut() {
                leak.offer(rec, chunk, row, id, l);
            }
        }
        if let Some(k) = self.kanon.as_mut() {
            k.add(rec, label);
        }
        'sets: for (set, mine) in sh.sets.iter().zip(&mut self.sets) {
            let mut rh = RowHasher::new(mine.collect.is_some());
            for (i, &c) in set.cols.iter().enumerate() {
                if i == PREFIX_FIELDS {
                    // The first fields alone rule most rows out before the rest is hashed.
                    let p = rh.finish64();
                    if let Some(bits) = mine.prefixes.as_mut() {
                        set_bit(bits, p);
                    }
                    if !set.prefixes.is_empty() && !has_bit(&set.prefixes, p) {
                        continue 'sets;
                    }
                }
                rh.field(rec.get(c));
            }
            let h = match mine.collect.as_mut() {
                Some(b) => {
                    let h = rh.finish128();
                    b.push(h)?;
                    h as u64
                }
                None => rh.finish64(),
            };
            if !set.may_hold(h) {
                continue;
            }
            if set.train.as_ref().is_some_and(|t| t.contains(&h)) {
                mine.train_hits += 1;
            }
            for (s, seen) in set.samples.iter().zip(&mut mine.seen) {
                if s.contains_key(&h) {
                    seen.insert(h);
                }
            }
        }
        Ok(())
    }

    /// Parses `chunk` (whole records, no header) as chunk number `no`; returns the records
    /// read.
    pub fn chunk(
        &mut self,
        sh: &Shared<'_>,
        bytes: Vec<u8>,
        delimiter: u8,
        no: u32,
    ) -> Result<u64, CsvError> {
        let mut r = CsvReader::from_vec(bytes, delimiter);
        let mut k = 0u64;
        while let Some(rec) = r.next_record()? {
            self.row(sh, &rec, no, k)?;
            k += 1;
        }
        self.multiline += r.multiline_records();
        Ok(k)
    }

    /// Adds another worker's counts.
    pub fn merge(
        &mut self,
        o: Worker,
        ids: &mut Vec<Sorted>,
        sets: &mut [Vec<Sorted>],
    ) -> io::Result<()> {
        for (a, b) in self.cols.iter_mut().zip(&o.cols) {
            a.merge(b);
        }
        for (a, b) in self.pii.iter_mut().zip(&o.pii) {
            a.merge(b);
        }
        ids.extend(o.ids.map(Builder::finish).transpose()?);
        self.rows += o.rows;
        self.empty_ids += o.empty_ids;
        self.ragged += o.ragged;
        self.not_utf8 += o.not_utf8;
        self.labelled += o.labelled;
        self.multiline += o.multiline;
        for ((mine, theirs), out) in self.sets.iter_mut().zip(o.sets).zip(sets.iter_mut()) {
            mine.train_hits += theirs.train_hits;
            for (a, b) in mine.seen.iter_mut().zip(theirs.seen) {
                a.extend(b);
            }
            if let (Some(a), Some(b)) = (mine.prefixes.as_mut(), theirs.prefixes) {
                a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
            }
            out.extend(theirs.collect.map(Builder::finish).transpose()?);
        }
        if let (Some(a), Some(b)) = (self.leak.as_mut(), o.leak) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (self.kanon.as_mut(), o.kanon) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (self.labels.as_mut(), o.labels) {
            a.merge(b);
        }
        Ok(())
    }
}

/// A row's own target as a label: a class as a 53-bit hash, or a finite number.
fn own_label(v: &[u8], kind: TargetKind) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    match kind {
        TargetKind::Classes => Some((hash_id(v, 0x7461_7267) >> 11) as f64),
        TargetKind::Values => std::str::from_utf8(v)
            .ok()?
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite()),
    }
}
