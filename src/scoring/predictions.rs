//! Reading a participant's `predictions.csv` and scoring it against a [`LabelSet`].
//!
//! Owns the predictions contract (CSV, UTF-8, a header, the id column and the prediction
//! column), the safe open of a file that untrusted code controlled, and the single streaming
//! pass that validates every row and feeds the metric totals. Every [`PredictionsError`]
//! message is shown to the participant, so it may quote what the participant wrote (ids,
//! line numbers, column names) and the caps, but must never reveal a label value or whether
//! an id is public or private.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::AtomicU32;

use crate::scoring::csv::{self, Fields, LineReader, RangeReader};
use crate::scoring::labels::{LabelSet, Targets};
use crate::scoring::metrics::{Metric, PartTotals, auc_over, finish, sort_keys};
use crate::scoring::pass::{Pass, Plan, Prediction, line_error};
use crate::scoring::{ScoreReport, ScoringSpec};

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
pub(crate) fn quote_id(id: &[u8]) -> String {
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
/// the public, private and overall scores of every metric. Blocking and CPU-bound: run it on
/// a blocking thread. A large file of scores or values is scored in two halves on two
/// threads; if either half finds any problem, the file is rescanned from the start on one
/// thread, so the error reported is always the first a line-by-line reading finds.
pub fn score_predictions(
    labels: &LabelSet,
    predictions_path: &Path,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    let file = open_predictions(predictions_path, spec.max_predictions_bytes)?;
    let len = file.metadata().map_err(PredictionsError::Io)?.len();
    let first_plan = plan(labels, spec)?;
    let two_threads = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if two_threads
        && len >= PARALLEL_MIN_BYTES
        && first_plan.kind != Prediction::Class
        && let Some(report) = score_halves(first_plan, &file, len, spec)?
    {
        return Ok(report);
    }
    let reader = RangeReader {
        file: &file,
        pos: 0,
        end: u64::MAX,
    };
    // A fresh plan: a failed attempt on two threads may have written row losses.
    score_with_plan(plan(labels, spec)?, reader, spec)
}

/// Files smaller than this are scored on one thread: a second one would not pay for itself.
/// Tests use two threads for every file, so each error case also exercises the rescan.
const PARALLEL_MIN_BYTES: u64 = if cfg!(test) { 1 } else { 8 << 20 };

/// Scores predictions read from any reader (the file path goes through [`score_predictions`]);
/// stops reading past `spec.max_predictions_bytes`. The same checks and messages apply.
pub fn score_reader<R: Read>(
    labels: &LabelSet,
    reader: R,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    score_with_plan(plan(labels, spec)?, reader, spec)
}

/// Checks the spec against the labels and derives what a pass computes.
fn plan<'a>(labels: &'a LabelSet, spec: &ScoringSpec) -> Result<Plan<'a>, PredictionsError> {
    let label_spec = spec
        .label_spec()
        .map_err(|_| PredictionsError::SpecMismatch)?;
    if &label_spec != labels.spec() {
        return Err(PredictionsError::SpecMismatch);
    }
    let kind = match &labels.targets {
        Targets::Values(_) => Prediction::Value,
        Targets::Classes { .. }
            if spec.metrics.iter().any(|m| m.needs_scores()) || spec.threshold.is_some() =>
        {
            Prediction::Score
        }
        Targets::Classes { .. } => Prediction::Class,
    };
    let (class_of_row, positive) = match &labels.targets {
        Targets::Classes {
            of_row, positive, ..
        } => (&of_row[..], positive.map(usize::from)),
        Targets::Values(_) => (&[][..], None),
    };
    if kind == Prediction::Score && positive.is_none() {
        return Err(PredictionsError::SpecMismatch);
    }
    let wants_keys = spec.metrics.contains(&Metric::RocAuc);
    let mut key_counts = [[0usize; 2]; 2];
    if wants_keys {
        // Exact sizes are known from the labels, so the key vectors never reallocate.
        for (row, &class) in class_of_row.iter().enumerate() {
            key_counts[usize::from(!labels.is_public(row))]
                [usize::from(Some(class as usize) == positive)] += 1;
        }
    }
    let loss_metric = spec
        .primary_metric()
        .filter(|m| spec.want_row_losses && m.has_row_losses());
    let losses_len = if loss_metric.is_some() {
        labels.public_len()
    } else {
        0
    };
    Ok(Plan {
        labels,
        kind,
        id_col: 0,
        pred_col: 0,
        width: 0,
        check_probability: spec.metrics.contains(&Metric::LogLoss),
        wants_classes: spec.metrics.iter().any(|m| m.compares_classes()),
        wants_keys,
        threshold: spec.threshold,
        positive,
        negative: positive.map(|p| 1 - p),
        classes: labels.class_count(),
        key_counts,
        loss_metric,
        losses: (0..losses_len).map(|_| AtomicU32::new(0)).collect(),
        public_ranks: if loss_metric.is_some() {
            labels.public_ranks()
        } else {
            Vec::new()
        },
    })
}

/// Reads the header (the first non-blank line) and records its columns in `plan`; returns
/// the header's line number.
fn read_header<R: Read>(
    reader: &mut LineReader<R>,
    plan: &mut Plan<'_>,
    spec: &ScoringSpec,
) -> Result<u64, PredictionsError> {
    let mut fields = Fields::default();
    loop {
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
            (Some(i), Some(p)) => {
                (plan.id_col, plan.pred_col, plan.width) = (i, p, fields.len());
                return Ok(line_no);
            }
            _ if looks_like_data(&fields, line, plan.labels) => {
                return Err(PredictionsError::NoHeader);
            }
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
    }
}

