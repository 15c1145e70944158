//! Tests of the scoring module as a whole: the sklearn reference fixture, the predictions
//! contract (one error per problem, each message participant-safe), labels loading, and
//! property tests that the parser never panics and the split ignores row order.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde::Deserialize;

use crate::scoring::split::split_position;
use crate::scoring::{
    LabelSet, LabelsError, Metric, PredictionsError, ScoreReport, ScoringSpec, Split, load_labels,
    score_predictions, score_reader,
};

/// Resolved against this file, so it works in the crate and in any crate that includes it.
const FIXTURE: &str = include_str!("../../tests/fixtures/scoring/sklearn_reference.json");

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

#[test]
fn the_label_set_counts_its_public_and_private_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, _, s) = split_fixture(dir.path(), 1000);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    assert_eq!(set.len(), 1000);
    assert_eq!(set.public_len() + set.private_len(), 1000);
    assert!(
        (300..500).contains(&set.public_len()),
        "{}",
        set.public_len()
    );
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

#[test]
fn a_valid_predictions_file_with_crlf_quotes_bom_and_extra_columns_is_scored() {
    let report = score_text(
        b"\xEF\xBB\xBFextra,\"id\",p\r\nx,a,0.1\r\nx,\"b\",0.9\r\nx,c, 0.2 \r\nx,d,1\r\n\r\n",
    )
    .unwrap();
    assert!(report.all["log_loss"] > 0.0);
    assert_eq!(report.rows, 4);
}

#[test]
fn each_predictions_problem_gets_its_own_message() {
    assert_eq!(
        message(b"id,p\n"),
        "predictions.csv is missing predictions for 4 ids of the test set"
    );
    assert_eq!(
        message(b"a,0.5\nb,0.5\n"),
        "predictions.csv has no header line; the first line must name the columns"
    );
    assert_eq!(
        message(b"id,q\na,0.5\n"),
        "predictions.csv has no column named \"p\""
    );
    assert_eq!(
        message(b"ident,p\na,0.5\n"),
        "predictions.csv has no column named \"id\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,zero\n"),
        "predictions.csv line 3: the prediction is not a number"
    );
    assert_eq!(
        message(b"id,p\na,NaN\n"),
        "predictions.csv line 2: the prediction is NaN or infinite"
    );
    assert_eq!(
        message(b"id,p\na,inf\n"),
        "predictions.csv line 2: the prediction is NaN or infinite"
    );
    assert_eq!(
        message(b"id,p\na,1.5\n"),
        "predictions.csv line 2: the probability is outside [0, 1]"
    );
    assert_eq!(
        message(b"id,p\na,-0.1\n"),
        "predictions.csv line 2: the probability is outside [0, 1]"
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.1\na,0.2\n"),
        "predictions.csv line 4: duplicate id \"a\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.5\nc,0.5\nd,0.5\nz1,0.5\nz2,0.5\nz3,0.5\nz4,0.5\n"),
        "predictions.csv has 4 ids that are not in the test set, e.g. \"z1\", \"z2\", \"z3\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nc,0.5\n"),
        "predictions.csv is missing predictions for 2 ids of the test set"
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.5,7\n"),
        "predictions.csv line 3: expected 2 fields, found 3"
    );
    assert_eq!(
        message(b"id,p\na,0.5\n\xFF\xFE,0.5\n"),
        "predictions.csv line 3: invalid UTF-8"
    );
    assert_eq!(
        message(b"id,p\n\"a,0.5\n"),
        "predictions.csv line 2: unbalanced quotes"
    );
    assert_eq!(message(b"  \n\n"), "predictions.csv is empty");
}

