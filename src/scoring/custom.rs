//! Helpers around an organiser's custom scorer: preparing its inputs and reading its output.
//!
//! Owns writing the public and private halves of a labels file (so a custom scorer sees the
//! same split as the built-in metrics) and parsing the scorer's `scores.json`. A custom
//! scorer runs in a sandbox, so its output is untrusted: the parser caps what it accepts.
//! This module must never run the scorer itself (that is the sandbox's job).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::scoring::csv::{self, Fields, HeaderError, LineError, LineReader};
use crate::scoring::split::Split;

/// A scorer's rejection message is cut to this many characters.
pub const REJECTION_MESSAGE_CHARS: usize = 500;
/// At most this many scores in one `scores.json`.
pub const MAX_SCORES: usize = 64;
/// Longest metric name accepted from a scorer.
pub const MAX_METRIC_NAME: usize = 64;

/// What a custom scorer reported.
#[derive(Debug, Clone, PartialEq)]
pub enum ScorerOutput {
    /// Finite scores by metric name, including the primary metric.
    Scores(BTreeMap<String, f64>),
    /// The scorer refused the predictions with this message (`{"error": "..."}`), capped at
    /// [`REJECTION_MESSAGE_CHARS`] characters.
    Rejected(String),
}

/// Why a `scores.json` is unusable: the scorer's (the organiser's) fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScorerOutputError {
    /// Not JSON at all.
    #[error("scores.json is not valid JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("scores.json must be a JSON object of metric names to numbers")]
    NotObject,
    /// A value that is not a finite number.
    #[error("scores.json: {key:?} is not a finite number")]
    NotANumber {
        /// The offending key (cut to [`MAX_METRIC_NAME`] characters).
        key: String,
    },
    /// The primary metric is absent.
    #[error("scores.json has no {metric:?} (the primary metric)")]
    MissingPrimary {
        /// The primary metric's name.
        metric: String,
    },
    /// Too many keys.
    #[error("scores.json has more than {MAX_SCORES} scores")]
    TooManyScores,
    /// An empty or overlong metric name.
    #[error(
        "scores.json has a metric name that is empty or longer than {MAX_METRIC_NAME} characters"
    )]
    BadMetricName,
}

/// Parses a custom scorer's `scores.json`: either `{"error": "message"}` or an object of
/// finite numbers that includes `primary_metric`.
pub fn parse_scores_json(
    bytes: &[u8],
    primary_metric: &str,
) -> Result<ScorerOutput, ScorerOutputError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ScorerOutputError::NotJson)?;
    let serde_json::Value::Object(object) = value else {
        return Err(ScorerOutputError::NotObject);
    };
    if let Some(serde_json::Value::String(message)) = object.get("error") {
        return Ok(ScorerOutput::Rejected(
            message.chars().take(REJECTION_MESSAGE_CHARS).collect(),
        ));
    }
    if object.len() > MAX_SCORES {
        return Err(ScorerOutputError::TooManyScores);
    }
    let mut scores = BTreeMap::new();
    for (key, value) in object {
        if key.is_empty() || key.chars().count() > MAX_METRIC_NAME {
            return Err(ScorerOutputError::BadMetricName);
        }
        // serde_json refuses NaN and infinities while parsing, so any f64 here is finite.
        let number = value
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| ScorerOutputError::NotANumber { key: key.clone() })?;
        scores.insert(key, number);
    }
    if !scores.contains_key(primary_metric) {
        return Err(ScorerOutputError::MissingPrimary {
            metric: primary_metric.to_owned(),
        });
    }
    Ok(ScorerOutput::Scores(scores))
}

