//! The check's hashes: of one value ([`hash128`]: ids, keys), and of a feature row field by
//! field, for the identical-row checks (training against test rows, sample against test
//! rows), without copying the row. Sets of these hashes live in `idset`.

use crate::scoring::split::mix64;

/// Seeds of the two lanes.
pub(super) const SEED_HI: u64 = 0x686f_6c64_6f75_7431;
pub(super) const SEED_LO: u64 = 0x7072_6570_6172_6532;
/// The SplitMix64 increment (as in `scoring::split`).
pub(super) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The 128-bit hash of a value (an id, or an encoded feature row): two lanes of the split's
/// SplitMix64 construction (`scoring::split::hash_id`) under two seeds, run in one loop so
/// the CPU overlaps them. Equal to `(hash_id(b, SEED_HI) << 64) | hash_id(b, SEED_LO)`.
pub fn hash128(bytes: &[u8]) -> u128 {
    let (mut hi, mut lo) = (SEED_HI, SEED_LO);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("chunks_exact yields 8 bytes"));
        hi = mix64(hi.wrapping_add(GAMMA) ^ w);
        lo = mix64(lo.wrapping_add(GAMMA) ^ w);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let w = tail_word(rest);
        hi = mix64(hi.wrapping_add(GAMMA) ^ w);
        lo = mix64(lo.wrapping_add(GAMMA) ^ w);
    }
    let n = bytes.len() as u64;
    (u128::from(mix64(hi.wrapping_add(GAMMA) ^ n)) << 64)
        | u128::from(mix64(lo.wrapping_add(GAMMA) ^ n))
}

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
    fn the_two_lane_hash_equals_the_split_hash_under_both_seeds() {
        use crate::scoring::split::hash_id;
        for v in [
            "",
            "a",
            "12345678",
            "123456789",
            "a much longer identifier, 40 bytes",
        ] {
            let b = v.as_bytes();
            let expected =
                (u128::from(hash_id(b, SEED_HI)) << 64) | u128::from(hash_id(b, SEED_LO));
            assert_eq!(hash128(b), expected, "{v}");
        }
    }

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
