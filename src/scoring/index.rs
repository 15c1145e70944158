//! The id index of a label set: every id's bytes interned in one arena, and an
//! open-addressing hash table from id to row.
//!
//! Owns the table's layout, its two-thread build, and where it uses the memory hints of
//! `memory` (prefetches, huge pages) that keep lookups fast at tens of millions of rows. It
//! knows nothing of targets, splits or files, and must never be used with a hash other than
//! [`INDEX_SEED`]'s.

use std::cmp::Ordering as Order;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::scoring::memory::{advise_huge_pages, prefetch};
use crate::scoring::split::hash_id;

/// Seed of the id index's hash; unrelated to any split seed.
pub(super) const INDEX_SEED: u64 = 0x5EED_1D5E_ED1D_5EED;

/// Interned ids: every id's bytes in one arena, plus an open-addressing index from id to row.
///
/// When no id is longer than [`SHORT_ID`] bytes (integer ids up to ten million, short codes),
/// the ids are instead kept one word per row (`short`), so checking a looked-up row's id is
/// one cache miss rather than two dependent ones (its end offset, then its bytes), and takes
/// 8 bytes a row instead of 4 plus the id.
///
/// The index is hand-rolled rather than a general hash map because it dominates load time
/// at tens of millions of rows: each slot is one u32 packing the row with a few bits of the
/// id's hash (so a probe rarely has to touch the arena), linear probing keeps a probe within
/// a cache line, and building it prefetches slots a few rows ahead so the cache misses of
/// many inserts overlap instead of queueing.
///
/// When the ids are strictly increasing (as byte strings, or shortest-first as integer ids
/// are), they are distinct by construction, so the table is built only when first needed:
/// a predictions file in the labels' order finds every row by comparing with the next one,
/// and never pays for the table (a quarter of the load time, and its memory). Until then the
/// occasional lookup is a binary search, up to [`SEARCH_BUDGET`] of them. And when the ids
/// are consecutive integers (`7,8,9,...`, the most common test-set ids), an id's row is
/// computed from its digits, so even a shuffled file needs neither table nor search.
#[derive(Debug)]
pub(super) struct IdIndex {
    /// Number of rows.
    pub(super) rows: usize,
    /// Each row's id zero-padded, its length in the last byte; empty when an id is longer
    /// than [`SHORT_ID`] (then `arena` and `ends` hold the ids, and are empty otherwise).
    pub(super) short: Vec<[u8; 8]>,
    /// All ids back to back.
    pub(super) arena: Vec<u8>,
    /// End offset of each row's id in `arena`.
    pub(super) ends: Vec<u32>,
    /// 0 for an empty slot, else `tag << row_bits | (row + 1)`. Atomic so two threads can
    /// fill it; once built it only is read, and a relaxed load is a plain load. Built at
    /// load unless `sorted`, else on first use (see [`IdIndex::table`]).
    slots: OnceLock<Vec<AtomicU32>>,
    /// Slots in the table, whether built yet or not.
    table_len: usize,
    /// The order the ids strictly increase in, if any: then they are known to be distinct.
    sorted: Option<IdOrder>,
    /// Binary searches made while the table was not built.
    searches: AtomicU32,
    /// When row `r`'s id is the integer `first + r` written without leading zeros: `first`.
    consecutive_from: Option<u64>,
    /// Bits of a slot holding `row + 1`; the rest hold the tag.
    pub(super) row_bits: u32,
}

/// An order of ids under which the labels' ids were found strictly increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdOrder {
    /// Byte-wise lexicographic (string ids, zero-padded numbers).
    Bytes,
    /// Shorter first, then byte-wise: the numeric order of integer ids without leading zeros.
    ShortFirst,
}

impl IdOrder {
    #[inline]
    fn cmp(self, a: &[u8], b: &[u8]) -> Order {
        match self {
            IdOrder::Bytes => a.cmp(b),
            IdOrder::ShortFirst => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        }
    }
}

/// Lookups answered by binary search before the hash table is built for sorted ids: enough
/// for the few rows out of place (a pass starting mid-file), few enough to cost milliseconds.
const SEARCH_BUDGET: u32 = 1024;
/// Longest id kept inline, one word per row.
pub(super) const SHORT_ID: usize = 7;
/// How many rows ahead the index build prefetches.
const PREFETCH_AHEAD: usize = 16;
/// Sets smaller than this are indexed on one thread.
const PARALLEL_INDEX_ROWS: usize = if cfg!(test) { 2 } else { 1 << 16 };

