//! Maintenance jobs and the rescoring commit, on both engines.

use std::collections::BTreeMap;

use super::{Fixture, Kind, OPEN, challenge, submission};
use crate::domain::*;
use crate::store::{BlobKind, CommitOutcome, JobCommit, Store};

on_both_engines!(
    a_challenge_has_at_most_one_running_job_and_a_job_round_trips,
    a_job_abandoned_by_its_process_never_blocks_its_challenge,
    jobs_list_newest_first_by_challenge_and_page,
    progress_is_recorded_and_a_cancel_shows_in_it,
    a_rescore_commits_scores_audit_metric_and_ledger_all_together,
    a_cancelled_job_commits_nothing,
    a_rescore_that_finds_a_changed_submission_writes_nothing,
    a_rescore_refuses_a_changed_scoring_and_keeps_other_updates_of_the_challenge,
    kept_predictions_are_small_files_of_their_own_kind,
    a_rerun_is_queued_with_its_mapping_only_while_the_archive_is_kept,
    a_rerun_job_swaps_results_in_and_its_reruns_hold_no_board_entry,
);

fn scores(v: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("accuracy".to_owned(), v)])
}

fn job(store_challenge: &str) -> Job {
    Job::start(
        ChallengeId::parse(store_challenge).unwrap(),
        JobKind::Rescore,
        "admin".into(),
        1_000,
    )
}

/// A SUCCEEDED FULL submission of challenge "c" with public 0.5, private 0.4.
async fn scored(store: &Store, participant: &str) -> Submission {
    let s = submission("p", participant, None);
    store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap();
    let s = store.commit(s.start(2).unwrap()).await.unwrap().unwrap();
    let s = store
        .commit(s.begin_scoring(Usage::default()).unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .commit(s.score(scores(0.5), scores(0.4), 3).unwrap())
        .await
        .unwrap()
        .unwrap()
}

fn change(j: &Job, s: &Submission, outcome: &str, public: f64, private: f64) -> ScoreChange {
    ScoreChange {
        job_id: j.id.clone(),
        submission_id: s.id.as_str().to_owned(),
        owner: s.owner.clone(),
        participant_id: s.participant_id.as_str().to_owned(),
        outcome: outcome.into(),
        old_public: s.public_scores.clone(),
        old_private: s.private_scores.clone(),
        new_public: scores(public),
        new_private: scores(private),
        at: 5,
    }
}

async fn a_challenge_has_at_most_one_running_job_and_a_job_round_trips(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    store.insert_challenge(challenge("d")).await.unwrap();
    let first = job("c");
    assert!(store.insert_job(first.clone()).await.unwrap());
    assert_eq!(store.get_job(&first.id).await.unwrap(), Some(first.clone()));
    assert!(
        !store.insert_job(job("c")).await.unwrap(),
        "a second running job on the same challenge is refused"
    );
    assert!(
        store.insert_job(job("d")).await.unwrap(),
        "another challenge's is not"
    );
    let ended = store
        .end_job(&first.id, JobState::Failed, "boom".into(), 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.state, ended.message.as_str(), ended.finished_at),
        (JobState::Failed, "boom", Some(9))
    );
    let again = store
        .end_job(&first.id, JobState::Cancelled, "late".into(), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, ended, "an ended job stays as it ended");
    assert!(
        store.insert_job(job("c")).await.unwrap(),
        "the challenge is free again"
    );
    assert_eq!(store.get_job(&JobId::generate()).await.unwrap(), None);
}

async fn a_job_abandoned_by_its_process_never_blocks_its_challenge(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let dead = job("c"); // started at 1,000, never beat again
    store.insert_job(dead.clone()).await.unwrap();
    let stale = JOB_STALE_AFTER.as_millis() as i64;
    let early = Job {
        created_at: 1_000 + stale,
        ..job("c")
    };
    assert!(
        !store.insert_job(early).await.unwrap(),
        "within the stale time it may still be alive"
    );
    let later = Job {
        created_at: 1_001 + stale,
        beat: 1_001 + stale,
        ..job("c")
    };
    assert!(store.insert_job(later.clone()).await.unwrap());
    let ended = store.get_job(&dead.id).await.unwrap().unwrap();
    assert_eq!(
        (ended.state, ended.message.as_str()),
        (JobState::Failed, JOB_ABANDONED_MESSAGE)
    );
    assert_eq!(
        store.get_job(&later.id).await.unwrap().unwrap().state,
        JobState::Running
    );
}

