//! Every score is finite: predictions that would overflow a metric are refused naming only the
//! metric, labels on which r2 is undefined are refused when they load, and row losses are
//! never infinite.

use crate::scoring::split::split_position;
use crate::scoring::tests::{labels_error, spec, write_texts};
use crate::scoring::{
    LabelsError, Metric, PredictionsError, ScoreReport, ScoringSpec, Split, load_labels,
    score_predictions, score_reader,
};

const VALUES: &str = "id,y\nk1,1.5\nk2,-2\nk3,0\nk4,7\n";

fn value_spec(metric: Metric) -> ScoringSpec {
    let mut s = spec(&[metric]);
    s.prediction_column = "y".into();
    s.want_row_losses = true;
    s
}

/// Scores `predictions` against [`VALUES`] both ways (one pass, and the file path that reads
/// two halves under test); both must agree.
fn score_values(predictions: &str, s: &ScoringSpec) -> Result<ScoreReport, PredictionsError> {
    let dir = tempfile::tempdir().unwrap();
    let (labels, path) = write_texts(dir.path(), VALUES, predictions);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let one_pass = score_reader(&set, predictions.as_bytes(), s);
    let halves = score_predictions(&set, &path, s);
    assert_eq!(
        one_pass.as_ref().map_err(ToString::to_string).err(),
        halves.as_ref().map_err(ToString::to_string).err()
    );
    halves
}

/// A split of half the rows whose seed puts `public` of `ids` in the public part.
fn split_with(ids: &[&str], public: usize) -> Split {
    let seed = (0u64..)
        .find(|&seed| {
            let count = ids
                .iter()
                .filter(|id| split_position(id.as_bytes(), seed) < 0.5);
            count.count() == public
        })
        .unwrap();
    Split {
        public_fraction: 0.5,
        seed,
    }
}

#[test]
fn predictions_that_overflow_a_regression_metric_are_refused_naming_only_the_metric() {
    let huge = "id,y\nk1,1e308\nk2,1e308\nk3,-1e308\nk4,1e308\n";
    for metric in [Metric::Rmse, Metric::Mae, Metric::R2] {
        let mut s = value_spec(metric);
        for split in [None, Some(split_with(&["k1", "k2", "k3", "k4"], 2))] {
            s.split = split;
            let err = score_values(huge, &s).unwrap_err();
            assert!(
                matches!(err, PredictionsError::NonFiniteMetric { metric: m } if m == metric),
                "{err:?}"
            );
            assert!(err.is_participant_fault());
            assert_eq!(
                err.to_string(),
                format!(
                    "predictions.csv: {metric} cannot be computed from these predictions (a value is too large)"
                )
            );
        }
    }
}

#[test]
fn a_message_about_an_overflow_names_no_value_id_line_or_part() {
    let err = score_values(
        "id,y\nk1,1e308\nk2,0\nk3,-1e308\nk4,1\n",
        &value_spec(Metric::Rmse),
    )
    .unwrap_err()
    .to_string();
    for secret in [
        "k1", "k3", "1e308", "1.5", "line", "public", "private", "part",
    ] {
        assert!(!err.contains(secret), "{err:?} mentions {secret}");
    }
}

#[test]
fn huge_but_finite_predictions_still_score_with_finite_row_losses() {
    let huge = "id,y\nk1,1e150\nk2,-2\nk3,1e20\nk4,7\n";
    for metric in [Metric::Rmse, Metric::Mae, Metric::R2] {
        let report = score_values(huge, &value_spec(metric)).unwrap();
        for score in report.all.values().chain(report.public.values()) {
            assert!(score.is_finite(), "{metric}: {report:?}");
        }
        let losses = report.public_row_losses.unwrap();
        assert!(losses.iter().all(|l| l.is_finite()), "{metric}: {losses:?}");
        // k1's squared (or absolute) error is past f32's range: it is kept as f32::MAX.
        assert_eq!(losses[0], f32::MAX, "{metric}");
        assert_eq!(losses[1], 0.0, "{metric}");
    }
    let rmse = score_values(huge, &value_spec(Metric::Rmse)).unwrap();
    assert!((rmse.all["rmse"] - 1e150 / 2.0).abs() <= 1e135);
}

#[test]
fn r2_labels_with_a_part_of_one_row_are_refused_when_they_load() {
    let r2 = spec(&[Metric::R2]);
    assert_eq!(
        labels_error("id,y\n1,2.5\n", &r2),
        "r2 is undefined on these labels: the labels have a single row (r2 needs at least 2)"
    );
    let text = "id,y\na,1\nb,2\nc,4\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, text).unwrap();
    for (public, alone) in [(1, "public"), (2, "private")] {
        let mut s = r2.clone();
        s.split = Some(split_with(&["a", "b", "c"], public));
        assert_eq!(
            labels_error(text, &s),
            format!(
                "r2 is undefined on these labels: the {alone} part has a single row (r2 needs at least 2 in each part); change public_fraction or split_seed"
            )
        );
        // The other regression metrics are defined on one row: the same labels load for them.
        s.metrics = vec![Metric::Rmse, Metric::Mae];
        assert!(load_labels(&path, &s.label_spec().unwrap()).is_ok());
    }
}

#[test]
fn r2_labels_whose_sum_of_squares_overflows_are_refused_when_they_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, "id,y\n1,1e308\n2,-1e308\n3,0\n").unwrap();
    let err = load_labels(&path, &spec(&[Metric::R2]).label_spec().unwrap()).unwrap_err();
    assert!(matches!(err, LabelsError::R2Undefined { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "r2 is undefined on these labels: the targets are so far apart that their sum of squares overflows"
    );
}
