//! One streaming pass over one CSV file, feeding every analysis that needs its rows.
//!
//! Owns reading the header (and how a column is named in reports), the per-column type and
//! missing-value counts, the file's SHA-256, and dispatching each row to what the check
//! asked for: the id set ([`idset`](super::idset)), a labels hook (`integrity`), the
//! leakage sample ([`leakage`](super::leakage)), personal-data detectors ([`pii`]),
//! k-anonymity groups ([`kanon`](super::kanon)) and feature-row hashes. Memory per file is
//! the reader's buffer plus what those bound themselves; nothing grows with the row count.
//!
//! It must never copy a cell into anything that leaves the check.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Progress;
use super::csv_stream::{CsvError, CsvReader, Record, sniff_delimiter, strip_bom};
use super::generalise::is_full_date;
use super::idset::{Builder, Sorted, hash128};
use super::kanon::KanonAcc;
use super::layout::LayoutFile;
use super::leakage::{LeakSample, TargetKind};
use super::pii::{self, CellHits, Detector};
use super::report::{Code, ColumnKind, ColumnSummary, Finding, Severity};
use crate::scoring::split::hash_id;

/// Rows between two progress reports.
const PROGRESS_ROWS: u64 = 1 << 14;

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
    let mut r = CsvReader::new(File::open(path)?, delimiter, false);
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

/// Receives every data row of a labels file.
pub trait RowHook {
    /// A row, its trimmed id, and the id's 64-bit key (0 when the id is empty).
    fn row(&mut self, rec: &Record<'_>, id: &[u8], key: u64);
}

/// Where a row's label comes from, for the leakage sample and ℓ-diversity.
pub enum Labeller<'a> {
    /// No label.
    None,
    /// The file's own target column.
    Own(usize, TargetKind),
    /// Looked up by id in a labels file.
    Join(&'a super::integrity::LabelMap),
}

/// What to do during the pass.
pub struct Pass<'a> {
    /// The id column.
    pub id: Option<usize>,
    /// Collect the ids' hashes.
    pub want_ids: bool,
    /// Labels files: the hook that reads targets.
    pub hook: Option<&'a mut dyn RowHook>,
    /// Where labels come from.
    pub labeller: Labeller<'a>,
    /// Column sets whose rows are hashed, for identical-row checks.
    pub row_sets: Vec<Vec<usize>>,
    /// Run the personal-data detectors.
    pub pii: bool,
    /// Birth-date-like dates are up to this year.
    pub max_birth_year: i32,
    /// k-anonymity groups.
    pub kanon: Option<KanonAcc>,
    /// The leakage sample.
    pub leak: Option<LeakSample>,
}

/// Per-column personal-data counts.
#[derive(Debug, Clone, Default)]
pub struct ColumnPii {
    /// Rows matched, per detector.
    hits: [u64; 10],
    /// Rows with the shape of a checksummed number, per detector.
    shapes: [u64; 10],
    /// Earliest and latest birth-date-like year.
    years: Option<(i32, i32)>,
    /// Non-empty values.
    non_empty: u64,
    /// Values shaped like `holdout prepare pseudonymise` tokens (32 lowercase hex digits).
    tokens: u64,
}

