//! Property tests: the parser never panics, the two-halves path agrees with one pass, and
//! scores do not depend on the order of prediction rows.
use proptest::prelude::*;

use crate::scoring::tests::{small_labels, split_fixture};
use crate::scoring::{Metric, load_labels, score_predictions, score_reader};

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
