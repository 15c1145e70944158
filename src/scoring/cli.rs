//! The core of `holdout score`: score a predictions file against a labels file locally, with
//! exactly the checks and messages the server applies.
//!
//! Owns the command's arguments and output format. `main` only parses and calls [`run`]. It
//! must never diverge from the server's scoring path: it builds a [`ScoringSpec`] and calls
//! the same [`load_labels`] and [`score_predictions`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::scoring::csv::{self, LineReader};
use crate::scoring::{Metric, ScoreReport, ScoringSpec, Split, load_labels, score_predictions};

/// Exit code for a successful run.
pub const EXIT_OK: i32 = 0;
/// Exit code when writing the output failed.
pub const EXIT_IO: i32 = 1;
/// Exit code for invalid arguments, labels or predictions.
pub const EXIT_INVALID: i32 = 2;

/// Arguments of `holdout score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Ground truth CSV: the id column and the target column.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Predictions CSV: the id column and the prediction column.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// Metric to compute (repeatable): accuracy, balanced_accuracy, f1_macro, roc_auc,
    /// log_loss, rmse, mae, r2.
    #[arg(long = "metric", value_name = "NAME", required = true)]
    pub metrics: Vec<Metric>,
    /// Id column, in both files.
    #[arg(long, value_name = "C", default_value = "id")]
    pub id_column: String,
    /// Target column in the labels; defaults to the only other column.
    #[arg(long, value_name = "C")]
    pub target_column: Option<String>,
    /// Prediction column; defaults to the only non-id column, else the target column.
    #[arg(long, value_name = "C")]
    pub prediction_column: Option<String>,
    /// Positive class of binary metrics; defaults to the greater label, as sklearn.
    #[arg(long, value_name = "L")]
    pub positive_label: Option<String>,
    /// Class metrics over a score column: scores >= T predict the positive class.
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Share of label rows in the public part; needs --split-seed.
    #[arg(long, value_name = "F", requires = "split_seed")]
    pub public_fraction: Option<f64>,
    /// Seed of the public/private split; needs --public-fraction.
    #[arg(long, value_name = "N", requires = "public_fraction")]
    pub split_seed: Option<u64>,
    /// Largest predictions file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 30)]
    pub max_predictions_bytes: u64,
    /// Print {"all": {...}, "public": {...}, "private": {...}} instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `holdout score`: 0 when scored, 2 for invalid input (message on `err`), 1 when the
/// output could not be written.
pub fn run(args: &ScoreArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let report = match score(args) {
        Ok(report) => report,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return EXIT_INVALID;
        }
    };
    let written = if args.json {
        write_json(&report, out)
    } else {
        write_table(&report, out)
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "error: could not write the scores: {e}");
            EXIT_IO
        }
    }
}

fn score(args: &ScoreArgs) -> Result<ScoreReport, String> {
    let target_column = match &args.target_column {
        Some(c) => c.clone(),
        None => other_column(&args.labels, &args.id_column)
            .ok_or("--target-column is required unless the labels have exactly two columns")?,
    };
    let prediction_column = match &args.prediction_column {
        Some(c) => c.clone(),
        None => other_column(&args.predictions, &args.id_column)
            .unwrap_or_else(|| target_column.clone()),
    };
    let split = match (args.public_fraction, args.split_seed) {
        (Some(public_fraction), Some(seed)) => Some(Split {
            public_fraction,
            seed,
        }),
        _ => None,
    };
    let spec = ScoringSpec {
        id_column: args.id_column.clone(),
        target_column,
        prediction_column,
        positive_label: args.positive_label.clone(),
        metrics: args.metrics.clone(),
        threshold: args.threshold,
        split,
        max_predictions_bytes: args.max_predictions_bytes,
        want_row_losses: false,
    };
    let label_spec = spec.label_spec().map_err(|e| e.to_string())?;
    let labels = load_labels(&args.labels, &label_spec).map_err(|e| e.to_string())?;
    score_predictions(&labels, &args.predictions, &spec).map_err(|e| e.to_string())
}

