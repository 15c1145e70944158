//! What a plan gives each kind of run.

use super::*;
use crate::domain::{ChallengeId, NewSubmission, ParticipantId};
use crate::scoring::Metric;

fn challenge(extra: &str) -> Challenge {
    toml::from_str(&format!(
        r#"
id = "c"
data_dir = "digits"
[runtime]
image = "img:1"
command = ["python3", "/submission/main.py"]
env = {{ MODE = "x" }}
[scoring]
public_fraction = 0.25
split_seed = 7
[scoring.builtin]
metric = "accuracy"
target_column = "label"
{extra}
"#
    ))
    .unwrap()
}

fn host() -> HostSettings {
    HostSettings {
        data_root: "/srv/data".into(),
        defaults: crate::config::default_limits(),
        caps: crate::config::default_caps(),
        default_isolation: Isolation::Gvisor,
        instance: "inst".into(),
        output: OutputMode::Directory,
    }
}

fn submission(kind: SubmissionKind) -> Submission {
    let s = Submission::new(NewSubmission {
        id: SubmissionId::generate(),
        challenge_id: ChallengeId::parse("c").unwrap(),
        participant_id: ParticipantId::parse("p").unwrap(),
        owner: "o".into(),
        kind,
        archive_sha256: String::new(),
        created_at: 0,
        idempotency_key: None,
    });
    s.start(1).unwrap().into_next()
}

#[test]
fn a_full_run_sees_the_inputs_and_is_scored_on_both_parts() {
    let c = challenge("");
    let s = submission(SubmissionKind::Full);
    let plan = RunPlan::new(&c, &s, &host()).unwrap();
    assert_eq!(plan.inputs, Path::new("/srv/data/digits/inputs"));
    assert_eq!(plan.labels, Path::new("/srv/data/digits/labels.csv"));
    let ScoringPlan::Builtin(spec) = &plan.scoring else {
        panic!("builtin expected")
    };
    assert_eq!(spec.metrics, [Metric::Accuracy]);
    assert_eq!(spec.prediction_column, "label");
    assert_eq!(
        spec.split,
        Some(Split {
            public_fraction: 0.25,
            seed: 7
        })
    );
    let run = plan.participant_spec(Path::new("/w/sub"), Path::new("/w/out"));
    assert_eq!(run.submission_id, s.id);
    assert_eq!(run.run_name, "a1");
    assert_eq!(run.isolation, Isolation::Gvisor);
    assert_eq!(run.env["HOLDOUT_KIND"], "full");
    assert_eq!(run.env["MODE"], "x");
    let mounts: Vec<(&Path, &str)> = run
        .mounts
        .iter()
        .map(|m| (m.host.as_path(), m.container.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            (Path::new("/w/sub"), SUBMISSION_PATH),
            (Path::new("/srv/data/digits/inputs"), DATA_PATH)
        ]
    );
    assert_eq!(run.limits.wall_time, host().defaults.wall_time.0);
}

#[test]
fn a_smoke_run_sees_only_the_sample_and_has_no_split() {
    let plan = RunPlan::new(&challenge(""), &submission(SubmissionKind::Smoke), &host()).unwrap();
    assert_eq!(plan.inputs, Path::new("/srv/data/digits/sample/inputs"));
    assert_eq!(plan.labels, Path::new("/srv/data/digits/sample/labels.csv"));
    let ScoringPlan::Builtin(spec) = &plan.scoring else {
        panic!("builtin expected")
    };
    assert_eq!(spec.split, None);
    assert!(!spec.want_row_losses);
}

#[test]
fn a_custom_scorer_gets_the_participants_limits_but_a_small_output() {
    let mut c = challenge("");
    c.scoring.builtin = None;
    c.scoring.custom = Some(CustomScorer {
        image: "scorer:1".into(),
        command: vec!["/score".into()],
        primary_metric: "m".into(),
        greater_is_better: true,
        release_messages: false,
    });
    let plan = RunPlan::new(&c, &submission(SubmissionKind::Full), &host()).unwrap();
    let ScoringPlan::Custom(scorer) = &plan.scoring else {
        panic!("custom expected")
    };
    let spec = plan.scorer_spec(
        scorer,
        ScorerSplit::Private,
        Path::new("/w/labels"),
        Path::new("/w/pred"),
        Path::new("/w/out"),
    );
    assert_eq!(spec.image, "scorer:1");
    assert_eq!(spec.run_name, "scorer-private");
    assert_eq!(spec.env["HOLDOUT_SPLIT"], "private");
    assert_eq!(spec.limits.output_bytes, MAX_SCORES_JSON);
    assert_eq!(spec.limits.memory_bytes, plan.run_limits.memory_bytes);
    assert_eq!(spec.mounts[0].container, SCORER_LABELS_PATH);
}

#[test]
fn limits_above_the_caps_are_bounded_by_them() {
    let mut h = host();
    h.caps.pids = 10;
    let mut c = challenge("");
    c.limits.pids = 50;
    let plan = RunPlan::new(&c, &submission(SubmissionKind::Full), &h).unwrap();
    assert_eq!(plan.run_limits.pids, 10);
}
