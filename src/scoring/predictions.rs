//! Reading a participant's `predictions.csv` and scoring it against a [`LabelSet`].
//!
//! Owns the predictions contract (CSV, UTF-8, a header, the id column and the prediction
//! column), the safe open of a file that untrusted code controlled, and the single streaming
//! pass that validates every row and feeds the metric totals. Every [`PredictionsError`]
//! message is shown to the participant, so it may quote what the participant wrote (ids,
//! line numbers, column names) and the caps, but must never reveal a label value or whether
//! an id is public or private.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::scoring::csv::{self, Fields, LineError, LineReader};
use crate::scoring::labels::{LabelSet, Targets};
use crate::scoring::metrics::{Metric, PartTotals, auc_over, finish, radix_sort, score_key};
use crate::scoring::{ScoreReport, ScoringSpec};

/// Longest accepted predictions line; real rows are tens of bytes.
pub const MAX_PREDICTIONS_LINE: usize = 1 << 20;
/// How many unknown ids an error message quotes.
const UNKNOWN_IDS_QUOTED: usize = 3;
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
    /// The scoring spec does not match the loaded labels: a service bug.
    #[error("internal scoring error")]
    SpecMismatch,
}

impl PredictionsError {
    /// Whether the participant caused this (INVALID_PREDICTIONS) rather than the service
    /// (INTERNAL_ERROR, never charged to a quota).
    pub fn is_participant_fault(&self) -> bool {
        !matches!(
            self,
            PredictionsError::Io(_) | PredictionsError::SpecMismatch
        )
    }
}

fn quote_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An id as the participant wrote it, cut short so a message stays small.
fn quote_id(id: &[u8]) -> String {
    String::from_utf8_lossy(id)
        .chars()
        .take(QUOTED_ID_CHARS)
        .collect()
}

/// Opens a file in a directory that untrusted code controlled: refuses a symlink as the last
/// component (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK), and checks through the open
/// descriptor that it is a regular file within `cap_bytes`, before reading a byte (a huge
/// sparse file is refused from its size alone). The caller should pass a path whose parent
/// directories the participant could not replace (the run's own output directory).
pub fn open_predictions(path: &Path, cap_bytes: u64) -> Result<File, PredictionsError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => PredictionsError::Missing,
            Some(libc::ELOOP) | Some(libc::EMLINK) => PredictionsError::NotRegularFile {
                kind: "symbolic link",
            },
            Some(libc::ENXIO) => PredictionsError::NotRegularFile {
                kind: "socket or device",
            },
            _ => PredictionsError::Io(e),
        })?;
    let meta = file.metadata().map_err(PredictionsError::Io)?;
    let file_type = meta.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "directory"
        } else if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_symlink() {
            "symbolic link"
        } else {
            "socket or device"
        };
        return Err(PredictionsError::NotRegularFile { kind });
    }
    if meta.len() > cap_bytes {
        return Err(PredictionsError::TooLarge { cap_bytes });
    }
    if meta.len() == 0 {
        return Err(PredictionsError::Empty);
    }
    Ok(file)
}

/// Opens `predictions_path` safely (see [`open_predictions`]) and scores it against `labels`:
/// one streaming pass that yields the public, private and overall scores of every metric.
/// Blocking and CPU-bound: run it on a blocking thread.
pub fn score_predictions(
    labels: &LabelSet,
    predictions_path: &Path,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    let file = open_predictions(predictions_path, spec.max_predictions_bytes)?;
    score_reader(labels, file, spec)
}

/// What the prediction column holds for this spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prediction {
    /// A class label.
    Class,
    /// A score or probability for the positive class.
    Score,
    /// A number for a regression target.
    Value,
}

