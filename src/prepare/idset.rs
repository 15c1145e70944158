//! Sets of ids and feature rows in bounded memory: 128-bit hashes, sorted by external merge.
//!
//! Owns duplicate counting and set comparison (missing, extra, overlap) over files of any
//! size. A value is represented by its 128-bit hash (`rowhash::hash128`); two distinct ids collide
//! with probability 2^-128, so for ten billion ids the chance that any count is off by one
//! is below 10^-18 — exact for every practical purpose, with no id kept in memory. Hashes
//! are collected in a buffer of [`BUILD_ENTRIES`] (16 MiB); a full buffer is sorted and
//! written as a run to an anonymous temporary file (unlinked on creation). All the sets of
//! a check are then compared in one k-way merge ([`Membership`]), which counts, for each
//! pattern of membership, the distinct values and rows that have it. Memory is one buffer
//! while building and 64 KiB per run while merging, whatever the file size.
//!
//! It must never write an id, only hashes, and never keep a run file once dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use hashbrown::{HashMap, HashSet};

/// Hashes held in memory while building, before a sorted run is written (16 MiB).
pub const BUILD_ENTRIES: usize = 1 << 20;

/// A finished set this small stays in memory; a larger one goes to disk (1 MiB).
const KEEP_IN_MEMORY: usize = 1 << 16;

/// Bytes read at a time from one run while merging.
const RUN_READ_BYTES: usize = 64 << 10;

/// Sorts uniformly distributed hashes: an in-place pass by their top byte (American flag
/// sort), then the same by the next byte within each bucket, which fits in cache by then,
/// down to buckets small enough for the standard sort.
fn sort_hashes(v: &mut [u128]) {
    sort_by_byte(v, 0);
}

fn sort_by_byte(v: &mut [u128], level: u32) {
    if v.len() < 1 << 8 || level == 16 {
        v.sort_unstable();
        return;
    }
    let shift = 120 - 8 * level;
    let digit = |h: u128| (h >> shift) as usize & 0xff;
    let mut counts = [0usize; 256];
    for &h in v.iter() {
        counts[digit(h)] += 1;
    }
    let (mut starts, mut ends) = ([0usize; 256], [0usize; 256]);
    let mut sum = 0;
    for b in 0..256 {
        starts[b] = sum;
        sum += counts[b];
        ends[b] = sum;
    }
    let mut next = starts;
    for b in 0..256 {
        while next[b] < ends[b] {
            let mut h = v[next[b]];
            loop {
                let d = digit(h);
                if d == b {
                    break;
                }
                std::mem::swap(&mut h, &mut v[next[d]]);
                next[d] += 1;
            }
            v[next[b]] = h;
            next[b] += 1;
        }
    }
    for b in 0..256 {
        sort_by_byte(&mut v[starts[b]..ends[b]], level + 1);
    }
}

/// Collects hashes; [`Self::finish`] sorts them into a [`Sorted`] set.
#[derive(Debug, Default)]
pub struct Builder {
    /// Hashes not yet written.
    buf: Vec<u128>,
    /// Sorted runs on disk.
    runs: Vec<Run>,
    /// Hashes pushed in all.
    len: u64,
}

/// A sorted run of hashes in an anonymous temporary file.
#[derive(Debug)]
struct Run {
    /// The file, read with positional reads so several merges can share it.
    file: File,
    /// Number of hashes in it.
    len: u64,
}

/// A finished multiset of hashes, sorted, in memory or in runs on disk.
#[derive(Debug, Default)]
pub struct Sorted {
    /// A small set, sorted.
    mem: Vec<u128>,
    /// Sorted runs.
    runs: Vec<Run>,
    /// Number of hashes (with repeats).
    len: u64,
}

impl Builder {
    /// Adds one hash.
    pub fn push(&mut self, h: u128) -> io::Result<()> {
        self.len += 1;
        self.buf.push(h);
        if self.buf.len() >= BUILD_ENTRIES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        sort_hashes(&mut self.buf);
        let mut file = tempfile::tempfile()?;
        let mut bytes = Vec::with_capacity(RUN_READ_BYTES);
        for block in self.buf.chunks(RUN_READ_BYTES / 16) {
            bytes.clear();
            for h in block {
                bytes.extend_from_slice(&h.to_le_bytes());
            }
            file.write_all(&bytes)?;
        }
        self.runs.push(Run {
            file,
            len: self.buf.len() as u64,
        });
        self.buf.clear();
        Ok(())
    }

