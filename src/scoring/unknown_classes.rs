//! Predicted classes that the labels lack, numbered within a fixed bound of memory.
//!
//! Owns how a pass tells such classes apart. `f1_macro` averages over the union of true and
//! predicted classes (sklearn's `unique_labels`), so each distinct made-up class counts once,
//! with F1 = 0; nothing else needs their names. So a pass keeps a keyed 64-bit hash of each,
//! never the name, and at most [`MAX_UNKNOWN_CLASSES`] of them: a file of a million made-up
//! classes costs the server what a file of one does. It must never be fed the class of a row
//! whose id is unknown or repeated (that row is an error, and must cost nothing).
//!
//! The price of the bound: past [`MAX_UNKNOWN_CLASSES`] distinct made-up classes, every
//! further one counts as one class ([`OTHER`]), so `f1_macro` counts at most
//! `MAX_UNKNOWN_CLASSES + 1` of them where sklearn would count each. Such a file already
//! scores near zero (every made-up class adds an F1 of 0 to the average), and only it differs
//! from sklearn. Two names with the same hash would also count as one: with a key drawn at
//! random for each pass, about one chance in 10^12 at the cap.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Most distinct made-up classes told apart in one pass (see the module doc).
pub(crate) const MAX_UNKNOWN_CLASSES: usize = 4096;
/// Slots of the table: twice the cap, so a probe stays short.
const SLOTS: usize = 2 * MAX_UNKNOWN_CLASSES;
/// The number shared by every made-up class past the cap.
pub(crate) const OTHER: usize = SLOTS;
/// Slots no class hash takes (hashes have their lowest bit set).
const EMPTY: u64 = 0;

/// The made-up classes a pass has seen, as keyed hashes in an open-addressing table.
#[derive(Debug)]
pub(crate) struct UnknownClasses {
    /// The hash key, drawn at random so no file can aim for a collision.
    key: RandomState,
    /// [`SLOTS`] hashes, or empty until the first made-up class.
    slots: Vec<u64>,
    /// Classes held.
    len: usize,
}

impl UnknownClasses {
    /// An empty tally; it allocates nothing until the first made-up class.
    pub(crate) fn new() -> Self {
        Self {
            key: RandomState::new(),
            slots: Vec::new(),
            len: 0,
        }
    }

    /// The number of the made-up class `name`, below [`OTHER`] for the first
    /// [`MAX_UNKNOWN_CLASSES`] distinct names, and [`OTHER`] for every later one. The same
    /// name always gets the same number within a pass.
    pub(crate) fn number(&mut self, name: &[u8]) -> usize {
        if self.slots.is_empty() {
            self.slots = vec![EMPTY; SLOTS];
        }
        let hash = self.key.hash_one(name) | 1;
        let mut slot = ((u128::from(hash) * SLOTS as u128) >> 64) as usize;
        loop {
            match self.slots[slot] {
                EMPTY if self.len < MAX_UNKNOWN_CLASSES => {
                    self.slots[slot] = hash;
                    self.len += 1;
                    return slot;
                }
                // At most half the slots are taken, so a probe always reaches an empty one.
                EMPTY => return OTHER,
                held if held == hash => return slot,
                _ => slot = (slot + 1) % SLOTS,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number_and_distinct_names_get_distinct_numbers() {
        let mut classes = UnknownClasses::new();
        let numbers: Vec<usize> = (0..100)
            .map(|i| classes.number(format!("class {i}").as_bytes()))
            .collect();
        let mut distinct = numbers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 100);
        assert!(numbers.iter().all(|&n| n < OTHER));
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(classes.number(format!("class {i}").as_bytes()), *n);
        }
    }

    #[test]
    fn names_past_the_cap_share_one_number_and_earlier_ones_keep_theirs() {
        let mut classes = UnknownClasses::new();
        let first = classes.number(b"first");
        for i in 1..MAX_UNKNOWN_CLASSES {
            assert!(classes.number(format!("made-up {i}").as_bytes()) < OTHER);
        }
        assert_eq!(classes.number(b"one too many"), OTHER);
        assert_eq!(classes.number(b"and another"), OTHER);
        assert_eq!(classes.number(b"first"), first);
        assert_eq!(classes.slots.len(), SLOTS, "the table never grows");
    }
}
