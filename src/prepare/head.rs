//! A file's header: its separator, its column names, and how each column is named in
//! reports. A header cell that looks like data (a number, a date, personal data — as when a
//! file has no header and its first row is read as one) is shown by position, `#N`, never
//! by its content.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::csv_stream::{CsvError, CsvReader, sniff_delimiter, strip_bom};
use super::generalise::is_full_date;
use super::pii;

/// A file's header.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Column names as written (private: may be data when the file has no header).
    pub names: Vec<String>,
    /// Column names as shown in reports: the name, or `#N` when it looks like data.
    pub shown: Vec<String>,
    /// The separator.
    pub delimiter: u8,
}

impl Head {
    /// The index of the column called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// How many names are shown as `#N`.
    pub fn masked(&self) -> usize {
        self.shown
            .iter()
            .zip(&self.names)
            .filter(|(s, n)| s != n)
            .count()
    }

    /// Names that appear more than once.
    pub fn duplicates(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            if self.names[..i].contains(n) && !out.contains(&self.shown[i]) {
                out.push(self.shown[i].clone());
            }
        }
        out
    }
}

/// How column `i` called `name` is shown: its name, unless the name looks like data (a
/// number, a date, personal data, control characters, over 64 characters), as happens when
/// a file has no header and its first row is read as one.
pub fn display_column(name: &str, i: usize) -> String {
    let looks_like_data = name.is_empty()
        || name.chars().count() > 64
        || name.chars().any(char::is_control)
        || name.trim().parse::<f64>().is_ok()
        || is_full_date(name)
        || pii::scan_cell(name.as_bytes(), 9999).hits != 0;
    if looks_like_data {
        format!("#{}", i + 1)
    } else {
        name.to_owned()
    }
}

/// Reads a file's header with this separator, or one sniffed from the header when `None`.
pub fn read_head(path: &Path, delimiter: Option<u8>) -> Result<Head, CsvError> {
    let delimiter = match delimiter {
        Some(d) => d,
        None => {
            let mut first = vec![0u8; 64 << 10];
            let n = File::open(path)?.read(&mut first)?;
            first.truncate(n);
            sniff_delimiter(first.split(|&b| b == b'\n').next().unwrap_or(&[]))
        }
    };
    let mut r = CsvReader::new(File::open(path)?, delimiter);
    let names: Vec<String> = match r.next_record()? {
        Some(rec) => (0..rec.len())
            .map(|i| {
                let raw = if i == 0 {
                    strip_bom(rec.get(0))
                } else {
                    rec.get(i)
                };
                String::from_utf8_lossy(raw.trim_ascii()).into_owned()
            })
            .collect(),
        None => Vec::new(),
    };
    let shown = names
        .iter()
        .enumerate()
        .map(|(i, n)| display_column(n, i))
        .collect();
    Ok(Head {
        names,
        shown,
        delimiter,
    })
}