impl ColumnPii {
    fn add_value(&mut self, v: &[u8], max_birth_year: i32) {
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
struct ColumnAcc {
    missing: u64,
    integer: u64,
    number: u64,
    date: u64,
    text: u64,
}

const MISSING_MARKERS: &[&[u8]] = &[b"na", b"n/a", b"nan", b"null", b"none", b"#n/a"];

impl ColumnAcc {
    fn add(&mut self, v: &[u8]) {
        if v.is_empty()
            || (v.len() <= 4 && MISSING_MARKERS.iter().any(|m| v.eq_ignore_ascii_case(m)))
        {
            self.missing += 1;
            return;
        }
        let body = v
            .strip_prefix(b"-")
            .or_else(|| v.strip_prefix(b"+"))
            .unwrap_or(v);
        if !body.is_empty() && body.iter().all(u8::is_ascii_digit) {
            self.integer += 1;
        } else if is_number(body) {
            self.number += 1;
        } else if v.len() >= 10
            && v[0].is_ascii_digit()
            && std::str::from_utf8(v).is_ok_and(is_full_date)
        {
            self.date += 1;
        } else {
            self.text += 1;
        }
    }

    fn kind(&self) -> ColumnKind {
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

/// Digits with one optional `.` and an optional exponent, at least one digit.
fn is_number(b: &[u8]) -> bool {
    let (mant, exp) = match b.iter().position(|&c| c == b'e' || c == b'E') {
        Some(p) => (&b[..p], Some(&b[p + 1..])),
        None => (b, None),
    };
    let digits = mant.iter().filter(|c| c.is_ascii_digit()).count();
    let dots = mant.iter().filter(|&&c| c == b'.').count();
    let mant_ok = digits > 0 && dots <= 1 && digits + dots == mant.len();
    let exp_ok = exp.is_none_or(|e| {
        let e = e
            .strip_prefix(b"-")
            .or_else(|| e.strip_prefix(b"+"))
            .unwrap_or(e);
        !e.is_empty() && e.iter().all(u8::is_ascii_digit)
    });
    mant_ok && exp_ok
}

/// What one pass found.
pub struct Scanned {
    /// Data rows.
    pub rows: u64,
    /// Per-column summaries.
    pub columns: Vec<ColumnSummary>,
    /// The ids' hashes (non-empty ids only).
    pub ids: Option<Sorted>,
    /// Rows with an empty id.
    pub empty_ids: u64,
    /// Hashes of each requested column set, one per row.
    pub row_sets: Vec<Sorted>,
    /// SHA-256, hex.
    pub sha256: String,
    /// Rows with the wrong number of fields.
    pub ragged: u64,
    /// Rows that are not valid UTF-8.
    pub not_utf8: u64,
    /// Records spanning lines.
    pub multiline: u64,
    /// Why the pass stopped early.
    pub error: Option<CsvError>,
    /// Personal-data counts per column (when asked).
    pub pii: Vec<ColumnPii>,
    /// k-anonymity groups (when asked).
    pub kanon: Option<KanonAcc>,
    /// The leakage sample (when asked).
    pub leak: Option<LeakSample>,
}

impl Scanned {
    /// A file that could not be read at all.
    pub fn failed(e: CsvError) -> Self {
        Self {
            rows: 0,
            columns: Vec::new(),
            ids: None,
            empty_ids: 0,
            row_sets: Vec::new(),
            sha256: String::new(),
            ragged: 0,
            not_utf8: 0,
            multiline: 0,
            error: Some(e),
            pii: Vec::new(),
            kanon: None,
            leak: None,
        }
    }
}

/// The 64-bit key of an id for label lookups: the low half of its 128-bit hash.
pub fn id_key(h: u128) -> u64 {
    h as u64
}

/// The SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path, progress: &mut dyn Progress) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.advance(done);
    }
}

/// Runs one pass over `file`. Problems with the file are in the result; an error is a
/// failure of the check's own temporary storage.
pub fn scan(
    file: &LayoutFile,
    head: &Head,
    mut pass: Pass<'_>,
    progress: &mut dyn Progress,
) -> io::Result<Scanned> {
    let ncols = head.names.len();
    let mut cols = vec![ColumnAcc::default(); ncols];
    let mut pii_cols = if pass.pii {
        vec![ColumnPii::default(); ncols]
    } else {
        Vec::new()
    };
    let mut ids = (pass.want_ids && pass.id.is_some()).then(Builder::default);
    let mut sets: Vec<Builder> = pass.row_sets.iter().map(|_| Builder::default()).collect();
    let (mut rows, mut empty_ids, mut ragged, mut not_utf8) = (0u64, 0u64, 0u64, 0u64);
    let mut error = None;
    let mut rowbuf = Vec::new();
    let mut r = match File::open(&file.path) {
        Ok(f) => Some(CsvReader::new(f, head.delimiter, true)),
        Err(e) => {
            error = Some(CsvError::Io(e));
            None
        }
    };
    if let Some(reader) = r.as_mut() {
        if let Err(e) = reader.next_record() {
            error = Some(e);
        }
        while error.is_none() {
            let rec = match reader.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            rows += 1;
            if rec.len() != ncols {
                ragged += 1;
            }
            let mut utf8 = true;
            for c in 0..rec.len() {
                let raw = rec.raw(c);
                if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
                    utf8 = false;
                }
            }
            not_utf8 += u64::from(!utf8);
            for (c, acc) in cols.iter_mut().enumerate() {
                acc.add(rec.get(c));
            }
            for (c, acc) in pii_cols.iter_mut().enumerate() {
                acc.add_value(rec.get(c), pass.max_birth_year);
            }
            let id = pass.id.map_or(&b""[..], |c| rec.get(c));
            let key = if id.is_empty() {
                0
            } else {
                let h = hash128(id);
                if let Some(b) = ids.as_mut() {
                    b.push(h)?;
                }
                id_key(h)
            };
            if id.is_empty() && pass.id.is_some() {
                empty_ids += 1;
            }
            if let Some(hook) = pass.hook.as_mut() {
                hook.row(&rec, id, key);
            }
            let label = match &pass.labeller {
                Labeller::None => None,
                Labeller::Own(c, kind) => own_label(rec.get(*c), *kind),
                Labeller::Join(map) if !id.is_empty() => map.get(key),
                Labeller::Join(_) => None,
            };
            if let (Some(leak), Some(l)) = (pass.leak.as_mut(), label) {
                leak.offer(&rec, rows - 1, id, l);
            }
            if let Some(k) = pass.kanon.as_mut() {
                k.add(&rec, label);
            }
            for (set, b) in pass.row_sets.iter().zip(sets.iter_mut()) {
                rowbuf.clear();
                for &c in set {
                    let v = rec.get(c);
                    rowbuf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    rowbuf.extend_from_slice(v);
                }
                b.push(hash128(&rowbuf))?;
            }
            if rows % PROGRESS_ROWS == 0 {
                progress.advance(reader.bytes_read());
            }
        }
    }
    let multiline = r.as_ref().map_or(0, |r| r.multiline_records());
    let sha = match r {
        Some(reader) if error.is_none() => reader.finish_sha256()?.map(hex::encode),
        _ => None,
    };
    let sha256 = match sha {
        Some(s) => s,
        None => sha256_file(&file.path, progress).unwrap_or_default(),
    };
    let columns = cols
        .iter()
        .zip(&head.shown)
        .map(|(acc, name)| ColumnSummary {
            name: name.clone(),
            kind: acc.kind(),
            missing: acc.missing,
        })
        .collect();
    Ok(Scanned {
        rows,
        columns,
        ids: ids.map(Builder::finish).transpose()?,
        empty_ids,
        row_sets: sets
            .into_iter()
            .map(Builder::finish)
            .collect::<io::Result<_>>()?,
        sha256,
        ragged,
        not_utf8,
        multiline,
        error,
        pii: pii_cols,
        kanon: pass.kanon,
        leak: pass.leak,
    })
}

/// A row's own target as a label: a class as a 53-bit hash, or a finite number.
fn own_label(v: &[u8], kind: TargetKind) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    match kind {
        TargetKind::Classes => Some((hash_id(v, 0x7461_7267) >> 11) as f64),
        TargetKind::Values => std::str::from_utf8(v)
            .ok()?
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite()),
    }
}

