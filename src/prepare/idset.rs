//! Sets of ids and feature rows in bounded memory: 128-bit hashes, sorted by external merge.
//!
//! Owns duplicate counting and set comparison (missing, extra, overlap) over files of any
//! size. A value is represented by two independent 64-bit hashes (the split's stable
//! `hash_id` under two fixed seeds); two distinct ids collide with probability 2^-128, so
//! for ten billion ids the chance that any count is off by one is below 10^-18 — exact for
//! every practical purpose, with no id kept in memory. Hashes are collected in a buffer of
//! [`BUILD_ENTRIES`] (16 MiB); a full buffer is sorted and written as a run to an anonymous
//! temporary file (unlinked on creation); reading merges the runs. Memory is one buffer
//! while building and 64 KiB per run while merging, whatever the file size.
//!
//! It must never write an id, only hashes, and never keep a run file once dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;

use crate::scoring::split::hash_id;

/// Hashes held in memory while building, before a sorted run is written (16 MiB).
pub const BUILD_ENTRIES: usize = 1 << 20;

/// A finished set this small stays in memory; a larger one goes to disk (1 MiB).
const KEEP_IN_MEMORY: usize = 1 << 16;

/// Bytes read at a time from one run while merging.
const RUN_READ_BYTES: usize = 64 << 10;

const SEED_HI: u64 = 0x686f_6c64_6f75_7431;
const SEED_LO: u64 = 0x7072_6570_6172_6532;

/// The 128-bit hash of a value (an id, or an encoded feature row).
pub fn hash128(bytes: &[u8]) -> u128 {
    (u128::from(hash_id(bytes, SEED_HI)) << 64) | u128::from(hash_id(bytes, SEED_LO))
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
        self.buf.sort_unstable();
        let file = tempfile::tempfile()?;
        let mut w = BufWriter::with_capacity(RUN_READ_BYTES, &file);
        for h in &self.buf {
            w.write_all(&h.to_le_bytes())?;
        }
        w.flush()?;
        drop(w);
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
            self.buf.sort_unstable();
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

    /// Number of distinct hashes.
    pub fn distinct(&self) -> io::Result<u64> {
        let mut m = Merge::new(&[self]);
        let mut n = 0;
        let mut last = None;
        while let Some(h) = m.next()? {
            if last != Some(h) {
                n += 1;
                last = Some(h);
            }
        }
        Ok(n)
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

/// The sorted union (with repeats) of several sets.
pub struct Merge<'a> {
    /// Every source, memory and runs.
    sources: Vec<Source<'a>>,
    /// The head of each non-empty source.
    heap: BinaryHeap<Reverse<(u128, usize)>>,
    /// Whether the heap has been filled.
    started: bool,
}

impl<'a> Merge<'a> {
    /// Merges `sets`.
    pub fn new(sets: &[&'a Sorted]) -> Self {
        let mut sources = Vec::new();
        for s in sets {
            if !s.mem.is_empty() {
                sources.push(Source::Mem(&s.mem, 0));
            }
            for run in &s.runs {
                sources.push(Source::Disk {
                    run,
                    taken: 0,
                    block: Vec::new(),
                    pos: 0,
                });
            }
        }
        Self {
            sources,
            heap: BinaryHeap::new(),
            started: false,
        }
    }

    /// The next smallest hash.
    pub fn next(&mut self) -> io::Result<Option<u128>> {
        if self.sources.len() == 1 {
            return self.sources[0].next();
        }
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                if let Some(h) = self.sources[i].next()? {
                    self.heap.push(Reverse((h, i)));
                }
            }
        }
        let Some(Reverse((h, i))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.sources[i].next()? {
            self.heap.push(Reverse((next, i)));
        }
        Ok(Some(h))
    }

    /// The next distinct hash and how many times it occurs.
    pub fn next_distinct(&mut self, pending: &mut Option<u128>) -> io::Result<Option<(u128, u64)>> {
        let first = match pending.take() {
            Some(h) => h,
            None => match self.next()? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        let mut n = 1;
        loop {
            match self.next()? {
                Some(h) if h == first => n += 1,
                Some(h) => {
                    *pending = Some(h);
                    break;
                }
                None => break,
            }
        }
        Ok(Some((first, n)))
    }
}

/// How two sets of distinct values compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overlap {
    /// Distinct values only in the first.
    pub only_left: u64,
    /// Distinct values only in the second.
    pub only_right: u64,
    /// Distinct values in both.
    pub both: u64,
    /// Rows of the second whose value is also in the first (repeats counted).
    pub right_rows_in_left: u64,
}

/// Compares the distinct values of the union of `left` with those of the union of `right`.
pub fn compare(left: &[&Sorted], right: &[&Sorted]) -> io::Result<Overlap> {
    let mut a = Merge::new(left);
    let mut b = Merge::new(right);
    let (mut pa, mut pb) = (None, None);
    let mut x = a.next_distinct(&mut pa)?;
    let mut y = b.next_distinct(&mut pb)?;
    let mut o = Overlap::default();
    loop {
        match (x, y) {
            (None, None) => return Ok(o),
            (Some(_), None) => {
                o.only_left += 1;
                x = a.next_distinct(&mut pa)?;
            }
            (None, Some(_)) => {
                o.only_right += 1;
                y = b.next_distinct(&mut pb)?;
            }
            (Some((ha, _)), Some((hb, nb))) => {
                if ha < hb {
                    o.only_left += 1;
                    x = a.next_distinct(&mut pa)?;
                } else if hb < ha {
                    o.only_right += 1;
                    y = b.next_distinct(&mut pb)?;
                } else {
                    o.both += 1;
                    o.right_rows_in_left += nb;
                    x = a.next_distinct(&mut pa)?;
                    y = b.next_distinct(&mut pb)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn duplicates_and_overlaps_are_counted_exactly_in_memory_and_on_disk() {
        for disk in [false, true] {
            let labels = set((0..5000).chain(10..20), disk);
            assert_eq!(labels.len(), 5010);
            assert_eq!(labels.distinct().unwrap(), 5000);
            let inputs = set((100..5100).chain([150, 150]), disk);
            let o = compare(&[&labels], &[&inputs]).unwrap();
            assert_eq!(
                o,
                Overlap {
                    only_left: 100,
                    only_right: 100,
                    both: 4900,
                    right_rows_in_left: 4902,
                },
                "disk {disk}"
            );
        }
    }

    #[test]
    fn a_union_of_sets_compares_as_one() {
        let labels = set(0..100, false);
        let a = set(0..50, true);
        let b = set(40..90, false);
        let o = compare(&[&labels], &[&a, &b]).unwrap();
        assert_eq!((o.only_left, o.only_right, o.both), (10, 0, 90));
    }
}
