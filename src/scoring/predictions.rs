//! Reading a participant's `predictions.csv` and scoring it against a [`LabelSet`].
//!
//! Owns the predictions contract (CSV, UTF-8, a header, the id column and the prediction
//! column), the safe open of a file that untrusted code controlled, and how a file is read:
//! one streaming pass (`pass`) that validates every row and feeds the metric totals, or two
//! over its halves, and the end-of-file checks. Every [`PredictionsError`] is shown to the
//! participant; like its messages, this module must never reveal a label value or whether an
//! id is public or private.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

pub use crate::scoring::errors::{MAX_PREDICTIONS_LINE, PredictionsError};

use crate::scoring::csv::{self, Header, LineReader, RangeReader};
use crate::scoring::errors::UNKNOWN_IDS_QUOTED;
use crate::scoring::labels::LabelSet;
use crate::scoring::pass::Pass;
use crate::scoring::plan::{Plan, Prediction};
use crate::scoring::report::report;
use crate::scoring::{ScoreReport, ScoringSpec};

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
    let first_plan = Plan::new(labels, spec)?;
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
    score_with_plan(Plan::new(labels, spec)?, reader, spec)
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
    score_with_plan(Plan::new(labels, spec)?, reader, spec)
}

/// Reads the header (the first non-blank line) and records its columns in `plan`; returns
/// the header's line number.
fn read_header<R: Read>(
    reader: &mut LineReader<R>,
    plan: &mut Plan<'_>,
    spec: &ScoringSpec,
) -> Result<u64, PredictionsError> {
    let header = csv::read_header(reader)?;
    let id_col = header.find(&spec.id_column);
    let pred_col = header.find(&spec.prediction_column);
    match (id_col, pred_col) {
        (Some(i), Some(p)) => {
            (plan.id_col, plan.pred_col, plan.width) = (i, p, header.len());
            Ok(header.line_no)
        }
        _ if looks_like_data(&header, plan.labels) => Err(PredictionsError::NoHeader),
        (None, _) => Err(PredictionsError::MissingColumn {
            column: spec.id_column.clone(),
        }),
        (_, None) => Err(PredictionsError::MissingColumn {
            column: spec.prediction_column.clone(),
        }),
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
    report(plan, spec, parts, rows)
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
    match report(plan, spec, parts, rows) {
        // Sums merged from two halves round differently from one pass's: near overflow,
        // one pass decides, so the verdict never depends on how the file was read.
        Err(PredictionsError::NonFiniteMetric { .. }) => Ok(None),
        result => result.map(Some),
    }
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
fn looks_like_data(header: &Header, labels: &LabelSet) -> bool {
    let values: Vec<&[u8]> = (0..header.len()).map(|i| header.get(i)).collect();
    values.iter().any(|v| labels.find(v, usize::MAX).is_some())
        || values
            .iter()
            .all(|v| std::str::from_utf8(v).is_ok_and(|s| s.parse::<f64>().is_ok()))
}
