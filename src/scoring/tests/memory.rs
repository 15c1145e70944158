//! Scoring memory is bounded by the labels, not by the predictions: a hostile predictions file
//! (a million made-up classes) costs the server no more memory than a valid one of the same
//! size.
//!
//! Memory is a property of a whole process, and the test binary runs many tests at once, so
//! the test runs each case in a child process (this same binary, running only this test): the
//! child loads the labels, scores a small file of both kinds once (so the code of both paths is
//! paged in, and only data is measured), resets its peak resident set
//! (`/proc/self/clear_refs`), scores, and prints how far the peak rose above the resident set
//! before scoring.
//!
//! `HOLDOUT_SCORING_MEMORY_ROWS` sets the size (default 2^18 rows, about 15 MiB of
//! predictions; 2^20 rows make the 63 MiB file of the issue). For figures that match a server,
//! run it in release: `cargo test --release --lib scoring::tests::memory -- --nocapture`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::scoring::{Metric, PredictionsError, ScoringSpec, load_labels, score_predictions};

/// Set in the child process to the case it scores ("valid" or "hostile").
const CASE_VAR: &str = "HOLDOUT_SCORING_MEMORY_CASE";
/// Set in the child process to the directory holding the files.
const DIR_VAR: &str = "HOLDOUT_SCORING_MEMORY_DIR";
/// The line the child prints its figure on.
const MARKER: &str = "peak rss growth while scoring (KiB):";
/// Width of every class name, so the valid and the hostile files have the same size.
const CLASS_WIDTH: usize = 55;

fn class_spec() -> ScoringSpec {
    ScoringSpec {
        id_column: "id".into(),
        target_column: "y".into(),
        prediction_column: "p".into(),
        positive_label: None,
        metrics: vec![Metric::F1Macro, Metric::Accuracy],
        threshold: None,
        split: None,
        max_predictions_bytes: 1 << 30,
        want_row_losses: false,
    }
}

/// A class name of [`CLASS_WIDTH`] bytes.
fn class(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:0>width$}", width = CLASS_WIDTH - prefix.len())
}

/// Labels of two classes, a valid predictions file (known classes) and a hostile one of the
/// same size (every row a class the labels lack, each distinct).
fn write_files(dir: &Path, rows: usize) {
    let (mut labels, mut valid, mut hostile, mut warm_up) = (
        String::from("id,y\n"),
        String::from("id,p\n"),
        String::from("id,p\n"),
        String::from("id,p\n"),
    );
    for i in 0..rows {
        let _ = writeln!(labels, "{i},{}", class("known-", i % 2));
        let _ = writeln!(valid, "{i},{}", class("known-", (i / 3) % 2));
        let _ = writeln!(hostile, "{i},{}", class("made-up-", i));
    }
    // Both kinds of row, shuffled, over a few ids: scoring it pages in the code of both paths.
    for i in (0..rows.min(1000)).rev() {
        let _ = writeln!(warm_up, "{i},{}", class(["known-", "made-up-"][i % 2], i));
    }
    assert_eq!(valid.len(), hostile.len());
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
    std::fs::write(dir.join("valid.csv"), valid).unwrap();
    std::fs::write(dir.join("hostile.csv"), hostile).unwrap();
    std::fs::write(dir.join("warm-up.csv"), warm_up).unwrap();
}

/// A `/proc/self/status` figure, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child's side: score one case and print the peak growth.
fn score_one_case(case: &str) {
    let dir = std::path::PathBuf::from(std::env::var(DIR_VAR).unwrap());
    let spec = class_spec();
    let labels = load_labels(&dir.join("labels.csv"), &spec.label_spec().unwrap()).unwrap();
    // It misses most ids, so it is refused, but only after a whole pass.
    let warm_up = score_predictions(&labels, &dir.join("warm-up.csv"), &spec);
    assert!(matches!(warm_up, Err(PredictionsError::MissingIds { .. })));
    // The peak so far is the labels' load: reset it to the current resident set ("5" resets
    // the peak, Linux 4.0 and later), so the peak after scoring measures scoring alone.
    std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset the peak RSS");
    let before = status_kib("VmRSS:");
    let report = score_predictions(&labels, &dir.join(format!("{case}.csv")), &spec).unwrap();
    let peak = status_kib("VmHWM:");
    assert_eq!(report.rows, labels.len());
    println!("{MARKER} {}", peak.saturating_sub(before));
}

/// Runs this test in a child process for `case`; returns its figure in KiB.
fn measure(dir: &Path, case: &str) -> u64 {
    let test = format!(
        "{}::a_hostile_predictions_file_costs_no_more_memory_than_a_valid_one",
        module_path!().split_once("::").unwrap().1
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .env(DIR_VAR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{case}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once(MARKER))
        .unwrap_or_else(|| panic!("{case}: no figure in {stdout}"))
        .1
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_hostile_predictions_file_costs_no_more_memory_than_a_valid_one() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        return score_one_case(&case);
    }
    let rows = std::env::var("HOLDOUT_SCORING_MEMORY_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1 << 18);
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), rows);
    let size = std::fs::metadata(dir.path().join("hostile.csv"))
        .unwrap()
        .len();
    // The kernel keeps resident-set counts per CPU and reports them approximately (to within
    // 64 pages, 256 KiB, here), and noise only adds: each case's figure is its least of three
    // runs, alternating.
    let (mut valid, mut hostile) = (u64::MAX, u64::MAX);
    for _ in 0..3 {
        valid = valid.min(measure(dir.path(), "valid"));
        hostile = hostile.min(measure(dir.path(), "hostile"));
    }
    println!(
        "{rows} rows, {:.1} MiB of predictions: valid {valid} KiB, hostile {hostile} KiB",
        size as f64 / f64::from(1 << 20)
    );
    // The bar, the same memory within 10%, plus the counters' precision. The old
    // pass kept every made-up class by name: 20 times the valid figure at this size.
    assert!(
        hostile <= valid + valid / 10 + 256,
        "a hostile file cost {hostile} KiB, a valid one {valid} KiB"
    );
}
