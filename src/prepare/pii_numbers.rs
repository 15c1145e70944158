//! Validated number detectors for personal data: IBAN (ISO 13616 mod 97), payment cards
//! (Luhn, plausible issuer prefix), French NIR (key 97 − n mod 97, Corsica's 2A/2B
//! included), SIREN and SIRET (Luhn, La Poste's rule), and phone numbers (French and
//! E.164) — all read from runs of digit groups.
//!
//! Digits are read as runs of groups ("06 12 34 56 78", "4111-1111-1111-1111"); a detector
//! accepts only the groupings its numbers are written in, and the longest valid match
//! consumes its groups, so a wrong-key NIR does not turn into a phone number. Found IBANs
//! are blanked so their digits are not read again. Nothing here returns a matched value.

use super::detectors::{CellHits, Detector};

/// IBAN lengths by country, for the countries most data here comes from.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AT", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"CH", 21),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GR", 27),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IS", 26),
    (b"IT", 27),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MT", 31),
    (b"NL", 18),
    (b"NO", 15),
    (b"PL", 28),
    (b"PT", 25),
    (b"RO", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TR", 26),
];

/// ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1.
pub fn iban_valid(iban: &[u8]) -> bool {
    if !(15..=34).contains(&iban.len()) || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut r = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        let b = b.to_ascii_uppercase();
        r = if b.is_ascii_digit() {
            (r * 10 + u32::from(b - b'0')) % 97
        } else {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    r == 1
}

/// Finds IBANs (country letters, check digits, then alphanumerics in groups separated by
/// single spaces), blanks them, and says whether there was one.
pub(super) fn blank_ibans(s: &mut [u8]) -> bool {
    let mut found = false;
    let mut p = 0;
    while p + 4 <= s.len() {
        let starts = s[p].is_ascii_uppercase()
            && s[p + 1].is_ascii_uppercase()
            && s[p + 2].is_ascii_digit()
            && s[p + 3].is_ascii_digit()
            && (p == 0 || !s[p - 1].is_ascii_alphanumeric());
        if !starts {
            p += 1;
            continue;
        }
        // (compact characters, original index after each, whether a space followed)
        let mut compact = Vec::with_capacity(34);
        let mut ends = Vec::with_capacity(34);
        let mut i = p;
        while i < s.len() && compact.len() < 34 {
            if s[i].is_ascii_alphanumeric() {
                compact.push(s[i].to_ascii_uppercase());
                ends.push((i + 1, i + 1 >= s.len() || !s[i + 1].is_ascii_alphanumeric()));
                i += 1;
            } else if s[i] == b' ' && i + 1 < s.len() && s[i + 1].is_ascii_alphanumeric() {
                i += 1;
            } else {
                break;
            }
        }
        let country = [compact[0], compact[1]];
        let lengths: Vec<usize> = match IBAN_LENGTHS.iter().find(|(c, _)| **c == country) {
            Some(&(_, n)) => vec![n],
            None => (15..=compact.len().min(34)).rev().collect(),
        };
        let hit = lengths
            .into_iter()
            .find(|&n| n <= compact.len() && ends[n - 1].1 && iban_valid(&compact[..n]));
        match hit {
            Some(n) => {
                found = true;
                let end = ends[n - 1].0;
                s[p..end].fill(b' ');
                p = end;
            }
            None => p += 1,
        }
    }
    found
}

/// The Luhn check (ISO/IEC 7812).
pub fn luhn_valid(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &b) in d.iter().rev().enumerate() {
        let mut v = u32::from(b - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

pub(super) fn number(d: &[u8]) -> u64 {
    d.iter().fold(0, |acc, &b| acc * 10 + u64::from(b - b'0'))
}

/// A 15-digit NIR: sex 1-4, 7 or 8, a plausible month, key = 97 − (first 13 mod 97).
pub fn nir_valid(d: &[u8]) -> bool {
    if d.len() != 15 || !b"123478".contains(&d[0]) {
        return false;
    }
    let month = number(&d[3..5]);
    if !((1..=12).contains(&month) || (20..=99).contains(&month)) {
        return false;
    }
    97 - number(&d[..13]) % 97 == number(&d[13..])
}

/// A NIR born in Corsica writes its département 2A or 2B; the key is computed with 19 and
/// 18 in their place.
pub(super) fn corsican_nir(s: &[u8]) -> bool {
    let compact: Vec<u8> = s.iter().copied().filter(|&b| b != b' ').collect();
    let n = compact.len();
    (5..n.saturating_sub(9)).any(|k| {
        let dept = match (compact[k], compact[k + 1].to_ascii_uppercase()) {
            (b'2', b'A') => b"19",
            (b'2', b'B') => b"18",
            _ => return false,
        };
        let before = &compact[k - 5..k];
        let after = &compact[k + 2..k + 10];
        let bounded = (k == 5 || !compact[k - 6].is_ascii_alphanumeric())
            && (k + 10 == n || !compact[k + 10].is_ascii_alphanumeric());
        if !bounded || !before.iter().chain(after).all(u8::is_ascii_digit) {
            return false;
        }
        let mut d = before.to_vec();
        d.extend_from_slice(dept);
        d.extend_from_slice(after);
        nir_valid(&d)
    })
}

/// One group of digits in a run.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    /// A `+` right before it.
    plus: bool,
}

/// Reads runs of digit groups and matches windows of whole groups, longest first.
pub(super) fn digit_runs(s: &[u8], out: &mut CellHits) {
    let mut i = 0;
    while i < s.len() {
        let starts_run = (s[i].is_ascii_digit()
            || (s[i] == b'+' && s.get(i + 1).is_some_and(u8::is_ascii_digit)))
            && (i == 0 || !s[i - 1].is_ascii_alphanumeric());
        if !starts_run {
            i += 1;
            continue;
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut plus = false;
        let mut seps = 0;
        while i < s.len() {
            let b = s[i];
            if b.is_ascii_digit() {
                let start = i;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                groups.push(Group {
                    start,
                    end: i,
                    plus,
                });
                plus = false;
                seps = 0;
            } else if b == b'+' && seps <= 1 {
                plus = true;
                i += 1;
            } else if b" .-/()".contains(&b) && seps < 2 && !groups.is_empty() {
                seps += 1;
                i += 1;
            } else {
                break;
            }
        }
        let last = groups.last().map_or(i, |g| g.end);
        let ends_in_word = last < s.len() && s[last].is_ascii_alphabetic();
        if !ends_in_word {
            match_windows(s, &groups, out);
        }
    }
}

fn match_windows(s: &[u8], groups: &[Group], out: &mut CellHits) {
    let mut matches: Vec<(usize, usize, usize, Detector)> = Vec::new();
    for a in 0..groups.len() {
        let mut d: Vec<u8> = Vec::with_capacity(19);
        for b in a..groups.len() {
            d.extend_from_slice(&s[groups[b].start..groups[b].end]);
            if d.len() > 19 {
                break;
            }
            let lens: Vec<usize> = groups[a..=b].iter().map(|g| g.end - g.start).collect();
            if let Some(det) = classify(&d, &lens, groups[a].plus, out) {
                matches.push((d.len(), a, b, det));
            }
        }
    }
    matches.sort_by_key(|m| std::cmp::Reverse(m.0));
    let mut used = vec![false; groups.len()];
    for (_, a, b, det) in matches {
        if used[a..=b].iter().any(|&u| u) {
            continue;
        }
        used[a..=b].iter_mut().for_each(|u| *u = true);
        out.hits |= det.bit();
    }
}

/// What a window of digits `d`, written in groups of `lens`, is, if anything. Records the
/// shapes of checksummed numbers in `out` whether or not their check passes.
fn classify(d: &[u8], lens: &[usize], plus: bool, out: &mut CellHits) -> Option<Detector> {
    let one = lens.len() == 1;
    if plus {
        let french = d.starts_with(b"33")
            && ((d.len() == 11 && d[2] != b'0') || (d.len() == 12 && d[2] == b'0' && d[3] != b'0'));
        let other = !d.starts_with(b"33") && (8..=15).contains(&d.len()) && d[0] != b'0';
        return (french || other).then_some(Detector::Phone);
    }
    if d.len() == 15 && nir_valid(d) {
        return Some(Detector::Nir);
    }
    if (13..=19).contains(&d.len())
        && (b'2'..=b'6').contains(&d[0])
        && (one || lens.iter().all(|&l| l >= 4))
    {
        out.shapes |= Detector::Card.bit();
        if luhn_valid(d) {
            return Some(Detector::Card);
        }
    }
    if d.len() == 14 && (one || lens == [3, 3, 3, 5]) {
        out.shapes |= Detector::Siret.bit();
        let la_poste = d.starts_with(b"356000000")
            && d.iter().map(|&b| u32::from(b - b'0')).sum::<u32>() % 5 == 0;
        if luhn_valid(d) || la_poste {
            return Some(Detector::Siret);
        }
    }
    if d.len() == 9 && (one || lens == [3, 3, 3]) {
        out.shapes |= Detector::Siren.bit();
        if luhn_valid(d) {
            return Some(Detector::Siren);
        }
    }
    let french_phone =
        d.len() == 10 && d[0] == b'0' && d[1] != b'0' && (one || lens == [2, 2, 2, 2, 2]);
    let international =
        d.len() == 13 && d.starts_with(b"0033") && d[4] != b'0' && (one || lens[0] == 4);
    (french_phone || international).then_some(Detector::Phone)
}
