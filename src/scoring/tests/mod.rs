//! Tests of the scoring module as a whole, one file per concern: the sklearn reference fixture
//! and the split (here), the predictions contract (one error per problem, each message
//! participant-safe), labels loading, per-row losses, and property tests that the parser never
//! panics and scores ignore row order. The helpers below are shared by all of them.

mod finite;
mod labels;
mod memory;
mod predictions;
mod properties;
mod row_losses;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scoring::split::split_position;
use crate::scoring::{
    LabelSet, Metric, PredictionsError, ScoreReport, ScoringSpec, Split, load_labels,
    score_predictions,
};

/// Resolved against this file, so it works in the crate and in any crate that includes it.
const FIXTURE: &str = include_str!("../../../tests/fixtures/scoring/sklearn_reference.json");

#[derive(Deserialize)]
struct Fixture {
    tolerance: f64,
    cases: Vec<Case>,
    split_positions: Vec<SplitVector>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    y_true: Vec<String>,
    y_pred: Vec<String>,
    positive_label: Option<String>,
    threshold: Option<f64>,
    expected: std::collections::BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct SplitVector {
    id: String,
    seed: String,
    hash: String,
    position: f64,
}

fn spec(metrics: &[Metric]) -> ScoringSpec {
    ScoringSpec {
        id_column: "id".into(),
        target_column: "y".into(),
        prediction_column: "p".into(),
        positive_label: None,
        metrics: metrics.to_vec(),
        threshold: None,
        split: None,
        max_predictions_bytes: 1 << 30,
        want_row_losses: false,
    }
}

/// Writes labels and predictions CSVs; predictions in reverse order when `reverse`, so both
/// the in-order fast path and the hash lookup are exercised.
fn write_case(
    dir: &Path,
    y_true: &[String],
    y_pred: &[String],
    reverse: bool,
) -> (PathBuf, PathBuf) {
    let labels = dir.join("labels.csv");
    let predictions = dir.join("predictions.csv");
    let mut l = String::from("id,y\n");
    let mut p = String::from("id,p\n");
    for (i, y) in y_true.iter().enumerate() {
        l.push_str(&format!("row{i},{y}\n"));
    }
    let mut rows: Vec<usize> = (0..y_pred.len()).collect();
    if reverse {
        rows.reverse();
    }
    for i in rows {
        p.push_str(&format!("row{i},{}\n", y_pred[i]));
    }
    std::fs::write(&labels, l).unwrap();
    std::fs::write(&predictions, p).unwrap();
    (labels, predictions)
}

fn score_files(
    labels: &Path,
    predictions: &Path,
    spec: &ScoringSpec,
) -> Result<ScoreReport, PredictionsError> {
    let set = load_labels(labels, &spec.label_spec().unwrap()).unwrap();
    score_predictions(&set, predictions, spec)
}

/// Binary labels over `n` ids with a 40% public split, and predictions in the given order.
fn split_fixture(dir: &Path, n: usize) -> (PathBuf, PathBuf, ScoringSpec) {
    let y: Vec<String> = (0..n).map(|i| ((i * 7 + i / 3) % 2).to_string()).collect();
    let p: Vec<String> = (0..n)
        .map(|i| format!("{:.3}", ((i * 37) % 101) as f64 / 100.0))
        .collect();
    let (labels, predictions) = write_case(dir, &y, &p, true);
    let mut s = spec(&[
        Metric::RocAuc,
        Metric::LogLoss,
        Metric::Accuracy,
        Metric::F1Macro,
        Metric::BalancedAccuracy,
    ]);
    s.threshold = Some(0.5);
    s.split = Some(Split {
        public_fraction: 0.4,
        seed: 11,
    });
    (labels, predictions, s)
}

fn small_labels(dir: &Path) -> (LabelSet, ScoringSpec) {
    let path = dir.join("labels.csv");
    std::fs::write(&path, "id,y\na,0\nb,1\nc,0\nd,1\n").unwrap();
    let mut s = spec(&[Metric::LogLoss]);
    s.max_predictions_bytes = 1000;
    (load_labels(&path, &s.label_spec().unwrap()).unwrap(), s)
}

fn score_text(text: &[u8]) -> Result<ScoreReport, PredictionsError> {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let path = dir.path().join("predictions.csv");
    std::fs::write(&path, text).unwrap();
    score_predictions(&set, &path, &s)
}

fn message(text: &[u8]) -> String {
    score_text(text).unwrap_err().to_string()
}

fn labels_error(text: &str, s: &ScoringSpec) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, text).unwrap();
    load_labels(&path, &s.label_spec().unwrap())
        .unwrap_err()
        .to_string()
}

