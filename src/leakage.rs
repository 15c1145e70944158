//! The leakage estimate: how many distinct things one FULL submission can show a
//! submitter, and so how many bits about the private data it can carry at most.
//!
//! A FULL run's code reads private data and chooses what it does; everything a submitter
//! can tell apart about its result is a value that code could have picked. We count three
//! independent choices and multiply them:
//!
//! ```text
//! outcomes = score_values + failure_values      (a score, or one way of not being scored)
//! bits     = log2(outcomes × time_values)
//! ```
//!
//! - `score_values`: released scores after rounding to `score_decimals` over the metric's
//!   released range (bounded metrics over [0, 1]; log loss over [0, 34.54]; rmse and mae
//!   over [0, the target's range], where released values are clamped; r2 over [-1, 1],
//!   clamped; a custom scorer's values over [-10⁶, 10⁶], clamped), and for accuracy no more
//!   than the public rows + 1 fractions it can take; under LADDER the step's grid instead of
//!   the decimals'.
//! - `failure_values`: the verdicts a failure can show: five under FAILURE_DETAIL_VERDICT,
//!   one (NOT_SCORED) otherwise; plus INTERNAL_ERROR for a custom scorer, which predictions
//!   that pass the contract can still make fail.
//! - `time_values`: the release moments a submitter can tell apart: without constant-time
//!   release, the wall time in 100 ms buckets (finer timing exists but drowns in noise);
//!   with it, the fixed steps scoring may overrun into.
//!
//! Pure functions of the challenge and its resolved limits; `crate::audit` adds up what was
//! actually released.

use crate::domain::{Challenge, FailureDetail, LeaderboardMode, ResolvedLimits};
use crate::scoring::Metric;

/// The largest value a custom scorer's released score may take (in absolute value).
pub const CUSTOM_SCORE_BOUND: f64 = 1e6;
/// The resolution at which release moments are counted without constant-time release.
pub const TIME_RESOLUTION_MS: u64 = 100;
/// The largest log loss (probabilities are clipped to 1e-15).
const MAX_LOG_LOSS: f64 = 34.538_776_394_910_684;

/// What one FULL submission can show a submitter, at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakageEstimate {
    /// log2((score_values + failure_values) × time_values).
    pub bits_per_submission: f64,
    /// Distinct released scores.
    pub score_values: u64,
    /// Distinct ways of not being scored shown.
    pub failure_values: u32,
    /// Distinct release moments.
    pub time_values: u64,
}

/// The range a released score of `metric` is clamped to, given the target's range (for
/// regression metrics; `None` when unknown).
pub fn released_range(metric: Option<Metric>, target_range: Option<f64>) -> (f64, f64) {
    match metric {
        None => (-CUSTOM_SCORE_BOUND, CUSTOM_SCORE_BOUND),
        Some(Metric::LogLoss) => (0.0, MAX_LOG_LOSS),
        Some(Metric::Rmse | Metric::Mae) => (
            0.0,
            target_range
                .filter(|r| r.is_finite() && *r > 0.0)
                .unwrap_or(CUSTOM_SCORE_BOUND),
        ),
        Some(Metric::R2) => (-1.0, 1.0),
        Some(_) => (0.0, 1.0),
    }
}