#[test]
fn messages_never_reveal_labels_or_split_membership() {
    // Every message is built from the participant's own text, counts and caps. Scoring a
    // file with every kind of problem must never mention a label value or a part.
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "id,y\nk1,secret_pos\nk2,secret_neg\nk3,secret_pos\nk4,secret_neg\n",
    )
    .unwrap();
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 0.5,
        seed: 3,
    });
    let set = match load_labels(&labels, &s.label_spec().unwrap()) {
        Ok(set) => set,
        // A four-row split may leave a part empty; any seed that does not is fine here.
        Err(LabelsError::EmptySplit { .. }) => {
            s.split = Some(Split {
                public_fraction: 0.5,
                seed: 4,
            });
            load_labels(&labels, &s.label_spec().unwrap()).unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    for text in [
        &b"id,p\nk1,x\n"[..],
        b"id,p\nk1,x\nk1,y\n",
        b"id,p\nzz,x\n",
        b"id,p\nk1,x,1\n",
        b"nope\n",
    ] {
        let err = score_reader(&set, text, &s).unwrap_err().to_string();
        for secret in ["secret", "public", "private"] {
            assert!(!err.contains(secret), "{err:?} mentions {secret}");
        }
    }
}

#[test]
fn a_symlink_a_directory_and_a_fifo_are_not_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let fifo = dir.path().join("fifo.csv");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for (path, kind) in [
        (&link, "symbolic link"),
        (&sub, "directory"),
        (&fifo, "FIFO"),
    ] {
        // A FIFO with no writer would hang a blocking open; this returns at once.
        match score_predictions(&set, path, &s) {
            Err(PredictionsError::NotRegularFile { kind: found }) => assert_eq!(found, kind),
            other => panic!("{path:?}: {other:?}"),
        }
    }
    assert!(matches!(
        score_predictions(&set, &dir.path().join("absent.csv"), &s),
        Err(PredictionsError::Missing)
    ));
}

#[test]
fn a_huge_sparse_file_is_refused_by_its_size_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let path = dir.path().join("predictions.csv");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(10 << 30).unwrap();
    let started = std::time::Instant::now();
    let err = score_predictions(&set, &path, &s).unwrap_err();
    assert!(
        matches!(err, PredictionsError::TooLarge { cap_bytes: 1000 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "predictions.csv is larger than the 1000-byte limit"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        score_predictions(&set, &path, &s),
        Err(PredictionsError::Empty)
    ));
}

#[test]
fn a_reader_that_exceeds_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let mut text = b"id,p\na,0.5\nb,0.5\nc,0.5\nd,0.5\n".to_vec();
    text.extend(std::iter::repeat_n(b'\n', 2000));
    assert!(matches!(
        score_reader(&set, &text[..], &s),
        Err(PredictionsError::TooLarge { .. })
    ));
}

#[test]
fn class_predictions_may_name_classes_the_labels_do_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions) = write_case(
        dir.path(),
        &["a".into(), "b".into(), "a".into()],
        &[" a".into(), "zz".into(), "b".into()],
        false,
    );
    let report = score_files(
        &labels,
        &predictions,
        &spec(&[Metric::Accuracy, Metric::F1Macro]),
    )
    .unwrap();
    assert!((report.all["accuracy"] - 1.0 / 3.0).abs() < 1e-15);
    // f1: a = 2/3, b = 0, zz = 0 -> 2/9.
    assert!((report.all["f1_macro"] - 2.0 / 9.0).abs() < 1e-15);
}

