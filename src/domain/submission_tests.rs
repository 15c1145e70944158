//! Every transition of the submission state machine, legal and illegal.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const STATES: [SubmissionState; 6] = [
    SubmissionState::Queued,
    SubmissionState::Running,
    SubmissionState::Scoring,
    SubmissionState::Succeeded,
    SubmissionState::Failed,
    SubmissionState::Cancelled,
];

fn record(state: SubmissionState, attempts: u32) -> SubmissionRecord {
    let mut s = Submission::new(NewSubmission {
        id: SubmissionId::generate(),
        challenge_id: ChallengeId::parse("c").unwrap(),
        participant_id: ParticipantId::parse("alice").unwrap(),
        owner: "platform".into(),
        kind: SubmissionKind::Full,
        archive_sha256: "ab".repeat(32),
        created_at: 1_000,
        idempotency_key: None,
    })
    .0;
    s.state = state;
    s.attempts = attempts;
    s.started_at = (state != SubmissionState::Queued).then_some(2_000);
    s
}

fn at(state: SubmissionState) -> Submission {
    Submission::from_record(record(state, 1))
}

fn usage() -> Usage {
    Usage {
        wall_time: Duration::from_millis(1500),
        peak_memory_bytes: 1 << 20,
        exit_code: Some(0),
        signal: None,
        cpu_time: Duration::from_millis(900),
    }
}

fn quota(count_failed: bool) -> Quota {
    Quota {
        count_failed,
        ..Quota::default()
    }
}

fn scores(v: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("accuracy".to_owned(), v)])
}

/// Applies `action` with ordinary arguments.
fn apply(s: &Submission, action: Action) -> Result<Transition, IllegalTransition> {
    match action {
        Action::Start => s.start(5_000),
        Action::BeginScoring => s.begin_scoring(usage()),
        Action::Score => s.score(scores(0.9), scores(0.8), 5_000),
        Action::Fail => s.fail(
            Verdict::RuntimeError,
            "failed".into(),
            "exit 1".into(),
            Some(usage()),
            &quota(true),
            5_000,
        ),
        Action::Cancel => s.cancel(None, &quota(true), 5_000),
        Action::CancelHeld => s.cancel_held(&held_policy(), &quota(true), WALL, 5_000),
        Action::FailInternal => s.fail_internal("boom".into(), 5_000),
        Action::Requeue => s.requeue(Interruption::Engine("gone".into()), 3, 5_000),
        Action::Rescore => s.rescore(scores(0.5), scores(0.4)),
        Action::TakeRerun => s.take_rerun(&at(SubmissionState::Succeeded)),
    }
}

const ACTIONS: [Action; 10] = [
    Action::Start,
    Action::BeginScoring,
    Action::Score,
    Action::Fail,
    Action::Cancel,
    Action::CancelHeld,
    Action::FailInternal,
    Action::Requeue,
    Action::Rescore,
    Action::TakeRerun,
];

const WALL: Duration = Duration::from_secs(10);

/// Constant-time release with a 30 s budget: a run started at 2,000 is held until 42,000.
fn held_policy() -> ReleasePolicy {
    ReleasePolicy {
        constant_time_release: true,
        ..ReleasePolicy::default()
    }
}

/// The legal (action, from) pairs and the state each leads to.
fn legal(action: Action, from: SubmissionState) -> Option<SubmissionState> {
    use SubmissionState::*;
    match (action, from) {
        (Action::Start, Queued) => Some(Running),
        (Action::BeginScoring, Running) => Some(Scoring),
        (Action::Score, Scoring) => Some(Succeeded),
        (Action::Fail, Running | Scoring) => Some(Failed),
        (Action::Cancel, Queued | Running | Scoring) => Some(Cancelled),
        (Action::CancelHeld, Succeeded | Failed) => Some(Cancelled),
        (Action::FailInternal, Queued | Running | Scoring) => Some(Failed),
        (Action::Requeue, Running | Scoring) => Some(Queued),
        (Action::Rescore, Succeeded) => Some(Succeeded),
        (Action::TakeRerun, Succeeded | Failed) => Some(Succeeded),
        _ => None,
    }
}