/// The estimate for a challenge under its current release policy and limits.
pub fn estimate(challenge: &Challenge, limits: &ResolvedLimits) -> LeakageEstimate {
    let release = &challenge.release;
    let metric = challenge.scoring.builtin.as_ref().map(|b| b.metric);
    let facts = &challenge.facts;
    let (lo, hi) = released_range(metric, facts.target_range());
    let width = hi - lo;
    let grid = match release.mode {
        LeaderboardMode::Ladder if release.ladder_step > 0.0 => release.ladder_step,
        _ => 10f64.powi(-(release.score_decimals as i32)),
    };
    let mut score_values = (width / grid).floor().min(u64::MAX as f64 / 4.0) as u64 + 1;
    if metric == Some(Metric::Accuracy) && facts.public_rows > 0 {
        score_values = score_values.min(facts.public_rows + 1);
    }
    let mut failure_values = match release.failure_detail {
        FailureDetail::Verdict => 5,
        FailureDetail::NotScored => 1,
    };
    if challenge.scoring.custom.is_some() {
        failure_values += 1;
    }
    let wall_ms = limits.wall_time.0.as_millis() as u64;
    let time_values = if release.constant_time_release {
        // Built-in scoring of a predictions file at the output cap takes seconds; a custom
        // scorer runs once per split, each up to the wall time.
        let scoring_ms = if challenge.scoring.custom.is_some() {
            2 * wall_ms
        } else {
            release.scoring_budget().as_millis() as u64
        };
        let budget = release.scoring_budget().as_millis().max(1) as u64;
        1 + scoring_ms.div_ceil(budget)
    } else {
        (wall_ms / TIME_RESOLUTION_MS).max(1)
    };
    let outcomes = score_values as f64 + failure_values as f64;
    LeakageEstimate {
        bits_per_submission: (outcomes * time_values as f64).log2(),
        score_values,
        failure_values,
        time_values,
    }
}

/// Clamps a released score into its metric's released range.
pub fn clamp(value: f64, metric: Option<Metric>, target_range: Option<f64>) -> f64 {
    let (lo, hi) = released_range(metric, target_range);
    value.clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limits;

    fn digits(extra: &str) -> Challenge {
        let mut c: Challenge = toml::from_str(&format!(
            r#"
id = "digits"
data_dir = "digits"
[runtime]
image = "img"
[scoring.builtin]
metric = "accuracy"
target_column = "label"
{extra}
"#
        ))
        .unwrap();
        c.facts.public_rows = 359;
        c
    }

    fn limits(wall_s: u64) -> ResolvedLimits {
        let mut l = crate::config::default_limits();
        l.wall_time = crate::units::HumanDuration(std::time::Duration::from_secs(wall_s));
        Limits::default().resolve(&l, &crate::config::default_caps())
    }

    #[test]
    fn the_digits_challenge_under_each_policy() {
        // Full verdicts, no constant-time release: 360 accuracies + 5 verdicts, in 100 ms
        // buckets of a 120 s wall time.
        let mut c = digits("");
        c.release.failure_detail = FailureDetail::Verdict;
        let e = estimate(&c, &limits(120));
        assert_eq!(
            (e.score_values, e.failure_values, e.time_values),
            (360, 5, 1200)
        );
        assert!((e.bits_per_submission - (365.0f64 * 1200.0).log2()).abs() < 1e-9);
        // The defaults of a new challenge: NOT_SCORED.
        let e = estimate(&digits(""), &limits(120));
        assert_eq!(e.failure_values, 1);
        // Constant-time release: two release moments (on time, or one step late).
        let mut c = digits("");
        c.release.constant_time_release = true;
        let e = estimate(&c, &limits(120));
        assert_eq!(e.time_values, 2);
        assert!((e.bits_per_submission - (361.0f64 * 2.0).log2()).abs() < 1e-9);
    }

    #[test]
    fn rounding_bounds_the_scores_of_large_test_sets_and_a_ladder_its_grid() {
        let mut c = digits("");
        c.facts.public_rows = 1_000_000;
        c.release.score_decimals = 2;
        assert_eq!(estimate(&c, &limits(60)).score_values, 101);
        c.release.mode = LeaderboardMode::Ladder;
        c.release.ladder_step = 0.05;
        assert_eq!(estimate(&c, &limits(60)).score_values, 21);
    }

    #[test]
    fn unbounded_metrics_are_clamped_to_a_released_range() {
        assert_eq!(clamp(1e308, Some(Metric::Rmse), Some(12.5)), 12.5);
        assert_eq!(clamp(-40.0, Some(Metric::R2), None), -1.0);
        assert_eq!(clamp(0.93, Some(Metric::Accuracy), None), 0.93);
        assert_eq!(clamp(-1e9, None, None), -CUSTOM_SCORE_BOUND);
    }
}