async fn jobs_list_newest_first_by_challenge_and_page(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    store.insert_challenge(challenge("d")).await.unwrap();
    let mut made = Vec::new();
    for c in ["c", "d", "c"] {
        let j = job(c);
        store.insert_job(j.clone()).await.unwrap();
        store
            .end_job(&j.id, JobState::Finished, "done".into(), 2_000)
            .await
            .unwrap();
        made.push(j.id);
    }
    let of_c = store.list_jobs(Some("c".into()), 0, 10).await.unwrap();
    assert_eq!(
        of_c.iter().map(|(_, j)| j.id.clone()).collect::<Vec<_>>(),
        vec![made[2].clone(), made[0].clone()],
        "newest first, only c's"
    );
    let first = store.list_jobs(None, 0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = store.list_jobs(None, first[1].0, 2).await.unwrap();
    assert_eq!(
        rest.iter().map(|(_, j)| j.id.clone()).collect::<Vec<_>>(),
        vec![made[0].clone()],
        "paging goes on before the position"
    );
}

async fn progress_is_recorded_and_a_cancel_shows_in_it(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    assert_eq!(
        store.job_progress(&j.id, 2, 5, 1_500).await.unwrap(),
        Some(JobState::Running)
    );
    let read = store.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((read.done, read.total, read.beat), (2, 5, 1_500));
    // Cancelled from another process (a reopened store stands for another replica).
    let other = f.reopen().await;
    other
        .end_job(&j.id, JobState::Cancelled, "by admin".into(), 7)
        .await
        .unwrap();
    assert_eq!(
        store.job_progress(&j.id, 3, 5, 1_600).await.unwrap(),
        Some(JobState::Cancelled)
    );
    let read = store.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!(read.done, 2, "an ended job's progress no longer moves");
}

async fn a_rescore_commits_scores_audit_metric_and_ledger_all_together(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let (a, b) = (scored(&store, "a").await, scored(&store, "b").await);
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    let mut changed_challenge = challenge("c");
    changed_challenge.scoring.builtin.as_mut().unwrap().metric = crate::scoring::Metric::F1Macro;
    let mut feed = store.subscribe();
    let outcome = store
        .commit_job(JobCommit {
            job: j.id.clone(),
            changes: vec![
                change(&j, &a, "changed", 0.9, 0.8),
                change(&j, &b, "unchanged", 0.5, 0.4),
            ],
            writes: vec![a.rescore(scores(0.9), scores(0.8)).unwrap()],
            scoring_was: Some(challenge("c").scoring),
            scoring: Some(changed_challenge.scoring.clone()),
            bits: 3.0,
            message: "rescored 2".into(),
            at: 6,
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let a2 = store.get_submission(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (a2.public_scores.clone(), a2.private_scores.clone()),
        (scores(0.9), scores(0.8))
    );
    assert_eq!(a2.state, SubmissionState::Succeeded);
    let b2 = store.get_submission(&b.id).await.unwrap().unwrap();
    assert_eq!(b2.public_scores, scores(0.5));
    // PostgreSQL's feed may still deliver the earlier changes first.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let s = feed.recv().await.unwrap();
            if s.id == a.id && s.public_scores == scores(0.9) {
                break;
            }
        }
    })
    .await
    .expect("the changed submission is published");
    assert_eq!(
        store
            .get_challenge(&ChallengeId::parse("c").unwrap())
            .await
            .unwrap(),
        Some(changed_challenge)
    );
    let audit = store.job_changes(&j.id).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0], change(&j, &a, "changed", 0.9, 0.8));
    assert_eq!(audit[1].outcome, "unchanged");
    let done = store.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.message.as_str()),
        (JobState::Finished, "rescored 2")
    );
    let totals = store
        .leakage_totals(ChallengeId::parse("c").unwrap())
        .await
        .unwrap();
    assert_eq!(
        totals
            .iter()
            .map(|t| (t.participant_id.as_str(), t.results, t.bits))
            .collect::<Vec<_>>(),
        [("a", 1, 3.0)],
        "a changed result is another release in the ledger"
    );
}