/// Writes `labels.csv` and `predictions.csv` into `dir`; returns their paths.
fn write_texts(dir: &Path, labels: &str, predictions: &str) -> (PathBuf, PathBuf) {
    let (l, p) = (dir.join("labels.csv"), dir.join("predictions.csv"));
    std::fs::write(&l, labels).unwrap();
    std::fs::write(&p, predictions).unwrap();
    (l, p)
}

/// Scores `predictions` text against labels text with `s`, through the file path.
fn score_texts(labels: &str, predictions: &str, s: &ScoringSpec) -> ScoreReport {
    let dir = tempfile::tempdir().unwrap();
    let (l, p) = write_texts(dir.path(), labels, predictions);
    score_files(&l, &p, s).unwrap()
}

#[test]
fn every_metric_matches_scikit_learn_on_the_reference_cases() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).unwrap();
    assert!(fixture.cases.len() > 100);
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (n, case) in fixture.cases.iter().enumerate() {
        let metrics: Vec<Metric> = case
            .expected
            .keys()
            .map(|k| Metric::from_name(k).unwrap())
            .collect();
        let mut s = spec(&metrics);
        s.positive_label = case.positive_label.clone();
        s.threshold = case.threshold;
        // Score metrics first, so a class metric beside them reads the score column.
        s.metrics.sort_by_key(|m| !m.needs_scores());
        assert!(matches!(
            case.kind.as_str(),
            "classes" | "scores" | "values"
        ));
        let (labels, predictions) = write_case(dir.path(), &case.y_true, &case.y_pred, n % 2 == 1);
        let report =
            score_files(&labels, &predictions, &s).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for (metric, expected) in &case.expected {
            let got = report.all[metric];
            assert!(
                (got - expected).abs() <= fixture.tolerance || (got.is_nan() && expected.is_nan()),
                "{}: {metric} = {got}, sklearn says {expected}",
                case.name
            );
            assert_eq!(
                report.public[metric].to_bits(),
                got.to_bits(),
                "without a split, public is all"
            );
            checked += 1;
        }
        assert!(report.private.is_empty());
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn the_split_function_matches_its_python_copy() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).unwrap();
    for v in &fixture.split_positions {
        let seed: u64 = v.seed.parse().unwrap();
        let hash: u64 = v.hash.parse().unwrap();
        assert_eq!(
            crate::scoring::split::hash_id(v.id.as_bytes(), seed),
            hash,
            "{:?} seed {seed}",
            v.id
        );
        // serde_json may read a float one ulp off, so the position is compared loosely.
        assert!(
            (split_position(v.id.as_bytes(), seed) - v.position).abs() < 1e-15,
            "{:?}",
            v.id
        );
    }
}

#[test]
fn public_and_private_scores_equal_scoring_each_part_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, s) = split_fixture(dir.path(), 500);
    let report = score_files(&labels, &predictions, &s).unwrap();
    let split = s.split.unwrap();
    for (part, public) in [("public", true), ("private", false)] {
        let sub = dir.path().join(part);
        std::fs::create_dir_all(&sub).unwrap();
        let keep = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap();
            let mut lines = text.lines();
            let mut out = format!("{}\n", lines.next().unwrap());
            for line in
                lines.filter(|l| split.is_public(l.split(',').next().unwrap().as_bytes()) == public)
            {
                out.push_str(line);
                out.push('\n');
            }
            out
        };
        std::fs::write(sub.join("labels.csv"), keep(&labels)).unwrap();
        std::fs::write(sub.join("predictions.csv"), keep(&predictions)).unwrap();
        let mut alone_spec = s.clone();
        alone_spec.split = None;
        let alone = score_files(
            &sub.join("labels.csv"),
            &sub.join("predictions.csv"),
            &alone_spec,
        )
        .unwrap();
        let scores = if public {
            &report.public
        } else {
            &report.private
        };
        for (metric, value) in &alone.all {
            assert!(
                (scores[metric] - value).abs() < 1e-12,
                "{part} {metric}: {} vs {value}",
                scores[metric]
            );
        }
    }
    assert_eq!(report.rows, 500);
}