/// The findings any CSV file can have: malformed, ragged, empty, header problems, encoding.
pub fn file_findings(rel: &str, head: &Head, s: &Scanned, labels_file: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = &s.error {
        let (code, msg) = match e {
            CsvError::Io(e) => (
                Code::FileUnreadable,
                format!("cannot be read: {}", e.kind()),
            ),
            other => (Code::FileMalformed, other.to_string()),
        };
        out.push(
            Finding::new(
                code,
                Severity::Error,
                1,
                format!("{msg}; the rest of the file was not checked"),
            )
            .file(rel),
        );
    }
    if s.rows == 0 && s.error.is_none() {
        let sev = if labels_file {
            Severity::Error
        } else {
            Severity::Warning
        };
        out.push(Finding::new(Code::FileEmpty, sev, 0, "no data row").file(rel));
    }
    if s.ragged > 0 {
        out.push(
            Finding::new(
                Code::FileRaggedRows,
                Severity::Error,
                s.ragged,
                format!(
                    "{} rows do not have the header's {} fields",
                    s.ragged,
                    head.names.len()
                ),
            )
            .file(rel)
            .total(s.rows),
        );
    }
    for name in head.duplicates() {
        out.push(
            Finding::new(
                Code::FileDuplicateColumn,
                Severity::Error,
                1,
                "two columns have this name; readers will pick one",
            )
            .file(rel)
            .column(&name),
        );
    }
    let masked = head.masked();
    if masked > 0 {
        out.push(
            Finding::new(
                Code::FileHeaderLooksLikeData,
                Severity::Warning,
                masked as u64,
                format!("{masked} header cells look like data (is the header missing?); they are shown by position"),
            )
            .file(rel),
        );
    }
    if s.not_utf8 > 0 {
        out.push(
            Finding::new(
                Code::FileNotUtf8,
                Severity::Warning,
                s.not_utf8,
                format!("{} rows are not valid UTF-8", s.not_utf8),
            )
            .file(rel)
            .total(s.rows),
        );
    }
    if s.multiline > 0 {
        let (sev, why) = if labels_file {
            (Severity::Error, "the scorer reads labels one line per row")
        } else {
            (Severity::Info, "readers must support quoted line breaks")
        };
        out.push(
            Finding::new(
                Code::FileMultilineRecords,
                sev,
                s.multiline,
                format!("{} records hold a quoted line break; {why}", s.multiline),
            )
            .file(rel),
        );
    }
    if head.delimiter == b';' || head.delimiter == b'\t' {
        let name = if head.delimiter == b';' {
            "semicolon"
        } else {
            "tab"
        };
        out.push(
            Finding::new(
                Code::FileDelimiter,
                Severity::Info,
                1,
                format!("{name}-separated"),
            )
            .file(rel),
        );
    }
    out
}

