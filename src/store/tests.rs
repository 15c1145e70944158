use std::collections::BTreeMap;

use super::*;
use crate::domain::*;

fn challenge(id: &str) -> Challenge {
    toml::from_str(&format!(
        r#"
id = "{id}"
data_dir = "d"
[runtime]
image = "img"
[scoring]
[scoring.builtin]
metric = "accuracy"
target_column = "label"
"#
    ))
    .unwrap()
}

fn submission(owner: &str, participant: &str, key: Option<&str>) -> Submission {
    Submission {
        id: SubmissionId::generate(),
        challenge_id: ChallengeId::parse("c").unwrap(),
        participant_id: ParticipantId::parse(participant).unwrap(),
        owner: owner.into(),
        kind: SubmissionKind::Full,
        state: SubmissionState::Queued,
        verdict: Verdict::Unspecified,
        message: String::new(),
        detail: String::new(),
        public_scores: BTreeMap::new(),
        private_scores: BTreeMap::new(),
        archive_sha256: "ab".repeat(32),
        created_at: 1_000,
        started_at: None,
        finished_at: None,
        usage: None,
        attempts: 0,
        idempotency_key: key.map(str::to_owned),
        charged: true,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

const OPEN: Admission = Admission {
    quota: 0,
    count_failed: false,
    day_start: 0,
    max_queued: 1000,
};

#[tokio::test]
async fn a_submission_round_trips_through_the_database() {
    let (_dir, store) = open();
    assert!(store.insert_challenge(challenge("c")).await.unwrap());
    assert!(
        !store.insert_challenge(challenge("c")).await.unwrap(),
        "a taken id is refused"
    );
    let mut s = submission("p", "alice", None);
    s.public_scores.insert("accuracy".into(), 0.25);
    s.usage = Some(Usage {
        wall_time: std::time::Duration::from_millis(1500),
        ..Default::default()
    });
    assert!(matches!(
        store.insert_submission(s.clone(), OPEN).await.unwrap(),
        InsertOutcome::Inserted(_)
    ));
    assert_eq!(store.get_submission(&s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn a_state_change_applies_only_from_the_expected_state() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let s = submission("p", "alice", None);
    store.insert_submission(s.clone(), OPEN).await.unwrap();
    let mut cancelled = s.clone();
    cancelled.state = SubmissionState::Cancelled;
    assert!(
        store
            .update_submission(cancelled, SubmissionState::Queued)
            .await
            .unwrap()
    );
    let mut running = s.clone();
    running.state = SubmissionState::Running;
    assert!(
        !store
            .update_submission(running, SubmissionState::Queued)
            .await
            .unwrap(),
        "a cancel is never overwritten"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_submission() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let first = submission("p", "alice", Some("k1"));
    store.insert_submission(first.clone(), OPEN).await.unwrap();
    match store
        .insert_submission(submission("p", "alice", Some("k1")), OPEN)
        .await
        .unwrap()
    {
        InsertOutcome::Existing(s) => assert_eq!(s.id, first.id),
        other => panic!("{other:?}"),
    }
    // Another owner may use the same key.
    assert!(matches!(
        store
            .insert_submission(submission("q", "alice", Some("k1")), OPEN)
            .await
            .unwrap(),
        InsertOutcome::Inserted(_)
    ));
}

#[tokio::test]
async fn parallel_inserts_at_the_quota_never_get_one_more_through() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let admission = Admission { quota: 3, ..OPEN };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_submission(submission("p", "alice", None), admission)
                .await
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        if matches!(t.await.unwrap().unwrap(), InsertOutcome::Inserted(_)) {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 3);
}

#[tokio::test]
async fn the_queue_cap_refuses_more_queued_submissions() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let admission = Admission {
        max_queued: 2,
        ..OPEN
    };
    for _ in 0..2 {
        store
            .insert_submission(submission("p", "a", None), admission)
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .insert_submission(submission("p", "b", None), admission)
            .await
            .unwrap(),
        InsertOutcome::QueueFull { max_queued: 2 }
    ));
}

#[tokio::test]
async fn data_survives_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let s = submission("p", "alice", None);
    {
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.insert_challenge(challenge("c")).await.unwrap();
        store.insert_submission(s.clone(), OPEN).await.unwrap();
    }
    let store = Store::open(&dir.path().join("db")).unwrap();
    assert_eq!(store.get_submission(&s.id).await.unwrap(), Some(s));
    assert_eq!(
        store
            .list_challenges(String::new(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
