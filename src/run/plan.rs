//! Planning a run, purely: from a challenge, a submission and the host's settings to
//! everything the run will use — its limits, its archive limits, where its data and labels
//! are on the host, how it is scored, and the [`RunSpec`] of each container (the
//! participant's, and a custom scorer's per split). No I/O happens here, so every decision
//! about what a run gets can be read, and tested, in one place.
//!
//! Sandbox paths (`/submission`, `/data`, `/output`) come from `crate::sandbox::hardening`;
//! host paths of a challenge's data from [`DataLayout`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::archive::ArchiveLimits;
use crate::domain::{
    Challenge, CustomScorer, Isolation, LeaderboardMode, Limits, ResolvedLimits, Submission,
    SubmissionId, SubmissionKind,
};
use crate::sandbox::hardening::{DATA_PATH, SUBMISSION_PATH};
use crate::sandbox::output_fs::OutputMode;
use crate::sandbox::{Mount, RunLimits, RunRole, RunSpec};
use crate::scoring::{ScoringSpec, SpecError, Split};

/// Where a custom scorer finds the split's labels.
pub const SCORER_LABELS_PATH: &str = "/labels";
/// Where a custom scorer finds the participant's predictions (a host-made copy).
pub const SCORER_PREDICTIONS_PATH: &str = "/predictions";
/// The most a custom scorer may write (its `scores.json`).
pub const MAX_SCORES_JSON: u64 = 1 << 20;

/// What planning needs from the server: its data root, the limits it fills in and caps,
/// its default isolation, and the label of its containers.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Challenge data folders live under here.
    pub data_root: PathBuf,
    /// Limits used where a challenge says 0.
    pub defaults: Limits,
    /// The most any run gets.
    pub caps: Limits,
    /// Isolation for challenges that do not choose.
    pub default_isolation: Isolation,
    /// Marks this instance's containers (see `crate::paths::Paths::instance`).
    pub instance: String,
    /// How a run's `/output` is capped.
    pub output: OutputMode,
}

impl HostSettings {
    /// A challenge's limits as its runs get them.
    pub fn limits(&self, challenge: &Challenge) -> ResolvedLimits {
        challenge.resolved_limits(&self.defaults, &self.caps)
    }

    /// The isolation a challenge's runs get.
    pub fn isolation(&self, challenge: &Challenge) -> Isolation {
        challenge
            .runtime
            .isolation
            .unwrap_or(self.default_isolation)
    }
}

/// The host paths of a challenge's data (see the README's "Data layout").
#[derive(Debug, Clone)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    /// The layout of `challenge`'s data folder under `data_root`.
    pub fn of(data_root: &Path, challenge: &Challenge) -> Self {
        Self {
            root: data_root.join(&challenge.data_dir),
        }
    }

    /// The data folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The public sample's folder.
    pub fn sample(&self) -> PathBuf {
        self.root.join("sample")
    }

    /// What a run of `kind` sees at `/data`.
    pub fn inputs(&self, kind: SubmissionKind) -> PathBuf {
        match kind {
            SubmissionKind::Full => self.root.join("inputs"),
            SubmissionKind::Smoke => self.sample().join("inputs"),
        }
    }

    /// What a run of `kind` is scored against.
    pub fn labels(&self, kind: SubmissionKind) -> PathBuf {
        match kind {
            SubmissionKind::Full => self.root.join("labels.csv"),
            SubmissionKind::Smoke => self.sample().join("labels.csv"),
        }
    }

    /// Whether SMOKE runs are possible: the sample has inputs and labels.
    pub fn has_sample(&self) -> bool {
        self.inputs(SubmissionKind::Smoke).is_dir() && self.labels(SubmissionKind::Smoke).is_file()
    }
}

/// A challenge whose stored scoring cannot be planned: a bug or a corrupt row, never the
/// participant's doing.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Neither a built-in metric nor a custom scorer.
    #[error("the challenge names no scorer")]
    NoScorer,
    /// The built-in scoring spec is inconsistent.
    #[error("the challenge's scoring cannot work")]
    Spec(#[source] SpecError),
}