    /// Sorts what is left; keeps a small set in memory, writes a large one out.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() && self.buf.len() <= KEEP_IN_MEMORY {
            sort_hashes(&mut self.buf);
            self.buf.shrink_to_fit();
            return Ok(Sorted {
                mem: self.buf,
                runs: Vec::new(),
                len: self.len,
            });
        }
        self.spill()?;
        self.buf = Vec::new();
        Ok(Sorted {
            mem: Vec::new(),
            runs: self.runs,
            len: self.len,
        })
    }
}

impl Sorted {
    /// Number of hashes, repeats included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The distinct hashes in memory, when there are at most `max` hashes: a small set is
    /// probed row by row instead of merged.
    pub fn load(&self, max: u64) -> io::Result<Option<HashSet<u128>>> {
        if self.len > max {
            return Ok(None);
        }
        let mut out = HashSet::with_capacity(self.len as usize);
        let mut m = Merge::new(&[&[self]])?;
        while let Some((h, _)) = m.next()? {
            out.insert(h);
        }
        Ok(Some(out))
    }

    /// Each distinct hash with its number of repeats, when there are at most `max` hashes.
    pub fn load_counts(&self, max: u64) -> io::Result<Option<HashMap<u128, u64>>> {
        if self.len > max {
            return Ok(None);
        }
        let mut out = HashMap::with_capacity(self.len as usize);
        let mut m = Merge::new(&[&[self]])?;
        while let Some((h, _)) = m.next()? {
            *out.entry(h).or_insert(0) += 1;
        }
        Ok(Some(out))
    }
}

/// One source of a merge.
enum Source<'a> {
    /// A sorted slice.
    Mem(&'a [u128], usize),
    /// A run on disk, read in blocks.
    Disk {
        /// The run.
        run: &'a Run,
        /// Hashes read from it so far.
        taken: u64,
        /// The current block.
        block: Vec<u128>,
        /// Next index in `block`.
        pos: usize,
    },
}

impl Source<'_> {
    fn next(&mut self) -> io::Result<Option<u128>> {
        match self {
            Source::Mem(s, i) => {
                let v = s.get(*i).copied();
                *i += 1;
                Ok(v)
            }
            Source::Disk {
                run,
                taken,
                block,
                pos,
            } => {
                if *pos == block.len() {
                    let left = run.len - *taken;
                    if left == 0 {
                        return Ok(None);
                    }
                    let n = left.min((RUN_READ_BYTES / 16) as u64) as usize;
                    let mut bytes = vec![0u8; n * 16];
                    run.file.read_exact_at(&mut bytes, *taken * 16)?;
                    block.clear();
                    block.extend(
                        bytes
                            .chunks_exact(16)
                            .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))),
                    );
                    *taken += n as u64;
                    *pos = 0;
                }
                let v = block[*pos];
                *pos += 1;
                Ok(Some(v))
            }
        }
    }
}

/// A k-way merge of several sets' sorted hashes, each source tagged with its group.
struct Merge<'a> {
    /// Every source, memory and runs.
    sources: Vec<Source<'a>>,
    /// The group of each source.
    group_of: Vec<usize>,
    /// The head of each non-empty source.
    heap: BinaryHeap<Reverse<(u128, usize)>>,
}