fn labels_error(text: &str, s: &ScoringSpec) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, text).unwrap();
    load_labels(&path, &s.label_spec().unwrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn each_labels_problem_is_named() {
    let acc = spec(&[Metric::Accuracy]);
    let dir = tempfile::tempdir().unwrap();
    let missing =
        load_labels(&dir.path().join("nope.csv"), &acc.label_spec().unwrap()).unwrap_err();
    assert!(matches!(missing, LabelsError::Missing { .. }));
    assert_eq!(labels_error("", &acc), "labels file is empty");
    assert_eq!(
        labels_error("id,y\n", &acc),
        "labels file has a header but no rows"
    );
    assert_eq!(
        labels_error("ident,y\n1,0\n", &acc),
        "labels file has no column named \"id\""
    );
    assert_eq!(
        labels_error("id,target\n1,0\n", &acc),
        "labels file has no column named \"y\""
    );
    assert_eq!(
        labels_error("id,y\n1,0\n2,1\n1,1\n", &acc),
        "labels file has duplicate id \"1\""
    );
    assert_eq!(
        labels_error("id,y\n1,0\n2\n", &acc),
        "labels file line 3: expected 2 fields, found 1"
    );
    assert_eq!(
        labels_error("id,y\n1,0\n2,\n", &acc),
        "labels file line 3: target is empty"
    );
    let reg = spec(&[Metric::Rmse]);
    assert_eq!(
        labels_error("id,y\n1,x\n", &reg),
        "labels file line 2: target is not a number"
    );
    let auc = spec(&[Metric::RocAuc]);
    assert_eq!(
        labels_error("id,y\n1,a\n2,b\n3,c\n", &auc),
        "the metric needs exactly two classes, labels have 3"
    );
    let mut pos = spec(&[Metric::RocAuc]);
    pos.positive_label = Some("yes".into());
    assert_eq!(
        labels_error("id,y\n1,0\n2,1\n", &pos),
        "positive label \"yes\" is not a class in the labels"
    );
}

#[test]
fn a_split_that_leaves_a_part_empty_is_refused_when_labels_load() {
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 1e-12,
        seed: 1,
    });
    let err = labels_error("id,y\n1,0\n2,1\n3,1\n", &s);
    assert!(
        err.starts_with("the split leaves the public part empty (0 public, 3 private rows)"),
        "{err}"
    );
    s.split = Some(Split {
        public_fraction: 1.0 - 1e-12,
        seed: 1,
    });
    assert!(labels_error("id,y\n1,0\n2,1\n3,1\n", &s).contains("private part empty"));
}

#[test]
fn a_part_with_one_class_is_refused_for_roc_auc() {
    let mut s = spec(&[Metric::RocAuc]);
    s.split = Some(Split {
        public_fraction: 0.5,
        seed: 2,
    });
    let text: String = std::iter::once("id,y\n".to_owned())
        .chain((0..50).map(|i| format!("{i},{}\n", if i == 0 { 1 } else { 0 })))
        .collect();
    let err = labels_error(&text, &s);
    assert!(err.contains("has rows of only one class"), "{err}");
}

#[test]
fn the_labels_cache_reloads_only_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, "id,y\n1,0\n2,1\n").unwrap();
    let cache = crate::scoring::LabelsCache::new(4);
    let ls = spec(&[Metric::Accuracy]).label_spec().unwrap();
    let first = cache.get_or_load(&path, &ls).unwrap();
    let again = cache.get_or_load(&path, &ls).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    std::fs::write(&path, "id,y\n1,0\n2,1\n3,1\n").unwrap();
    let changed = cache.get_or_load(&path, &ls).unwrap();
    assert_eq!(changed.len(), 3);
    assert_eq!(cache.len(), 1, "the stale entry is dropped");
}

#[test]
fn the_split_of_a_labels_file_does_not_depend_on_its_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 0.3,
        seed: 77,
    });
    let ids: Vec<String> = (0..300).map(|i| format!("id-{i}")).collect();
    let load = |order: &[String], name: &str| {
        let path = dir.path().join(name);
        let body: String = order
            .iter()
            .map(|id| format!("{id},{}\n", id.len() % 2))
            .collect();
        std::fs::write(&path, format!("id,y\n{body}")).unwrap();
        load_labels(&path, &s.label_spec().unwrap()).unwrap()
    };
    let forward = load(&ids, "forward.csv");
    let mut reversed_ids = ids.clone();
    reversed_ids.reverse();
    let reversed = load(&reversed_ids, "reversed.csv");
    assert_eq!(forward.public_len(), reversed.public_len());
    for (i, id) in ids.iter().enumerate() {
        let j = reversed.find(id.as_bytes(), 0).unwrap();
        assert_eq!(forward.is_public(i), reversed.is_public(j), "{id}");
    }
}

#[test]
fn spec_errors_name_the_problem() {
    use crate::scoring::SpecError;
    assert_eq!(spec(&[]).label_spec(), Err(SpecError::NoMetrics));
    assert!(matches!(
        spec(&[Metric::Rmse, Metric::Accuracy]).label_spec(),
        Err(SpecError::MixedTargetKinds(..))
    ));
    assert!(matches!(
        spec(&[Metric::RocAuc, Metric::Accuracy]).label_spec(),
        Err(SpecError::ThresholdRequired(..))
    ));
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 1.0,
        seed: 0,
    });
    assert_eq!(s.label_spec(), Err(SpecError::BadPublicFraction(1.0)));
}

