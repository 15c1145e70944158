//! The findings of one file on its own: whether it parses, its shape and encoding, and the
//! personal data its columns hold. Built from the pass's counts only.

use super::csv_stream::CsvError;
use super::head::Head;
use super::pii::{self, Detector};
use super::report::{Code, Finding, Severity};
use super::scan::Scanned;

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
