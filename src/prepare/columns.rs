//! Per-column accumulators of a pass: what type each column holds and how many values are
//! missing, and how many values each personal-data detector matched. They only count: no
//! value is kept.

use super::generalise::is_full_date_bytes;
use super::pii::{self, CellHits, Detector};
use super::report::ColumnKind;

/// Per-column personal-data counts.
#[derive(Debug, Clone, Default)]
pub struct ColumnPii {
    /// Rows matched, per detector.
    pub hits: [u64; 10],
    /// Rows with the shape of a checksummed number, per detector.
    pub shapes: [u64; 10],
    /// Earliest and latest birth-date-like year.
    pub years: Option<(i32, i32)>,
    /// Non-empty values.
    pub non_empty: u64,
    /// Values shaped like `holdout prepare pseudonymise` tokens (32 lowercase hex digits).
    pub tokens: u64,
}

impl ColumnPii {
    pub fn merge(&mut self, o: &ColumnPii) {
        for k in 0..self.hits.len() {
            self.hits[k] += o.hits[k];
            self.shapes[k] += o.shapes[k];
        }
        self.years = match (self.years, o.years) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, None) | (None, x) => x,
        };
        self.non_empty += o.non_empty;
        self.tokens += o.tokens;
    }

    pub fn add_value(&mut self, v: &[u8], max_birth_year: i32) {
        if v.is_empty() {
            return;
        }
        self.non_empty += 1;
        if v.len() == 32
            && v.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            self.tokens += 1;
            return;
        }
        self.add(pii::scan_cell(v, max_birth_year));
    }

    fn add(&mut self, h: CellHits) {
        if h.hits == 0 && h.shapes == 0 {
            return;
        }
        for (k, d) in Detector::ALL.into_iter().enumerate() {
            self.hits[k] += u64::from(h.has(d));
            self.shapes[k] += u64::from(h.has_shape(d));
        }
        if let Some(y) = h.birth_year {
            self.years = Some(self.years.map_or((y, y), |(a, b)| (a.min(y), b.max(y))));
        }
    }
}

/// Per-column type counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ColumnAcc {
    /// Empty or missing-value markers.
    pub missing: u64,
    integer: u64,
    number: u64,
    date: u64,
    text: u64,
}

const MISSING_MARKERS: &[&[u8]] = &[b"na", b"n/a", b"nan", b"null", b"none", b"#n/a"];

/// Byte classes for typing a cell: OR-ing them over its bytes rules most cells in or out
/// in one branch-free loop.
const DIGIT: u8 = 1;
const DOT: u8 = 2;
const NUMERIC_OTHER: u8 = 4;
const OTHER: u8 = 8;

const CLASSES: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = b'0';
    while b <= b'9' {
        t[b as usize] = DIGIT;
        b += 1;
    }
    t[b'.' as usize] = DOT;
    t[b'-' as usize] = NUMERIC_OTHER;
    t[b'+' as usize] = NUMERIC_OTHER;
    t[b'e' as usize] = NUMERIC_OTHER;
    t[b'E' as usize] = NUMERIC_OTHER;
    t
};

impl ColumnAcc {
    /// Classifies a trimmed value in one pass over its bytes (this runs for every cell).
    pub fn merge(&mut self, o: &ColumnAcc) {
        self.missing += o.missing;
        self.integer += o.integer;
        self.number += o.number;
        self.date += o.date;
        self.text += o.text;
    }

    #[inline]
    pub fn add(&mut self, v: &[u8]) {
        let Some(&first) = v.first() else {
            self.missing += 1;
            return;
        };
        if self.text > 0 {
            // Already text, whatever comes next: only missing values still need counting.
            if v.len() <= 4 && MISSING_MARKERS.iter().any(|m| v.eq_ignore_ascii_case(m)) {
                self.missing += 1;
            } else {
                self.text += 1;
            }
            return;
        }
        let (class, dots) = v.iter().fold((0u8, 0u32), |(m, d), &b| {
            (m | CLASSES[b as usize], d + u32::from(b == b'.'))
        });
        if class == DIGIT {
            self.integer += 1;
            return;
        }
        if class & OTHER != 0 {
            self.not_a_number(v, first);
            return;
        }
        if class == DIGIT | DOT && dots == 1 {
            // A plain decimal like 12.5 or .5: digits around one dot.
            self.number += 1;
            return;
        }
        let mut i = usize::from(first == b'-' || first == b'+');
        let int_start = i;
        while i < v.len() && v[i].is_ascii_digit() {
            i += 1;
        }
        let mut digits = i - int_start;
        if i == v.len() && digits > 0 {
            self.integer += 1;
            return;
        }
        if i < v.len() && v[i] == b'.' {
            i += 1;
            let frac = i;
            while i < v.len() && v[i].is_ascii_digit() {
                i += 1;
            }
            digits += i - frac;
        }
        if digits > 0 && i < v.len() && (v[i] == b'e' || v[i] == b'E') {
            let mut j = i + 1;
            if j < v.len() && (v[j] == b'-' || v[j] == b'+') {
                j += 1;
            }
            let exp = j;
            while j < v.len() && v[j].is_ascii_digit() {
                j += 1;
            }
            if j > exp {
                i = j;
            }
        }
        if digits > 0 && i == v.len() {
            self.number += 1;
        } else {
            self.not_a_number(v, first);
        }
    }

    /// A value that is not a number: a missing-value marker, a date or text.
    fn not_a_number(&mut self, v: &[u8], first: u8) {
        if v.len() <= 4 && MISSING_MARKERS.iter().any(|m| v.eq_ignore_ascii_case(m)) {
            self.missing += 1;
        } else if v.len() >= 10 && first.is_ascii_digit() && is_full_date_bytes(v) {
            self.date += 1;
        } else {
            self.text += 1;
        }
    }

    pub fn kind(&self) -> ColumnKind {
        if self.text > 0 || (self.date > 0 && self.integer + self.number > 0) {
            ColumnKind::Text
        } else if self.date > 0 {
            ColumnKind::Date
        } else if self.number > 0 {
            ColumnKind::Number
        } else if self.integer > 0 {
            ColumnKind::Integer
        } else {
            ColumnKind::Empty
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_in_one_pass() {
        let mut acc = ColumnAcc::default();
        for v in [
            "12",
            "-3",
            "+4",
            "1.5",
            ".5",
            "2e10",
            "1.5E-3",
            "",
            "NA",
            "null",
            "2024-01-31",
            "abc",
            "1e",
            "-",
            "1.2.3",
        ] {
            acc.add(v.as_bytes());
        }
        assert_eq!(
            (acc.integer, acc.number, acc.missing, acc.date, acc.text),
            (3, 4, 3, 1, 4)
        );
    }
}
