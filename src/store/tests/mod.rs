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

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

/// A store of one engine, with its state folder.
struct Fixture {
    _dir: tempfile::TempDir,
    paths: crate::paths::Paths,
    url: DatabaseUrl,
    store: Store,
}

impl Fixture {
    async fn new(kind: Kind) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::new(dir.path());
        paths.create().unwrap();
        let url = match kind {
            Kind::Sqlite => DatabaseUrl::Sqlite,
            Kind::Postgres => DatabaseUrl::Postgres(
                crate::testing::PgCluster::shared_database().expect("a PostgreSQL for the test"),
            ),
        };
        let store = Store::connect(&url, &paths).await.unwrap();
        Fixture {
            _dir: dir,
            paths,
            url,
            store,
        }
    }

    /// The same database, opened again (as a restarted process would).
    async fn reopen(&self) -> Store {
        Store::connect(&self.url, &self.paths).await.unwrap()
    }
}

/// Runs each listed test on both engines, with a timeout.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::Fixture::new(super::Kind::Sqlite).await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), super::$name(f))
                        .await
                        .expect("test timed out");
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::Fixture::new(super::Kind::Postgres).await;
                    tokio::time::timeout(std::time::Duration::from_secs(60), super::$name(f))
                        .await
                        .expect("test timed out");
                }
            )*
        }
    };
}

on_both_engines!(
    a_submission_round_trips_through_the_database,
    every_committed_change_is_published_after_it_is_written,
    a_state_change_applies_only_from_the_expected_state,
    a_late_write_of_an_attempt_that_was_handed_back_is_refused,
    the_same_idempotency_key_returns_the_first_submission,
    parallel_inserts_at_the_quota_never_get_one_more_through,
    the_queue_cap_refuses_more_queued_submissions,
    data_survives_reopening_the_database,
    a_platform_cap_counts_every_participant_of_the_platform_and_no_other_platform,
    a_charged_cancel_counts_against_the_quota_and_an_uncharged_one_does_not,
    retention_expires_ended_submissions_and_deletes_an_archive_once_none_uses_it,
    a_refused_upload_leaves_no_archive,
    releases_and_the_leakage_ledger_round_trip,
    small_files_round_trip_and_are_deleted_by_prefix,
    a_challenge_keeps_its_preparation_and_names_its_card_across_a_reopen,
    listings_filter_and_page_newest_first,
);

mod schedule;

const OPEN: Admission = Admission {
    quota: 0,
    platform_quota: 0,
    count_failed: false,
    day_start: 0,
    max_queued: 1000,
};

