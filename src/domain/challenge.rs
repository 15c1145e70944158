//! A challenge: where its data is, what runs, how it is scored, what may be released.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::{ChallengeId, Limits, UnixMillis, Verdict};
use crate::prepare::Finding;
pub use crate::prepare::Preparation;
use crate::scoring::Metric;
use crate::units::HumanDuration;

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
    /// When it starts accepting submissions; `None` = from creation (RFC 3339 in files).
    #[serde(
        default,
        with = "super::schedule::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub opens_at: Option<UnixMillis>,
    /// When the server closes it by itself; `None` = only CloseChallenge does (RFC 3339 in
    /// files).
    #[serde(
        default,
        with = "super::schedule::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub closes_at: Option<UnixMillis>,
    /// What the server read from its labels when it validated them (set by the server).
    #[serde(default)]
    pub facts: DataFacts,
    /// The settings of the preparation check: the `[preparation]` table of a challenge file.
    #[serde(default)]
    pub preparation: Preparation,
}

/// What the server learned of a challenge's labels when it validated them: admin-only,
/// used to bound what a release can carry (`crate::leakage`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataFacts {
    /// Label rows in the public part.
    pub public_rows: u64,
    /// Label rows in the private part.
    pub private_rows: u64,
    /// Smallest target value (regression metrics).
    pub target_min: Option<f64>,
    /// Largest target value (regression metrics).
    pub target_max: Option<f64>,
    /// Digest of the data folder as validated (`crate::datadir::digest`); an execution
    /// worker whose copy digests otherwise refuses the challenge. Empty for challenges
    /// stored before digests were kept.
    pub data_digest: String,
    /// What the preparation check found when it last ran.
    pub preparation: PreparationFacts,
}

/// What the server's preparation check found when it last ran: admin-only like the rest of
/// the facts. Never an error (errors refuse the challenge); the warnings are kept so an
/// admin sees them on the challenge, the card is kept aside in the store (it is larger).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreparationFacts {
    /// The digest of the data folder the check ran on; empty when it never ran (challenges
    /// stored before it did). A different digest at an update runs it again.
    pub data_digest: String,
    /// Error findings (0 once stored).
    pub errors: u64,
    /// Warning findings.
    pub warnings: u64,
    /// Info findings.
    pub infos: u64,
    /// The warnings themselves, at most [`PreparationFacts::MAX_KEPT`]: counts and names,
    /// never a value from the data.
    pub findings: Vec<Finding>,
    /// The name of the stored card (`<challenge id>.<sha-256 of the card>.json`, a
    /// `BlobKind::Card`); named by its content so the body always points at its own card,
    /// whichever replica wrote last.
    pub card: String,
}

impl PreparationFacts {
    /// Most warnings kept on the challenge; the card keeps them all.
    pub const MAX_KEPT: usize = 200;
}

impl DataFacts {
    /// The target's range (largest − smallest), when known.
    pub fn target_range(&self) -> Option<f64> {
        Some(self.target_max? - self.target_min?)
    }
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

impl ChallengeState {
    /// The name stored (and matched on by the store's compare-and-set updates).
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Open => "open",
            ChallengeState::Closed => "closed",
        }
    }
}

/// Which kernel boundary a run gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces, cgroups and seccomp under the engine's default runtime.
    Runc,
    /// gVisor's `runsc`: a user-space kernel between the code and the host.
    Gvisor,
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
    /// The engine's id of `image` (`sha256:...`) the organiser approved, as printed by
    /// `holdout image extend`; empty = not pinned. When set, the image on the engine must
    /// have exactly this id (`crate::sandbox::Backend::image_id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_digest: String,
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
    /// The metric (named in files as accuracy, balanced_accuracy, f1_macro, roc_auc,
    /// log_loss, rmse, mae, r2).
    pub metric: Metric,
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
    /// FULL results are held until a fixed deadline (see [`ReleasePolicy::release_at`]), and
    /// the run keeps its slot until then.
    pub constant_time_release: bool,
    /// What a submitter sees of a FULL run that was not scored.
    pub failure_detail: FailureDetail,
    /// Under constant-time release, the time allowed for scoring after the wall-time limit
    /// (and the step of later release times); 0 = [`DEFAULT_SCORING_BUDGET`].
    pub scoring_budget: HumanDuration,
    /// How many scored FULL submissions each participant may select for the final
    /// (private) ranking; 0 = no selection (the public entry's holder is ranked).
    pub final_selections: u32,
}

