//! What a pass over a file looks rows up in: where a row's label comes from ([`Labeller`]:
//! its own target column, or a labels file by id) and the sets of feature rows it hashes
//! ([`RowSet`]: collected for a merge, or probed in memory). Shared by the pass (`scan`)
//! and its workers (`worker`), which never see each other's internals.

use hashbrown::{HashMap, HashSet};

use super::idset::Sorted;
use super::leakage::TargetKind;
use super::targets::LabelMap;

/// Where a row's label comes from, for the leakage sample and ℓ-diversity.
pub enum Labeller<'a> {
    /// No label.
    None,
    /// The file's own target column.
    Own(usize, TargetKind),
    /// Looked up by id in a labels file.
    Join(&'a LabelMap),
}

/// Feature rows of one column set: collected for a later merge, or probed in memory.
#[derive(Debug, Default)]
pub struct RowSet {
    /// The columns hashed, in order.
    pub cols: Vec<usize>,
    /// Collect every row's hash for a merge.
    pub collect: bool,
    /// The collected hashes, after the pass.
    pub collected: Vec<Sorted>,
    /// Training rows' hashes (low 64 bits): rows of this file found there are counted in
    /// `train_hits`.
    pub train: Option<HashSet<u64>>,
    /// Rows of this file whose hash is in `train`.
    pub train_hits: u64,
    /// Sample files' hashes (low 64 bits) → (rows, seen in this file).
    pub samples: Vec<HashMap<u64, (u64, bool)>>,
    /// The prefixes (hash of the first `worker::PREFIX_FIELDS` fields) of every row in
    /// `train` and `samples`, as bits: a row whose prefix is not there cannot match, and is
    /// not hashed further. Empty: no prefilter. After the pass of a collected set: the
    /// prefixes of its own rows.
    pub prefixes: Vec<u64>,
    /// A bit per hash bucket of every hash in `train` and `samples` (a Bloom filter with
    /// one function): most rows match nothing, and this small array says so from cache
    /// before the larger sets are probed. Empty: probe them every time.
    pub filter: Vec<u64>,
}

impl RowSet {
    /// Builds [`Self::filter`] from `train` and `samples`.
    pub fn build_filter(&mut self) {
        let n = self.train.as_ref().map_or(0, |t| t.len())
            + self.samples.iter().map(|s| s.len()).sum::<usize>();
        let bits = (n * 16).next_power_of_two().max(1 << 12);
        self.filter = vec![0; bits / 64];
        let keys = self
            .train
            .iter()
            .flatten()
            .chain(self.samples.iter().flat_map(|s| s.keys()));
        for &h in keys {
            let b = Self::bit(h, bits);
            self.filter[b >> 6] |= 1 << (b & 63);
        }
    }

    #[inline]
    fn bit(h: u64, bits: usize) -> usize {
        (h >> 32) as usize & (bits - 1)
    }

    /// Whether `h` may be in `train` or `samples`.
    #[inline]
    pub fn may_hold(&self, h: u64) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let b = Self::bit(h, self.filter.len() * 64);
        self.filter[b >> 6] >> (b & 63) & 1 == 1
    }
}

/// The 64-bit key of an id for label lookups: the low half of its 128-bit hash.
pub fn id_key(h: u128) -> u64 {
    h as u64
}