/// File names written by [`write_split_labels`].
pub const PUBLIC_LABELS_FILE: &str = "public_labels.csv";
/// File names written by [`write_split_labels`].
pub const PRIVATE_LABELS_FILE: &str = "private_labels.csv";

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Writes `dir/public_labels.csv` and `dir/private_labels.csv`: the labels file's header and
/// each row, verbatim, in the part the split assigns its id to (the same function the
/// built-in metrics use). Returns (public, private) paths.
pub fn write_split_labels(
    labels_path: &Path,
    id_column: &str,
    split: &Split,
    dir: &Path,
) -> io::Result<(PathBuf, PathBuf)> {
    let mut reader = LineReader::new(File::open(labels_path)?, csv::BUFFER_BYTES, 16 << 20);
    let to_io = |e: LineError| match e {
        LineError::Io(e) => e,
        LineError::TooLong { line } => invalid(format!("labels line {line} is too long")),
    };
    let public_path = dir.join(PUBLIC_LABELS_FILE);
    let private_path = dir.join(PRIVATE_LABELS_FILE);
    let mut public = BufWriter::with_capacity(1 << 20, File::create(&public_path)?);
    let mut private = BufWriter::with_capacity(1 << 20, File::create(&private_path)?);
    let header = csv::read_header(&mut reader).map_err(|e| match e {
        HeaderError::Empty => invalid("labels file is empty".to_owned()),
        HeaderError::Line(e) => to_io(e),
        HeaderError::Bad { line, problem } => {
            invalid(format!("labels line {line}: {}", problem.reason()))
        }
    })?;
    let id_col = header
        .find(id_column)
        .ok_or_else(|| invalid(format!("labels have no column named {id_column:?}")))?;
    for out in [&mut public, &mut private] {
        out.write_all(header.text())?;
        out.write_all(b"\n")?;
    }
    let mut fields = Fields::default();
    while let Some((line_no, line)) = reader.next_line().map_err(to_io)? {
        if line.trim_ascii().is_empty() {
            continue;
        }
        fields
            .split(line)
            .map_err(|_| invalid(format!("labels line {line_no} has unbalanced quotes")))?;
        if id_col >= fields.len() {
            return Err(invalid(format!("labels line {line_no} has too few fields")));
        }
        let out = if split.is_public(fields.get(line, id_col)) {
            &mut public
        } else {
            &mut private
        };
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    public
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    private
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok((public_path, private_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_of_numbers_with_the_primary_metric_is_accepted() {
        let out = parse_scores_json(br#"{"auc": 0.75, "n": 3}"#, "auc").unwrap();
        let ScorerOutput::Scores(scores) = out else {
            panic!()
        };
        assert_eq!(scores["auc"], 0.75);
        assert_eq!(scores["n"], 3.0);
    }

    #[test]
    fn an_error_object_is_a_rejection_with_its_message_capped() {
        let long = "x".repeat(2000);
        let out = parse_scores_json(format!(r#"{{"error": "{long}"}}"#).as_bytes(), "auc").unwrap();
        assert_eq!(
            out,
            ScorerOutput::Rejected("x".repeat(REJECTION_MESSAGE_CHARS))
        );
    }

    #[test]
    fn bad_scores_json_names_the_problem() {
        assert_eq!(
            parse_scores_json(b"nope", "a"),
            Err(ScorerOutputError::NotJson)
        );
        assert_eq!(
            parse_scores_json(b"[1]", "a"),
            Err(ScorerOutputError::NotObject)
        );
        assert_eq!(
            parse_scores_json(br#"{"a": "1"}"#, "a"),
            Err(ScorerOutputError::NotANumber { key: "a".into() })
        );
        assert_eq!(
            parse_scores_json(br#"{"b": 1}"#, "a"),
            Err(ScorerOutputError::MissingPrimary { metric: "a".into() })
        );
        assert_eq!(
            parse_scores_json(br#"{"a": 1e999}"#, "a"),
            Err(ScorerOutputError::NotJson)
        );
        let many: Vec<String> = (0..=MAX_SCORES).map(|i| format!(r#""m{i}": 1"#)).collect();
        assert_eq!(
            parse_scores_json(format!("{{{}}}", many.join(",")).as_bytes(), "m0"),
            Err(ScorerOutputError::TooManyScores)
        );
    }

    #[test]
    fn split_labels_files_share_the_header_and_partition_the_rows_by_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.csv");
        let mut text = String::from("id,y\n");
        for i in 0..200 {
            text.push_str(&format!("{i},{}\n", i % 2));
        }
        std::fs::write(&labels, text).unwrap();
        let split = Split {
            public_fraction: 0.3,
            seed: 5,
        };
        let (public, private) = write_split_labels(&labels, "id", &split, dir.path()).unwrap();
        let public = std::fs::read_to_string(public).unwrap();
        let private = std::fs::read_to_string(private).unwrap();
        assert!(public.starts_with("id,y\n") && private.starts_with("id,y\n"));
        assert_eq!(public.lines().count() + private.lines().count(), 202);
        for line in public.lines().skip(1) {
            assert!(split.is_public(line.split(',').next().unwrap().as_bytes()));
        }
        for line in private.lines().skip(1) {
            assert!(!split.is_public(line.split(',').next().unwrap().as_bytes()));
        }
    }
}