/// One pass over the whole input, on this thread.
fn score_with_plan<R: Read>(
    mut plan: Plan<'_>,
    reader: R,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    let cap = spec.max_predictions_bytes;
    let mut reader = LineReader::new(
        reader.take(cap.saturating_add(1)),
        csv::BUFFER_BYTES,
        MAX_PREDICTIONS_LINE,
    );
    let mut line_no = read_header(&mut reader, &mut plan, spec)?;
    let mut pass = Pass::new(&plan);
    pass.run(&mut reader, &mut line_no)?;
    if reader.bytes_read() > cap {
        return Err(PredictionsError::TooLarge { cap_bytes: cap });
    }
    check_ids(&plan, pass.unknown, pass.unknown_first, pass.matched)?;
    let rows = pass.rows;
    let parts = pass.parts;
    Ok(report(plan, spec, parts, rows))
}

/// The end-of-file checks, in order: unknown ids, then missing ones.
fn check_ids(
    plan: &Plan<'_>,
    unknown: u64,
    unknown_first: Vec<String>,
    matched: u64,
) -> Result<(), PredictionsError> {
    if unknown > 0 {
        return Err(PredictionsError::UnknownIds {
            count: unknown,
            first: unknown_first,
        });
    }
    let missing = plan.labels.len() as u64 - matched;
    if missing > 0 {
        return Err(PredictionsError::MissingIds { count: missing });
    }
    Ok(())
}

/// Scores the file's two halves (split after a newline) on two threads and merges them.
/// `Ok(None)` when either half found a problem (or the halves share an id): the caller then
/// rescans on one thread to report the first problem with its line number. Only for scores
/// and values: classes the labels lack are numbered per pass, so could not be merged.
fn score_halves(
    mut plan: Plan<'_>,
    file: &File,
    len: u64,
    spec: &ScoringSpec,
) -> Result<Option<ScoreReport>, PredictionsError> {
    let cap = spec.max_predictions_bytes;
    let Some(middle) = line_start_after(file, len / 2) else {
        return Ok(None);
    };
    let mut first = LineReader::new(
        RangeReader {
            file,
            pos: 0,
            end: middle,
        },
        csv::BUFFER_BYTES,
        MAX_PREDICTIONS_LINE,
    );
    let Ok(header_line) = read_header(&mut first, &mut plan, spec) else {
        return Ok(None);
    };
    let plan = plan;
    let (a, b) = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let mut reader = LineReader::new(
                RangeReader {
                    file,
                    pos: middle,
                    end: u64::MAX,
                },
                csv::BUFFER_BYTES,
                MAX_PREDICTIONS_LINE,
            );
            let mut pass = Pass::new(&plan);
            let mut line_no = 0;
            let result = pass.run(&mut reader, &mut line_no);
            result.map(|()| (pass, reader.bytes_read()))
        });
        let mut pass = Pass::new(&plan);
        let mut line_no = header_line;
        let a = pass.run(&mut first, &mut line_no).map(|()| pass);
        (a, second.join())
    });
    let (Ok(a), Ok(Ok((b, b_bytes)))) = (a, b) else {
        return Ok(None);
    };
    if middle + b_bytes > cap || a.seen.iter().zip(&b.seen).any(|(x, y)| x & y != 0) {
        return Ok(None);
    }
    let mut unknown_first = a.unknown_first;
    unknown_first.extend(b.unknown_first);
    unknown_first.truncate(UNKNOWN_IDS_QUOTED);
    check_ids(
        &plan,
        a.unknown + b.unknown,
        unknown_first,
        a.matched + b.matched,
    )?;
    let rows = a.rows + b.rows;
    let mut parts = a.parts;
    for (part, other) in parts.iter_mut().zip(b.parts) {
        part.merge_counts(&other);
        part.positive_keys.extend_from_slice(&other.positive_keys);
        part.negative_keys.extend_from_slice(&other.negative_keys);
    }
    Ok(Some(report(plan, spec, parts, rows)))
}

/// The offset just after the first newline at or after `offset`, if one comes within a
/// line's cap (and the file goes on after it).
fn line_start_after(file: &File, offset: u64) -> Option<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = offset;
    while pos < offset + MAX_PREDICTIONS_LINE as u64 {
        let n = file.read_at(&mut buf, pos).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Some(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    None
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
/// counts for "all", evaluates every metric, and hands over the row losses.
fn report(
    plan: Plan<'_>,
    spec: &ScoringSpec,
    mut parts: [PartTotals; 2],
    rows: usize,
) -> ScoreReport {
    let labels = plan.labels;
    if spec.metrics.contains(&Metric::RocAuc) {
        sort_keys(&mut parts);
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
    let public_row_losses = plan.loss_metric.map(|_| {
        plan.losses
            .into_iter()
            .map(|bits| f32::from_bits(bits.into_inner()))
            .collect()
    });
    let [ss_public, ss_private, ss_all] = labels.ss_total;
    if labels.has_split() {
        ScoreReport {
            all: scores(&all, &[public, private], ss_all),
            public: scores(public, &[public], ss_public),
            private: scores(private, &[private], ss_private),
            rows,
            public_row_losses,
        }
    } else {
        let all_scores = scores(&all, &[public], ss_all);
        ScoreReport {
            public: all_scores.clone(),
            all: all_scores,
            private: Default::default(),
            rows,
            public_row_losses,
        }
    }
}