/// Scores predictions read from any reader (the file path goes through [`score_predictions`]);
/// stops reading past `spec.max_predictions_bytes`. The same checks and messages apply.
pub fn score_reader<R: Read>(
    labels: &LabelSet,
    reader: R,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    let label_spec = spec
        .label_spec()
        .map_err(|_| PredictionsError::SpecMismatch)?;
    if &label_spec != labels.spec() {
        return Err(PredictionsError::SpecMismatch);
    }
    let cap = spec.max_predictions_bytes;
    let mut reader = LineReader::new(
        reader.take(cap.saturating_add(1)),
        csv::BUFFER_BYTES,
        MAX_PREDICTIONS_LINE,
    );
    let line_error = |e: LineError| match e {
        LineError::Io(e) => PredictionsError::Io(e),
        LineError::TooLong { line } => PredictionsError::LineTooLong { line },
    };
    let mut fields = Fields::default();

    let kind = match &labels.targets {
        Targets::Values(_) => Prediction::Value,
        Targets::Classes { .. }
            if spec.metrics.iter().any(|m| m.needs_scores()) || spec.threshold.is_some() =>
        {
            Prediction::Score
        }
        Targets::Classes { .. } => Prediction::Class,
    };
    let check_probability = spec.metrics.contains(&Metric::LogLoss);
    let wants_classes = spec.metrics.iter().any(|m| m.compares_classes());
    let wants_keys = spec.metrics.contains(&Metric::RocAuc);

    // Header: the first non-blank line.
    let (id_col, pred_col, width) = loop {
        let Some((line_no, line)) = reader.next_line().map_err(line_error)? else {
            return Err(PredictionsError::Empty);
        };
        let line = if line_no == 1 {
            csv::strip_bom(line)
        } else {
            line
        };
        if line.trim_ascii().is_empty() {
            continue;
        }
        if std::str::from_utf8(line).is_err() {
            return Err(PredictionsError::InvalidUtf8 { line: line_no });
        }
        fields
            .split(line)
            .map_err(|_| PredictionsError::UnbalancedQuotes { line: line_no })?;
        let id_col = csv::find_column(&fields, line, &spec.id_column);
        let pred_col = csv::find_column(&fields, line, &spec.prediction_column);
        match (id_col, pred_col) {
            (Some(i), Some(p)) => break (i, p, fields.len()),
            _ if looks_like_data(&fields, line, labels) => return Err(PredictionsError::NoHeader),
            (None, _) => {
                return Err(PredictionsError::MissingColumn {
                    column: spec.id_column.clone(),
                });
            }
            (_, None) => {
                return Err(PredictionsError::MissingColumn {
                    column: spec.prediction_column.clone(),
                });
            }
        }
    };

    let classes = labels.class_count();
    let (class_of_row, class_by_name, positive) = match &labels.targets {
        Targets::Classes {
            of_row,
            by_name,
            positive,
            ..
        } => (&of_row[..], Some(by_name), *positive),
        Targets::Values(_) => (&[][..], None, None),
    };
    let values: &[f64] = match &labels.targets {
        Targets::Values(v) => v,
        Targets::Classes { .. } => &[],
    };
    let positive = positive.map(usize::from);
    let negative = positive.map(|p| 1 - p);
    if kind == Prediction::Score && positive.is_none() {
        return Err(PredictionsError::SpecMismatch);
    }

    let mut parts = [PartTotals::new(classes), PartTotals::new(classes)];
    if wants_keys {
        // Exact sizes are known from the labels, so the key vectors never reallocate.
        let mut counts = [[0usize; 2]; 2];
        for (row, &class) in class_of_row.iter().enumerate() {
            counts[usize::from(!labels.is_public(row))]
                [usize::from(Some(class as usize) == positive)] += 1;
        }
        for (part, count) in parts.iter_mut().zip(counts) {
            part.negative_keys.reserve_exact(count[0]);
            part.positive_keys.reserve_exact(count[1]);
        }
    }
    let mut seen = vec![0u64; labels.len().div_ceil(64)];
    let mut matched = 0u64;
    let mut unknown = 0u64;
    let mut unknown_first: Vec<String> = Vec::new();
    let mut extra_classes: HashMap<Box<[u8]>, usize> = HashMap::new();
    let mut hint = 0usize;
    let mut in_order = true;
    let mut rows = 0usize;

    while let Some((line_no, line)) = reader.next_line().map_err(line_error)? {
        if line.is_empty() || line.trim_ascii().is_empty() {
            continue;
        }
        if std::str::from_utf8(line).is_err() {
            return Err(PredictionsError::InvalidUtf8 { line: line_no });
        }
        fields
            .split(line)
            .map_err(|_| PredictionsError::UnbalancedQuotes { line: line_no })?;
        if fields.len() != width {
            return Err(PredictionsError::WrongFieldCount {
                line: line_no,
                expected: width,
                found: fields.len(),
            });
        }
        rows += 1;
        let id = fields.get(line, id_col);
        let pred = fields.get(line, pred_col);

        // Parse the prediction before looking at the id, so a bad value is reported the same
        // way whether or not the id is in the test set.
        let mut number = 0.0;
        let mut class = 0usize;
        match kind {
            Prediction::Score | Prediction::Value => {
                // The line is valid UTF-8, so any slice of it on field boundaries is too.
                let text = std::str::from_utf8(pred)
                    .map_err(|_| PredictionsError::InvalidUtf8 { line: line_no })?;
                number = text
                    .parse::<f64>()
                    .map_err(|_| PredictionsError::UnparsableNumber { line: line_no })?;
                if !number.is_finite() {
                    return Err(PredictionsError::NotFinite { line: line_no });
                }
                if check_probability && !(0.0..=1.0).contains(&number) {
                    return Err(PredictionsError::ProbabilityOutOfRange { line: line_no });
                }
            }
            Prediction::Class => {
                if pred.is_empty() {
                    return Err(PredictionsError::EmptyPrediction { line: line_no });
                }
                class = match class_by_name.and_then(|m| m.get(pred)) {
                    Some(&c) => c as usize,
                    None => {
                        let next = extra_classes.len();
                        classes + *extra_classes.entry(pred.into()).or_insert(next)
                    }
                };
            }
        }

        let Some(row) = labels.find(id, if in_order { hint } else { usize::MAX }) else {
            unknown += 1;
            if unknown_first.len() < UNKNOWN_IDS_QUOTED {
                unknown_first.push(quote_id(id));
            }
            continue;
        };
        // Follow the labels' order while the file does; once it does not, stop paying a
        // cache miss per row for a guess, and look again every 1024 rows.
        in_order = row == hint || rows & 1023 == 0;
        hint = row + 1;
        let bit = 1u64 << (row % 64);
        if seen[row / 64] & bit != 0 {
            return Err(PredictionsError::DuplicateId {
                id: quote_id(id),
                line: line_no,
            });
        }
        seen[row / 64] |= bit;
        matched += 1;

        let part = &mut parts[usize::from(!labels.is_public(row))];
        part.rows += 1;
        match kind {
            Prediction::Class => part.add_class(class_of_row[row] as usize, class),
            Prediction::Score => {
                let truth = class_of_row[row] as usize;
                let is_positive = Some(truth) == positive;
                if wants_classes {
                    let predicted = match spec.threshold {
                        Some(t) if number >= t => positive,
                        _ => negative,
                    };
                    part.add_class(truth, predicted.unwrap_or(0));
                }
                if check_probability {
                    part.add_log_loss(is_positive, number);
                }
                if wants_keys {
                    let key = score_key(number);
                    if is_positive {
                        part.positive_keys.push(key)
                    } else {
                        part.negative_keys.push(key)
                    }
                }
            }
            Prediction::Value => part.add_value(values[row], number),
        }
    }
    if reader.bytes_read() > cap {
        return Err(PredictionsError::TooLarge { cap_bytes: cap });
    }
    if unknown > 0 {
        return Err(PredictionsError::UnknownIds {
            count: unknown,
            first: unknown_first,
        });
    }
    let missing = labels.len() as u64 - matched;
    if missing > 0 {
        return Err(PredictionsError::MissingIds { count: missing });
    }

    Ok(report(labels, spec, parts, rows))
}