/// Scores `predictions` text against labels text with `s`, through the file path.
fn score_texts(labels: &str, predictions: &str, s: &ScoringSpec) -> ScoreReport {
    let dir = tempfile::tempdir().unwrap();
    let (l, p) = (
        dir.path().join("labels.csv"),
        dir.path().join("predictions.csv"),
    );
    std::fs::write(&l, labels).unwrap();
    std::fs::write(&p, predictions).unwrap();
    score_files(&l, &p, s).unwrap()
}

#[test]
fn row_losses_of_a_small_case_match_hand_computation() {
    let labels = "id,y\na,1\nb,0\nc,1\nd,0\n";
    let predictions = "id,p\nd,0.6\nc,0.9\nb,0.2\na,0.4\n";
    let mut s = spec(&[Metric::Accuracy, Metric::LogLoss]);
    s.threshold = Some(0.5);
    s.want_row_losses = true;
    let report = score_texts(labels, predictions, &s);
    // Labels order a, b, c, d: a (1, 0.4) and d (0, 0.6) are misclassified.
    assert_eq!(report.public_row_losses, Some(vec![1.0, 0.0, 0.0, 1.0]));

    s.metrics = vec![Metric::LogLoss, Metric::Accuracy];
    let report = score_texts(labels, predictions, &s);
    let expected = [
        -(0.4f64).ln(),
        -(0.8f64).ln(),
        -(0.9f64).ln(),
        -(0.4f64).ln(),
    ];
    let got = report.public_row_losses.unwrap();
    for (got, expected) in got.iter().zip(expected) {
        assert!(
            (f64::from(*got) - expected).abs() < 1e-6,
            "{got} vs {expected}"
        );
    }

    let values = "id,y\na,1.5\nb,-2\nc,0\n";
    let guesses = "id,y\nc,0.25\na,1\nb,1\n";
    let mut s = spec(&[Metric::Mae]);
    s.prediction_column = "y".into();
    s.want_row_losses = true;
    let report = score_texts(values, guesses, &s);
    assert_eq!(report.public_row_losses, Some(vec![0.5, 3.0, 0.25]));
    for squared in [Metric::Rmse, Metric::R2] {
        s.metrics = vec![squared];
        let report = score_texts(values, guesses, &s);
        assert_eq!(report.public_row_losses, Some(vec![0.25, 9.0, 0.0625]));
    }
    s.metrics = vec![Metric::Accuracy];
}

#[test]
fn row_losses_are_given_only_when_asked_for_and_defined() {
    let labels = "id,y\na,1\nb,0\n";
    let predictions = "id,p\na,0.7\nb,0.2\n";
    let mut s = spec(&[Metric::LogLoss]);
    assert_eq!(score_texts(labels, predictions, &s).public_row_losses, None);
    s.want_row_losses = true;
    for metric in [Metric::RocAuc, Metric::BalancedAccuracy, Metric::F1Macro] {
        s.metrics = vec![metric, Metric::LogLoss];
        s.threshold = Some(0.5);
        assert_eq!(
            score_texts(labels, predictions, &s).public_row_losses,
            None,
            "{metric}"
        );
    }
    let classes = "id,y\na,cat\nb,dog\n";
    let mut s = spec(&[Metric::Accuracy]);
    s.want_row_losses = true;
    let report = score_texts(classes, "id,p\nb,cat\na,cat\n", &s);
    assert_eq!(report.public_row_losses, Some(vec![0.0, 1.0]));
}

#[test]
fn the_mean_of_accuracy_row_losses_is_one_minus_the_public_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, mut s) = split_fixture(dir.path(), 2000);
    s.metrics.retain(|m| *m != Metric::RocAuc);
    s.metrics.sort_by_key(|m| *m != Metric::Accuracy);
    s.want_row_losses = true;
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let report = score_predictions(&set, &predictions, &s).unwrap();
    let losses = report.public_row_losses.unwrap();
    assert_eq!(losses.len(), set.public_len());
    let mean = losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64;
    assert!((mean - (1.0 - report.public["accuracy"])).abs() < 1e-12);
    assert!(losses.iter().all(|&l| l == 0.0 || l == 1.0));
}

