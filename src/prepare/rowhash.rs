//! Hashing a feature row field by field, for the identical-row checks (training against
//! test rows, sample against test rows), without copying the row.

use super::idset::{GAMMA, SEED_HI, SEED_LO};
use crate::scoring::split::mix64;

/// Up to seven trailing bytes as a little-endian word, zero-padded (a loop: a copy of a
/// variable length would be a library call per field).
#[inline]
pub(super) fn tail_word(rest: &[u8]) -> u64 {
    rest.iter()
        .enumerate()
        .fold(0, |w, (i, &b)| w | u64::from(b) << (8 * i))
}

/// Hashes a feature row field by field, without copying it: each field's words feed one of
/// four independent chains in turn (so the CPU runs them side by side), its length is
/// folded in after them, and the chains are mixed together at the end. Two lanes of chains
/// give 128 bits for rows merged as sets; the low lane alone, [`Self::finish64`], is enough
/// to probe a small set in memory (a false match needs a 64-bit collision with one of at
/// most a few million values: odds below 10^-12 per row). It is always the low half of
/// [`Self::finish128`], so the two can be compared.
pub struct RowHasher {
    /// Low-lane chains.
    lo: [u64; 4],
    /// High-lane chains (used when `wide`).
    hi: [u64; 4],
    /// Fields so far.
    fields: u64,
    /// Compute the high lane too.
    wide: bool,
}

impl RowHasher {
    /// A hasher; `wide` for [`Self::finish128`].
    #[inline]
    pub fn new(wide: bool) -> Self {
        let lo = [SEED_LO, SEED_LO ^ 1, SEED_LO ^ 2, SEED_LO ^ 3];
        let hi = [SEED_HI, SEED_HI ^ 1, SEED_HI ^ 2, SEED_HI ^ 3];
        Self {
            lo,
            hi,
            fields: 0,
            wide,
        }
    }

    #[inline]
    fn word(&mut self, c: usize, w: u64) {
        self.lo[c] = mix64(self.lo[c].wrapping_add(GAMMA) ^ w);
        if self.wide {
            self.hi[c] = mix64(self.hi[c].wrapping_add(GAMMA) ^ w);
        }
    }

    /// Adds the next field.
    #[inline]
    pub fn field(&mut self, v: &[u8]) {
        let c = (self.fields & 3) as usize;
        self.fields += 1;
        let mut words = v.chunks_exact(8);
        for w in &mut words {
            self.word(
                c,
                u64::from_le_bytes(w.try_into().expect("chunks_exact yields 8 bytes")),
            );
        }
        self.word(c, tail_word(words.remainder()));
        let n = v.len() as u64;
        self.lo[c] ^= n;
        self.hi[c] ^= n;
    }

    fn fold(chains: &[u64; 4], fields: u64) -> u64 {
        let mut f = chains[0];
        for &x in &chains[1..] {
            f = mix64(f.wrapping_add(GAMMA) ^ x);
        }
        mix64(f.wrapping_add(GAMMA) ^ fields)
    }

    /// The 64-bit hash.
    pub fn finish64(&self) -> u64 {
        Self::fold(&self.lo, self.fields)
    }

    /// The 128-bit hash (needs `wide`).
    pub fn finish128(&self) -> u128 {
        (u128::from(Self::fold(&self.hi, self.fields)) << 64) | u128::from(self.finish64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hash_by_their_fields_and_the_narrow_hash_is_the_low_half() {
        let row = |fields: &[&str], wide: bool| {
            let mut h = RowHasher::new(wide);
            fields.iter().for_each(|f| h.field(f.as_bytes()));
            h
        };
        let a = row(&["1.5", "north", "a much longer field of text"], true);
        assert_eq!(
            a.finish128() as u64,
            row(&["1.5", "north", "a much longer field of text"], false).finish64()
        );
        assert_ne!(
            a.finish64(),
            row(&["1.5", "nort", "ha much longer field of text"], false).finish64()
        );
        assert_ne!(
            row(&["", "x"], false).finish64(),
            row(&["x", ""], false).finish64()
        );
        assert_ne!(
            row(&["a"], false).finish64(),
            row(&["a", ""], false).finish64()
        );
    }
}
