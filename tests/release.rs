//! The release policy, attacked through the real API and real containers: nothing a FULL run
//! prints, raises, writes or times reaches a submitter token; quotas hold under races.

mod common;

use std::time::Duration;

use common::*;
use holdout::pb;
use tonic::Code;

const CANARY: &str = "CANARY-7f3a9c";

fn canary_data(server: &TestServer) {
    parity_data(server, "secret", 30);
    server.write_data("secret", &[("inputs/secret.txt", CANARY)]);
}

/// Every response a submitter can get about `id`, as text.
async fn everything_a_submitter_sees(server: &TestServer, id: &str) -> String {
    let client = server.client(&server.submitter).await;
    let mut seen = String::new();
    let get = client
        .submissions()
        .get_submission(authed(
            &server.submitter,
            pb::GetSubmissionRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner();
    seen.push_str(&format!("{get:?}"));
    let list = client
        .submissions()
        .list_submissions(authed(
            &server.submitter,
            pb::ListSubmissionsRequest {
                challenge_id: "secret".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    seen.push_str(&format!("{list:?}"));
    client
        .watch(id, |s| seen.push_str(&format!("{s:?}")))
        .await
        .unwrap();
    let board = client
        .leaderboards()
        .get_leaderboard(authed(
            &server.submitter,
            pb::GetLeaderboardRequest {
                challenge_id: "secret".into(),
                view: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    seen.push_str(&format!("{board:?}"));
    let logs = client
        .submissions()
        .get_submission_logs(authed(
            &server.submitter,
            pb::GetSubmissionLogsRequest { id: id.into() },
        ))
        .await;
    match logs {
        Ok(l) => seen.push_str(&format!("{:?}", l.into_inner())),
        Err(status) => {
            assert_eq!(status.code(), Code::PermissionDenied);
            seen.push_str(status.message());
        }
    }
    seen
}

#[tokio::test]
async fn a_canary_in_private_inputs_never_reaches_a_submitter() {
    within(180, async {
        let server = spawn_app().await;
        canary_data(&server);
        create(&server, parity_challenge("secret", "secret")).await.unwrap();
        let client = server.client(&server.submitter).await;
        let attacks = [
            // Printed, then a crash with the canary in the error and the exit code.
            "cat /data/secret.txt; cat /data/secret.txt >&2; echo \"error: $(cat /data/secret.txt)\" >&2; exit 42".to_owned(),
            // Written as an id into predictions.csv.
            "{ echo id,label; echo \"$(cat /data/secret.txt),even\"; } > /output/predictions.csv".to_owned(),
            // A valid run that also prints the canary.
            format!("cat /data/secret.txt\n{PARITY_RIGHT}"),
            // The canary as a column name.
            "echo \"id,$(cat /data/secret.txt)\" > /output/predictions.csv".to_owned(),
        ];
        for attack in &attacks {
            let s = client.submit(full("secret", "mallory"), tar_gz(&[("run.sh", attack)])).await.unwrap();
            let seen = everything_a_submitter_sees(&server, &s.id).await;
            assert!(!seen.contains(CANARY), "the canary leaked for {attack:?}:\n{seen}");
        }
        // The admin, on the other hand, can read what the run printed.
        let admin = server.client(&server.admin).await;
        let list = admin
            .submissions()
            .list_submissions(authed(&server.admin, pb::ListSubmissionsRequest { challenge_id: "secret".into(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        let first = list.submissions.last().unwrap();
        let logs = admin
            .submissions()
            .get_submission_logs(authed(&server.admin, pb::GetSubmissionLogsRequest { id: first.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert!(String::from_utf8_lossy(&logs.stdout).contains(CANARY));
    })
    .await
}

#[tokio::test]
async fn with_constant_time_release_the_end_time_does_not_depend_on_private_data() {
    within(180, async {
        let server = spawn_app().await;
        // Released at started_at + wall_time + scoring_budget, whenever the code exited.
        let wall_time = Duration::from_secs(4);
        let budget = Duration::from_secs(6);
        let mut elapsed = Vec::new();
        for (name, secret) in [("fast", "0"), ("slow", "2")] {
            parity_data(&server, name, 10);
            server.write_data(name, &[("inputs/secret.txt", secret)]);
            let mut c = parity_challenge(name, name);
            c.limits.as_mut().unwrap().wall_time = prost_types::Duration::try_from(wall_time).ok();
            c.release = Some(pb::ReleasePolicy {
                constant_time_release: true,
                scoring_budget: prost_types::Duration::try_from(budget).ok(),
                ..Default::default()
            });
            create(&server, c).await.unwrap();
            let client = server.client(&server.submitter).await;
            let script = format!("sleep $(cat /data/secret.txt)\n{PARITY_RIGHT}");
            let s = client
                .submit(full(name, "mallory"), tar_gz(&[("run.sh", &script)]))
                .await
                .unwrap();
            let mut states = Vec::new();
            let last = client.watch(&s.id, |u| states.push(u.state)).await.unwrap();
            // Measured from the server's own start time: when the client happens to see
            // RUNNING depends on how fast the start was committed, not on the run.
            let released = std::time::SystemTime::now();
            assert_eq!(last.state, pb::SubmissionState::Succeeded as i32);
            // The moment the code exited (SCORING) is never shown either.
            assert!(
                !states.contains(&(pb::SubmissionState::Scoring as i32)),
                "{states:?}"
            );
            let started = std::time::SystemTime::try_from(last.started_at.unwrap()).unwrap();
            elapsed.push(released.duration_since(started).unwrap());
        }
        let (fast, slow) = (elapsed[0], elapsed[1]);
        let deadline = wall_time + budget;
        assert!(fast >= deadline, "fast run released after {fast:?}");
        assert!(slow >= deadline, "slow run released after {slow:?}");
        let gap = fast.abs_diff(slow);
        assert!(
            gap < Duration::from_millis(1000),
            "release times differ: {fast:?} vs {slow:?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_quota_holds_under_parallel_submits_and_says_when_it_resets() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.quota = Some(pb::Quota {
            full_per_day: 3,
            smoke_per_day: 1,
            count_failed: Some(true),
            platform_full_per_day: 0,
        });
        create(&server, c).await.unwrap();
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let client = server.client(&server.submitter).await;
            let archive = archive.clone();
            tasks.push(tokio::spawn(async move {
                client.submit(full("parity", "alice"), archive).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted);
                    assert!(
                        status.message().contains("resets at"),
                        "{}",
                        status.message()
                    );
                    assert!(
                        status.message().contains("T00:00:00Z"),
                        "{}",
                        status.message()
                    );
                }
            }
        }
        assert_eq!(ok, 3);
        // Another participant has their own quota; SMOKE has its own.
        let client = server.client(&server.submitter).await;
        client
            .submit(full("parity", "bob"), archive.clone())
            .await
            .unwrap();
        client
            .submit(smoke("parity", "alice"), archive.clone())
            .await
            .unwrap();
        let err = client
            .submit(smoke("parity", "alice"), archive.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
    })
    .await
}

#[tokio::test]
async fn smoke_runs_show_their_logs_and_score_to_their_submitter_only() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let script = format!("echo looking at the sample\n{PARITY_RIGHT}");
        let s = client
            .submit(smoke("parity", "alice"), tar_gz(&[("run.sh", &script)]))
            .await
            .unwrap();
        let done = client.watch(&s.id, |_| {}).await.unwrap();
        assert_eq!(done.scores.get("accuracy"), Some(&1.0));
        let logs = client
            .submissions()
            .get_submission_logs(authed(
                &server.submitter,
                pb::GetSubmissionLogsRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(logs.stdout, b"looking at the sample\n");
        // Another platform may not read them.
        let other = server.client(&server.other).await;
        let err = other
            .submissions()
            .get_submission_logs(authed(
                &server.other,
                pb::GetSubmissionLogsRequest { id: s.id.clone() },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        // SMOKE runs never reach a leaderboard.
        let board = client
            .leaderboards()
            .get_leaderboard(authed(
                &server.submitter,
                pb::GetLeaderboardRequest {
                    challenge_id: "parity".into(),
                    view: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(board.entries.is_empty());
    })
    .await
}

#[tokio::test]
async fn the_private_leaderboard_opens_to_submitters_only_when_closed() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        client.watch(&s.id, |_| {}).await.unwrap();
        let private = || pb::GetLeaderboardRequest {
            challenge_id: "parity".into(),
            view: pb::LeaderboardView::Private as i32,
        };
        let err = client
            .leaderboards()
            .get_leaderboard(authed(&server.submitter, private()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let admin = server.client(&server.admin).await;
        let board = admin
            .leaderboards()
            .get_leaderboard(authed(&server.admin, private()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(board.entries[0].participant_id, "alice");
        admin
            .challenges()
            .close_challenge(authed(
                &server.admin,
                pb::CloseChallengeRequest {
                    id: "parity".into(),
                },
            ))
            .await
            .unwrap();
        let board = client
            .leaderboards()
            .get_leaderboard(authed(&server.submitter, private()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(board.entries[0].score, 1.0);
        // Every value released to the submitter is in the audit.
        let audit = pb::audit_client::AuditClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
        .list_releases(authed(
            &server.admin,
            pb::ListReleasesRequest {
                challenge_id: "parity".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
        let whats: Vec<_> = audit.releases.iter().map(|r| r.what.as_str()).collect();
        assert!(
            whats.contains(&"submission") && whats.contains(&"leaderboard:private"),
            "{whats:?}"
        );
        assert!(audit.releases.iter().all(|r| r.token_name == "platform-a"));
    })
    .await
}