/// Whether a header-less first line was given: it holds a test id, or only numbers.
fn looks_like_data(fields: &Fields, line: &[u8], labels: &LabelSet) -> bool {
    let values: Vec<&[u8]> = (0..fields.len()).map(|i| fields.get(line, i)).collect();
    values.iter().any(|v| labels.find(v, usize::MAX).is_some())
        || values
            .iter()
            .all(|v| std::str::from_utf8(v).is_ok_and(|s| s.parse::<f64>().is_ok()))
}

/// Turns the two parts' totals into the report: sorts score keys once per part, merges
/// counts for "all", and evaluates every metric.
fn report(
    labels: &LabelSet,
    spec: &ScoringSpec,
    mut parts: [PartTotals; 2],
    rows: usize,
) -> ScoreReport {
    if spec.metrics.contains(&Metric::RocAuc) {
        let mut scratch = Vec::new();
        for part in parts.iter_mut() {
            radix_sort(&mut part.positive_keys, &mut scratch);
            radix_sort(&mut part.negative_keys, &mut scratch);
        }
    }
    let [public, private] = &parts;
    let mut all = PartTotals::new(labels.class_count());
    all.merge_counts(public);
    all.merge_counts(private);
    let scores = |totals: &PartTotals, auc_parts: &[&PartTotals], ss_total: f64| {
        spec.metrics
            .iter()
            .map(|&m| {
                let auc = if m == Metric::RocAuc {
                    auc_over(auc_parts)
                } else {
                    f64::NAN
                };
                (m.name().to_owned(), finish(m, totals, auc, ss_total))
            })
            .collect()
    };
    let [ss_public, ss_private, ss_all] = labels.ss_total;
    if labels.has_split() {
        ScoreReport {
            all: scores(&all, &[public, private], ss_all),
            public: scores(public, &[public], ss_public),
            private: scores(private, &[private], ss_private),
            rows,
        }
    } else {
        let all_scores = scores(&all, &[public], ss_all);
        ScoreReport {
            public: all_scores.clone(),
            all: all_scores,
            private: Default::default(),
            rows,
        }
    }
}