impl IdIndex {
    #[inline]
    pub(super) fn id(&self, row: usize) -> &[u8] {
        if let Some(word) = self.short.get(row) {
            return &word[..usize::from(word[SHORT_ID])];
        }
        let start = if row == 0 {
            0
        } else {
            self.ends[row - 1] as usize
        };
        &self.arena[start..self.ends[row] as usize]
    }

    /// The first slot to probe for `hash` (multiply-shift onto the table's length).
    #[inline]
    pub(super) fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.table_len as u128) >> 64) as usize
    }

    /// The tag of `hash`, already shifted into place (0 when rows use all 32 bits).
    #[inline]
    pub(super) fn tag(&self, hash: u64) -> u32 {
        if self.row_bits >= 32 {
            0
        } else {
            ((hash as u32) >> self.row_bits) << self.row_bits
        }
    }

    #[inline]
    pub(super) fn row_mask(&self) -> u32 {
        if self.row_bits >= 32 {
            u32::MAX
        } else {
            (1 << self.row_bits) - 1
        }
    }

    /// The row of `id`, or the slot where it would be inserted.
    #[inline]
    pub(super) fn probe(&self, id: &[u8], hash: u64) -> Result<usize, usize> {
        let (tag, mask) = (self.tag(hash), self.row_mask());
        let slots = self.table();
        let mut slot = self.home(hash);
        loop {
            let value = slots[slot].load(Ordering::Relaxed);
            if value == 0 {
                return Err(slot);
            }
            if value & !mask == tag {
                let row = (value & mask) as usize - 1;
                if self.id(row) == id {
                    return Ok(row);
                }
            }
            slot += 1;
            if slot == slots.len() {
                slot = 0;
            }
        }
    }

    #[inline]
    pub(super) fn find(&self, id: &[u8]) -> Option<usize> {
        if let Some(found) = self.find_without_table(id) {
            return found;
        }
        self.probe(id, hash_id(id, INDEX_SEED)).ok()
    }

    /// The lookup of `id` by binary search, while sorted ids have no table yet and the search
    /// budget lasts; `None` when the table should be used instead.
    #[inline]
    pub(super) fn find_without_table(&self, id: &[u8]) -> Option<Option<usize>> {
        if let Some(first) = self.consecutive_from {
            // Every label id is canonical, so an id that is not cannot be among them.
            let row = canonical_integer(id).and_then(|v| v.checked_sub(first));
            return Some(row.filter(|&r| r < self.rows as u64).map(|r| r as usize));
        }
        let order = self.sorted?;
        if self.slots.get().is_some() || self.searches.load(Ordering::Relaxed) >= SEARCH_BUDGET {
            return None;
        }
        self.searches.fetch_add(1, Ordering::Relaxed);
        let (mut low, mut high) = (0, self.rows);
        while low < high {
            let middle = low + (high - low) / 2;
            match order.cmp(self.id(middle), id) {
                Order::Less => low = middle + 1,
                Order::Greater => high = middle,
                Order::Equal => return Some(Some(middle)),
            }
        }
        Some(None)
    }

    /// The hash table, built on first use when the ids were sorted (they are then distinct,
    /// so building cannot fail).
    #[inline]
    pub(super) fn table(&self) -> &[AtomicU32] {
        self.slots.get_or_init(|| {
            self.fill_table()
                .expect("strictly increasing ids are distinct")
        })
    }

    #[inline]
    pub(super) fn prefetch(&self, slot: usize) {
        prefetch(self.table(), slot);
    }

    /// The first row along `hash`'s probe whose tag matches, looking no further than the
    /// home slot's neighbours (already cached): the likely answer, to prefetch.
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<usize> {
        let (tag, mask) = (self.tag(hash), self.row_mask());
        let (slots, home) = (self.table(), self.home(hash));
        let near = &slots[home..slots.len().min(home + 8)];
        near.iter()
            .map(|value| value.load(Ordering::Relaxed))
            .take_while(|&value| value != 0)
            .find(|&value| value & !mask == tag)
            .map(|value| (value & mask) as usize - 1)
    }
}

/// The value of an integer written in decimal digits without leading zeros (and no sign),
/// the one spelling of its value; `None` for anything else.
#[inline]
fn canonical_integer(id: &[u8]) -> Option<u64> {
    if id.is_empty() || id.len() > 19 || (id.len() > 1 && id[0] == b'0') {
        return None;
    }
    id.iter().try_fold(0u64, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u64::from(b - b'0'))
    })
}