#[test]
fn every_action_from_every_state_is_either_the_documented_transition_or_refused() {
    for from in STATES {
        let s = at(from);
        for action in ACTIONS {
            match (legal(action, from), apply(&s, action)) {
                (Some(to), Ok(t)) => {
                    assert_eq!(t.next().state, to, "{action:?} from {from}");
                    assert_eq!(t.expected_state(), from, "{action:?} from {from}");
                    assert_eq!(t.expected_attempts(), 1, "{action:?} from {from}");
                    // Identity never changes.
                    assert_eq!(t.next().id, s.id);
                    assert_eq!(t.next().created_at, s.created_at);
                }
                (None, Err(e)) => {
                    assert_eq!((e.from, e.action), (from, action));
                }
                (want, got) => panic!("{action:?} from {from}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}

#[test]
fn terminal_states_accept_nothing_but_the_cancel_of_a_held_result_and_a_rescore() {
    for from in STATES.into_iter().filter(|s| s.is_terminal()) {
        for action in ACTIONS
            .into_iter()
            .filter(|a| *a != Action::CancelHeld)
            .filter(|a| *a != Action::Rescore || from != SubmissionState::Succeeded)
            .filter(|a| {
                *a != Action::TakeRerun
                    || !matches!(from, SubmissionState::Succeeded | SubmissionState::Failed)
            })
        {
            assert!(apply(&at(from), action).is_err(), "{action:?} from {from}");
        }
    }
}

#[test]
fn a_held_result_can_be_cancelled_until_its_deadline_only() {
    let mut r = record(SubmissionState::Succeeded, 1);
    r.finished_at = Some(3_000);
    let s = Submission::from_record(r);
    let policy = held_policy();
    // Started at 2,000: held until 2,000 + 10 s + 30 s.
    assert_eq!(policy.deadline_of(&s, WALL), Some(42_000));
    let t = s.cancel_held(&policy, &quota(false), WALL, 41_999).unwrap();
    assert_eq!(
        (t.next().state, t.next().verdict, t.next().charged),
        (SubmissionState::Cancelled, Verdict::Cancelled, false)
    );
    assert_eq!(
        t.next().public_scores,
        s.public_scores,
        "admins keep the scores"
    );
    assert!(s.cancel_held(&policy, &quota(true), WALL, 42_000).is_err());
    let open = ReleasePolicy::default();
    assert!(s.cancel_held(&open, &quota(true), WALL, 3_000).is_err());
}

#[test]
fn cancelling_a_started_full_run_is_charged_like_a_failure_but_a_queued_one_never() {
    let running = at(SubmissionState::Running);
    assert!(
        running
            .cancel(None, &quota(true), 1)
            .unwrap()
            .next()
            .charged
    );
    assert!(
        !running
            .cancel(None, &quota(false), 1)
            .unwrap()
            .next()
            .charged
    );
    let queued = at(SubmissionState::Queued);
    assert!(!queued.cancel(None, &quota(true), 1).unwrap().next().charged);
    let mut smoke = record(SubmissionState::Running, 1);
    smoke.kind = SubmissionKind::Smoke;
    let smoke = Submission::from_record(smoke);
    assert!(!smoke.cancel(None, &quota(true), 1).unwrap().next().charged);
}

#[test]
fn a_new_submission_is_queued_uncharged_of_nothing_yet() {
    let s = at(SubmissionState::Queued);
    assert_eq!(s.verdict, Verdict::Unspecified);
    assert!(s.finished_at.is_none() && s.usage.is_none());
}

#[test]
fn start_counts_an_attempt_and_records_the_start() {
    let s = Submission::from_record(record(SubmissionState::Queued, 2));
    let t = s.start(7_000).unwrap();
    assert_eq!(t.next().attempts, 3);
    assert_eq!(t.next().started_at, Some(7_000));
    assert_eq!(t.expected_attempts(), 2);
}

#[test]
fn begin_scoring_records_the_usage() {
    let t = at(SubmissionState::Running).begin_scoring(usage()).unwrap();
    assert_eq!(t.next().usage, Some(usage()));
}

#[test]
fn a_scored_run_is_charged_and_keeps_its_exact_scores() {
    let t = at(SubmissionState::Scoring)
        .score(scores(0.91), scores(0.87), 9_000)
        .unwrap();
    let n = t.next();
    assert_eq!(
        (n.verdict, n.charged, n.finished_at),
        (Verdict::Scored, true, Some(9_000))
    );
    assert_eq!(n.public_scores, scores(0.91));
    assert_eq!(n.private_scores, scores(0.87));
    assert_eq!(n.message, SCORED_MESSAGE);
}

#[test]
fn a_score_that_is_not_finite_is_refused() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let s = at(SubmissionState::Scoring);
        assert!(s.score(scores(bad), scores(0.5), 1).is_err());
        assert!(s.score(scores(0.5), scores(bad), 1).is_err());
    }
}

#[test]
fn a_failure_is_charged_only_when_the_challenge_counts_failed_runs() {
    for verdict in [
        Verdict::TimeLimitExceeded,
        Verdict::MemoryLimitExceeded,
        Verdict::OutputLimitExceeded,
        Verdict::RuntimeError,
        Verdict::InvalidPredictions,
    ] {
        for count_failed in [false, true] {
            let t = at(SubmissionState::Running)
                .fail(
                    verdict,
                    "m".into(),
                    "d".into(),
                    None,
                    &quota(count_failed),
                    1,
                )
                .unwrap();
            assert_eq!(t.next().verdict, verdict);
            assert_eq!(t.next().charged, count_failed, "{verdict} {count_failed}");
            assert_eq!(
                (t.next().message.as_str(), t.next().detail.as_str()),
                ("m", "d")
            );
        }
    }
}

#[test]
fn fail_refuses_verdicts_that_have_their_own_transition() {
    for verdict in [
        Verdict::Unspecified,
        Verdict::Scored,
        Verdict::Cancelled,
        Verdict::InternalError,
    ] {
        let e = at(SubmissionState::Running)
            .fail(verdict, String::new(), String::new(), None, &quota(true), 1)
            .unwrap_err();
        assert_eq!(e.action, Action::Fail);
        assert!(e.why.is_some());
    }
}

#[test]
fn cancels_uncounted_and_internal_errors_are_never_charged() {
    for from in [
        SubmissionState::Queued,
        SubmissionState::Running,
        SubmissionState::Scoring,
    ] {
        let c = at(from).cancel(Some(usage()), &quota(false), 3).unwrap();
        assert_eq!(
            (c.next().verdict, c.next().charged),
            (Verdict::Cancelled, false)
        );
        assert_eq!(c.next().message, CANCELLED_MESSAGE);
        let i = at(from).fail_internal("why".into(), 3).unwrap();
        assert_eq!(
            (i.next().verdict, i.next().charged),
            (Verdict::InternalError, false)
        );
        assert_eq!(i.next().message, INTERNAL_ERROR_MESSAGE);
        assert_eq!(i.next().detail, "why");
    }
}

#[test]
fn a_requeue_clears_the_attempt_but_keeps_the_count() {
    let mut r = record(SubmissionState::Scoring, 1);
    r.usage = Some(usage());
    let t = Submission::from_record(r)
        .requeue(Interruption::Service("disk".into()), 3, 1)
        .unwrap();
    let n = t.next();
    assert_eq!(n.state, SubmissionState::Queued);
    assert_eq!((n.attempts, n.started_at, &n.usage), (1, None, &None));
    assert_eq!(n.detail, "disk");
}

#[test]
fn a_shutdown_gives_its_attempt_back() {
    let t = Submission::from_record(record(SubmissionState::Running, 3))
        .requeue(Interruption::Shutdown, 3, 1)
        .unwrap();
    assert_eq!(t.next().state, SubmissionState::Queued);
    assert_eq!(t.next().attempts, 2);
    assert_eq!(t.next().detail, "interrupted by shutdown");
    let t = Submission::from_record(record(SubmissionState::Scoring, 1))
        .requeue(Interruption::Shutdown, 3, 1)
        .unwrap();
    assert_eq!(t.next().detail, "interrupted by shutdown while scoring");
}

#[test]
fn too_many_interrupted_attempts_fail_as_an_internal_error() {
    let engine = Submission::from_record(record(SubmissionState::Running, 3))
        .requeue(Interruption::Engine("engine gone".into()), 3, 9)
        .unwrap();
    let n = engine.next();
    assert_eq!(
        (n.state, n.verdict, n.charged),
        (SubmissionState::Failed, Verdict::InternalError, false)
    );
    assert_eq!(
        (n.message.as_str(), n.detail.as_str()),
        (INTERNAL_ERROR_MESSAGE, "engine gone")
    );
    assert_eq!((n.attempts, n.finished_at), (3, Some(9)));

    let restart = Submission::from_record(record(SubmissionState::Scoring, 3))
        .requeue(Interruption::Restart, 3, 9)
        .unwrap();
    let n = restart.next();
    assert_eq!(n.verdict, Verdict::InternalError);
    assert_eq!(n.message, INTERRUPTED_MESSAGE);
    assert_eq!(
        n.detail,
        "interrupted by a service restart after 3 attempts"
    );
}

#[test]
fn a_restart_below_the_limit_requeues_without_a_detail() {
    let t = Submission::from_record(record(SubmissionState::Running, 2))
        .requeue(Interruption::Restart, 3, 9)
        .unwrap();
    assert_eq!(t.next().state, SubmissionState::Queued);
    assert_eq!(t.next().detail, "");
}

#[test]
fn a_refusal_names_the_state_and_the_action() {
    let e = at(SubmissionState::Succeeded)
        .cancel(None, &quota(true), 1)
        .unwrap_err();
    assert_eq!(e.to_string(), "a SUCCEEDED submission cannot be cancelled");
}

#[test]
fn a_rescore_changes_only_the_scores_of_a_succeeded_submission() {
    let s = at(SubmissionState::Succeeded);
    let t = s.rescore(scores(0.25), scores(0.75)).unwrap();
    let n = t.next();
    assert_eq!(n.public_scores, scores(0.25));
    assert_eq!(n.private_scores, scores(0.75));
    assert_eq!(
        (n.verdict, n.finished_at, n.charged, &n.message),
        (s.verdict, s.finished_at, s.charged, &s.message)
    );
    assert!(s.rescore(scores(f64::NAN), scores(0.1)).is_err());
}

#[test]
fn taking_a_rerun_replaces_the_result_but_keeps_identity_times_and_charge() {
    let original = at(SubmissionState::Succeeded);
    let mut r = record(SubmissionState::Failed, 1);
    r.verdict = Verdict::RuntimeError;
    r.message = "exit 1".into();
    r.public_scores.clear();
    r.private_scores.clear();
    r.charged = false;
    let rerun = Submission::from_record(r);
    let n = original.take_rerun(&rerun).unwrap().into_next();
    assert_eq!(
        (n.state, n.verdict),
        (SubmissionState::Failed, Verdict::RuntimeError)
    );
    assert!(n.public_scores.is_empty());
    assert_eq!(
        (&n.id, n.created_at, n.finished_at, n.charged),
        (
            &original.id,
            original.created_at,
            original.finished_at,
            original.charged
        )
    );
    let mut broken = record(SubmissionState::Failed, 1);
    broken.verdict = Verdict::InternalError;
    assert!(
        original
            .take_rerun(&Submission::from_record(broken))
            .is_err()
    );
    let mut other = record(SubmissionState::Succeeded, 1);
    other.archive_sha256 = "ff".repeat(32);
    assert!(
        original
            .take_rerun(&Submission::from_record(other))
            .is_err()
    );
}
