//! The id index of a label set: every id's bytes interned in one arena, and an
//! open-addressing hash table from id to row.
//!
//! Owns the table's layout, its two-thread build, and the memory hints (prefetches, huge
//! pages) that keep lookups fast at tens of millions of rows. It knows nothing of targets,
//! splits or files, and must never be used with a hash other than [`INDEX_SEED`]'s.

use std::sync::atomic::{AtomicU32, Ordering};

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
    /// fill it; once built it only is read, and a relaxed load is a plain load.
    pub(super) slots: Vec<AtomicU32>,
    /// Bits of a slot holding `row + 1`; the rest hold the tag.
    pub(super) row_bits: u32,
}

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
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
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
        let mut slot = self.home(hash);
        loop {
            let value = self.slots[slot].load(Ordering::Relaxed);
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
            if slot == self.slots.len() {
                slot = 0;
            }
        }
    }

    #[inline]
    pub(super) fn find(&self, id: &[u8]) -> Option<usize> {
        self.probe(id, hash_id(id, INDEX_SEED)).ok()
    }

    #[inline]
    pub(super) fn prefetch(&self, slot: usize) {
        prefetch(&self.slots, slot);
    }

    /// The first row along `hash`'s probe whose tag matches, looking no further than the
    /// home slot's neighbours (already cached): the likely answer, to prefetch.
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<usize> {
        let (tag, mask) = (self.tag(hash), self.row_mask());
        let home = self.home(hash);
        let near = &self.slots[home..self.slots.len().min(home + 8)];
        near.iter()
            .map(|value| value.load(Ordering::Relaxed))
            .take_while(|&value| value != 0)
            .find(|&value| value & !mask == tag)
            .map(|value| (value & mask) as usize - 1)
    }
}

/// Asks the kernel to back a large vector's reserved capacity with 2 MiB pages, before it is
/// touched. Random lookups into the id index and the per-row arrays then miss the TLB far
/// less often, which is most of what a shuffled predictions file costs. Only advice: ignored
/// where transparent huge pages are off, and a no-op for small vectors.
pub(crate) fn advise_huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + v.capacity() * std::mem::size_of::<T>();
    let (from, to) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
    if to > from {
        // SAFETY: the range lies inside the vector's own allocation, and MADV_HUGEPAGE only
        // changes how its pages are backed, never their contents.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
        }
    }
}

/// Asks the CPU to start loading `items[i]` into cache. Only a hint: out of bounds is ignored.
#[inline]
pub(crate) fn prefetch<T>(items: &[T], i: usize) {
    if i >= items.len() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `i` is in bounds, and a prefetch never faults and reads nothing.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(items.as_ptr().add(i).cast());
    }
}

impl IdIndex {
    /// Builds the id index, refusing duplicates. Sized once (load factor 0.6), so it never grows.
    /// Large sets are indexed by two threads, each inserting half the rows; when they find a
    /// duplicate, the index is rebuilt on one thread so the id reported is always the first
    /// repeated one in file order.
    /// `Err` holds the repeated id, for the organiser.
    pub(super) fn build(arena: Vec<u8>, ends: Vec<u32>) -> Result<IdIndex, String> {
        let rows = ends.len();
        let row_bits = (usize::BITS - rows.leading_zeros()).max(1);
        let mut previous = 0;
        let all_short = ends.iter().all(|&end| {
            let short = (end - previous) as usize <= SHORT_ID;
            previous = end;
            short
        });
        let (short, arena, ends) = if all_short {
            let mut short = Vec::with_capacity(rows);
            advise_huge_pages(&short);
            let mut start = 0;
            short.extend(ends.iter().map(|&end| {
                let id = &arena[start..end as usize];
                start = end as usize;
                let mut word = [0u8; 8];
                word[..id.len()].copy_from_slice(id);
                word[SHORT_ID] = id.len() as u8;
                word
            }));
            (short, Vec::new(), Vec::new())
        } else {
            (Vec::new(), arena, ends)
        };
        let mut index = IdIndex {
            rows,
            short,
            arena,
            ends,
            slots: Vec::with_capacity(rows + rows * 2 / 3 + 1),
            row_bits,
        };
        advise_huge_pages(&index.slots);
        index
            .slots
            .extend((0..rows + rows * 2 / 3 + 1).map(|_| AtomicU32::new(0)));
        let two_threads = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        if two_threads && rows >= PARALLEL_INDEX_ROWS {
            let shared = &index;
            let (first, second) = std::thread::scope(|scope| {
                let second = scope.spawn(|| shared.insert_rows(rows / 2..rows));
                (shared.insert_rows(0..rows / 2), second.join())
            });
            if matches!((first, second), (Ok(()), Ok(Ok(())))) {
                return Ok(index);
            }
            for slot in &index.slots {
                slot.store(0, Ordering::Relaxed);
            }
        }
        match index.insert_rows(0..rows) {
            Ok(()) => Ok(index),
            Err(row) => Err(String::from_utf8_lossy(index.id(row)).into_owned()),
        }
    }

    /// Inserts `rows`, prefetching slots a few rows ahead so the cache misses of many
    /// inserts overlap. Safe to run on several threads over disjoint ranges: a slot is
    /// claimed by compare-and-swap, and two inserts of one id walk the same probe sequence,
    /// so the later one meets the earlier. `Err(row)`: `row` repeats an id already present.
    fn insert_rows(&self, rows: std::ops::Range<usize>) -> Result<(), usize> {
        let mut ahead = [0u64; PREFETCH_AHEAD];
        for row in rows.start..rows.end.min(rows.start + PREFETCH_AHEAD) {
            let hash = hash_id(self.id(row), INDEX_SEED);
            ahead[row % PREFETCH_AHEAD] = hash;
            self.prefetch(self.home(hash));
        }
        let mask = self.row_mask();
        for row in rows.clone() {
            let hash = ahead[row % PREFETCH_AHEAD];
            let next = row + PREFETCH_AHEAD;
            if next < rows.end {
                let next_hash = hash_id(self.id(next), INDEX_SEED);
                ahead[next % PREFETCH_AHEAD] = next_hash;
                self.prefetch(self.home(next_hash));
            }
            let (id, tag) = (self.id(row), self.tag(hash));
            let mine = tag | (row as u32 + 1);
            let mut slot = self.home(hash);
            loop {
                let value = self.slots[slot].load(Ordering::Relaxed);
                if value == 0 {
                    match self.slots[slot].compare_exchange(
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
                if slot == self.slots.len() {
                    slot = 0;
                }
            }
        }
        Ok(())
    }
}