/// How a run's predictions are scored.
#[derive(Debug, Clone)]
pub enum ScoringPlan {
    /// In the server, with the built-in metrics.
    Builtin(ScoringSpec),
    /// By the organiser's scorer, in the sandbox, once per split.
    Custom(CustomScorer),
}

/// The splits a custom scorer runs on, in order, with the labels each one gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScorerSplit {
    /// A SMOKE run: the sample's labels.
    Sample,
    /// A FULL run's public part.
    Public,
    /// A FULL run's private part.
    Private,
}

impl ScorerSplit {
    /// The split's name (`HOLDOUT_SPLIT`, log and folder names).
    pub fn as_str(self) -> &'static str {
        match self {
            ScorerSplit::Sample => "sample",
            ScorerSplit::Public => "public",
            ScorerSplit::Private => "private",
        }
    }

    /// The splits a kind of run is scored on, in the order their scores are reported
    /// (public or sample first).
    pub fn of(kind: SubmissionKind) -> &'static [ScorerSplit] {
        match kind {
            SubmissionKind::Smoke => &[ScorerSplit::Sample],
            SubmissionKind::Full => &[ScorerSplit::Public, ScorerSplit::Private],
        }
    }

    /// Every split, in the order admins read their logs.
    pub const ALL: [ScorerSplit; 3] = [
        ScorerSplit::Sample,
        ScorerSplit::Public,
        ScorerSplit::Private,
    ];
}

/// Everything one run of one submission will use.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The submission.
    pub submission_id: SubmissionId,
    /// FULL or SMOKE.
    pub kind: SubmissionKind,
    /// The attempt this plan is for (names its containers).
    pub attempt: u32,
    /// The challenge's limits, resolved.
    pub limits: ResolvedLimits,
    /// The same, as the sandbox takes them.
    pub run_limits: RunLimits,
    /// Checks applied when the stored archive is extracted again.
    pub archive_limits: ArchiveLimits,
    /// What the run sees at `/data`.
    pub inputs: PathBuf,
    /// What it is scored against.
    pub labels: PathBuf,
    /// How it is scored.
    pub scoring: ScoringPlan,
    /// The public/private split (FULL runs).
    pub split: Split,
    /// The id column of labels and predictions.
    pub id_column: String,
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    isolation: Isolation,
    instance: String,
}

/// The sandbox's view of resolved limits.
pub fn run_limits(l: &ResolvedLimits) -> RunLimits {
    RunLimits {
        wall_time: l.wall_time.0,
        memory_bytes: l.memory_bytes.0,
        cpu_millis: l.cpu_millis,
        pids: l.pids,
        output_bytes: l.output_bytes.0,
        scratch_bytes: l.scratch_bytes.0,
        gpus: l.gpus,
        log_bytes: l.log_bytes.0,
    }
}

/// The checks a stored or uploaded archive gets under a challenge's limits.
pub fn archive_limits(l: &ResolvedLimits) -> ArchiveLimits {
    ArchiveLimits {
        max_extracted_bytes: l.extracted_bytes.0,
        ..ArchiveLimits::default()
    }
}

/// The built-in scoring spec of a challenge for a kind of run, whose predictions may be at
/// most `max_predictions_bytes`.
pub fn scoring_spec(
    challenge: &Challenge,
    kind: SubmissionKind,
    max_predictions_bytes: u64,
) -> Result<ScoringSpec, PlanError> {
    let b = challenge
        .scoring
        .builtin
        .as_ref()
        .ok_or(PlanError::NoScorer)?;
    let spec = ScoringSpec {
        id_column: challenge.scoring.id_column.clone(),
        target_column: b.target_column.clone(),
        prediction_column: if b.prediction_column.is_empty() {
            b.target_column.clone()
        } else {
            b.prediction_column.clone()
        },
        positive_label: (!b.positive_label.is_empty()).then(|| b.positive_label.clone()),
        metrics: vec![b.metric],
        threshold: None,
        split: match kind {
            SubmissionKind::Full => Some(split_of(challenge)),
            SubmissionKind::Smoke => None,
        },
        max_predictions_bytes,
        want_row_losses: kind == SubmissionKind::Full
            && challenge.release.mode == LeaderboardMode::LadderParameterFree,
    };
    spec.label_spec().map_err(PlanError::Spec)?;
    Ok(spec)
}