impl IdIndex {
    /// Builds the id index, refusing duplicates: at once unless the ids are sorted (see
    /// [`IdIndex`]). Sized once (load factor 0.6), so it never grows.
    /// Large sets are indexed by two threads, each inserting half the rows; when they find a
    /// duplicate, the index is rebuilt on one thread so the id reported is always the first
    /// repeated one in file order.
    /// `Err` holds the repeated id, for the organiser.
    /// `short` holds the ids when none is longer than [`SHORT_ID`], else `arena` and `ends`
    /// do (and `short` is empty).
    pub(super) fn build(
        short: Vec<[u8; 8]>,
        arena: Vec<u8>,
        ends: Vec<u32>,
    ) -> Result<IdIndex, String> {
        let rows = short.len().max(ends.len());
        let row_bits = (usize::BITS - rows.leading_zeros()).max(1);
        let index = IdIndex {
            rows,
            short,
            arena,
            ends,
            slots: OnceLock::new(),
            row_bits,
            table_len: rows + rows * 2 / 3 + 1,
            sorted: None,
            searches: AtomicU32::new(0),
            consecutive_from: None,
        };
        let sorted = [IdOrder::ShortFirst, IdOrder::Bytes]
            .into_iter()
            .find(|&order| {
                (1..rows).all(|row| order.cmp(index.id(row - 1), index.id(row)) == Order::Less)
            });
        if sorted.is_some() {
            // Strictly increasing canonical integers spanning rows - 1 are consecutive.
            let consecutive_from = match (
                canonical_integer(index.id(0)),
                canonical_integer(index.id(rows - 1)),
            ) {
                (Some(first), Some(last))
                    if sorted == Some(IdOrder::ShortFirst)
                        && last - first == rows as u64 - 1
                        && (0..rows).all(|row| canonical_integer(index.id(row)).is_some()) =>
                {
                    Some(first)
                }
                _ => None,
            };
            return Ok(IdIndex {
                sorted,
                consecutive_from,
                ..index
            });
        }
        match index.fill_table() {
            Ok(slots) => {
                let _ = index.slots.set(slots);
                Ok(index)
            }
            Err(row) => Err(String::from_utf8_lossy(index.id(row)).into_owned()),
        }
    }

    /// A filled hash table of every row; `Err(row)`: the first row, in file order, whose id
    /// repeats an earlier one.
    fn fill_table(&self) -> Result<Vec<AtomicU32>, usize> {
        let rows = self.rows;
        let mut slots = Vec::with_capacity(self.table_len);
        advise_huge_pages(&slots);
        slots.extend((0..self.table_len).map(|_| AtomicU32::new(0)));
        let two_threads = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        if two_threads && rows >= PARALLEL_INDEX_ROWS {
            let shared = &slots;
            let (first, second) = std::thread::scope(|scope| {
                let second = scope.spawn(|| self.insert_rows(shared, rows / 2..rows));
                (self.insert_rows(shared, 0..rows / 2), second.join())
            });
            if matches!((first, second), (Ok(()), Ok(Ok(())))) {
                return Ok(slots);
            }
            for slot in &slots {
                slot.store(0, Ordering::Relaxed);
            }
        }
        self.insert_rows(&slots, 0..rows).map(|()| slots)
    }

