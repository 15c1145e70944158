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
    Submission::new(NewSubmission {
        id: SubmissionId::generate(),
        challenge_id: ChallengeId::parse("c").unwrap(),
        participant_id: ParticipantId::parse(participant).unwrap(),
        owner: owner.into(),
        kind: SubmissionKind::Full,
        archive_sha256: "ab".repeat(32),
        created_at: 1_000,
        idempotency_key: key.map(str::to_owned),
    })
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

const OPEN: Admission = Admission {
    quota: 0,
    platform_quota: 0,
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
    let s = submission("p", "alice", None);
    assert!(matches!(
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap(),
        InsertOutcome::Inserted(_)
    ));
    assert_eq!(store.get_submission(&s.id).await.unwrap(), Some(s.clone()));
    // Through every field a run writes.
    let running = store
        .commit(s.start(2_000).unwrap())
        .await
        .unwrap()
        .unwrap();
    let usage = Usage {
        wall_time: std::time::Duration::from_millis(1500),
        peak_memory_bytes: 1 << 20,
        exit_code: Some(0),
        signal: None,
    };
    let scoring = store
        .commit(running.begin_scoring(usage).unwrap())
        .await
        .unwrap()
        .unwrap();
    let scores = |v: f64| BTreeMap::from([("accuracy".to_owned(), v)]);
    let done = store
        .commit(scoring.score(scores(0.25), scores(0.5), 3_000).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get_submission(&s.id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn every_committed_change_is_published_after_it_is_written() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let mut feed = store.subscribe();
    let s = submission("p", "alice", None);
    store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap();
    assert_eq!(*feed.recv().await.unwrap(), s);
    let running = store.commit(s.start(2).unwrap()).await.unwrap().unwrap();
    let published = feed.recv().await.unwrap();
    assert_eq!(*published, running);
    assert_eq!(
        store.get_submission(&s.id).await.unwrap().as_ref(),
        Some(&*published)
    );
    // A refused commit publishes nothing.
    assert!(store.commit(s.start(3).unwrap()).await.unwrap().is_none());
    assert!(feed.try_recv().is_err());
}

#[tokio::test]
async fn a_state_change_applies_only_from_the_expected_state() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let s = submission("p", "alice", None);
    store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap();
    assert!(
        store
            .commit(s.cancel(None, &Quota::default(), 2).unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store.commit(s.start(2).unwrap()).await.unwrap().is_none(),
        "a cancel is never overwritten"
    );
}

#[tokio::test]
async fn a_late_write_of_an_attempt_that_was_handed_back_is_refused() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let s = submission("p", "alice", None);
    store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap();
    let first = store.commit(s.start(2).unwrap()).await.unwrap().unwrap();
    // The first attempt is handed back (a restart) and a second one starts.
    let queued = store
        .commit(first.requeue(Interruption::Restart, 3, 3).unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .commit(queued.start(4).unwrap())
        .await
        .unwrap()
        .unwrap();
    // The first attempt's end arrives late: RUNNING as it expects, but not its attempt.
    let late = first.begin_scoring(Usage::default()).unwrap();
    assert!(store.commit(late).await.unwrap().is_none());
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_submission() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let first = submission("p", "alice", Some("k1"));
    store
        .insert_submission(first.clone(), OPEN, None)
        .await
        .unwrap();
    match store
        .insert_submission(submission("p", "alice", Some("k1")), OPEN, None)
        .await
        .unwrap()
    {
        InsertOutcome::Existing(s) => assert_eq!(s.id, first.id),
        other => panic!("{other:?}"),
    }
    // Another owner may use the same key.
    assert!(matches!(
        store
            .insert_submission(submission("q", "alice", Some("k1")), OPEN, None)
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
                .insert_submission(submission("p", "alice", None), admission, None)
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
            .insert_submission(submission("p", "a", None), admission, None)
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .insert_submission(submission("p", "b", None), admission, None)
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
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap();
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

#[tokio::test]
async fn a_platform_cap_counts_every_participant_of_the_platform_and_no_other_platform() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let admission = Admission {
        platform_quota: 2,
        ..OPEN
    };
    for p in ["a", "b"] {
        let outcome = store
            .insert_submission(submission("p", p, None), admission, None)
            .await
            .unwrap();
        assert!(matches!(outcome, InsertOutcome::Inserted(_)));
    }
    // A third participant id does not buy a fresh quota on the same platform...
    assert!(matches!(
        store
            .insert_submission(submission("p", "c", None), admission, None)
            .await
            .unwrap(),
        InsertOutcome::PlatformQuotaExceeded { limit: 2 }
    ));
    // ...while another platform has its own.
    assert!(matches!(
        store
            .insert_submission(submission("q", "c", None), admission, None)
            .await
            .unwrap(),
        InsertOutcome::Inserted(_)
    ));
}

#[tokio::test]
async fn a_charged_cancel_counts_against_the_quota_and_an_uncharged_one_does_not() {
    let (_dir, store) = open();
    store.insert_challenge(challenge("c")).await.unwrap();
    let admission = Admission {
        quota: 1,
        count_failed: true,
        ..OPEN
    };
    let quota = Quota::default();
    let s = submission("p", "a", None);
    store
        .insert_submission(s.clone(), admission, None)
        .await
        .unwrap();
    // Cancelled while queued: never charged, so the quota is free again.
    store
        .commit(s.cancel(None, &quota, 2).unwrap())
        .await
        .unwrap();
    let s = submission("p", "a", None);
    assert!(matches!(
        store
            .insert_submission(s.clone(), admission, None)
            .await
            .unwrap(),
        InsertOutcome::Inserted(_)
    ));
    // Cancelled once started: charged like a failure.
    let running = store.commit(s.start(3).unwrap()).await.unwrap().unwrap();
    store
        .commit(running.cancel(None, &quota, 4).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_submission(submission("p", "a", None), admission, None)
            .await
            .unwrap(),
        InsertOutcome::QuotaExceeded { limit: 1 }
    ));
}

#[tokio::test]
async fn a_score_an_earlier_version_stored_as_null_is_repaired_and_one_bad_row_fails_no_listing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let good = submission("p", "alice", None);
    let nan = submission("p", "bob", None);
    let bogus = submission("p", "carol", None);
    {
        let store = Store::open(&path).unwrap();
        store.insert_challenge(challenge("c")).await.unwrap();
        for s in [&good, &nan, &bogus] {
            store
                .insert_submission(s.clone(), OPEN, None)
                .await
                .unwrap();
        }
    }
    {
        // As an earlier version left them: rmse = NaN written as null, then an unknown state.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE submissions SET state = 'succeeded', verdict = 'scored', public_scores = '{\"rmse\": null}' WHERE id = ?1",
            [nan.id.as_str()],
        )
        .unwrap();
        conn.execute(
            "UPDATE submissions SET state = 'bogus' WHERE id = ?1",
            [bogus.id.as_str()],
        )
        .unwrap();
        // Back to schema version 3, as that version left it.
        conn.execute_batch(
            "DROP INDEX submissions_by_finish; ALTER TABLE submissions DROP COLUMN expired_at;",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let repaired = store.get_submission(&nan.id).await.unwrap().unwrap();
    assert_eq!(
        (repaired.state, repaired.verdict),
        (SubmissionState::Failed, Verdict::InvalidPredictions)
    );
    assert!(repaired.public_scores.is_empty());
    let listed = store
        .list_submissions(ChallengeId::parse("c").unwrap(), None, None, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        2,
        "the unreadable row is skipped, the others listed"
    );
    assert!(
        store.get_submission(&bogus.id).await.is_err(),
        "read alone, it says why"
    );
}

#[tokio::test]
async fn retention_expires_ended_submissions_and_deletes_an_archive_once_none_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = crate::paths::Paths::new(dir.path());
    paths.create().unwrap();
    let store = Store::open(&paths.database()).unwrap();
    store.insert_challenge(challenge("c")).await.unwrap();
    let quota = Quota::default();
    // Two submissions of one archive: one ends early, one late; a third is still queued.
    let (early, late, queued) = (
        submission("p", "a", None),
        submission("p", "b", None),
        submission("p", "c", None),
    );
    for s in [&early, &late, &queued] {
        let temp = tempfile::NamedTempFile::new_in(paths.uploads())
            .unwrap()
            .into_temp_path();
        std::fs::write(&temp, b"archive").unwrap();
        let pending = PendingArchive {
            temp,
            dest: paths.archive(&s.archive_sha256),
        };
        store
            .insert_submission(s.clone(), OPEN, Some(pending))
            .await
            .unwrap();
    }
    let archive = paths.archive(&early.archive_sha256);
    assert!(archive.exists());
    for (s, at) in [(&early, 1_000), (&late, 5_000)] {
        let running = store
            .commit(s.start(at - 1).unwrap())
            .await
            .unwrap()
            .unwrap();
        store
            .commit(running.cancel(None, &quota, at).unwrap())
            .await
            .unwrap();
    }
    let expired = store
        .expire_before(2_000, 9_000, paths.clone())
        .await
        .unwrap();
    assert_eq!(expired, std::slice::from_ref(&early.id));
    assert!(archive.exists(), "still used by two unexpired submissions");
    assert!(
        store
            .expire_before(2_000, 9_000, paths.clone())
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .expire_before(6_000, 9_100, paths.clone())
        .await
        .unwrap();
    assert_eq!(expired, std::slice::from_ref(&late.id));
    assert!(archive.exists(), "the queued submission still needs it");
    // The rows stay, hash and all.
    assert_eq!(
        store
            .get_submission(&early.id)
            .await
            .unwrap()
            .unwrap()
            .archive_sha256,
        early.archive_sha256
    );
}

#[tokio::test]
async fn a_refused_upload_leaves_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    let paths = crate::paths::Paths::new(dir.path());
    paths.create().unwrap();
    let store = Store::open(&paths.database()).unwrap();
    store.insert_challenge(challenge("c")).await.unwrap();
    let full = Admission {
        max_queued: 0,
        ..OPEN
    };
    let s = submission("p", "a", None);
    let temp = tempfile::NamedTempFile::new_in(paths.uploads())
        .unwrap()
        .into_temp_path();
    let temp_path = temp.to_path_buf();
    let pending = PendingArchive {
        temp,
        dest: paths.archive(&s.archive_sha256),
    };
    assert!(matches!(
        store
            .insert_submission(s.clone(), full, Some(pending))
            .await
            .unwrap(),
        InsertOutcome::QueueFull { .. }
    ));
    assert!(!paths.archive(&s.archive_sha256).exists());
    assert!(
        !temp_path.exists(),
        "the upload's temporary file is gone too"
    );
}