/// The header's only column other than `id_column`, when it has exactly two.
fn other_column(path: &Path, id_column: &str) -> Option<String> {
    let file = File::open(path).ok()?;
    let header = csv::read_header(&mut LineReader::new(file, 64 << 10, 1 << 20)).ok()?;
    let names: Vec<&[u8]> = (0..header.len()).map(|i| header.get(i)).collect();
    match names[..] {
        [a, b] if a == id_column.as_bytes() => String::from_utf8(b.to_vec()).ok(),
        [a, b] if b == id_column.as_bytes() => String::from_utf8(a.to_vec()).ok(),
        _ => None,
    }
}

fn write_table(report: &ScoreReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:<8} {:<18} value", "part", "metric")?;
    for (part, scores) in [
        ("all", &report.all),
        ("public", &report.public),
        ("private", &report.private),
    ] {
        for (metric, value) in scores {
            writeln!(out, "{part:<8} {metric:<18} {value}")?;
        }
    }
    writeln!(out, "rows     {}", report.rows)
}

fn write_json(report: &ScoreReport, out: &mut dyn Write) -> std::io::Result<()> {
    let body: BTreeMap<&str, &BTreeMap<String, f64>> = [
        ("all", &report.all),
        ("public", &report.public),
        ("private", &report.private),
    ]
    .into_iter()
    .collect();
    serde_json::to_writer(&mut *out, &body)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScoreArgs,
    }

    fn run_with(dir: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut argv = vec![
            "score".to_owned(),
            "--labels".to_owned(),
            dir.join("labels.csv").display().to_string(),
            "--predictions".to_owned(),
            dir.join("predictions.csv").display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&cli.args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn write_files(dir: &Path, labels: &str, predictions: &str) {
        std::fs::write(dir.join("labels.csv"), labels).unwrap();
        std::fs::write(dir.join("predictions.csv"), predictions).unwrap();
    }

    #[test]
    fn json_output_holds_all_public_and_private_scores() {
        let dir = tempfile::tempdir().unwrap();
        let mut labels = String::from("id,label\n");
        let mut preds = String::from("id,prob\n");
        for i in 0..400 {
            labels.push_str(&format!("{i},{}\n", i % 2));
            preds.push_str(&format!("{i},{}\n", if i % 2 == 1 { 0.8 } else { 0.3 }));
        }
        write_files(dir.path(), &labels, &preds);
        let (code, out, err) = run_with(
            dir.path(),
            &[
                "--metric",
                "accuracy",
                "--metric",
                "roc_auc",
                "--threshold",
                "0.5",
                "--public-fraction",
                "0.5",
                "--split-seed",
                "1",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for part in ["all", "public", "private"] {
            assert_eq!(v[part]["accuracy"], 1.0);
            assert_eq!(v[part]["roc_auc"], 1.0);
        }
    }

    #[test]
    fn invalid_predictions_exit_2_with_the_servers_message() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), "id,label\n1,a\n2,b\n", "id,label\n1,a\n1,b\n");
        let (code, _, err) = run_with(dir.path(), &["--metric", "accuracy"]);
        assert_eq!(code, 2);
        assert_eq!(
            err.trim(),
            "error: predictions.csv line 3: duplicate id \"1\""
        );
    }

    #[test]
    fn the_table_lists_every_part_and_metric() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            "id,y\n1,1.5\n2,2.5\n3,0\n",
            "id,y\n3,0\n1,1.5\n2,2\n",
        );
        let (code, out, err) = run_with(dir.path(), &["--metric", "mae", "--metric", "rmse"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("all      mae"), "{out}");
        assert!(out.contains("public   rmse"), "{out}");
        assert!(out.contains("rows     3"), "{out}");
    }

    #[test]
    fn a_missing_threshold_for_accuracy_over_probabilities_is_a_validation_error() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), "id,y\n1,0\n2,1\n", "id,p\n1,0.2\n2,0.9\n");
        let (code, _, err) = run_with(dir.path(), &["--metric", "roc_auc", "--metric", "accuracy"]);
        assert_eq!(code, 2);
        assert!(err.contains("needs a threshold"), "{err}");
    }
}
