//! Boards and ladders on hand-made histories.

use super::*;
use crate::domain::{ReleasePolicy, SubmissionKind, SubmissionState, Verdict};

fn challenge(mode: LeaderboardMode, step: f64) -> Challenge {
    let mut c: Challenge = toml::from_str(
        r#"
id = "c"
data_dir = "d"
[runtime]
image = "img"
[scoring.builtin]
metric = "accuracy"
target_column = "label"
"#,
    )
    .unwrap();
    c.release = ReleasePolicy {
        mode,
        ladder_step: step,
        ..ReleasePolicy::default()
    };
    c
}

fn scored(participant: &str, accuracy: f64) -> Submission {
    scored_split(participant, accuracy, accuracy - 0.01)
}

/// A scored FULL run whose private score is `private`.
fn scored_split(participant: &str, accuracy: f64, private: f64) -> Submission {
    Submission::from_record(crate::domain::SubmissionRecord {
        id: crate::domain::SubmissionId::generate(),
        challenge_id: crate::domain::ChallengeId::parse("c").unwrap(),
        participant_id: crate::domain::ParticipantId::parse(participant).unwrap(),
        owner: "p".into(),
        kind: SubmissionKind::Full,
        state: SubmissionState::Succeeded,
        verdict: Verdict::Scored,
        message: String::new(),
        detail: String::new(),
        public_scores: BTreeMap::from([("accuracy".to_owned(), accuracy)]),
        private_scores: BTreeMap::from([("accuracy".to_owned(), private)]),
        archive_sha256: String::new(),
        created_at: 0,
        started_at: None,
        finished_at: None,
        usage: None,
        attempts: 1,
        idempotency_key: None,
        charged: true,
    })
}

#[test]
fn the_ladder_shows_a_new_score_only_when_it_beats_the_shown_one_by_a_step() {
    let c = challenge(LeaderboardMode::Ladder, 0.01);
    let history = vec![
        scored("a", 0.8012),
        scored("a", 0.8093),
        scored("a", 0.8234),
        scored("a", 0.8290),
    ];
    let released: Vec<f64> = history
        .iter()
        .map(|s| released_full_scores(&c, &history, s, &|_| None)["accuracy"])
        .collect();
    // 0.8093 is not a step above 0.80; 0.8234 is (shown on the step grid); 0.8290 is not.
    assert_eq!(released, [0.8, 0.8, 0.82, 0.82]);
    let board = build(&c, &history, View::Public, &|_| None, &Finals::new());
    assert_eq!(board.entries[0].score, 0.82);
    assert_eq!(board.entries[0].submission_id, history[2].id.to_string());
    // The private board ranks the submission that holds the public entry.
    let private = build(&c, &history, View::Private, &|_| None, &Finals::new());
    assert_eq!(private.entries[0].score, 0.8134);
}

#[test]
fn best_so_far_ranks_participants_and_shares_ranks_on_ties() {
    let c = challenge(LeaderboardMode::BestSoFar, 0.0);
    let history = vec![
        scored("a", 0.9),
        scored("b", 0.95),
        scored("a", 0.7),
        scored("c", 0.9),
    ];
    let board = build(&c, &history, View::Public, &|_| None, &Finals::new());
    let rows: Vec<(u32, &str, f64)> = board
        .entries
        .iter()
        .map(|e| (e.rank, e.participant_id.as_str(), e.score))
        .collect();
    assert_eq!(rows, [(1, "b", 0.95), (2, "a", 0.9), (2, "c", 0.9)]);
    assert_eq!(board.entries[1].submissions, 2);
}

#[test]
fn a_clear_improvement_passes_the_paired_test() {
    let old = vec![1.0f32; 100];
    let mut new = vec![1.0f32; 100];
    for v in new.iter_mut().take(30) {
        *v = 0.0;
    }
    assert!(paired_improvement(&new, &old).is_some());
}

