//! Fuzzes the predictions parser: arbitrary bytes as `predictions.csv` must yield a score or
//! a `PredictionsError`, never a panic, a hang or unbounded memory.
//!
//! Run (needs nightly): `cargo +nightly fuzz run predictions -- -max_total_time=60`
#![no_main]

use std::sync::OnceLock;

use holdout::scoring::{LabelSet, Metric, ScoringSpec, Split, load_labels, score_reader};
use libfuzzer_sys::fuzz_target;

fn spec(metrics: Vec<Metric>, threshold: Option<f64>) -> ScoringSpec {
    ScoringSpec {
        id_column: "id".into(),
        target_column: "y".into(),
        prediction_column: "p".into(),
        positive_label: Some("1".into()),
        metrics,
        threshold,
        split: Some(Split {
            public_fraction: 0.5,
            seed: 1,
        }),
        max_predictions_bytes: 1 << 16,
        want_row_losses: false,
    }
}

/// Labels shared by every iteration, loaded once from a file written to a temp dir.
fn labels(spec: &ScoringSpec, name: &str, cell: &'static OnceLock<LabelSet>) -> &'static LabelSet {
    cell.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("holdout-fuzz-{}-{name}.csv", std::process::id()));
        let body: String = (0..64).map(|i| format!("{i},{}\n", i % 2)).collect();
        std::fs::write(&path, format!("id,y\n{body}")).unwrap();
        let set = load_labels(&path, &spec.label_spec().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        set
    })
}

fuzz_target!(|data: &[u8]| {
    static BINARY: OnceLock<LabelSet> = OnceLock::new();
    static CLASSES: OnceLock<LabelSet> = OnceLock::new();
    let binary = spec(
        vec![Metric::RocAuc, Metric::LogLoss, Metric::Accuracy],
        Some(0.5),
    );
    let _ = score_reader(labels(&binary, "binary", &BINARY), data, &binary);
    let classes = spec(vec![Metric::F1Macro, Metric::BalancedAccuracy], None);
    let _ = score_reader(labels(&classes, "classes", &CLASSES), data, &classes);
});