#[test]
fn row_losses_follow_the_labels_order_whatever_the_predictions_order() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, mut s) = split_fixture(dir.path(), 3000);
    s.metrics = vec![Metric::LogLoss, Metric::Accuracy];
    s.want_row_losses = true;
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let text = std::fs::read_to_string(&predictions).unwrap();
    let mut lines: Vec<&str> = text.lines().skip(1).collect();
    let reversed = score_reader(&set, text.as_bytes(), &s).unwrap();
    lines.sort_by_key(|l| crate::scoring::split::hash_id(l.as_bytes(), 5));
    let shuffled_text = format!("id,p\n{}\n", lines.join("\n"));
    let shuffled = score_reader(&set, shuffled_text.as_bytes(), &s).unwrap();
    lines.sort_by_key(|l| l[3..].split(',').next().unwrap().parse::<usize>().unwrap());
    let in_order_text = format!("id,p\n{}\n", lines.join("\n"));
    std::fs::write(&predictions, &in_order_text).unwrap();
    let in_order = score_predictions(&set, &predictions, &s).unwrap();
    let losses = in_order.public_row_losses.clone().unwrap();
    assert_eq!(losses.len(), set.public_len());
    assert_eq!(reversed.public_row_losses.as_ref(), Some(&losses));
    assert_eq!(shuffled.public_row_losses.as_ref(), Some(&losses));
    // The vector follows the public label rows: recompute it from the files directly.
    let split = s.split.unwrap();
    let truth: Vec<(String, bool)> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (id, y) = l.split_once(',').unwrap();
            (id.to_owned(), y == "1")
        })
        .filter(|(id, _)| split.is_public(id.as_bytes()))
        .collect();
    let probability: std::collections::HashMap<&str, f64> = in_order_text
        .lines()
        .skip(1)
        .map(|l| {
            let (id, p) = l.split_once(',').unwrap();
            (id, p.parse().unwrap())
        })
        .collect();
    for ((id, positive), loss) in truth.iter().zip(&losses) {
        let p = probability[id.as_str()].clamp(1e-15, 1.0 - 1e-15);
        let expected = -if *positive { p.ln() } else { (1.0 - p).ln() };
        assert!((f64::from(*loss) - expected).abs() < 1e-5, "{id}");
    }
}

#[test]
fn a_file_scored_in_two_halves_scores_exactly_like_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, s) = split_fixture(dir.path(), 5000);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let text = std::fs::read(&predictions).unwrap();
    let halves = score_predictions(&set, &predictions, &s).unwrap();
    let one_pass = score_reader(&set, &text[..], &s).unwrap();
    assert_eq!(halves.rows, one_pass.rows);
    for (part, a, b) in [
        ("all", &halves.all, &one_pass.all),
        ("public", &halves.public, &one_pass.public),
        ("private", &halves.private, &one_pass.private),
    ] {
        for (metric, value) in a {
            assert!((b[metric] - value).abs() < 1e-12, "{part} {metric}");
        }
    }
}

#[test]
fn problems_in_the_second_half_or_across_halves_keep_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, s) = split_fixture(dir.path(), 400);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let text = std::fs::read_to_string(&predictions).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let check = |edited: Vec<String>, expected: &str| {
        std::fs::write(&predictions, edited.join("\n") + "\n").unwrap();
        let got = score_predictions(&set, &predictions, &s)
            .unwrap_err()
            .to_string();
        assert_eq!(got, expected);
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    // A duplicate across the halves: line 5's id again on line 350.
    let mut edited = owned();
    edited[349] = edited[4].clone();
    let id = edited[4].split(',').next().unwrap().to_owned();
    check(
        edited,
        &format!("predictions.csv line 350: duplicate id {id:?}"),
    );
    // A bad value near the end.
    let mut edited = owned();
    edited[380] = "row9999,oops".into();
    check(
        edited,
        "predictions.csv line 381: the prediction is not a number",
    );
    // An unknown id in each half: both are quoted, in file order.
    let mut edited = owned();
    edited[10] = "nope1,0.5".into();
    edited[300] = "nope2,0.5".into();
    check(
        edited,
        "predictions.csv has 2 ids that are not in the test set, e.g. \"nope1\", \"nope2\"",
    );
}

