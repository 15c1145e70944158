//! Generalising a quasi-identifier: keep a prefix, a date's month or year, a number's bin.
//!
//! Shared by the k-anonymity check (so k is computed on the values as they would be
//! published) and by `holdout prepare pseudonymise --generalise` (which publishes them).
//! Also owns the date parser the birth-date detector uses. Pure functions, no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a column's values are coarsened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalisation {
    /// Keep the first N characters (`postcode:2` keeps the département).
    Prefix(usize),
    /// A date's year and month, `YYYY-MM`.
    Month,
    /// A date's year, `YYYY`.
    Year,
    /// A number's bin of this width: `age:bin:10` maps 34 to `30-39`.
    Bin(f64),
}

impl FromStr for Generalisation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "month" => return Ok(Generalisation::Month),
            "year" => return Ok(Generalisation::Year),
            _ => {}
        }
        if let Some(w) = s.strip_prefix("bin:") {
            return match w.parse::<f64>() {
                Ok(w) if w.is_finite() && w > 0.0 => Ok(Generalisation::Bin(w)),
                _ => Err(format!("bin width must be a positive number, got {w:?}")),
            };
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Generalisation::Prefix(n)),
            _ => Err(format!(
                "unknown generalisation {s:?}: expected N (keep N leading characters), month, year or bin:WIDTH"
            )),
        }
    }
}

impl fmt::Display for Generalisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Generalisation::Prefix(n) => write!(f, "{n}"),
            Generalisation::Month => f.write_str("month"),
            Generalisation::Year => f.write_str("year"),
            Generalisation::Bin(w) => write!(f, "bin:{w}"),
        }
    }
}

impl Serialize for Generalisation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Generalisation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// TOML lets organisers write `postcode = 2` as well as `postcode = "2"`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string().parse(),
            Raw::Str(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Generalisation {
    /// The generalised value, or `None` when the value does not fit the rule (not a date,
    /// not a number). Empty stays empty.
    pub fn apply(&self, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() {
            return Some(String::new());
        }
        match *self {
            Generalisation::Prefix(n) => Some(value.chars().take(n).collect()),
            Generalisation::Month => parse_date(value).map(|(y, m, _)| format!("{y:04}-{m:02}")),
            Generalisation::Year => parse_date(value).map(|(y, _, _)| format!("{y:04}")),
            Generalisation::Bin(w) => {
                let v: f64 = value.parse().ok().filter(|v: &f64| v.is_finite())?;
                let lo = (v / w).floor() * w;
                if w.fract() == 0.0 && v.fract() == 0.0 {
                    Some(format!("{}-{}", lo, lo + w - 1.0))
                } else {
                    Some(format!("[{},{})", lo, lo + w))
                }
            }
        }
    }
}

/// Days in a month of a year (Gregorian).
fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// Parses a calendar date: `YYYY-MM-DD` (optionally followed by `T` or a space and a
/// time), `YYYY/MM/DD`, `DD/MM/YYYY`, `DD-MM-YYYY`, `DD.MM.YYYY`, `YYYY-MM` or `YYYY`
/// (the last two for generalising only, with day 1 / month 1). Day-first, never
/// month-first: the data this targets is European. Returns (year, month, day).
pub fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    parse_date_bytes(s.trim().as_bytes())
}

/// [`parse_date`] on trimmed bytes.
pub fn parse_date_bytes(b: &[u8]) -> Option<(i32, u32, u32)> {
    let b = if b.len() > 10 && (b[10] == b'T' || b[10] == b' ') {
        &b[..10]
    } else {
        b
    };
    let (y, m, d) = match b.len() {
        4 => (digits(b)?, 1, 1),
        7 if b[4] == b'-' => (digits(&b[..4])?, digits(&b[5..])?, 1),
        10 if (b[4] == b'-' || b[4] == b'/') && b[7] == b[4] => {
            (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..])?)
        }
        10 if matches!(b[2], b'/' | b'-' | b'.') && b[5] == b[2] => {
            (digits(&b[6..])?, digits(&b[3..5])?, digits(&b[..2])?)
        }
        _ => return None,
    };
    let y = i32::try_from(y).ok()?;
    if !(1000..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    (d <= days_in_month(y, m)).then_some((y, m, d))
}

/// Whether a value is a full date (day included), not a bare year or month.
pub fn is_full_date(s: &str) -> bool {
    is_full_date_bytes(s.trim().as_bytes())
}

/// [`is_full_date`] on trimmed bytes.
pub fn is_full_date_bytes(b: &[u8]) -> bool {
    b.len() >= 10 && parse_date_bytes(b).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print_back() {
        for s in ["2", "month", "year", "bin:10", "bin:0.5"] {
            assert_eq!(s.parse::<Generalisation>().unwrap().to_string(), s);
        }
        assert!("0".parse::<Generalisation>().is_err());
        assert!("bin:-1".parse::<Generalisation>().is_err());
        assert!("week".parse::<Generalisation>().is_err());
    }

    #[test]
    fn values_are_generalised_or_refused() {
        let g = |r: &str, v: &str| r.parse::<Generalisation>().unwrap().apply(v);
        assert_eq!(g("2", "75011").as_deref(), Some("75"));
        assert_eq!(g("month", "1985-05-17").as_deref(), Some("1985-05"));
        assert_eq!(g("year", "17/05/1985").as_deref(), Some("1985"));
        assert_eq!(g("year", "2024-03-01T10:00:00Z").as_deref(), Some("2024"));
        assert_eq!(g("bin:10", "34").as_deref(), Some("30-39"));
        assert_eq!(g("bin:2.5", "3.1").as_deref(), Some("[2.5,5)"));
        assert_eq!(g("month", "not a date"), None);
        assert_eq!(g("month", "1985-02-30"), None);
        assert_eq!(g("bin:10", ""), Some(String::new()));
    }

    #[test]
    fn dates_are_day_first_and_checked_against_the_calendar() {
        assert_eq!(parse_date("29/02/2024"), Some((2024, 2, 29)));
        assert_eq!(parse_date("29/02/2023"), None);
        assert_eq!(parse_date("2024/12/31"), Some((2024, 12, 31)));
        assert_eq!(parse_date("31.12.1999"), Some((1999, 12, 31)));
        assert_eq!(parse_date("12-31-1999"), None);
        assert!(is_full_date("1985-05-17"));
        assert!(!is_full_date("1985"));
    }
}