    /// Inserts `rows`, prefetching slots a few rows ahead so the cache misses of many
    /// inserts overlap. Safe to run on several threads over disjoint ranges: a slot is
    /// claimed by compare-and-swap, and two inserts of one id walk the same probe sequence,
    /// so the later one meets the earlier. `Err(row)`: `row` repeats an id already present.
    fn insert_rows(&self, slots: &[AtomicU32], rows: std::ops::Range<usize>) -> Result<(), usize> {
        let mut ahead = [0u64; PREFETCH_AHEAD];
        for row in rows.start..rows.end.min(rows.start + PREFETCH_AHEAD) {
            let hash = hash_id(self.id(row), INDEX_SEED);
            ahead[row % PREFETCH_AHEAD] = hash;
            prefetch(slots, self.home(hash));
        }
        let mask = self.row_mask();
        for row in rows.clone() {
            let hash = ahead[row % PREFETCH_AHEAD];
            let next = row + PREFETCH_AHEAD;
            if next < rows.end {
                let next_hash = hash_id(self.id(next), INDEX_SEED);
                ahead[next % PREFETCH_AHEAD] = next_hash;
                prefetch(slots, self.home(next_hash));
            }
            let (id, tag) = (self.id(row), self.tag(hash));
            let mine = tag | (row as u32 + 1);
            let mut slot = self.home(hash);
            loop {
                let value = slots[slot].load(Ordering::Relaxed);
                if value == 0 {
                    match slots[slot].compare_exchange(
                        0,
                        mine,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        // Another thread took it: look at what it wrote.
                        Err(_) => continue,
                    }
                }
                if value & !mask == tag && self.id((value & mask) as usize - 1) == id {
                    return Err(row);
                }
                slot += 1;
                if slot == slots.len() {
                    slot = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(ids: &[String]) -> Result<IdIndex, String> {
        if ids.iter().all(|id| id.len() <= SHORT_ID) {
            let short = ids
                .iter()
                .map(|id| {
                    let mut word = [0u8; 8];
                    word[..id.len()].copy_from_slice(id.as_bytes());
                    word[SHORT_ID] = id.len() as u8;
                    word
                })
                .collect();
            return IdIndex::build(short, Vec::new(), Vec::new());
        }
        let (mut arena, mut ends) = (Vec::new(), Vec::new());
        for id in ids {
            arena.extend_from_slice(id.as_bytes());
            ends.push(arena.len() as u32);
        }
        IdIndex::build(Vec::new(), arena, ends)
    }

    #[test]
    fn every_id_is_found_alike_by_arithmetic_search_and_table() {
        let layouts: [(&str, Vec<String>); 6] = [
            ("consecutive", (5..3005).map(|i| i.to_string()).collect()),
            ("spaced", (0..3000).map(|i| (i * 3).to_string()).collect()),
            (
                "zero-padded",
                (0..3000).map(|i| format!("{i:05}")).collect(),
            ),
            (
                "long sorted",
                (0..3000).map(|i| format!("id-{i:09}")).collect(),
            ),
            (
                "shuffled",
                (0..3000).map(|i| ((i * 7) % 3000).to_string()).collect(),
            ),
            ("one", vec!["0".to_owned()]),
        ];
        let absent = ["", "007", "+7", "-1", "7 ", "3005", "4", "1e3", "abc", "x"];
        for (name, ids) in layouts {
            let index = index(&ids).unwrap();
            assert_eq!(
                index.consecutive_from.is_some(),
                matches!(name, "consecutive" | "one"),
                "{name}"
            );
            assert_eq!(index.slots.get().is_some(), name == "shuffled", "{name}");
            // Every lookup twice over, so the binary searches run out and the table is built.
            for _ in 0..2 {
                for (row, id) in ids.iter().enumerate() {
                    assert_eq!(index.find(id.as_bytes()), Some(row), "{name} {id}");
                }
                for id in absent.iter().filter(|id| !ids.iter().any(|i| i == *id)) {
                    assert_eq!(index.find(id.as_bytes()), None, "{name} {id:?}");
                }
            }
            let lazily_built = name != "consecutive" && name != "one";
            assert_eq!(index.slots.get().is_some(), lazily_built, "{name}");
        }
    }

    #[test]
    fn sorted_ids_are_distinct_and_unsorted_duplicates_are_refused() {
        let repeated: Vec<String> = ["1", "2", "3", "2"].map(String::from).to_vec();
        assert_eq!(index(&repeated).unwrap_err(), "2");
        let not_strictly_increasing: Vec<String> = ["1", "2", "2", "3"].map(String::from).to_vec();
        assert_eq!(index(&not_strictly_increasing).unwrap_err(), "2");
    }

    #[test]
    fn labels_whose_ids_turn_long_midway_find_every_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        let mut text = String::from("id,y\n");
        let ids: Vec<String> = (0..2000)
            .map(|i| {
                if i < 1000 {
                    i.to_string()
                } else {
                    format!("long-id-{i}")
                }
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            text.push_str(&format!("{id},{}\n", i % 2));
        }
        std::fs::write(&path, text).unwrap();
        let spec = crate::scoring::LabelSpec {
            id_column: "id".into(),
            target_column: "y".into(),
            kind: crate::scoring::TargetKind::Classes,
            split: None,
            positive_label: None,
            binary: false,
            both_classes_per_part: false,
            needs_r2: false,
        };
        let labels = crate::scoring::load_labels(&path, &spec).unwrap();
        for (row, id) in ids.iter().enumerate().rev() {
            assert_eq!(labels.find(id.as_bytes(), usize::MAX), Some(row), "{id}");
        }
    }
}
