//! Rescoring a challenge from its runs' kept predictions, through the real server and real
//! containers: after a labels fix, under another built-in metric, cancelled, refused to a
//! submitter; the audit of old and new scores, and boards that never show a half-updated
//! state.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use holdout::cli::Client;
use holdout::pb;
use holdout::units::HumanDuration;
use tonic::Code;

/// Rows of the parity data set.
const ROWS: usize = 20;

/// A server whose jobs pause `pause_ms` between items, so a test can look mid-way.
async fn server_pausing(pause_ms: u64) -> TestServer {
    spawn_app_with(|c| c.job_item_pause = HumanDuration(Duration::from_millis(pause_ms))).await
}

/// The parity challenge `id` with alice (always right) and bob (always "even") scored.
async fn scored_challenge(server: &TestServer, id: &str) -> (pb::Submission, pb::Submission) {
    parity_data(server, id, ROWS);
    create(server, parity_challenge(id, id)).await.unwrap();
    let alice = run_full(server, id, "alice", PARITY_RIGHT).await;
    let bob = run_full(server, id, "bob", PARITY_EVEN).await;
    (alice, bob)
}

/// Submits a FULL run and waits for it to be scored; returns the admin's view.
async fn run_full(
    server: &TestServer,
    challenge: &str,
    participant: &str,
    sh: &str,
) -> pb::Submission {
    let client = server.client(&server.submitter).await;
    let s = client
        .submit(full(challenge, participant), tar_gz(&[("run.sh", sh)]))
        .await
        .unwrap();
    let last = client.watch(&s.id, |_| {}).await.unwrap();
    assert_eq!(last.verdict, pb::Verdict::Scored as i32, "{last:?}");
    server.admin_get(&s.id).await
}