impl<'a> Merge<'a> {
    fn new(groups: &[&[&'a Sorted]]) -> io::Result<Self> {
        let mut sources = Vec::new();
        let mut group_of = Vec::new();
        for (g, sets) in groups.iter().enumerate() {
            for s in sets.iter() {
                if !s.mem.is_empty() {
                    sources.push(Source::Mem(&s.mem, 0));
                    group_of.push(g);
                }
                for run in &s.runs {
                    sources.push(Source::Disk {
                        run,
                        taken: 0,
                        block: Vec::new(),
                        pos: 0,
                    });
                    group_of.push(g);
                }
            }
        }
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, src) in sources.iter_mut().enumerate() {
            if let Some(h) = src.next()? {
                heap.push(Reverse((h, i)));
            }
        }
        Ok(Self {
            sources,
            group_of,
            heap,
        })
    }

    /// The next hash and the group it came from.
    fn next(&mut self) -> io::Result<Option<(u128, usize)>> {
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let Reverse((h, i)) = *top;
        match self.sources[i].next()? {
            // Replacing the top in place is one sift instead of a pop and a push.
            Some(next) => *top = Reverse((next, i)),
            None => {
                PeekMut::pop(top);
            }
        }
        Ok(Some((h, self.group_of[i])))
    }
}

/// Most logical sets one [`Membership`] pass can tell apart.
pub const MAX_GROUPS: usize = 128;

/// How the distinct values of several logical sets (each the union of some [`Sorted`]s)
/// overlap, from one merge over all of them: for every pattern of membership, how many
/// distinct values have it and how many rows each set holds of them.
#[derive(Debug, Default)]
pub struct Membership {
    /// Membership bit mask → (distinct values, rows per set).
    patterns: HashMap<u128, (u64, Vec<u64>)>,
}

impl Membership {
    /// One merge over `groups` (at most [`MAX_GROUPS`]).
    pub fn of(groups: &[&[&Sorted]]) -> io::Result<Membership> {
        if groups.len() > MAX_GROUPS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many sets in one membership pass",
            ));
        }
        let mut m = Merge::new(groups)?;
        let mut patterns: HashMap<u128, (u64, Vec<u64>)> = HashMap::new();
        let mut counts = vec![0u64; groups.len()];
        let mut touched: Vec<usize> = Vec::new();
        let mut current: Option<u128> = None;
        let mut mask = 0u128;
        let mut flush = |mask: &mut u128, touched: &mut Vec<usize>, counts: &mut Vec<u64>| {
            if *mask == 0 {
                return;
            }
            let e = patterns
                .entry(*mask)
                .or_insert_with(|| (0, vec![0; counts.len()]));
            e.0 += 1;
            for &g in touched.iter() {
                e.1[g] += counts[g];
                counts[g] = 0;
            }
            touched.clear();
            *mask = 0;
        };
        while let Some((h, g)) = m.next()? {
            if current != Some(h) {
                flush(&mut mask, &mut touched, &mut counts);
                current = Some(h);
            }
            if counts[g] == 0 {
                touched.push(g);
            }
            counts[g] += 1;
            mask |= 1 << g;
        }
        flush(&mut mask, &mut touched, &mut counts);
        Ok(Membership { patterns })
    }

    fn sum(&self, keep: impl Fn(u128) -> bool, set: Option<usize>) -> u64 {
        self.patterns
            .iter()
            .filter(|(m, _)| keep(**m))
            .map(|(_, (n, rows))| set.map_or(*n, |s| rows[s]))
            .sum()
    }

    /// Distinct values of set `i`.
    pub fn distinct(&self, i: usize) -> u64 {
        self.sum(|m| m & (1 << i) != 0, None)
    }

    /// Distinct values of set `i` also in at least one of `others`.
    pub fn distinct_in(&self, i: usize, others: &[usize]) -> u64 {
        let o = others.iter().fold(0u128, |a, &j| a | 1 << j);
        self.sum(|m| m & (1 << i) != 0 && m & o != 0, None)
    }

    /// Rows of set `i` whose value is also in at least one of `others`.
    pub fn rows_in(&self, i: usize, others: &[usize]) -> u64 {
        let o = others.iter().fold(0u128, |a, &j| a | 1 << j);
        self.sum(|m| m & (1 << i) != 0 && m & o != 0, Some(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::rowhash::hash128;

    fn set(values: impl IntoIterator<Item = u64>, force_disk: bool) -> Sorted {
        let mut b = Builder::default();
        for v in values {
            b.push(hash128(v.to_string().as_bytes())).unwrap();
            if force_disk && b.buf.len() == 1000 {
                b.spill().unwrap();
            }
        }
        if force_disk {
            b.spill().unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn hashes_sort_like_the_standard_sort() {
        let mut v: Vec<u128> = (0..100_000u64)
            .map(|i| hash128(&i.to_le_bytes()) >> (i % 3))
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        sort_hashes(&mut v);
        assert_eq!(v, expected);
    }

    #[test]
    fn duplicates_and_overlaps_are_counted_exactly_in_memory_and_on_disk() {
        for disk in [false, true] {
            let labels = set((0..5000).chain(10..20), disk);
            assert_eq!(labels.len(), 5010);
            let inputs = set((100..5100).chain([150, 150]), disk);
            let m = Membership::of(&[&[&labels], &[&inputs]]).unwrap();
            assert_eq!(m.distinct(0), 5000, "disk {disk}");
            assert_eq!(m.distinct(1), 5000);
            assert_eq!(m.distinct_in(0, &[1]), 4900);
            assert_eq!(m.distinct_in(1, &[0]), 4900);
            assert_eq!(m.rows_in(1, &[0]), 4902);
            assert_eq!(
                m.rows_in(0, &[1]),
                4900,
                "the repeats 10..20 are not in the inputs"
            );
        }
    }

    #[test]
    fn a_union_of_sets_counts_as_one_set() {
        let labels = set(0..100, false);
        let a = set(0..50, true);
        let b = set(40..90, false);
        let m = Membership::of(&[&[&labels], &[&a, &b]]).unwrap();
        assert_eq!(
            (m.distinct(0), m.distinct(1), m.distinct_in(0, &[1])),
            (100, 90, 90)
        );
    }
}
