//! Why scoring refuses a file, in two audiences: [`LabelsError`] for the challenge's organiser
//! and [`PredictionsError`] for the participant.
//!
//! Owns both enums, their messages and the caps those messages quote, kept together so every
//! message can be checked in one place. An organiser's message may name columns, lines and ids
//! of the labels file. A participant's may quote what the participant wrote (ids, line numbers,
//! column names) and the caps, but must never reveal a label value or whether an id is public or
//! private: this module must never format either into a [`PredictionsError`].

use std::io;
use std::path::{Path, PathBuf};

use crate::scoring::csv::{HeaderError, LineError, LineProblem};
use crate::scoring::metrics::Metric;

/// Ids are indexed by u32 offsets, and classes stored as u16.
pub(crate) const MAX_CLASSES: usize = u16::MAX as usize;

/// Why a labels file cannot be used. Messages are for the organiser.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file does not exist.
    #[error("labels file {path} not found")]
    Missing { path: PathBuf },
    /// Opening or reading failed.
    #[error("could not read labels file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// No header and no rows.
    #[error("labels file is empty")]
    Empty,
    /// A header but no data rows.
    #[error("labels file has a header but no rows")]
    NoRows,
    /// The header lacks a column.
    #[error("labels file has no column named {column:?}")]
    MissingColumn { column: String },
    /// An id occurs twice.
    #[error("labels file has duplicate id {id:?}")]
    DuplicateId { id: String },
    /// An empty id.
    #[error("labels file line {line}: empty id")]
    EmptyId { line: u64 },
    /// A line with the wrong number of fields.
    #[error("labels file line {line}: expected {expected} fields, found {found}")]
    WrongFieldCount {
        line: u64,
        expected: usize,
        found: usize,
    },
    /// A line that is not valid CSV or UTF-8, or too long.
    #[error("labels file line {line}: {reason}")]
    Malformed { line: u64, reason: &'static str },
    /// A target that is empty, or not a finite number for a regression metric.
    #[error("labels file line {line}: target {reason}")]
    BadTarget { line: u64, reason: &'static str },
    /// More distinct classes than supported.
    #[error("labels file has more than {MAX_CLASSES} classes")]
    TooManyClasses,
    /// A binary metric over a target that does not have exactly two classes.
    #[error("the metric needs exactly two classes, labels have {found}")]
    NotBinary { found: usize },
    /// The configured positive label is not a class of the labels.
    #[error("positive label {label:?} is not a class in the labels")]
    UnknownPositiveLabel { label: String },
    /// The split leaves a part empty.
    #[error(
        "the split leaves the {part} part empty ({public} public, {private} private rows); change public_fraction or split_seed"
    )]
    EmptySplit {
        part: &'static str,
        public: usize,
        private: usize,
    },
    /// ROC AUC is undefined on a part with a single class.
    #[error(
        "the {part} part has rows of only one class, so ROC AUC is undefined there; change split_seed"
    )]
    SingleClassPart { part: &'static str },
    /// r2 would be undefined on these labels whatever the predictions: a part of one row
    /// (sklearn returns NaN there), or targets so spread out that their sum of squares
    /// overflows. Names the part, never which ids are in it.
    #[error("r2 is undefined on these labels: {reason}")]
    R2Undefined { reason: &'static str },
}

impl LabelsError {
    /// A failure to open or stat the labels file: missing, or unreadable.
    pub(crate) fn file(path: &Path, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => LabelsError::Missing {
                path: path.to_owned(),
            },
            _ => LabelsError::Io {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// A framing problem while reading the labels file.
    pub(crate) fn line(e: LineError, path: &Path) -> Self {
        match e {
            LineError::Io(source) => LabelsError::Io {
                path: path.to_owned(),
                source,
            },
            LineError::TooLong { line } => LabelsError::Malformed {
                line,
                reason: "line too long",
            },
        }
    }

    /// No usable header in the labels file.
    pub(crate) fn header(e: HeaderError, path: &Path) -> Self {
        match e {
            HeaderError::Empty => LabelsError::Empty,
            HeaderError::Line(e) => LabelsError::line(e, path),
            HeaderError::Bad { line, problem } => LabelsError::Malformed {
                line,
                reason: problem.reason(),
            },
        }
    }
}

/// Longest accepted predictions line; real rows are tens of bytes.
pub const MAX_PREDICTIONS_LINE: usize = 1 << 20;
/// How many unknown ids an error message quotes.
pub(crate) const UNKNOWN_IDS_QUOTED: usize = 3;
/// Longest id quoted back in a message, in characters.
const QUOTED_ID_CHARS: usize = 64;

/// Why a predictions file was refused. Every message is safe to show the participant.
#[derive(Debug, thiserror::Error)]
pub enum PredictionsError {
    /// No `predictions.csv` was written.
    #[error("predictions.csv was not found")]
    Missing,
    /// The file has no content.
    #[error("predictions.csv is empty")]
    Empty,
    /// A symlink, directory, FIFO, socket or device instead of a regular file.
    #[error("predictions.csv is not a regular file (found a {kind})")]
    NotRegularFile {
        /// What was found instead.
        kind: &'static str,
    },
    /// Larger than the cap.
    #[error("predictions.csv is larger than the {cap_bytes}-byte limit")]
    TooLarge {
        /// The cap, in bytes.
        cap_bytes: u64,
    },
    /// The first line is not a header.
    #[error("predictions.csv has no header line; the first line must name the columns")]
    NoHeader,
    /// The header lacks a required column.
    #[error("predictions.csv has no column named {column:?}")]
    MissingColumn {
        /// The missing column.
        column: String,
    },
    /// A prediction that is not a number.
    #[error("predictions.csv line {line}: the prediction is not a number")]
    UnparsableNumber {
        /// 1-based line number.
        line: u64,
    },
    /// NaN or an infinity.
    #[error("predictions.csv line {line}: the prediction is NaN or infinite")]
    NotFinite {
        /// 1-based line number.
        line: u64,
    },
    /// A probability below 0 or above 1.
    #[error("predictions.csv line {line}: the probability is outside [0, 1]")]
    ProbabilityOutOfRange {
        /// 1-based line number.
        line: u64,
    },
    /// An empty prediction for a class-label column.
    #[error("predictions.csv line {line}: the prediction is empty")]
    EmptyPrediction {
        /// 1-based line number.
        line: u64,
    },
    /// The same id twice.
    #[error("predictions.csv line {line}: duplicate id {id:?}")]
    DuplicateId {
        /// The repeated id, as written.
        id: String,
        /// Line of the second occurrence.
        line: u64,
    },
    /// Ids that are not in the test set.
    #[error("predictions.csv has {count} ids that are not in the test set, e.g. {}", quote_list(.first))]
    UnknownIds {
        /// How many rows had an unknown id.
        count: u64,
        /// The first few, as written.
        first: Vec<String>,
    },
    /// Test ids without a prediction.
    #[error("predictions.csv is missing predictions for {count} ids of the test set")]
    MissingIds {
        /// How many test ids had no row.
        count: u64,
    },
    /// A line with a different number of fields than the header.
    #[error("predictions.csv line {line}: expected {expected} fields, found {found}")]
    WrongFieldCount {
        /// 1-based line number.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields on the line.
        found: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("predictions.csv line {line}: invalid UTF-8")]
    InvalidUtf8 {
        /// 1-based line number.
        line: u64,
    },
    /// A quoted field that is never closed, or text after a closing quote.
    #[error("predictions.csv line {line}: unbalanced quotes")]
    UnbalancedQuotes {
        /// 1-based line number.
        line: u64,
    },
    /// A line longer than [`MAX_PREDICTIONS_LINE`].
    #[error("predictions.csv line {line}: the line is longer than {MAX_PREDICTIONS_LINE} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
    },
    /// Reading failed: the service's fault, not the participant's.
    #[error("predictions.csv could not be read")]
    Io(#[source] io::Error),
    /// Predictions so far off (finite, but huge) that a regression metric overflows: the
    /// squared or absolute errors no longer sum to a finite number. Names the metric only:
    /// no value, id, line or part, since whether an error overflows depends on the label.
    #[error(
        "predictions.csv: {metric} cannot be computed from these predictions (a value is too large)"
    )]
    NonFiniteMetric {
        /// The metric that overflowed (the first in the spec's order).
        metric: Metric,
    },
    /// The scoring spec does not match the loaded labels: a service bug.
    #[error("internal scoring error")]
    SpecMismatch,
    /// A metric that predictions cannot make undefined came out NaN or infinite: a service
    /// bug (the labels loader refuses labels that would allow it).
    #[error("internal scoring error")]
    UndefinedMetric {
        /// The metric.
        metric: Metric,
    },
}

impl PredictionsError {
    /// Whether the participant caused this (INVALID_PREDICTIONS) rather than the service
    /// (INTERNAL_ERROR, never charged to a quota).
    pub fn is_participant_fault(&self) -> bool {
        !matches!(
            self,
            PredictionsError::Io(_)
                | PredictionsError::SpecMismatch
                | PredictionsError::UndefinedMetric { .. }
        )
    }
}

/// Quoted ids, comma-separated, for [`PredictionsError::UnknownIds`].
fn quote_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An id as the participant wrote it, cut short so a message stays small.
pub(crate) fn quote_id(id: &[u8]) -> String {
    String::from_utf8_lossy(id)
        .chars()
        .take(QUOTED_ID_CHARS)
        .collect()
}

impl PredictionsError {
    /// A line that is unreadable as CSV.
    pub(crate) fn bad_line(line: u64, problem: LineProblem) -> Self {
        match problem {
            LineProblem::InvalidUtf8 => PredictionsError::InvalidUtf8 { line },
            LineProblem::UnbalancedQuotes => PredictionsError::UnbalancedQuotes { line },
        }
    }
}

impl From<HeaderError> for PredictionsError {
    /// No usable header in the predictions file.
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::Empty => PredictionsError::Empty,
            HeaderError::Line(e) => e.into(),
            HeaderError::Bad { line, problem } => PredictionsError::bad_line(line, problem),
        }
    }
}

impl From<LineError> for PredictionsError {
    /// A framing problem as the participant's error (a read failure stays the service's).
    fn from(e: LineError) -> Self {
        match e {
            LineError::Io(e) => PredictionsError::Io(e),
            LineError::TooLong { line } => PredictionsError::LineTooLong { line },
        }
    }
}
