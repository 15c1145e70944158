//! Closing at a deadline, admission against the schedule, and final selections, on both
//! engines: each decision is one transaction, so racing callers get one answer.

use std::collections::BTreeMap;

use super::{Fixture, Kind, OPEN, challenge, submission};
use crate::domain::*;
use crate::store::*;

on_both_engines!(
    closing_at_the_deadline_is_a_compare_and_set_that_closes_once,
    an_update_read_before_a_close_does_not_reopen_the_challenge,
    admission_refuses_outside_the_schedule_by_the_clock_not_the_state,
    a_selection_replaces_the_last_and_checks_everything_in_one_step,
);

fn scheduled(id: &str, closes_at: Option<UnixMillis>, n: u32) -> Challenge {
    let mut c = challenge(id);
    c.closes_at = closes_at;
    c.release.final_selections = n;
    c
}

/// A submission of `participant` on platform `owner` to "c", committed to SUCCEEDED
/// (scored) unless `scored` is false (then FAILED).
async fn scored(store: &Store, owner: &str, participant: &str, scored: bool) -> SubmissionId {
    let s = submission(owner, participant, None);
    assert!(matches!(
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap(),
        InsertOutcome::Inserted(_)
    ));
    let running = store
        .commit(s.start(2_000).unwrap())
        .await
        .unwrap()
        .unwrap();
    let scoring = store
        .commit(running.begin_scoring(Usage::default()).unwrap())
        .await
        .unwrap()
        .unwrap();
    let t = if scored {
        let v = BTreeMap::from([("accuracy".to_owned(), 0.5)]);
        scoring.score(v.clone(), v, 3_000).unwrap()
    } else {
        scoring
            .fail(
                Verdict::RuntimeError,
                "exit 1".into(),
                String::new(),
                None,
                &Quota::default(),
                3_000,
            )
            .unwrap()
    };
    store.commit(t).await.unwrap().unwrap();
    s.id.clone()
}

async fn closing_at_the_deadline_is_a_compare_and_set_that_closes_once(f: Fixture) {
    let store = f.store.clone();
    store
        .insert_challenge(scheduled("c", Some(5_000), 0))
        .await
        .unwrap();
    let id = ChallengeId::parse("c").unwrap();
    let (c, closed) = store
        .close_challenge(&id, 4_999, CloseWhen::AtDeadline)
        .await
        .unwrap()
        .unwrap();
    assert!(!closed, "not before its deadline");
    assert_eq!(c.state, ChallengeState::Open);
    // Replicas racing for the same deadline: exactly one closes it.
    let tries: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .close_challenge(&id, 6_000 + i, CloseWhen::AtDeadline)
                    .await
            })
        })
        .collect();
    let mut closers = 0;
    for t in tries {
        let (c, closed) = t.await.unwrap().unwrap().unwrap();
        closers += closed as u32;
        assert_eq!(c.state, ChallengeState::Closed);
        assert_eq!(
            c.closed_at,
            Some(5_000),
            "closed at its deadline, not when seen"
        );
    }
    assert_eq!(closers, 1);
    // An admin's close of a closed challenge changes nothing; of an unknown one, none.
    let (c, closed) = store
        .close_challenge(&id, 9_000, CloseWhen::Now)
        .await
        .unwrap()
        .unwrap();
    assert!(!closed);
    assert_eq!(c.closed_at, Some(5_000));
    let gone = ChallengeId::parse("nope").unwrap();
    assert!(
        store
            .close_challenge(&gone, 9_000, CloseWhen::Now)
            .await
            .unwrap()
            .is_none()
    );
    // The close survives reopening the database (a restarted server).
    let again = f.reopen().await;
    assert_eq!(
        again.get_challenge(&id).await.unwrap().unwrap().state,
        ChallengeState::Closed
    );
}

async fn an_update_read_before_a_close_does_not_reopen_the_challenge(f: Fixture) {
    let store = f.store.clone();
    store.insert_challenge(challenge("c")).await.unwrap();
    let id = ChallengeId::parse("c").unwrap();
    let mut read = store.get_challenge(&id).await.unwrap().unwrap();
    store
        .close_challenge(&id, 7_000, CloseWhen::Now)
        .await
        .unwrap();
    read.title = "renamed".into();
    assert!(
        !store.update_challenge(read).await.unwrap(),
        "the state changed since the read"
    );
    let stored = store.get_challenge(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, ChallengeState::Closed);
    assert_eq!(stored.closed_at, Some(7_000));
    let mut fresh = stored.clone();
    fresh.title = "renamed".into();
    assert!(store.update_challenge(fresh).await.unwrap());
    assert_eq!(
        store.get_challenge(&id).await.unwrap().unwrap().title,
        "renamed"
    );
}

async fn admission_refuses_outside_the_schedule_by_the_clock_not_the_state(f: Fixture) {
    let store = f.store.clone();
    let now = now_millis();
    // Past its deadline but not marked CLOSED yet: admission still refuses.
    store
        .insert_challenge(scheduled("c", Some(now - 1), 0))
        .await
        .unwrap();
    let s = submission("p", "alice", None);
    match store
        .insert_submission(s.clone(), OPEN, None)
        .await
        .unwrap()
    {
        InsertOutcome::OutsideWindow { challenge, at } => {
            let e = challenge.refusal_at(at).unwrap().to_string();
            assert!(
                e.contains(&format!("closed at {}", rfc3339(now - 1))),
                "{e}"
            );
        }
        other => panic!("admitted after the deadline: {other:?}"),
    }
    assert!(matches!(
        store.admission_refusal(s.clone(), OPEN).await.unwrap(),
        Some(InsertOutcome::OutsideWindow { .. })
    ));
    // Moved ahead (and before it opens): refused; then open: admitted.
    let id = ChallengeId::parse("c").unwrap();
    let mut c = store.get_challenge(&id).await.unwrap().unwrap();
    c.closes_at = Some(now + 3_600_000);
    c.opens_at = Some(now + 60_000);
    assert!(store.update_challenge(c.clone()).await.unwrap());
    assert!(matches!(
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap(),
        InsertOutcome::OutsideWindow { .. }
    ));
    c.opens_at = Some(now - 60_000);
    assert!(store.update_challenge(c).await.unwrap());
    assert!(matches!(
        store.insert_submission(s, OPEN, None).await.unwrap(),
        InsertOutcome::Inserted(_)
    ));
}

