//! A challenge: where its data is, what runs, how it is scored, what may be released.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ChallengeId, UnixMillis};
use crate::sandbox::Isolation;
use crate::units::{ByteSize, HumanDuration};

/// A challenge as defined by an admin and stored by the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Stable id, `[a-z0-9][a-z0-9-]{0,63}`.
    pub id: ChallengeId,
    /// Human title.
    #[serde(default)]
    pub title: String,
    /// Open or closed.
    #[serde(default)]
    pub state: ChallengeState,
    /// What runs.
    pub runtime: Runtime,
    /// Data folder, relative to the server's data root.
    pub data_dir: String,
    /// How predictions are scored.
    pub scoring: Scoring,
    /// Limits; zero fields mean the server's default.
    #[serde(default)]
    pub limits: Limits,
    /// What may be released to submitters.
    #[serde(default)]
    pub release: ReleasePolicy,
    /// Submissions per participant per UTC day.
    #[serde(default)]
    pub quota: Quota,
    /// When it was created (set by the server).
    #[serde(default)]
    pub created_at: UnixMillis,
    /// When it was closed (set by the server).
    #[serde(default)]
    pub closed_at: Option<UnixMillis>,
}

/// Whether a challenge accepts submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeState {
    /// Accepting submissions.
    #[default]
    Open,
    /// No new submissions; the private leaderboard is readable by submitters.
    Closed,
}

/// The participant's runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Image present on the engine.
    pub image: String,
    /// Command to run, e.g. `["python3", "/submission/main.py"]`.
    #[serde(default)]
    pub command: Vec<String>,
    /// None = the server's default isolation.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// Extra environment; no secrets belong here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// How a challenge scores predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// A built-in metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinMetric>,
    /// The organiser's own scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomScorer>,
    /// Id column in labels.csv and predictions.csv.
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Share of label rows behind the public leaderboard, in (0, 1).
    #[serde(default = "default_public_fraction")]
    pub public_fraction: f64,
    /// Seed of the public/private split.
    #[serde(default)]
    pub split_seed: u64,
}

fn default_id_column() -> String {
    "id".to_owned()
}

fn default_public_fraction() -> f64 {
    0.5
}

/// A built-in metric and its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinMetric {
    /// The metric's name: accuracy, balanced_accuracy, f1_macro, roc_auc, log_loss, rmse,
    /// mae, r2.
    pub metric: String,
    /// Target column in labels.csv.
    pub target_column: String,
    /// Column in predictions.csv; empty = target_column.
    #[serde(default)]
    pub prediction_column: String,
    /// Positive class for binary metrics.
    #[serde(default)]
    pub positive_label: String,
}

/// An organiser's scoring program, run in the same sandbox as participants' code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomScorer {
    /// Scorer image.
    pub image: String,
    /// Scorer command.
    #[serde(default)]
    pub command: Vec<String>,
    /// The key of scores.json that ranks the leaderboard.
    pub primary_metric: String,
    /// Direction of the primary metric.
    #[serde(default)]
    pub greater_is_better: bool,
    /// Whether the scorer's rejection text may reach the participant of a FULL run.
    #[serde(default)]
    pub release_messages: bool,
}

/// Resource limits. Zero means "the server's default"; every value is checked against the
/// server's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall time before our timer kills the run.
    pub wall_time: HumanDuration,
    /// RAM + tmpfs; no swap.
    pub memory_bytes: ByteSize,
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
    /// Processes and threads.
    pub pids: u32,
    /// Everything under /output.
    pub output_bytes: ByteSize,
    /// /tmp.
    pub scratch_bytes: ByteSize,
    /// GPUs.
    pub gpus: u32,
    /// Submitted archive, compressed.
    pub archive_bytes: ByteSize,
    /// Submitted archive, extracted.
    pub extracted_bytes: ByteSize,
    /// stdout + stderr kept per run.
    pub log_bytes: ByteSize,
    /// Runs of this challenge at once.
    pub concurrency: u32,
}