fn split_of(challenge: &Challenge) -> Split {
    Split {
        public_fraction: challenge.scoring.public_fraction,
        seed: challenge.scoring.split_seed,
    }
}

impl RunPlan {
    /// Plans the current attempt of `s`.
    pub fn new(
        challenge: &Challenge,
        s: &Submission,
        host: &HostSettings,
    ) -> Result<RunPlan, PlanError> {
        let limits = host.limits(challenge);
        let run_limits = run_limits(&limits);
        let layout = DataLayout::of(&host.data_root, challenge);
        let scoring = match (&challenge.scoring.builtin, &challenge.scoring.custom) {
            (_, Some(custom)) => ScoringPlan::Custom(custom.clone()),
            (Some(_), None) => {
                ScoringPlan::Builtin(scoring_spec(challenge, s.kind, run_limits.output_bytes)?)
            }
            (None, None) => return Err(PlanError::NoScorer),
        };
        let mut env = challenge.runtime.env.clone();
        env.insert("HOLDOUT_KIND".into(), s.kind.as_str().into());
        Ok(RunPlan {
            submission_id: s.id.clone(),
            kind: s.kind,
            attempt: s.attempts,
            archive_limits: archive_limits(&limits),
            limits,
            run_limits,
            inputs: layout.inputs(s.kind),
            labels: layout.labels(s.kind),
            scoring,
            split: split_of(challenge),
            id_column: challenge.scoring.id_column.clone(),
            image: challenge.runtime.image.clone(),
            command: challenge.runtime.command.clone(),
            env,
            isolation: host.isolation(challenge),
            instance: host.instance.clone(),
        })
    }

    /// The one builder of a container spec for this submission.
    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        role: RunRole,
        run_name: String,
        image: &str,
        command: &[String],
        env: BTreeMap<String, String>,
        mounts: Vec<Mount>,
        output_dir: &Path,
        limits: RunLimits,
    ) -> RunSpec {
        RunSpec {
            submission_id: self.submission_id.clone(),
            run_name,
            role,
            instance: self.instance.clone(),
            image: image.to_owned(),
            command: command.to_vec(),
            env,
            isolation: self.isolation,
            mounts,
            output_dir: output_dir.to_owned(),
            limits,
        }
    }

    /// The participant's container: the code read-only at `/submission`, the inputs
    /// read-only at `/data`, `output_dir` writable at `/output`.
    pub fn participant_spec(&self, submission_dir: &Path, output_dir: &Path) -> RunSpec {
        self.spec(
            RunRole::Participant,
            format!("a{}", self.attempt),
            &self.image,
            &self.command,
            self.env.clone(),
            vec![
                Mount::read_only(submission_dir, SUBMISSION_PATH),
                Mount::read_only(&self.inputs, DATA_PATH),
            ],
            output_dir,
            self.run_limits.clone(),
        )
    }

    /// A custom scorer's container for one split: that split's labels read-only at
    /// [`SCORER_LABELS_PATH`], the copied predictions read-only at
    /// [`SCORER_PREDICTIONS_PATH`], and an `/output` of at most [`MAX_SCORES_JSON`] bytes.
    pub fn scorer_spec(
        &self,
        scorer: &CustomScorer,
        split: ScorerSplit,
        labels_dir: &Path,
        predictions_dir: &Path,
        output_dir: &Path,
    ) -> RunSpec {
        self.spec(
            RunRole::Scorer,
            format!("scorer-{}", split.as_str()),
            &scorer.image,
            &scorer.command,
            BTreeMap::from([("HOLDOUT_SPLIT".to_owned(), split.as_str().to_owned())]),
            vec![
                Mount::read_only(labels_dir, SCORER_LABELS_PATH),
                Mount::read_only(predictions_dir, SCORER_PREDICTIONS_PATH),
            ],
            output_dir,
            RunLimits {
                output_bytes: MAX_SCORES_JSON,
                ..self.run_limits.clone()
            },
        )
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