async fn a_submission_round_trips_through_the_database(f: Fixture) {
    let store = f.store.clone();
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
        cpu_time: std::time::Duration::from_millis(700),
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

async fn every_committed_change_is_published_after_it_is_written(f: Fixture) {
    let store = f.store.clone();
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

async fn a_state_change_applies_only_from_the_expected_state(f: Fixture) {
    let store = f.store.clone();
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

async fn a_late_write_of_an_attempt_that_was_handed_back_is_refused(f: Fixture) {
    let store = f.store.clone();
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

async fn the_same_idempotency_key_returns_the_first_submission(f: Fixture) {
    let store = f.store.clone();
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

async fn parallel_inserts_at_the_quota_never_get_one_more_through(f: Fixture) {
    let store = f.store.clone();
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

async fn the_queue_cap_refuses_more_queued_submissions(f: Fixture) {
    let store = f.store.clone();
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

async fn data_survives_reopening_the_database(f: Fixture) {
    let s = submission("p", "alice", None);
    f.store.insert_challenge(challenge("c")).await.unwrap();
    f.store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap();
    let store = f.reopen().await;
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

async fn a_platform_cap_counts_every_participant_of_the_platform_and_no_other_platform(f: Fixture) {
    let store = f.store.clone();
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

async fn a_charged_cancel_counts_against_the_quota_and_an_uncharged_one_does_not(f: Fixture) {
    let store = f.store.clone();
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
            "DROP INDEX submissions_by_finish; ALTER TABLE submissions DROP COLUMN expired_at;
             DROP TABLE final_selections; DROP TABLE jobs; DROP TABLE rescores; DROP TABLE reruns;",
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

async fn retention_expires_ended_submissions_and_deletes_an_archive_once_none_uses_it(f: Fixture) {
    let (paths, store) = (f.paths.clone(), f.store.clone());
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
    let expired = store.expire_before(2_000, 9_000).await.unwrap();
    assert_eq!(expired, std::slice::from_ref(&early.id));
    assert!(archive.exists(), "still used by two unexpired submissions");
    assert!(store.expire_before(2_000, 9_000).await.unwrap().is_empty());
    let expired = store.expire_before(6_000, 9_100).await.unwrap();
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

async fn a_refused_upload_leaves_no_archive(f: Fixture) {
    let (paths, store) = (f.paths.clone(), f.store.clone());
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

async fn releases_and_the_leakage_ledger_round_trip(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    for (i, token) in ["p", "q", "p"].iter().enumerate() {
        store
            .record_release(ReleaseRecord {
                at: i as i64,
                token_name: (*token).into(),
                challenge_id: "c".into(),
                submission_id: format!("s{i}"),
                what: "submission".into(),
                values: BTreeMap::from([("accuracy".to_owned(), 0.5 + i as f64)]),
            })
            .await
            .unwrap();
    }
    let mine = store
        .list_releases(Some("c".into()), Some("p".into()), 0, 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].1.submission_id, "s2", "newest first");
    let older = store
        .list_releases(None, None, mine[0].0, 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 2, "paging goes on before the position");
    let (a, b) = (submission("p", "a", None), submission("p", "b", None));
    store.record_leakage(&a, 2.0, 1).await.unwrap();
    store.record_leakage(&a, 2.0, 2).await.unwrap();
    store.record_leakage(&b, 5.0, 3).await.unwrap();
    let totals = store
        .leakage_totals(ChallengeId::parse("c").unwrap())
        .await
        .unwrap();
    assert_eq!(
        totals
            .iter()
            .map(|t| (t.participant_id.as_str(), t.results, t.bits))
            .collect::<Vec<_>>(),
        [("b", 1, 5.0), ("a", 1, 2.0)],
        "a result is counted once, most bits first"
    );
}

async fn small_files_round_trip_and_are_deleted_by_prefix(f: Fixture) {
    let store = f.store.clone();
    store
        .put_blob(BlobKind::Log, "s1.stdout".into(), b"one".to_vec())
        .await
        .unwrap();
    store
        .put_blob(BlobKind::Log, "s1.stdout".into(), b"two".to_vec())
        .await
        .unwrap();
    store
        .put_blob(BlobKind::Log, "s10.stdout".into(), b"ten".to_vec())
        .await
        .unwrap();
    store
        .put_blob(BlobKind::Losses, "s1.f32".into(), vec![0; 8])
        .await
        .unwrap();
    let get = |kind, name: &str| store.get_blob(kind, name.to_owned());
    assert_eq!(
        get(BlobKind::Log, "s1.stdout").await.unwrap(),
        Some(b"two".to_vec())
    );
    assert_eq!(get(BlobKind::Log, "nope").await.unwrap(), None);
    store
        .delete_blobs(BlobKind::Log, "s1.".into())
        .await
        .unwrap();
    assert_eq!(get(BlobKind::Log, "s1.stdout").await.unwrap(), None);
    assert_eq!(
        get(BlobKind::Log, "s10.stdout").await.unwrap(),
        Some(b"ten".to_vec())
    );
    assert_eq!(
        get(BlobKind::Losses, "s1.f32").await.unwrap(),
        Some(vec![0; 8])
    );
}

async fn a_challenge_keeps_its_preparation_and_names_its_card_across_a_reopen(f: Fixture) {
    let store = f.store.clone();
    let mut c = challenge("carded");
    c.preparation.quasi_identifiers = vec!["age".into(), "postcode".into()];
    c.preparation.min_k = 3;
    c.preparation
        .generalise
        .insert("postcode".into(), "2".parse().unwrap());
    c.facts.preparation = PreparationFacts {
        data_digest: "sha256:00".into(),
        warnings: 1,
        infos: 2,
        findings: vec![
            crate::prepare::Finding::new(
                crate::prepare::Code::SplitPartTooSmall,
                crate::prepare::Severity::Warning,
                12,
                "12 rows",
            )
            .file("labels.csv"),
        ],
        card: "carded.abc.json".into(),
        ..Default::default()
    };
    assert!(store.insert_challenge(c.clone()).await.unwrap());
    store
        .put_blob(BlobKind::Card, "carded.abc.json".into(), b"{}".to_vec())
        .await
        .unwrap();
    // A log of the same name is another file.
    store
        .put_blob(BlobKind::Log, "carded.abc.json".into(), b"log".to_vec())
        .await
        .unwrap();
    let store = f.reopen().await;
    let back = store
        .get_challenge(&ChallengeId::parse("carded").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.preparation, c.preparation);
    assert_eq!(back.facts.preparation, c.facts.preparation);
    assert_eq!(
        store
            .get_blob(BlobKind::Card, back.facts.preparation.card.clone())
            .await
            .unwrap(),
        Some(b"{}".to_vec())
    );
}

async fn listings_filter_and_page_newest_first(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let c = ChallengeId::parse("c").unwrap();
    let subs = [
        submission("p", "a", None),
        submission("p", "b", None),
        submission("q", "a", None),
        submission("p", "a", None),
    ];
    for s in &subs {
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap();
    }
    let ids = |l: &[(i64, Submission)]| l.iter().map(|(_, s)| s.id.clone()).collect::<Vec<_>>();
    let page = store
        .list_submissions(c.clone(), Some("a".into()), Some("p".into()), 0, 1)
        .await
        .unwrap();
    assert_eq!(ids(&page), [subs[3].id.clone()]);
    let next = store
        .list_submissions(c.clone(), Some("a".into()), Some("p".into()), page[0].0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&next), [subs[0].id.clone()]);
    let running = store
        .commit(subs[1].start(5).unwrap())
        .await
        .unwrap()
        .unwrap();
    let queued: Vec<_> = store
        .queued()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        queued,
        [subs[0].id.clone(), subs[2].id.clone(), subs[3].id.clone()]
    );
    let live = store
        .submissions_in(&[SubmissionState::Running, SubmissionState::Scoring])
        .await
        .unwrap();
    assert_eq!(live, std::slice::from_ref(&running));
    let scoring = store
        .commit(running.begin_scoring(Usage::default()).unwrap())
        .await
        .unwrap()
        .unwrap();
    let scores = BTreeMap::from([("accuracy".to_owned(), 0.5)]);
    let done = store
        .commit(scoring.score(scores.clone(), scores, 6).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.scored_full(c).await.unwrap(), [done]);
}

mod jobs;
mod postgres_only;