#[test]
fn long_and_short_ids_score_alike_in_any_order() {
    // Ids of up to 7 bytes are kept inline, longer ones in an arena: both must join alike.
    let score = |prefix: &str| {
        let mut labels = String::from("id,y\n");
        let mut rows = Vec::new();
        for i in 0..3000 {
            labels.push_str(&format!("{prefix}{i},{}\n", (i * 7 + i / 3) % 2));
            rows.push(format!(
                "{prefix}{i},{:.3}\n",
                ((i * 37) % 101) as f64 / 100.0
            ));
        }
        rows.sort_by_key(|r| crate::scoring::split::hash_id(r.as_bytes(), 3));
        let mut s = spec(&[Metric::LogLoss, Metric::RocAuc]);
        s.want_row_losses = true;
        score_texts(&labels, &format!("id,p\n{}", rows.concat()), &s)
    };
    let (short, long) = (score("r"), score("a-much-longer-id-"));
    assert_eq!(short.all, long.all);
    assert_eq!(short.public_row_losses, long.public_row_losses);
}

#[test]
fn a_duplicate_label_id_is_the_first_repeated_one_in_file_order() {
    let mut text = String::from("id,y\n");
    for i in 0..5000 {
        text.push_str(&format!("{i},{}\n", i % 2));
    }
    text.push_str("4990,1\n17,0\n");
    let s = spec(&[Metric::Accuracy]);
    assert_eq!(
        labels_error(&text, &s),
        "labels file has duplicate id \"4990\""
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_predictions_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let (set, mut s) = small_labels(dir.path());
        s.want_row_losses = true;
        let one_pass = score_reader(&set, &bytes[..], &s);
        // The file path scores in two halves (always, under test) and rescans on a problem:
        // it must report exactly what one pass does.
        let path = dir.path().join("predictions.csv");
        std::fs::write(&path, &bytes).unwrap();
        let halves = score_predictions(&set, &path, &s);
        match (&one_pass, &halves) {
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.rows, b.rows);
                prop_assert_eq!(&a.public_row_losses, &b.public_row_losses);
            }
            _ => prop_assert!(false, "{one_pass:?} vs {halves:?}"),
        }
        let mut acc = s.clone();
        acc.metrics = vec![Metric::F1Macro];
        let _ = score_reader(&set, &bytes[..], &acc);
    }

    #[test]
    fn the_parser_never_panics_on_csv_like_input(
        rows in proptest::collection::vec(("[abcdz\" ,]{0,3}", "[-0-9.eE,\"naif ]{0,6}"), 0..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (set, s) = small_labels(dir.path());
        let text: String = std::iter::once("id,p\n".to_owned())
            .chain(rows.iter().map(|(id, p)| format!("{id},{p}\n")))
            .collect();
        let one_pass = score_reader(&set, text.as_bytes(), &s).map_err(|e| e.to_string());
        let path = dir.path().join("predictions.csv");
        std::fs::write(&path, &text).unwrap();
        let halves = score_predictions(&set, &path, &s).map_err(|e| e.to_string());
        prop_assert_eq!(one_pass.map(|r| r.rows), halves.map(|r| r.rows));
    }

    #[test]
    fn scores_do_not_depend_on_the_order_of_prediction_rows(seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let (labels, _, s) = split_fixture(dir.path(), 120);
        let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("predictions.csv")).unwrap();
        let mut lines: Vec<&str> = text.lines().skip(1).collect();
        let forward = score_reader(&set, text.as_bytes(), &s).unwrap();
        // Shuffle with the split's own mixer, so the case is reproducible from the seed.
        lines.sort_by_key(|l| crate::scoring::split::hash_id(l.as_bytes(), seed));
        let shuffled = format!("id,p\n{}\n", lines.join("\n"));
        let other = score_reader(&set, shuffled.as_bytes(), &s).unwrap();
        for (metric, value) in &forward.all {
            prop_assert!((other.all[metric] - value).abs() < 1e-12);
            prop_assert!((other.public[metric] - forward.public[metric]).abs() < 1e-12);
        }
    }
}
