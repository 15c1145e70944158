//! The predictions contract every scorer may rely on, checked before an organiser's own
//! scorer sees a file: a header naming the id column, lines of CSV with the header's number
//! of fields (UTF-8, balanced quotes), no duplicate id, no id outside the labels, and every
//! label id present.
//!
//! A file that breaks it is the participant's (INVALID_PREDICTIONS, charged like any), with
//! the same participant-safe messages as the built-in metrics; so a custom scorer that still
//! fails is failing on a valid file, which is the organiser's bug, not a free probe.
//! Memory is bounded by the labels: the ids seen are a set over the label ids only.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::scoring::csv::{self, Fields, HeaderError, LineReader};
use crate::scoring::errors::{
    MAX_PREDICTIONS_LINE, PredictionsError, UNKNOWN_IDS_QUOTED, quote_id,
};

/// Why the contract could not be checked or was broken.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The predictions break the contract: the participant's.
    #[error(transparent)]
    Predictions(#[from] PredictionsError),
    /// The labels could not be read: the service's.
    #[error("labels")]
    Labels(#[source] io::Error),
}

/// The ids of a labels file's rows (the service's own file).
fn label_ids(labels: &Path, id_column: &str) -> io::Result<HashSet<Box<[u8]>>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut reader = LineReader::new(File::open(labels)?, csv::BUFFER_BYTES, 16 << 20);
    let header = csv::read_header(&mut reader).map_err(|e| bad(format!("header: {e:?}")))?;
    let id_col = header
        .find(id_column)
        .ok_or_else(|| bad(format!("no column named {id_column:?}")))?;
    let mut ids = HashSet::new();
    let mut fields = Fields::default();
    while let Some((line_no, line)) = reader.next_line().map_err(|e| bad(format!("{e:?}")))? {
        if line.trim_ascii().is_empty() {
            continue;
        }
        fields
            .split(line)
            .map_err(|_| bad(format!("line {line_no} has unbalanced quotes")))?;
        if id_col < fields.len() {
            ids.insert(fields.get(line, id_col).into());
        }
    }
    Ok(ids)
}

/// Checks `predictions` (opened with [`crate::scoring::open_predictions`]) against the ids of
/// `labels`.
pub fn check_contract(
    labels: &Path,
    predictions: impl Read,
    id_column: &str,
) -> Result<(), ContractError> {
    let mut expected = label_ids(labels, id_column).map_err(ContractError::Labels)?;
    let mut reader = LineReader::new(predictions, csv::BUFFER_BYTES, MAX_PREDICTIONS_LINE);
    let header = csv::read_header(&mut reader).map_err(|e| match e {
        HeaderError::Empty => PredictionsError::Empty,
        other => other.into(),
    })?;
    let id_col = header
        .find(id_column)
        .ok_or_else(|| PredictionsError::MissingColumn {
            column: id_column.to_owned(),
        })?;
    let width = header.len();
    let mut seen: HashSet<Box<[u8]>> = HashSet::with_capacity(expected.len());
    let mut unknown = 0u64;
    let mut first_unknown = Vec::new();
    let mut fields = Fields::default();
    while let Some((line, text)) = reader.next_line().map_err(PredictionsError::from)? {
        if text.trim_ascii().is_empty() {
            continue;
        }
        fields
            .split_checked(text)
            .map_err(|p| PredictionsError::bad_line(line, p))?;
        if fields.len() != width {
            return Err(PredictionsError::WrongFieldCount {
                line,
                expected: width,
                found: fields.len(),
            }
            .into());
        }
        let id = fields.get(text, id_col);
        if let Some(known) = expected.take(id) {
            seen.insert(known);
        } else if seen.contains(id) {
            return Err(PredictionsError::DuplicateId {
                id: quote_id(id),
                line,
            }
            .into());
        } else {
            // Counted, never kept beyond the few quoted back: memory stays the labels'.
            unknown += 1;
            if first_unknown.len() < UNKNOWN_IDS_QUOTED {
                first_unknown.push(quote_id(id));
            }
        }
    }
    if unknown > 0 {
        return Err(PredictionsError::UnknownIds {
            count: unknown,
            first: first_unknown,
        }
        .into());
    }
    if !expected.is_empty() {
        return Err(PredictionsError::MissingIds {
            count: expected.len() as u64,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(predictions: &str) -> Result<(), ContractError> {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, "id,label\na,1\nb,0\nc,1\n").unwrap();
        check_contract(&labels, predictions.as_bytes(), "id")
    }

    fn message(predictions: &str) -> String {
        match check(predictions) {
            Err(ContractError::Predictions(e)) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_with_every_id_once_in_any_columns_keeps_the_contract() {
        check("id,score,extra\nc,0.1,x\na,\"0,9\",y\nb,0.5,z\n").unwrap();
        check("score,id\n1,a\n2,b\n\n3,c").unwrap();
    }

    #[test]
    fn each_breach_gets_the_built_in_metrics_message() {
        assert_eq!(message(""), "predictions.csv is empty");
        assert_eq!(
            message("p\n1\n"),
            "predictions.csv has no column named \"id\""
        );
        assert_eq!(
            message("id,p\na,1\nb\n"),
            "predictions.csv line 3: expected 2 fields, found 1"
        );
        assert_eq!(
            message("id,p\na,1\na,2\nb,1\nc,1\n"),
            "predictions.csv line 3: duplicate id \"a\""
        );
        assert!(
            message("id,p\na,1\nb,1\nc,1\nzz,1\n")
                .starts_with("predictions.csv has 1 ids that are not in the test set")
        );
        assert_eq!(
            message("id,p\na,1\nb,1\n"),
            "predictions.csv is missing predictions for 1 ids of the test set"
        );
        assert_eq!(
            message("id,p\na,\"1\n"),
            "predictions.csv line 2: unbalanced quotes"
        );
    }

    #[test]
    fn unreadable_labels_are_the_services_fault() {
        let r = check_contract(Path::new("/nonexistent/labels.csv"), &b"id\n"[..], "id");
        assert!(matches!(r, Err(ContractError::Labels(_))), "{r:?}");
    }
}
