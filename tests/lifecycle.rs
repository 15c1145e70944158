//! A challenge's lifecycle through the real server, real SQLite (or PostgreSQL) and real
//! Docker: the schedule (refused before it opens and after it closes, closed by the server
//! itself at the deadline, across a restart) and the final selection (select, change,
//! refusals, the default, and the private leaderboard it ranks).

mod common;

use std::time::Duration;

use common::*;
use holdout::cli::Client;
use holdout::domain::{now_millis, rfc3339};
use holdout::pb;
use tonic::Code;

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// A parity solution right on rows whose x is below `t`, wrong on the rest: different
/// thresholds give different public and private scores.
fn right_below(t: u32) -> String {
    format!(
        r#"awk -F, -v T={t} 'NR==1{{print "id,label"; next}}{{r=(($2%2==0)?"even":"odd"); w=(($2%2==0)?"odd":"even"); print $1","(($2<T)?r:w)}}' /data/test.csv > /output/predictions.csv
"#
    )
}

async fn submit(
    client: &Client,
    challenge: &str,
    participant: &str,
    script: &str,
) -> pb::Submission {
    client
        .submit(full(challenge, participant), tar_gz(&[("run.sh", script)]))
        .await
        .expect("submission accepted")
}

/// Follows `id` to its end and checks it was scored.
async fn scored(client: &Client, id: &str) -> pb::Submission {
    let s = client.watch(id, |_| {}).await.unwrap();
    assert_eq!(
        s.state,
        pb::SubmissionState::Succeeded as i32,
        "not scored: {s:?}"
    );
    s
}