#[test]
fn a_first_parameter_free_score_is_on_the_grid_of_its_standard_error() {
    let c = challenge(LeaderboardMode::LadderParameterFree, 0.0);
    let s = scored("a", 0.8123);
    // 100 rows, 19 wrong: s/√n = 0.0394..., so 0.8123 shows as 0.7890 (20 steps), not
    // at full precision.
    let mut losses = vec![0.0f32; 100];
    for l in losses.iter_mut().take(19) {
        *l = 1.0;
    }
    let losses = std::sync::Arc::new(losses);
    let shown = released_full_scores(&c, std::slice::from_ref(&s), &s, &|_| Some(losses.clone()));
    let step = standard_error(&losses).unwrap();
    assert!((step - 0.03943).abs() < 1e-4, "{step}");
    assert_eq!(shown["accuracy"], round((0.8123 / step).round() * step, 4));
    assert_ne!(shown["accuracy"], 0.8123);
}

#[test]
fn the_same_participant_id_on_two_platforms_is_two_rows() {
    let c = challenge(LeaderboardMode::BestSoFar, 0.0);
    let a = scored("alice", 0.9);
    let mut other = (*scored("alice", 0.7)).clone();
    other.owner = "other-platform".into();
    let b = Submission::from_record(other);
    let board = build(&c, &[a, b], View::Public, &|_| None, &Finals::new());
    let rows: Vec<(&str, &str, f64)> = board
        .entries
        .iter()
        .map(|e| (e.platform.as_str(), e.participant_id.as_str(), e.score))
        .collect();
    assert_eq!(
        rows,
        [("p", "alice", 0.9), ("other-platform", "alice", 0.7)]
    );
}

#[test]
fn noise_does_not_pass_the_paired_test() {
    // Flip a few rows each way: no improvement beyond one standard error.
    let old: Vec<f32> = (0..1000).map(|i| (i % 2) as f32).collect();
    let mut new = old.clone();
    for i in 0..20 {
        new[i * 2] = 1.0 - new[i * 2];
        new[i * 2 + 1] = 1.0 - new[i * 2 + 1];
    }
    new[0] = 0.0;
    assert!(paired_improvement(&new, &old).is_none());
}

#[test]
fn under_final_selection_the_private_board_ranks_the_best_selected_or_the_best_public_n() {
    let mut c = challenge(LeaderboardMode::BestSoFar, 0.0);
    c.release.final_selections = 2;
    let history = vec![
        scored_split("a", 0.90, 0.60), // a's best public: holds the public entry
        scored_split("a", 0.70, 0.95), // a's best private, selected below
        scored_split("a", 0.80, 0.85),
        scored_split("b", 0.80, 0.70),
        scored_split("b", 0.85, 0.75),
        scored_split("b", 0.85, 0.99), // ties b's second best public: later, so not taken
        scored_split("b", 0.60, 0.98),
    ];
    let mut finals = Finals::new();
    finals.insert(
        ("p".into(), "a".into()),
        vec![history[1].id.clone(), history[0].id.clone()],
    );
    let board = build(&c, &history, View::Private, &|_| None, &finals);
    let rows: Vec<(&str, f64, String)> = board
        .entries
        .iter()
        .map(|e| (e.participant_id.as_str(), e.score, e.submission_id.clone()))
        .collect();
    // a selected two: the better private of them counts. b selected none: their two best by
    // public score are the two 0.85s (0.80 and 0.60 are left out, though 0.60 has a better
    // private score), and the better private of those counts.
    assert_eq!(
        rows,
        [
            ("b", 0.99, history[5].id.to_string()),
            ("a", 0.95, history[1].id.to_string()),
        ]
    );
    // With N = 1, b's default is only their earliest best public (0.85, private 0.75).
    c.release.final_selections = 1;
    let board = build(&c, &history, View::Private, &|_| None, &Finals::new());
    let b = board
        .entries
        .iter()
        .find(|e| e.participant_id == "b")
        .unwrap();
    assert_eq!(
        (b.score, b.submission_id.clone()),
        (0.75, history[4].id.to_string())
    );
    // And a's default is their best public (0.90, private 0.60).
    let a = board
        .entries
        .iter()
        .find(|e| e.participant_id == "a")
        .unwrap();
    assert_eq!(a.score, 0.6);
    // Without final selection the public entry's holder ranks, as before.
    c.release.final_selections = 0;
    let board = build(&c, &history, View::Private, &|_| None, &finals);
    let a = board
        .entries
        .iter()
        .find(|e| e.participant_id == "a")
        .unwrap();
    assert_eq!(a.submission_id, history[0].id.to_string());
}