async fn a_selection_replaces_the_last_and_checks_everything_in_one_step(f: Fixture) {
    let store = f.store.clone();
    let now = now_millis();
    store
        .insert_challenge(scheduled("c", Some(now + 3_600_000), 2))
        .await
        .unwrap();
    let id = ChallengeId::parse("c").unwrap();
    let a1 = scored(&store, "p", "alice", true).await;
    let a2 = scored(&store, "p", "alice", true).await;
    let a3 = scored(&store, "p", "alice", true).await;
    let failed = scored(&store, "p", "alice", false).await;
    let bob = scored(&store, "p", "bob", true).await;
    let other_platform = scored(&store, "q", "alice", true).await;
    let sel = |ids: Vec<SubmissionId>, at: UnixMillis| Selection {
        challenge_id: id.clone(),
        owner: "p".into(),
        participant_id: ParticipantId::parse("alice").unwrap(),
        submission_ids: ids,
        at,
    };
    let selected = |o: SelectOutcome| match o {
        SelectOutcome::Selected(ids) => ids,
        other => panic!("not selected: {other:?}"),
    };
    assert_eq!(
        selected(
            store
                .select_submissions(sel(vec![a3.clone(), a1.clone()], now))
                .await
                .unwrap()
        ),
        vec![a1.clone(), a3.clone()],
        "oldest first"
    );
    // Replacing: the same set again changes nothing, a new set replaces the old.
    assert_eq!(
        selected(
            store
                .select_submissions(sel(vec![a1.clone(), a3.clone()], now))
                .await
                .unwrap()
        ),
        vec![a1.clone(), a3.clone()]
    );
    assert_eq!(
        selected(
            store
                .select_submissions(sel(vec![a2.clone()], now))
                .await
                .unwrap()
        ),
        vec![a2.clone()]
    );
    // Refusals leave the selection as it was.
    assert!(matches!(
        store
            .select_submissions(sel(vec![a1.clone(), a2.clone(), a3.clone()], now))
            .await
            .unwrap(),
        SelectOutcome::TooMany { limit: 2 }
    ));
    assert!(matches!(
        store.select_submissions(sel(vec![failed.clone()], now)).await.unwrap(),
        SelectOutcome::NotEligible(x) if x == failed
    ));
    assert!(matches!(
        store.select_submissions(sel(vec![a1.clone(), bob.clone()], now)).await.unwrap(),
        SelectOutcome::NotEligible(x) if x == bob
    ));
    assert!(matches!(
        store.select_submissions(sel(vec![other_platform.clone()], now)).await.unwrap(),
        SelectOutcome::Foreign(x) if x == other_platform
    ));
    assert!(matches!(
        store
            .select_submissions(sel(vec![a1.clone()], now + 3_600_000))
            .await
            .unwrap(),
        SelectOutcome::Closed(_)
    ));
    let mine = store
        .selections(&id, Some(("p".into(), "alice".into())))
        .await
        .unwrap();
    assert_eq!(
        mine.iter()
            .map(|r| r.submission_id.clone())
            .collect::<Vec<_>>(),
        vec![a2.clone()]
    );
    // Bob's own selection, and clearing Alice's.
    let bobs = Selection {
        participant_id: ParticipantId::parse("bob").unwrap(),
        ..sel(vec![bob.clone()], now)
    };
    selected(store.select_submissions(bobs).await.unwrap());
    assert_eq!(
        selected(store.select_submissions(sel(vec![], now)).await.unwrap()),
        Vec::<SubmissionId>::new()
    );
    let all = store.selections(&id, None).await.unwrap();
    assert_eq!(
        all,
        vec![SelectedRow {
            owner: "p".into(),
            participant_id: "bob".into(),
            submission_id: bob
        }]
    );
    // Racing selections of one participant: each applies whole, none half.
    let racers: Vec<_> = [vec![a1.clone(), a2.clone()], vec![a3.clone()]]
        .into_iter()
        .cycle()
        .take(8)
        .map(|ids| {
            let store = store.clone();
            let s = sel(ids, now);
            tokio::spawn(async move { store.select_submissions(s).await })
        })
        .collect();
    for r in racers {
        selected(r.await.unwrap().unwrap());
    }
    let last: Vec<_> = store
        .selections(&id, Some(("p".into(), "alice".into())))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.submission_id)
        .collect();
    assert!(
        last == vec![a1.clone(), a2.clone()] || last == vec![a3.clone()],
        "{last:?}"
    );
    // A challenge without final selection refuses any.
    store
        .insert_challenge(scheduled("d", None, 0))
        .await
        .unwrap();
    let none = Selection {
        challenge_id: ChallengeId::parse("d").unwrap(),
        ..sel(vec![], now)
    };
    assert!(matches!(
        store.select_submissions(none).await.unwrap(),
        SelectOutcome::NoSelection
    ));
}
