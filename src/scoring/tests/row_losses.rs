//! Per-row losses for the parameter-free Ladder: their values, when they are given, and their
//! order (the labels', whatever the predictions' order).
use crate::scoring::tests::{score_texts, spec, split_fixture};
use crate::scoring::{Metric, load_labels, score_predictions, score_reader};

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