async fn a_cancelled_job_commits_nothing(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let a = scored(&store, "a").await;
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    store
        .end_job(&j.id, JobState::Cancelled, "stop".into(), 5)
        .await
        .unwrap();
    let outcome = store
        .commit_job(plain_commit(
            &j,
            vec![change(&j, &a, "changed", 0.9, 0.8)],
            vec![a.rescore(scores(0.9), scores(0.8)).unwrap()],
        ))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::NotRunning);
    assert_eq!(
        store
            .get_submission(&a.id)
            .await
            .unwrap()
            .unwrap()
            .public_scores,
        scores(0.5)
    );
    assert!(store.job_changes(&j.id).await.unwrap().is_empty());
    assert_eq!(
        store.get_job(&j.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}

/// A commit of `changes` and `writes` for job `j` that leaves the challenge's scoring alone.
fn plain_commit(j: &Job, changes: Vec<ScoreChange>, writes: Vec<Transition>) -> JobCommit {
    JobCommit {
        job: j.id.clone(),
        changes,
        writes,
        scoring_was: None,
        scoring: None,
        bits: 3.0,
        message: "x".into(),
        at: 6,
    }
}

async fn a_rescore_that_finds_a_changed_submission_writes_nothing(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let a = scored(&store, "a").await;
    let b = scored(&store, "b").await;
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    // `b` was staged from a state it is no longer in (it is still QUEUED in this copy).
    let stale = Submission::from_record(SubmissionRecord {
        state: SubmissionState::Succeeded,
        attempts: 7,
        ..(*b).clone()
    });
    let outcome = store
        .commit_job(plain_commit(
            &j,
            vec![
                change(&j, &a, "changed", 0.9, 0.8),
                change(&j, &b, "changed", 0.1, 0.1),
            ],
            vec![
                a.rescore(scores(0.9), scores(0.8)).unwrap(),
                stale.rescore(scores(0.1), scores(0.1)).unwrap(),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Conflict);
    assert_eq!(
        store
            .get_submission(&a.id)
            .await
            .unwrap()
            .unwrap()
            .public_scores,
        scores(0.5),
        "the first write was rolled back with the rest"
    );
    assert!(store.job_changes(&j.id).await.unwrap().is_empty());
    assert!(
        store
            .leakage_totals(ChallengeId::parse("c").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.get_job(&j.id).await.unwrap().unwrap().state,
        JobState::Running
    );
}

async fn kept_predictions_are_small_files_of_their_own_kind(f: Fixture) {
    let store = f.store.clone();
    store
        .put_blob(BlobKind::Predictions, "s1.csv.gz".into(), vec![1, 2, 3])
        .await
        .unwrap();
    store
        .put_blob(BlobKind::Log, "s1.csv.gz".into(), vec![9])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_blob(BlobKind::Predictions, "s1.csv.gz".into())
            .await
            .unwrap(),
        Some(vec![1, 2, 3])
    );
    store
        .delete_blobs(BlobKind::Predictions, "s1.".into())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_blob(BlobKind::Predictions, "s1.csv.gz".into())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_blob(BlobKind::Log, "s1.csv.gz".into())
            .await
            .unwrap(),
        Some(vec![9]),
        "another kind's file of the same name stays"
    );
}

fn rerun_of(j: &Job, original: &Submission) -> Submission {
    Submission::new(NewSubmission {
        id: SubmissionId::generate(),
        challenge_id: original.challenge_id.clone(),
        participant_id: original.participant_id.clone(),
        owner: rerun_owner(&j.id),
        kind: SubmissionKind::Full,
        archive_sha256: original.archive_sha256.clone(),
        created_at: 9,
        idempotency_key: None,
    })
}

async fn a_rerun_is_queued_with_its_mapping_only_while_the_archive_is_kept(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let (a, b) = (scored(&store, "a").await, scored(&store, "b").await);
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    let ra = rerun_of(&j, &a);
    assert!(store.insert_rerun(&j.id, &a.id, ra.clone()).await.unwrap());
    let queued = store.get_submission(&ra.id).await.unwrap().unwrap();
    assert_eq!(queued.state, SubmissionState::Queued);
    assert!(store.queued().await.unwrap().iter().any(|q| q.id == ra.id));
    // b's archive expires: it gets no re-run.
    store.expire_before(i64::MAX, 10).await.unwrap();
    assert!(
        !store
            .insert_rerun(&j.id, &b.id, rerun_of(&j, &b))
            .await
            .unwrap()
    );
    assert_eq!(
        store.reruns_of(&j.id).await.unwrap(),
        vec![(a.id.clone(), ra.id.clone())]
    );
}

async fn a_rerun_job_swaps_results_in_and_its_reruns_hold_no_board_entry(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let a = scored(&store, "a").await;
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    let ra = rerun_of(&j, &a);
    store.insert_rerun(&j.id, &a.id, ra.clone()).await.unwrap();
    let r = store.commit(ra.start(10).unwrap()).await.unwrap().unwrap();
    let r = store
        .commit(
            r.fail(
                Verdict::RuntimeError,
                "exit 1".into(),
                "exit 1".into(),
                None,
                &Quota::default(),
                11,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let scored_ids: Vec<_> = store
        .scored_full(ChallengeId::parse("c").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(scored_ids, vec![a.id.clone()], "the re-run holds no entry");
    let outcome = store
        .commit_job(JobCommit {
            job: j.id.clone(),
            changes: vec![change(&j, &a, "changed: scored -> runtime_error", 0.0, 0.0)],
            writes: vec![a.take_rerun(&r).unwrap()],
            scoring_was: None,
            scoring: None,
            bits: 1.0,
            message: "re-ran 1".into(),
            at: 12,
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let a2 = store.get_submission(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (a2.state, a2.verdict, a2.message.as_str()),
        (SubmissionState::Failed, Verdict::RuntimeError, "exit 1")
    );
    assert!(a2.public_scores.is_empty());
    assert!(
        store
            .scored_full(ChallengeId::parse("c").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_rescore_refuses_a_changed_scoring_and_keeps_other_updates_of_the_challenge(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let a = scored(&store, "a").await;
    let commit = |j: &Job| JobCommit {
        job: j.id.clone(),
        changes: vec![change(j, &a, "changed", 0.9, 0.8)],
        writes: vec![a.rescore(scores(0.9), scores(0.8)).unwrap()],
        scoring_was: Some(challenge("c").scoring),
        scoring: Some({
            let mut s = challenge("c").scoring;
            s.builtin.as_mut().unwrap().metric = crate::scoring::Metric::F1Macro;
            s
        }),
        bits: 1.0,
        message: "x".into(),
        at: 6,
    };
    // The scoring changed under the job: nothing is written.
    let mut updated = challenge("c");
    updated.scoring.builtin.as_mut().unwrap().target_column = "other".into();
    store.update_challenge(updated).await.unwrap();
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    assert_eq!(
        store.commit_job(commit(&j)).await.unwrap(),
        CommitOutcome::Conflict
    );
    assert_eq!(
        store
            .get_submission(&a.id)
            .await
            .unwrap()
            .unwrap()
            .public_scores,
        scores(0.5)
    );
    store
        .end_job(&j.id, JobState::Failed, "conflict".into(), 7)
        .await
        .unwrap();
    // Another field changed (a title): committed, and the title is kept.
    let mut retitled = challenge("c");
    retitled.title = "new title".into();
    store.update_challenge(retitled).await.unwrap();
    let j = job("c");
    store.insert_job(j.clone()).await.unwrap();
    assert_eq!(
        store.commit_job(commit(&j)).await.unwrap(),
        CommitOutcome::Committed
    );
    let stored = store
        .get_challenge(&ChallengeId::parse("c").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.title, "new title", "no lost update");
    assert_eq!(
        stored.scoring.builtin.unwrap().metric,
        crate::scoring::Metric::F1Macro
    );
}