/// The public board as (participant, score), best first.
async fn board(server: &TestServer, id: &str) -> Vec<(String, f64)> {
    server
        .client(&server.admin)
        .await
        .leaderboards()
        .get_leaderboard(authed(
            &server.admin,
            pb::GetLeaderboardRequest {
                challenge_id: id.into(),
                view: pb::LeaderboardView::Public as i32,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| (e.participant_id, e.score))
        .collect()
}

async fn rescore(
    client: &Client,
    token: &str,
    id: &str,
    metric: pb::Metric,
) -> Result<pb::Job, tonic::Status> {
    client
        .jobs()
        .rescore_challenge(authed(
            token,
            pb::RescoreChallengeRequest {
                challenge_id: id.into(),
                metric: metric as i32,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// Follows a job to its end; returns every update.
async fn watch_job(server: &TestServer, id: &str) -> Vec<pb::Job> {
    let mut stream = server
        .client(&server.admin)
        .await
        .jobs()
        .watch_job(authed(&server.admin, pb::WatchJobRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(j) = stream.message().await.unwrap() {
        seen.push(j);
    }
    seen
}

async fn changes(server: &TestServer, job: &str) -> Vec<pb::ScoreChange> {
    server
        .client(&server.admin)
        .await
        .jobs()
        .list_job_changes(authed(
            &server.admin,
            pb::ListJobChangesRequest { id: job.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .changes
}

/// Labels the first `n` rows of the challenge's labels.csv "odd" (the "fix"): of the first
/// eight, four were "even", so both alice's and bob's accuracy change.
fn fix_labels(server: &TestServer, id: &str, n: usize) {
    let rows = parity_data(server, id, ROWS);
    let mut labels = String::from("id,label\n");
    for (i, (row, label)) in rows.iter().enumerate() {
        let label = if i < n { "odd" } else { label.as_str() };
        labels.push_str(&format!("{row},{label}\n"));
    }
    server.write_data(id, &[("labels.csv", &labels)]);
}

fn exact(s: &pb::Submission) -> (HashMap<String, f64>, HashMap<String, f64>) {
    (
        s.public_scores_exact.clone(),
        s.private_scores_exact.clone(),
    )
}

#[tokio::test]
async fn rescoring_after_a_labels_fix_changes_the_scores_audits_old_and_new_and_never_shows_half() {
    within(240, async {
        let server = server_pausing(1500).await;
        let (alice, bob) = scored_challenge(&server, "fix").await;
        assert_eq!(alice.public_scores_exact["accuracy"], 1.0);
        let before = board(&server, "fix").await;
        fix_labels(&server, "fix", 8);

        let admin = server.client(&server.admin).await;
        let job = rescore(&admin, &server.admin, "fix", pb::Metric::Unspecified)
            .await
            .unwrap();
        assert_eq!(job.state, pb::JobState::Running as i32);
        assert_eq!(job.kind, pb::JobKind::Rescore as i32);
        // Mid-way (the job pauses 1.5 s per submission): the board is the old one, whole.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(board(&server, "fix").await, before);
        assert_eq!(exact(&server.admin_get(&alice.id).await), exact(&alice));
        let second = rescore(&admin, &server.admin, "fix", pb::Metric::Unspecified).await;
        assert_eq!(
            second.unwrap_err().code(),
            Code::FailedPrecondition,
            "one running job per challenge"
        );

        let updates = watch_job(&server, &job.id).await;
        let last = updates.last().unwrap();
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        assert_eq!((last.done, last.total), (2, 2));
        assert!(
            updates
                .iter()
                .any(|j| j.state == pb::JobState::Running as i32 && j.done < 2),
            "progress was seen before the end: {updates:?}"
        );
        assert!(last.message.contains("2 changed"), "{}", last.message);

        let (alice2, bob2) = (
            server.admin_get(&alice.id).await,
            server.admin_get(&bob.id).await,
        );
        assert_ne!(exact(&alice2), exact(&alice));
        assert_ne!(exact(&bob2), exact(&bob));
        // alice was right on every row; now the 8 fixed rows count against her.
        let acc = |s: &pb::Submission| {
            (
                s.public_scores_exact["accuracy"],
                s.private_scores_exact["accuracy"],
            )
        };
        let (public, private) = acc(&alice2);
        assert!(public < 1.0 || private < 1.0, "{:?}", acc(&alice2));
        let after = board(&server, "fix").await;
        assert_ne!(after, before);
        let alice_row = after.iter().find(|(p, _)| p == "alice").unwrap();
        assert!(
            (alice_row.1 - alice2.public_scores_exact["accuracy"]).abs() < 1e-3,
            "the board shows the new score: {after:?}"
        );

        let audit = changes(&server, &job.id).await;
        assert_eq!(audit.len(), 2);
        let a = audit.iter().find(|c| c.submission_id == alice.id).unwrap();
        assert_eq!(a.outcome, "changed");
        assert_eq!((a.old_public.clone(), a.old_private.clone()), exact(&alice));
        assert_eq!(
            (a.new_public.clone(), a.new_private.clone()),
            exact(&alice2)
        );
        assert_eq!(
            (a.platform.as_str(), a.participant_id.as_str()),
            ("platform-a", "alice")
        );

        // No quota was charged and no submission made: still the two runs.
        let listed = admin
            .submissions()
            .list_submissions(authed(
                &server.admin,
                pb::ListSubmissionsRequest {
                    challenge_id: "fix".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .submissions;
        assert_eq!(listed.len(), 2);
        // A changed result a submitter can read is another release in the ledger.
        let ledger = admin
            .audit()
            .get_leakage(authed(
                &server.admin,
                pb::GetLeakageRequest {
                    challenge_id: "fix".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for p in &ledger.participants {
            assert_eq!(p.results, 2, "{p:?}");
        }

        // Rescoring again with the same labels changes nothing, and says so.
        let again = rescore(&admin, &server.admin, "fix", pb::Metric::Unspecified)
            .await
            .unwrap();
        let last = watch_job(&server, &again.id).await.pop().unwrap();
        assert!(
            last.message.contains("0 changed, 2 unchanged"),
            "{}",
            last.message
        );
        assert!(
            changes(&server, &again.id)
                .await
                .iter()
                .all(|c| c.outcome == "unchanged" && c.old_public == c.new_public)
        );
    })
    .await;
}

#[tokio::test]
async fn rescoring_with_another_built_in_metric_changes_the_challenges_metric_with_the_scores() {
    within(180, async {
        let server = server_pausing(0).await;
        let (alice, _bob) = scored_challenge(&server, "metric").await;
        let admin = server.client(&server.admin).await;
        // A closed challenge is rescored too (its private board then shows the new metric).
        admin
            .challenges()
            .close_challenge(authed(
                &server.admin,
                pb::CloseChallengeRequest {
                    id: "metric".into(),
                },
            ))
            .await
            .unwrap();
        let job = rescore(
            &admin,
            &server.admin,
            "metric",
            pb::Metric::BalancedAccuracy,
        )
        .await
        .unwrap();
        let last = watch_job(&server, &job.id).await.pop().unwrap();
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        let c = admin
            .challenges()
            .get_challenge(authed(
                &server.admin,
                pb::GetChallengeRequest {
                    id: "metric".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        match c.scoring.unwrap().scorer.unwrap() {
            pb::scoring::Scorer::Builtin(b) => {
                assert_eq!(b.metric, pb::Metric::BalancedAccuracy as i32)
            }
            other => panic!("{other:?}"),
        }
        let alice2 = server.admin_get(&alice.id).await;
        assert_eq!(
            alice2.public_scores_exact.keys().collect::<Vec<_>>(),
            ["balanced_accuracy"]
        );
        assert_eq!(alice2.public_scores_exact["balanced_accuracy"], 1.0);
        let b = admin
            .leaderboards()
            .get_leaderboard(authed(
                &server.admin,
                pb::GetLeaderboardRequest {
                    challenge_id: "metric".into(),
                    view: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(b.metric, "balanced_accuracy");
        assert_eq!(b.entries.len(), 2);
        // A metric that cannot score the target fails the job, which then changed nothing.
        let failing = rescore(&admin, &server.admin, "metric", pb::Metric::Rmse)
            .await
            .unwrap();
        let last = watch_job(&server, &failing.id).await.pop().unwrap();
        assert_eq!(last.state, pb::JobState::Failed as i32, "{last:?}");
        assert!(last.message.contains("labels"), "{}", last.message);
        assert!(
            last.message.contains("nothing was changed"),
            "{}",
            last.message
        );
        assert_eq!(exact(&server.admin_get(&alice.id).await), exact(&alice2));
        assert!(changes(&server, &failing.id).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_rescore_leaves_every_score_and_the_board_as_they_were() {
    within(180, async {
        let server = server_pausing(3000).await;
        let (alice, bob) = scored_challenge(&server, "cancel").await;
        let before = board(&server, "cancel").await;
        fix_labels(&server, "cancel", 8);
        let admin = server.client(&server.admin).await;
        let job = rescore(&admin, &server.admin, "cancel", pb::Metric::Unspecified)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cancelled = admin
            .jobs()
            .cancel_job(authed(
                &server.admin,
                pb::CancelJobRequest { id: job.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.state, pb::JobState::Cancelled as i32);
        let last = watch_job(&server, &job.id).await.pop().unwrap();
        assert_eq!(last.state, pb::JobState::Cancelled as i32);
        // Past the time the job would have needed: still nothing written.
        tokio::time::sleep(Duration::from_millis(6500)).await;
        assert_eq!(exact(&server.admin_get(&alice.id).await), exact(&alice));
        assert_eq!(exact(&server.admin_get(&bob.id).await), exact(&bob));
        assert_eq!(board(&server, "cancel").await, before);
        assert!(changes(&server, &job.id).await.is_empty());
        let read = admin
            .jobs()
            .get_job(authed(
                &server.admin,
                pb::GetJobRequest { id: job.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.state, pb::JobState::Cancelled as i32, "{read:?}");
    })
    .await;
}

#[tokio::test]
async fn a_submitter_may_not_rescore_or_read_a_job() {
    within(120, async {
        let server = server_pausing(0).await;
        parity_data(&server, "deny", ROWS);
        create(&server, parity_challenge("deny", "deny"))
            .await
            .unwrap();
        let submitter = server.client(&server.submitter).await;
        let refused = rescore(
            &submitter,
            &server.submitter,
            "deny",
            pb::Metric::Unspecified,
        )
        .await;
        assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
        let admin = server.client(&server.admin).await;
        let job = rescore(&admin, &server.admin, "deny", pb::Metric::Unspecified)
            .await
            .unwrap();
        for status in [
            submitter
                .jobs()
                .get_job(authed(
                    &server.submitter,
                    pb::GetJobRequest { id: job.id.clone() },
                ))
                .await
                .unwrap_err(),
            submitter
                .jobs()
                .cancel_job(authed(
                    &server.submitter,
                    pb::CancelJobRequest { id: job.id.clone() },
                ))
                .await
                .unwrap_err(),
            submitter
                .jobs()
                .list_job_changes(authed(
                    &server.submitter,
                    pb::ListJobChangesRequest { id: job.id.clone() },
                ))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        }
        // A challenge with nothing scored finishes at once with nothing to do.
        let last = watch_job(&server, &job.id).await.pop().unwrap();
        assert_eq!(last.state, pb::JobState::Finished as i32);
        assert_eq!((last.done, last.total), (0, 0));
        let missing = admin
            .jobs()
            .get_job(authed(
                &server.admin,
                pb::GetJobRequest {
                    id: "j-00000000000000000000".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    })
    .await;
}

/// A throw-away image tag, removed when dropped.
struct Tag(String);

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// A second runtime image: the busybox one plus a file `/etc/holdout-flavour`, built
/// offline (FROM a local image, COPY only).
fn flavoured_image() -> Tag {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flavour"), "two\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY flavour /etc/holdout-flavour\n"),
    )
    .unwrap();
    let tag = Tag(format!(
        "holdout-test-rerun-{}-{}:1",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &tag.0])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// Right on the first image; always "even" on an image that has `/etc/holdout-flavour`.
fn flavour_sensitive() -> String {
    format!("if [ -f /etc/holdout-flavour ]; then\n{PARITY_EVEN}else\n{PARITY_RIGHT}fi\n")
}

async fn rerun(
    server: &TestServer,
    id: &str,
    participants: &[&str],
    submissions: &[&str],
) -> Result<pb::Job, tonic::Status> {
    server
        .client(&server.admin)
        .await
        .jobs()
        .rerun_submissions(authed(
            &server.admin,
            pb::RerunSubmissionsRequest {
                challenge_id: id.into(),
                participant_ids: participants.iter().map(|p| p.to_string()).collect(),
                submission_ids: submissions.iter().map(|s| s.to_string()).collect(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_rerun_under_a_new_image_swaps_results_in_at_once_uncharged_and_audited() {
    within(300, async {
        let server = server_pausing(0).await;
        parity_data(&server, "image", ROWS);
        let mut c = parity_challenge("image", "image");
        c.quota = Some(pb::Quota {
            full_per_day: 2,
            ..Default::default()
        });
        create(&server, c).await.unwrap();
        let alice = run_full(&server, "image", "alice", &flavour_sensitive()).await;
        let bob = run_full(&server, "image", "bob", PARITY_EVEN).await;
        assert_eq!(alice.public_scores_exact["accuracy"], 1.0);
        let before = board(&server, "image").await;

        let image = flavoured_image();
        let admin = server.client(&server.admin).await;
        let mut update = parity_challenge("image", "image");
        update.runtime.as_mut().unwrap().image = image.0.clone();
        admin
            .challenges()
            .update_challenge(authed(
                &server.admin,
                pb::UpdateChallengeRequest {
                    challenge: Some(update),
                    update_mask: vec!["runtime".into()],
                },
            ))
            .await
            .unwrap();

        let job = rerun(&server, "image", &[], &[]).await.unwrap();
        assert_eq!(job.kind, pb::JobKind::Rerun as i32);
        let second = rerun(&server, "image", &[], &[]).await;
        assert_eq!(second.unwrap_err().code(), Code::FailedPrecondition);
        // While the re-runs run: the board and the submitter's listing are as before.
        let submitter = server.client(&server.submitter).await;
        let mut during = Vec::new();
        let watcher = watch_job(&server, &job.id);
        let observer = async {
            for _ in 0..6 {
                during.push(board(&server, "image").await);
                let listed = submitter
                    .submissions()
                    .list_submissions(authed(
                        &server.submitter,
                        pb::ListSubmissionsRequest {
                            challenge_id: "image".into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .submissions;
                assert_eq!(listed.len(), 2, "re-runs are in no submitter's listing");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let (updates, ()) = tokio::join!(watcher, observer);
        let last = updates.last().unwrap();
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        assert_eq!((last.done, last.total), (2, 2));
        let after = board(&server, "image").await;
        for b in &during {
            assert!(b == &before || b == &after, "half-updated: {b:?}");
        }
        assert!(
            last.message.contains("1 changed, 1 unchanged"),
            "{}",
            last.message
        );

        let alice2 = server.admin_get(&alice.id).await;
        assert_eq!(
            alice2.public_scores_exact, bob.public_scores_exact,
            "alice now answers even"
        );
        assert_eq!(exact(&server.admin_get(&bob.id).await), exact(&bob));
        assert_ne!(board(&server, "image").await, before);
        let audit = changes(&server, &job.id).await;
        let a = audit.iter().find(|c| c.submission_id == alice.id).unwrap();
        assert!(
            a.outcome.starts_with("changed: scored -> scored"),
            "{}",
            a.outcome
        );
        assert_eq!((a.old_public.clone(), a.old_private.clone()), exact(&alice));
        assert_eq!(
            (a.new_public.clone(), a.new_private.clone()),
            exact(&alice2)
        );
        let b = audit.iter().find(|c| c.submission_id == bob.id).unwrap();
        assert_eq!(b.outcome, "unchanged");

        // The originals' kept predictions followed: a rescore now agrees with the re-runs.
        let check = rescore(&admin, &server.admin, "image", pb::Metric::Unspecified)
            .await
            .unwrap();
        let last = watch_job(&server, &check.id).await.pop().unwrap();
        assert!(
            last.message.contains("0 changed, 2 unchanged"),
            "{}",
            last.message
        );

        // Nothing was charged: alice still has her second FULL submission of the day.
        let third = run_full(&server, "image", "alice", PARITY_RIGHT).await;
        assert_eq!(third.verdict, pb::Verdict::Scored as i32);
        let refused = submitter
            .submit(full("image", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::ResourceExhausted,
            "the quota is 2, as charged"
        );

        // A filtered re-run touches only what it names.
        let only_bob = rerun(&server, "image", &[], &[&bob.id]).await.unwrap();
        let last = watch_job(&server, &only_bob.id).await.pop().unwrap();
        assert_eq!(
            (last.state, last.total),
            (pb::JobState::Finished as i32, 1),
            "{last:?}"
        );
        let only_carol = rerun(&server, "image", &["carol"], &[]).await.unwrap();
        let last = watch_job(&server, &only_carol.id).await.pop().unwrap();
        assert_eq!(
            (last.state, last.total),
            (pb::JobState::Finished as i32, 0),
            "{last:?}"
        );
        let denied = server
            .client(&server.submitter)
            .await
            .jobs()
            .rerun_submissions(authed(
                &server.submitter,
                pb::RerunSubmissionsRequest {
                    challenge_id: "image".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_rerun_cancels_its_runs_and_changes_nothing() {
    within(180, async {
        let server = server_pausing(0).await;
        parity_data(&server, "stop", ROWS);
        create(&server, parity_challenge("stop", "stop"))
            .await
            .unwrap();
        let alice = run_full(&server, "stop", "alice", PARITY_RIGHT).await;
        let slow = format!("if [ -f /data/slow ]; then sleep 15; fi\n{PARITY_RIGHT}");
        let bob = run_full(&server, "stop", "bob", &slow).await;
        // bob's stored archive sleeps on its next run: the data changed under it.
        server.write_data("stop", &[("inputs/slow", "1")]);
        let job = rerun(&server, "stop", &[], &[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server
            .client(&server.admin)
            .await
            .jobs()
            .cancel_job(authed(
                &server.admin,
                pb::CancelJobRequest { id: job.id.clone() },
            ))
            .await
            .unwrap();
        let last = watch_job(&server, &job.id).await.pop().unwrap();
        assert_eq!(last.state, pb::JobState::Cancelled as i32);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(exact(&server.admin_get(&alice.id).await), exact(&alice));
        assert_eq!(exact(&server.admin_get(&bob.id).await), exact(&bob));
        assert!(changes(&server, &job.id).await.is_empty());
        // Its re-runs (the admin sees them, owned by the job) were cancelled, not left to run.
        let all = server
            .client(&server.admin)
            .await
            .submissions()
            .list_submissions(authed(
                &server.admin,
                pb::ListSubmissionsRequest {
                    challenge_id: "stop".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .submissions;
        let reruns: Vec<_> = all
            .iter()
            .filter(|s| s.id != alice.id && s.id != bob.id)
            .collect();
        assert_eq!(reruns.len(), 2);
        assert!(
            reruns
                .iter()
                .all(|s| s.state >= pb::SubmissionState::Succeeded as i32),
            "every re-run ended: {reruns:?}"
        );
        assert!(
            reruns
                .iter()
                .any(|s| s.state == pb::SubmissionState::Cancelled as i32),
            "the slow one was cancelled: {reruns:?}"
        );
    })
    .await;
}

/// An organiser's scorer (busybox awk): accuracy over the split's labels, primary "acc".
const ACCURACY_SCORER: &str = r#"awk -F, '
FNR == 1 { next }
NR == FNR { label[$1] = $2; n++; next }
($1 in label) && label[$1] == $2 { correct++ }
END { printf "{\"acc\": %.17g}\n", correct / n }
' /labels/labels.csv /predictions/predictions.csv > /output/scores.json
"#;

#[tokio::test]
async fn a_custom_scored_challenge_is_re_run_through_its_scorer_but_never_rescored() {
    within(240, async {
        let server = spawn_app().await;
        parity_data(&server, "custom", ROWS);
        let mut c = parity_challenge("custom", "custom");
        c.scoring.as_mut().unwrap().scorer = Some(pb::scoring::Scorer::Custom(pb::CustomScorer {
            image: BUSYBOX.into(),
            command: vec!["sh".into(), "-c".into(), ACCURACY_SCORER.into()],
            primary_metric: "acc".into(),
            greater_is_better: true,
            release_messages: false,
        }));
        create(&server, c).await.unwrap();
        let bob = run_full(&server, "custom", "bob", PARITY_EVEN).await;

        // Rescoring reads kept predictions with a built-in metric: refused by name.
        let admin = server.client(&server.admin).await;
        let refused = rescore(&admin, &server.admin, "custom", pb::Metric::Unspecified)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

        // After a labels fix, a re-run goes through the organiser's scorer again.
        fix_labels(&server, "custom", 8);
        let job = rerun(&server, "custom", &[], &[]).await.unwrap();
        let seen = watch_job(&server, &job.id).await;
        let last = seen.last().unwrap();
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        let after = server.admin_get(&bob.id).await;
        assert_eq!(after.verdict, pb::Verdict::Scored as i32, "{after:?}");
        assert_ne!(
            exact(&after),
            exact(&bob),
            "the fixed labels changed bob's scores"
        );
        // The scorer's new public accuracy is "even" answered everywhere, on the fixed labels.
        let split = holdout::scoring::Split {
            public_fraction: 0.5,
            seed: 7,
        };
        let rows = (0..ROWS).map(|i| {
            let x = (i * 7 + 3) % 101;
            let label = if i < 8 || x % 2 == 1 { "odd" } else { "even" };
            (format!("r{i:04}"), label)
        });
        let public: Vec<_> = rows
            .filter(|(id, _)| split.is_public(id.as_bytes()))
            .collect();
        let expected =
            public.iter().filter(|(_, l)| *l == "even").count() as f64 / public.len() as f64;
        assert_eq!(after.public_scores_exact.get("acc"), Some(&expected));
        let audit = changes(&server, &job.id).await;
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert!(server.leftover_containers().await.is_empty());
    })
    .await;
}