/// Personal-data findings of one scanned file: per column and detector, the rows matched.
pub fn pii_findings(rel: &str, public: bool, head: &Head, s: &Scanned) -> Vec<Finding> {
    let mut out = Vec::new();
    for (c, name) in head.names.iter().enumerate() {
        let shown = &head.shown[c];
        if let Some(k) = pii::identifier_name(name) {
            let tokens = s
                .pii
                .get(c)
                .is_some_and(|a| a.non_empty > 0 && a.tokens == a.non_empty);
            let (severity, message) = if tokens {
                (
                    Severity::Info,
                    format!(
                        "the column's name (\"{k}\") suggests a direct identifier; its values look like pseudonymisation tokens, still personal data"
                    ),
                )
            } else {
                (
                    Severity::Warning,
                    format!(
                        "the column's name (\"{k}\") suggests a direct identifier; drop it or pseudonymise it"
                    ),
                )
            };
            out.push(
                Finding::new(Code::PiiIdentifierColumn, severity, s.rows, message)
                    .file(rel)
                    .column(shown),
            );
        }
        let Some(acc) = s.pii.get(c) else { continue };
        for (k, d) in Detector::ALL.into_iter().enumerate() {
            let n = acc.hits[k];
            if n == 0 {
                continue;
            }
            let mut severity = if public && d.is_direct() {
                Severity::Error
            } else {
                Severity::Warning
            };
            let mut note = String::new();
            if matches!(d, Detector::Card | Detector::Siren | Detector::Siret)
                && acc.shapes[k] >= 20
                && n * 2 < acc.shapes[k]
            {
                severity = Severity::Info;
                note = format!(
                    "; but only {n} of {} numbers of that shape pass the check, as random numbers do",
                    acc.shapes[k]
                );
            }
            if d == Detector::BirthDate {
                let span = acc.years.map_or(0, |(a, b)| b - a);
                if !pii::birth_name(name) && span < 10 {
                    continue;
                }
            }
            let code = match d {
                Detector::Email => Code::PiiEmail,
                Detector::Phone => Code::PiiPhone,
                Detector::Iban => Code::PiiIban,
                Detector::Card => Code::PiiCard,
                Detector::Nir => Code::PiiNir,
                Detector::Siren => Code::PiiSiren,
                Detector::Siret => Code::PiiSiret,
                Detector::Ipv4 => Code::PiiIpv4,
                Detector::Ipv6 => Code::PiiIpv6,
                Detector::BirthDate => Code::PiiBirthDate,
            };
            let share = n as f64 / s.rows.max(1) as f64;
            out.push(
                Finding::new(
                    code,
                    severity,
                    n,
                    format!(
                        "{n} of {} rows ({:.1}%) hold {}{note}",
                        s.rows,
                        share * 100.0,
                        d.what()
                    ),
                )
                .file(rel)
                .column(shown)
                .total(s.rows)
                .measure("share", (share * 10000.0).round() / 10000.0),
            );
        }
    }
    out
}