/// The scoring budget when a challenge leaves it at 0.
pub const DEFAULT_SCORING_BUDGET: Duration = Duration::from_secs(30);

impl Default for ReleasePolicy {
    fn default() -> Self {
        Self {
            score_decimals: 4,
            mode: LeaderboardMode::BestSoFar,
            ladder_step: 0.0,
            constant_time_release: false,
            failure_detail: FailureDetail::NotScored,
            scoring_budget: HumanDuration(Duration::ZERO),
            final_selections: 0,
        }
    }
}

impl ReleasePolicy {
    /// The scoring budget in effect.
    pub fn scoring_budget(&self) -> Duration {
        if self.scoring_budget.0.is_zero() {
            DEFAULT_SCORING_BUDGET
        } else {
            self.scoring_budget.0
        }
    }

    /// Under constant-time release, when a FULL run that started at `started_at` and
    /// reached its end at `finished_at` may be shown: the first of the fixed steps
    /// `started_at + wall_time + k × scoring_budget` (k ≥ 1) at or after `finished_at`. So
    /// when it shows depends on when it started and, only through k, on how long scoring
    /// overran; never on when the code exited.
    pub fn release_at(
        &self,
        started_at: UnixMillis,
        finished_at: UnixMillis,
        wall_time: Duration,
    ) -> UnixMillis {
        let budget = self.scoring_budget().as_millis().max(1) as i64;
        let first = started_at + wall_time.as_millis() as i64 + budget;
        if finished_at <= first {
            first
        } else {
            let late = finished_at - first;
            first + budget * ((late + budget - 1) / budget)
        }
    }
}

impl ReleasePolicy {
    /// Under constant-time release, when ended FULL run `s` may be shown (and frees its
    /// slot); `None` when nothing is held: no constant-time release, a SMOKE run, a run that
    /// never started, or one that has not ended yet.
    pub fn deadline_of(&self, s: &super::Submission, wall_time: Duration) -> Option<UnixMillis> {
        if !self.constant_time_release
            || s.kind != super::SubmissionKind::Full
            || !s.state.is_terminal()
        {
            return None;
        }
        let started = s.started_at?;
        Some(self.release_at(started, s.finished_at.unwrap_or(started), wall_time))
    }
}

/// How much of a FULL run's failure reaches a submitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureDetail {
    /// The exact verdict (TIME_LIMIT_EXCEEDED, RUNTIME_ERROR, ...): about 2.6 more bits per
    /// submission that the code can choose from private data.
    Verdict,
    /// Every failure shows as NOT_SCORED (the default for a new challenge).
    #[default]
    NotScored,
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

/// Per participant (of a platform) per UTC day. Zero means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// FULL submissions per day.
    pub full_per_day: u32,
    /// SMOKE submissions per day.
    pub smoke_per_day: u32,
    /// Whether failed runs (and cancelled FULL runs that had started) count; INTERNAL_ERROR
    /// never does. True unless the challenge says otherwise.
    pub count_failed: bool,
    /// FULL submissions per platform per day, all its participants together (0 = no cap).
    pub platform_full_per_day: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            full_per_day: 0,
            smoke_per_day: 0,
            count_failed: true,
            platform_full_per_day: 0,
        }
    }
}

impl Quota {
    /// Whether a run that ended with `verdict` counts against the participant's quota: a
    /// scored run always, a run the code failed when the challenge counts failed runs, a
    /// cancelled run or the service's own failure never.
    pub fn charges(&self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Scored => true,
            Verdict::InternalError | Verdict::Cancelled | Verdict::Unspecified => false,
            _ => self.count_failed,
        }
    }
}

impl Challenge {
    /// The metric that ranks the leaderboard and its direction.
    pub fn primary_metric(&self) -> (String, bool) {
        if let Some(custom) = &self.scoring.custom {
            (custom.primary_metric.clone(), custom.greater_is_better)
        } else if let Some(b) = &self.scoring.builtin {
            (b.metric.name().to_owned(), b.metric.greater_is_better())
        } else {
            (String::new(), true)
        }
    }

    /// The limits its runs get under the server's defaults and caps.
    pub fn resolved_limits(&self, defaults: &Limits, caps: &Limits) -> super::ResolvedLimits {
        self.limits.resolve(defaults, caps)
    }
}