impl Limits {
    /// Each zero field replaced by the default's value.
    pub fn or_defaults(&self, d: &Limits) -> Limits {
        fn pick<T: PartialEq + Default + Copy>(v: T, d: T) -> T {
            if v == T::default() { d } else { v }
        }
        Limits {
            wall_time: pick(self.wall_time, d.wall_time),
            memory_bytes: pick(self.memory_bytes, d.memory_bytes),
            cpu_millis: pick(self.cpu_millis, d.cpu_millis),
            pids: pick(self.pids, d.pids),
            output_bytes: pick(self.output_bytes, d.output_bytes),
            scratch_bytes: pick(self.scratch_bytes, d.scratch_bytes),
            gpus: pick(self.gpus, d.gpus),
            archive_bytes: pick(self.archive_bytes, d.archive_bytes),
            extracted_bytes: pick(self.extracted_bytes, d.extracted_bytes),
            log_bytes: pick(self.log_bytes, d.log_bytes),
            concurrency: pick(self.concurrency, d.concurrency),
        }
    }

    /// The names of fields above `caps`, with both values, for a validation message.
    pub fn over_caps(&self, caps: &Limits) -> Vec<String> {
        let mut over = Vec::new();
        let mut check = |name: &str, v: u128, cap: u128, show: &dyn Fn(u128) -> String| {
            if v > cap {
                over.push(format!(
                    "limits.{name} {} is over the server's cap of {}",
                    show(v),
                    show(cap)
                ));
            }
        };
        let bytes = |v: u128| crate::units::format_bytes(v as u64);
        let plain = |v: u128| v.to_string();
        let dur =
            |v: u128| crate::units::format_duration(std::time::Duration::from_millis(v as u64));
        check(
            "wall_time",
            self.wall_time.0.as_millis(),
            caps.wall_time.0.as_millis(),
            &dur,
        );
        check(
            "memory_bytes",
            self.memory_bytes.0.into(),
            caps.memory_bytes.0.into(),
            &bytes,
        );
        check(
            "cpu_millis",
            self.cpu_millis.into(),
            caps.cpu_millis.into(),
            &plain,
        );
        check("pids", self.pids.into(), caps.pids.into(), &plain);
        check(
            "output_bytes",
            self.output_bytes.0.into(),
            caps.output_bytes.0.into(),
            &bytes,
        );
        check(
            "scratch_bytes",
            self.scratch_bytes.0.into(),
            caps.scratch_bytes.0.into(),
            &bytes,
        );
        check("gpus", self.gpus.into(), caps.gpus.into(), &plain);
        check(
            "archive_bytes",
            self.archive_bytes.0.into(),
            caps.archive_bytes.0.into(),
            &bytes,
        );
        check(
            "extracted_bytes",
            self.extracted_bytes.0.into(),
            caps.extracted_bytes.0.into(),
            &bytes,
        );
        check(
            "log_bytes",
            self.log_bytes.0.into(),
            caps.log_bytes.0.into(),
            &bytes,
        );
        check(
            "concurrency",
            self.concurrency.into(),
            caps.concurrency.into(),
            &plain,
        );
        over
    }
}

/// What may be released to submitters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReleasePolicy {
    /// Released scores are rounded to this many decimals (0 in a request = 4).
    pub score_decimals: u32,
    /// Leaderboard mode.
    pub mode: LeaderboardMode,
    /// LADDER only.
    pub ladder_step: f64,
    /// FULL results are held until the wall-time limit has passed since start.
    pub constant_time_release: bool,
}

impl Default for ReleasePolicy {
    fn default() -> Self {
        Self {
            score_decimals: 4,
            mode: LeaderboardMode::BestSoFar,
            ladder_step: 0.0,
            constant_time_release: false,
        }
    }
}

/// Public leaderboard modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderboardMode {
    /// Each participant's best public score.
    #[default]
    BestSoFar,
    /// Blum & Hardt's Ladder with a fixed step.
    Ladder,
    /// The Ladder with the step from a paired t-test.
    LadderParameterFree,
}

/// Per participant per UTC day. Zero means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// FULL submissions per day.
    pub full_per_day: u32,
    /// SMOKE submissions per day.
    pub smoke_per_day: u32,
    /// Whether failed runs count; INTERNAL_ERROR never does.
    pub count_failed: bool,
}

impl Challenge {
    /// The metric that ranks the leaderboard and its direction.
    pub fn primary_metric(&self) -> (String, bool) {
        if let Some(custom) = &self.scoring.custom {
            (custom.primary_metric.clone(), custom.greater_is_better)
        } else if let Some(b) = &self.scoring.builtin {
            let greater = crate::scoring::Metric::from_name(&b.metric)
                .map(|m| m.greater_is_better())
                .unwrap_or(true);
            (b.metric.clone(), greater)
        } else {
            (String::new(), true)
        }
    }
}