async fn challenge(client: &Client, id: &str) -> pb::Challenge {
    client
        .challenges()
        .get_challenge(client.request(pb::GetChallengeRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn private_board(client: &Client, id: &str) -> Result<pb::Leaderboard, tonic::Status> {
    client
        .leaderboards()
        .get_leaderboard(client.request(pb::GetLeaderboardRequest {
            challenge_id: id.into(),
            view: pb::LeaderboardView::Private as i32,
        }))
        .await
        .map(|r| r.into_inner())
}

async fn select(
    client: &Client,
    challenge: &str,
    participant: &str,
    ids: &[&str],
) -> Result<pb::SelectSubmissionsResponse, tonic::Status> {
    client
        .submissions()
        .select_submissions(client.request(pb::SelectSubmissionsRequest {
            challenge_id: challenge.into(),
            participant_id: participant.into(),
            submission_ids: ids.iter().map(|s| s.to_string()).collect(),
        }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_deadline_passing_closes_the_challenge_by_itself_and_queued_runs_still_count() {
    within(180, async {
        // One run at a time, so the second submission waits in the queue past the deadline.
        let server = spawn_app_with(|c| c.concurrency = 1).await;
        parity_data(&server, "parity", 40);
        let closes_at = now_millis() + 4_000;
        let mut c = parity_challenge("deadline", "parity");
        c.closes_at = Some(timestamp(closes_at));
        create(&server, c).await.unwrap();
        let platform = server.client(&server.submitter).await;
        // Each run outlasts the deadline, so whichever the scheduler starts first, the other
        // is still queued when the deadline passes.
        let slow = format!("sleep 6\n{PARITY_RIGHT}");
        let first = submit(&platform, "deadline", "alice", &slow).await;
        let second = submit(&platform, "deadline", "bob", &slow).await;

        // After the deadline: refused with the time, whether or not the closer has run.
        let wait = closes_at - now_millis();
        tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 50)).await;
        let late = platform
            .submit(
                full("deadline", "carol"),
                tar_gz(&[("run.sh", PARITY_RIGHT)]),
            )
            .await
            .unwrap_err();
        assert_eq!(late.code(), Code::FailedPrecondition);
        assert!(
            late.message()
                .contains(&format!("closed at {}", rfc3339(closes_at))),
            "{}",
            late.message()
        );
        let mut states = Vec::new();
        for id in [&first.id, &second.id] {
            let s = platform
                .submissions()
                .get_submission(platform.request(pb::GetSubmissionRequest { id: id.clone() }))
                .await
                .unwrap()
                .into_inner();
            states.push(s.state);
        }
        states.sort();
        assert_eq!(
            states,
            [
                pb::SubmissionState::Queued as i32,
                pb::SubmissionState::Running as i32
            ],
            "one run was still waiting at the deadline"
        );

        // The challenge shows CLOSED on its own, closed at its deadline.
        let mut shown = challenge(&platform, "deadline").await;
        for _ in 0..50 {
            if shown.state == pb::ChallengeState::Closed as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            shown = challenge(&platform, "deadline").await;
        }
        assert_eq!(shown.state, pb::ChallengeState::Closed as i32);
        assert_eq!(shown.closed_at.as_ref().map(millis), Some(closes_at));

        // Both runs accepted before the deadline still run and count.
        for id in [&first.id, &second.id] {
            let done = scored(&platform, id).await;
            assert_eq!(done.scores.get("accuracy"), Some(&1.0));
        }
        let board = private_board(&platform, "deadline").await.unwrap();
        let rows: Vec<(&str, &str)> = board
            .entries
            .iter()
            .map(|e| (e.participant_id.as_str(), e.submission_id.as_str()))
            .collect();
        assert!(rows.contains(&("bob", second.id.as_str())), "{rows:?}");
        assert!(rows.contains(&("alice", first.id.as_str())), "{rows:?}");
    })
    .await;
}

#[tokio::test]
async fn a_submission_before_the_challenge_opens_is_refused_with_the_time() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let opens_at = (now_millis() / 1000 + 3600) * 1000;
        let mut c = parity_challenge("later", "parity");
        c.opens_at = Some(timestamp(opens_at));
        create(&server, c).await.unwrap();
        let platform = server.client(&server.submitter).await;
        let early = platform
            .submit(full("later", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(early.code(), Code::FailedPrecondition);
        assert!(
            early
                .message()
                .contains(&format!("opens at {}", rfc3339(opens_at))),
            "{}",
            early.message()
        );
        let shown = challenge(&platform, "later").await;
        assert_eq!(shown.opens_at.as_ref().map(millis), Some(opens_at));
        assert_eq!(shown.state, pb::ChallengeState::Open as i32);
    })
    .await;
}

#[tokio::test]
async fn a_schedule_is_validated_moved_while_open_and_never_reopens_a_closed_challenge() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let now = now_millis();
        let backwards = pb::Challenge {
            opens_at: Some(timestamp(now + 7_200_000)),
            closes_at: Some(timestamp(now + 3_600_000)),
            ..parity_challenge("backwards", "parity")
        };
        let e = create(&server, backwards).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("closes_at: must be after opens_at"),
            "{}",
            e.message()
        );
        let past = pb::Challenge {
            closes_at: Some(timestamp(now - 1_000)),
            ..parity_challenge("past", "parity")
        };
        let e = create(&server, past).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("in the past"), "{}", e.message());

        let mut c = parity_challenge("moving", "parity");
        c.closes_at = Some(timestamp(now + 3_600_000));
        create(&server, c.clone()).await.unwrap();
        let admin = server.client(&server.admin).await;
        let update = |closes: i64| pb::UpdateChallengeRequest {
            challenge: Some(pb::Challenge {
                closes_at: Some(timestamp(closes)),
                ..c.clone()
            }),
            update_mask: vec!["closes_at".into()],
        };
        let later = now + 7_200_000;
        let moved = admin
            .challenges()
            .update_challenge(admin.request(update(later)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(moved.closes_at.as_ref().map(millis), Some(later));
        admin
            .challenges()
            .close_challenge(admin.request(pb::CloseChallengeRequest {
                id: "moving".into(),
            }))
            .await
            .unwrap();
        let e = admin
            .challenges()
            .update_challenge(admin.request(update(later + 1000)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("not reopened"), "{}", e.message());
        let more_selections = pb::UpdateChallengeRequest {
            challenge: Some(pb::Challenge {
                release: Some(pb::ReleasePolicy {
                    final_selections: 3,
                    ..Default::default()
                }),
                ..c.clone()
            }),
            update_mask: vec!["release".into()],
        };
        let e = admin
            .challenges()
            .update_challenge(admin.request(more_selections))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(
            e.message().contains("final ranking is fixed"),
            "{}",
            e.message()
        );
        assert_eq!(
            challenge(&admin, "moving").await.state,
            pb::ChallengeState::Closed as i32
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_that_was_down_at_the_deadline_closes_the_challenge_when_it_starts() {
    within(60, async {
        let mut server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let closes_at = now_millis() + 3_000;
        let mut c = parity_challenge("overnight", "parity");
        c.closes_at = Some(timestamp(closes_at));
        create(&server, c).await.unwrap();
        server.stop().await;
        let wait = closes_at - now_millis();
        tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 200)).await;
        server.restart().await;
        // The very first call after the start sees it closed: closed before serving.
        let platform = server.client(&server.submitter).await;
        let shown = challenge(&platform, "overnight").await;
        assert_eq!(shown.state, pb::ChallengeState::Closed as i32);
        assert_eq!(shown.closed_at.as_ref().map(millis), Some(closes_at));
        private_board(&platform, "overnight")
            .await
            .expect("the private board is readable by submitters once closed");
    })
    .await;
}

/// A challenge with final selection of `n`, open for an hour.
async fn selection_challenge(server: &TestServer, id: &str, n: u32) {
    parity_data(server, "parity", 60);
    let mut c = parity_challenge(id, "parity");
    c.closes_at = Some(timestamp(now_millis() + 3_600_000));
    c.release = Some(pb::ReleasePolicy {
        final_selections: n,
        ..Default::default()
    });
    create(server, c).await.unwrap();
}

#[tokio::test]
async fn a_participant_selects_changes_and_is_refused_more_than_n_anothers_or_after_the_close() {
    within(180, async {
        let server = spawn_app().await;
        selection_challenge(&server, "pick", 2).await;
        let platform = server.client(&server.submitter).await;
        let other_platform = server.client(&server.other).await;
        let mut mine = Vec::new();
        for t in [30, 60, 90] {
            mine.push(submit(&platform, "pick", "alice", &right_below(t)).await.id);
        }
        let bobs = submit(&platform, "pick", "bob", PARITY_RIGHT).await.id;
        let theirs = submit(&other_platform, "pick", "alice", PARITY_RIGHT)
            .await
            .id;
        let smoke = platform
            .submit(smoke("pick", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap()
            .id;
        for id in mine.iter().chain([&bobs]) {
            scored(&platform, id).await;
        }
        scored(&other_platform, &theirs).await;
        scored(&platform, &smoke).await;

        let r = select(&platform, "pick", "alice", &[&mine[2], &mine[0]])
            .await
            .unwrap();
        assert_eq!(r.submission_ids, vec![mine[0].clone(), mine[2].clone()]);
        assert_eq!(r.final_selections, 2);
        // Idempotent, then changed.
        select(&platform, "pick", "alice", &[&mine[0], &mine[2]])
            .await
            .unwrap();
        let r = select(&platform, "pick", "alice", &[&mine[1]])
            .await
            .unwrap();
        assert_eq!(r.submission_ids, vec![mine[1].clone()]);
        let get = |id: String| {
            let platform = platform.clone();
            async move {
                platform
                    .submissions()
                    .get_submission(platform.request(pb::GetSubmissionRequest { id }))
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        assert!(get(mine[1].clone()).await.selected);
        assert!(!get(mine[0].clone()).await.selected);

        let too_many = select(&platform, "pick", "alice", &[&mine[0], &mine[1], &mine[2]])
            .await
            .unwrap_err();
        assert_eq!(too_many.code(), Code::InvalidArgument);
        assert!(
            too_many.message().contains("at most 2"),
            "{}",
            too_many.message()
        );
        let anothers = select(&platform, "pick", "alice", &[&bobs])
            .await
            .unwrap_err();
        assert_eq!(anothers.code(), Code::InvalidArgument);
        assert!(
            anothers.message().contains("another participant"),
            "{}",
            anothers.message()
        );
        let a_smoke = select(&platform, "pick", "alice", &[&smoke])
            .await
            .unwrap_err();
        assert_eq!(a_smoke.code(), Code::InvalidArgument);
        let foreign = select(&platform, "pick", "alice", &[&theirs])
            .await
            .unwrap_err();
        assert_eq!(foreign.code(), Code::NotFound, "as GetSubmission answers");
        // The refusals left the selection as it was.
        let now = platform
            .submissions()
            .get_selection(platform.request(pb::GetSelectionRequest {
                challenge_id: "pick".into(),
                participant_id: "alice".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now.submission_ids, vec![mine[1].clone()]);

        let admin = server.client(&server.admin).await;
        let closed = admin
            .challenges()
            .close_challenge(admin.request(pb::CloseChallengeRequest { id: "pick".into() }))
            .await
            .unwrap()
            .into_inner();
        let after = select(&platform, "pick", "alice", &[&mine[0]])
            .await
            .unwrap_err();
        assert_eq!(after.code(), Code::FailedPrecondition);
        let closed_at = rfc3339(millis(closed.closed_at.as_ref().unwrap()));
        assert!(
            after.message().contains(&format!("closed at {closed_at}")),
            "{}",
            after.message()
        );
    })
    .await;
}

#[tokio::test]
async fn the_private_leaderboard_ranks_by_the_selection_or_else_the_best_public_n() {
    within(240, async {
        let server = spawn_app().await;
        selection_challenge(&server, "final", 2).await;
        let platform = server.client(&server.submitter).await;
        let admin = server.client(&server.admin).await;
        let thresholds = [20, 45, 70];
        let mut ids = Vec::new();
        for who in ["alice", "bob"] {
            for t in thresholds {
                ids.push((
                    who,
                    submit(&platform, "final", who, &right_below(t)).await.id,
                ));
            }
        }
        // Exact scores, as an admin reads them.
        let mut runs = Vec::new();
        for (who, id) in &ids {
            scored(&platform, id).await;
            let s = admin
                .submissions()
                .get_submission(admin.request(pb::GetSubmissionRequest { id: id.clone() }))
                .await
                .unwrap()
                .into_inner();
            runs.push((
                *who,
                id.clone(),
                s.public_scores_exact["accuracy"],
                s.private_scores_exact["accuracy"],
            ));
        }
        let of = |who: &str| {
            runs.iter()
                .filter(|r| r.0 == who)
                .cloned()
                .collect::<Vec<_>>()
        };
        // Alice selects her worst public submission alone: it ranks her, whatever the rest.
        let alice = of("alice");
        let worst = alice
            .iter()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .unwrap()
            .clone();
        select(&platform, "final", "alice", &[&worst.1])
            .await
            .unwrap();
        // Bob selects nothing: his two best by public score (ties: the earliest) count.
        let mut bob = of("bob");
        bob.sort_by(|a, b| b.2.total_cmp(&a.2)); // stable: ties stay in submission order
        let top: Vec<String> = bob[..2].iter().map(|r| r.1.clone()).collect();
        let bob_pick = of("bob")
            .iter()
            .filter(|r| top.contains(&r.1))
            .fold(None::<(f64, String)>, |best, r| match best {
                Some((p, id)) if p >= r.3 => Some((p, id)),
                _ => Some((r.3, r.1.clone())),
            })
            .unwrap();

        admin
            .challenges()
            .close_challenge(admin.request(pb::CloseChallengeRequest { id: "final".into() }))
            .await
            .unwrap();
        let board = private_board(&platform, "final").await.unwrap();
        let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let row = |who: &str| {
            board
                .entries
                .iter()
                .find(|e| e.participant_id == who)
                .unwrap_or_else(|| panic!("{who} is not on the board: {board:?}"))
                .clone()
        };
        let a = row("alice");
        assert_eq!(
            (a.submission_id.as_str(), a.score),
            (worst.1.as_str(), round(worst.3))
        );
        let b = row("bob");
        assert_eq!(
            (b.submission_id.as_str(), b.score),
            (bob_pick.1.as_str(), round(bob_pick.0))
        );
        // Ranked by those scores.
        let better = if a.score >= b.score { "alice" } else { "bob" };
        assert_eq!(board.entries[0].participant_id, better);
    })
    .await;
}

#[tokio::test]
async fn two_api_replicas_on_one_postgresql_both_enforce_and_close_at_the_deadline() {
    within(120, async {
        let url = holdout::testing::PgCluster::shared_database()
            .expect("PostgreSQL's server binaries for a shared store");
        let first = spawn_app_with(|c| c.database_url = url.clone()).await;
        let second = spawn_app_with(|c| {
            c.database_url = url.clone();
            c.execution = holdout::config::Execution::Workers;
        })
        .await;
        parity_data(&first, "parity", 20);
        let closes_at = now_millis() + 4_000;
        let mut c = parity_challenge("shared", "parity");
        c.closes_at = Some(timestamp(closes_at));
        create(&first, c).await.unwrap();
        let on_first = first.client(&first.submitter).await;
        let on_second = second.client(&second.submitter).await;
        // The second replica learns the deadline from the store, not from its own create.
        let wait = closes_at - now_millis();
        tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 50)).await;
        let late = on_second
            .submit(full("shared", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(late.code(), Code::FailedPrecondition);
        assert!(late.message().contains("closed at"), "{}", late.message());
        for client in [&on_first, &on_second] {
            let mut shown = challenge(client, "shared").await;
            for _ in 0..50 {
                if shown.state == pb::ChallengeState::Closed as i32 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                shown = challenge(client, "shared").await;
            }
            assert_eq!(shown.state, pb::ChallengeState::Closed as i32);
            assert_eq!(shown.closed_at.as_ref().map(millis), Some(closes_at));
        }
    })
    .await;
}

#[tokio::test]
async fn the_cli_shows_the_schedule_and_what_is_left_and_selects_lists_and_clears() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 30);
        let closes_at = (now_millis() / 1000 + 2 * 86_400 + 3 * 3600 + 1800) * 1000;
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("challenge.toml");
        std::fs::write(
            &toml,
            format!(
                r#"
id = "cli-final"
data_dir = "parity"
closes_at = "{}"
[runtime]
image = "holdout-busybox:1"
command = ["sh", "/submission/run.sh"]
[scoring]
[scoring.builtin]
metric = "accuracy"
target_column = "label"
[release]
final_selections = 2
"#,
                rfc3339(closes_at)
            ),
        )
        .unwrap();
        let (ok, _, err) = holdout(
            &server,
            &server.admin,
            &["challenge", "create", "--file", toml.to_str().unwrap()],
        )
        .await;
        assert!(ok, "{err}");
        let (ok, out, err) = holdout(
            &server,
            &server.submitter,
            &["challenge", "get", "cli-final"],
        )
        .await;
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!(
                "closes      {}  (closes in 2 d 3 h)",
                rfc3339(closes_at)
            )),
            "{out}"
        );

        let platform = server.client(&server.submitter).await;
        let id = submit(&platform, "cli-final", "alice", PARITY_RIGHT)
            .await
            .id;
        scored(&platform, &id).await;
        let (ok, out, err) = holdout(
            &server,
            &server.submitter,
            &["select", "cli-final", "--participant", "alice", &id],
        )
        .await;
        assert!(ok, "{err}");
        assert!(out.contains("selected    1 of at most 2"), "{out}");
        assert!(out.contains(&id), "{out}");
        let (ok, out, _) = holdout(
            &server,
            &server.submitter,
            &["select", "cli-final", "--participant", "alice"],
        )
        .await;
        assert!(ok && out.contains(&id), "{out}");
        let (ok, out, _) = holdout(
            &server,
            &server.submitter,
            &["list", "--challenge", "cli-final"],
        )
        .await;
        assert!(ok && out.contains("[selected]"), "{out}");
        let (ok, out, _) = holdout(
            &server,
            &server.submitter,
            &["select", "cli-final", "--participant", "alice", "--clear"],
        )
        .await;
        assert!(ok && out.contains("selected    none"), "{out}");
        // A refusal is one line and a non-zero exit.
        let (ok, _, err) = holdout(
            &server,
            &server.submitter,
            &["select", "cli-final", "--participant", "bob", &id],
        )
        .await;
        assert!(!ok);
        assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    })
    .await;
}
