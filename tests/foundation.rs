//! The foundation, end to end over gRPC against the real server, real Docker and SQLite:
//! a challenge is created, code is submitted, run, scored and read back; bad definitions
//! and bad callers are refused by name; a restart loses nothing.

mod common;

use common::*;
use holdout::pb;
use holdout::scoring::Split;
use tonic::Code;

fn public_accuracy_of_all_even(rows: &[(String, String)], split: Split) -> f64 {
    let public: Vec<_> = rows
        .iter()
        .filter(|(id, _)| split.is_public(id.as_bytes()))
        .collect();
    public.iter().filter(|(_, l)| l == "even").count() as f64 / public.len() as f64
}

#[tokio::test]
async fn a_correct_solution_is_scored_exactly_and_a_wrong_one_lower() {
    within(120, async {
        let server = spawn_app().await;
        let rows = parity_data(&server, "parity", 200);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;

        let right = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        assert_eq!(right.state, pb::SubmissionState::Queued as i32);
        let mut states = Vec::new();
        let done = client
            .watch(&right.id, |s| states.push(s.state))
            .await
            .unwrap();
        assert_eq!(
            done.state,
            pb::SubmissionState::Succeeded as i32,
            "{done:?}"
        );
        assert_eq!(done.verdict, pb::Verdict::Scored as i32);
        assert_eq!(done.scores.get("accuracy"), Some(&1.0));
        // Every state change is streamed in order, none coalesced: once RUNNING was seen,
        // SCORING and SUCCEEDED follow.
        let order = [
            pb::SubmissionState::Queued as i32,
            pb::SubmissionState::Running as i32,
            pb::SubmissionState::Scoring as i32,
            pb::SubmissionState::Succeeded as i32,
        ];
        let first = order.iter().position(|s| *s == states[0]).unwrap();
        assert_eq!(states, order[first..], "{states:?}");

        let wrong = client
            .submit(full("parity", "bob"), tar_gz(&[("run.sh", PARITY_EVEN)]))
            .await
            .unwrap();
        let done = client.watch(&wrong.id, |_| {}).await.unwrap();
        let expected = public_accuracy_of_all_even(
            &rows,
            Split {
                public_fraction: 0.5,
                seed: 7,
            },
        );
        let expected = (expected * 1e4).round() / 1e4;
        assert_eq!(done.scores.get("accuracy"), Some(&expected));
        assert!(expected < 1.0);

        // Submitters see neither the exact scores nor the run's usage or timing.
        assert!(done.public_scores_exact.is_empty() && done.private_scores_exact.is_empty());
        assert!(done.usage.is_none() && done.finished_at.is_none());

        // The leaderboard ranks them.
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
        let order: Vec<_> = board
            .entries
            .iter()
            .map(|e| e.participant_id.as_str())
            .collect();
        assert_eq!(order, ["alice", "bob"]);
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn admins_see_exact_scores_usage_and_logs() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 50);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let script = format!("echo hello from the run\necho to stderr >&2\n{PARITY_RIGHT}");
        let s = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", &script)]))
            .await
            .unwrap();
        client.watch(&s.id, |_| {}).await.unwrap();
        let admin = server.client(&server.admin).await;
        let seen = admin
            .submissions()
            .get_submission(authed(
                &server.admin,
                pb::GetSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(seen.public_scores_exact.get("accuracy"), Some(&1.0));
        assert_eq!(seen.private_scores_exact.get("accuracy"), Some(&1.0));
        assert!(seen.usage.is_some() && seen.finished_at.is_some());
        let logs = admin
            .submissions()
            .get_submission_logs(authed(
                &server.admin,
                pb::GetSubmissionLogsRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(logs.stdout, b"hello from the run\n");
        assert_eq!(logs.stderr, b"to stderr\n");
        // The submitter may not read a FULL run's output.
        let err = client
            .submissions()
            .get_submission_logs(authed(
                &server.submitter,
                pb::GetSubmissionLogsRequest { id: s.id },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    })
    .await
}

#[tokio::test]
async fn invalid_challenge_definitions_are_refused_naming_the_field() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        server.write_data("nolabels", &[("inputs/test.csv", "id,x\n")]);
        server.write_data(
            "badlabels",
            &[
                ("inputs/test.csv", "id,x\n"),
                ("labels.csv", "key,label\na,1\n"),
            ],
        );
        std::fs::create_dir_all(server.data_root.parent().unwrap().join("outside")).unwrap();
        let closed = server.write_data(
            "closed",
            &[("labels.csv", "id,label\na,even\nb,odd\nc,even\nd,odd\n")],
        );
        server.write_data("closed", &[("inputs/test.csv", "id,x\n")]);
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                closed.join("inputs/test.csv"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }

        let base = || parity_challenge("ok-id", "parity");
        let cases: Vec<(&str, pb::Challenge, Code, &str)> = vec![
            (
                "bad id",
                pb::Challenge {
                    id: "Bad_Id".into(),
                    ..base()
                },
                Code::InvalidArgument,
                "id",
            ),
            (
                "data dir escapes",
                pb::Challenge {
                    data_dir: "../outside".into(),
                    ..base()
                },
                Code::InvalidArgument,
                "data_dir",
            ),
            (
                "absolute data dir",
                pb::Challenge {
                    data_dir: "/etc".into(),
                    ..base()
                },
                Code::InvalidArgument,
                "data_dir",
            ),
            (
                "missing data dir",
                pb::Challenge {
                    data_dir: "nope".into(),
                    ..base()
                },
                Code::FailedPrecondition,
                "data_dir",
            ),
            (
                "inputs unreadable by the sandbox user",
                pb::Challenge {
                    data_dir: "closed".into(),
                    ..base()
                },
                Code::FailedPrecondition,
                "inputs/test.csv is not readable",
            ),
            (
                "labels missing",
                pb::Challenge {
                    data_dir: "nolabels".into(),
                    ..base()
                },
                Code::FailedPrecondition,
                "labels.csv",
            ),
            (
                "no id column",
                pb::Challenge {
                    data_dir: "badlabels".into(),
                    ..base()
                },
                Code::FailedPrecondition,
                "id",
            ),
            (
                "unknown image",
                pb::Challenge {
                    runtime: Some(pb::Runtime {
                        image: "holdout-no-such-image:0".into(),
                        ..Default::default()
                    }),
                    ..base()
                },
                Code::FailedPrecondition,
                "runtime.image",
            ),
            (
                "limits over caps",
                pb::Challenge {
                    limits: Some(pb::Limits {
                        memory_bytes: 1 << 50,
                        ..Default::default()
                    }),
                    ..base()
                },
                Code::InvalidArgument,
                "limits.memory_bytes",
            ),
            (
                "public fraction 1",
                pb::Challenge {
                    scoring: Some(pb::Scoring {
                        public_fraction: 1.0,
                        ..base().scoring.unwrap()
                    }),
                    ..base()
                },
                Code::InvalidArgument,
                "scoring.public_fraction",
            ),
            (
                "no metric",
                pb::Challenge {
                    scoring: Some(pb::Scoring {
                        scorer: None,
                        ..base().scoring.unwrap()
                    }),
                    ..base()
                },
                Code::InvalidArgument,
                "scoring",
            ),
            (
                "unknown target column",
                pb::Challenge {
                    scoring: Some(pb::Scoring {
                        scorer: Some(pb::scoring::Scorer::Builtin(pb::BuiltinMetric {
                            metric: pb::Metric::Accuracy as i32,
                            target_column: "nope".into(),
                            ..Default::default()
                        })),
                        ..base().scoring.unwrap()
                    }),
                    ..base()
                },
                Code::FailedPrecondition,
                "nope",
            ),
        ];
        for (name, challenge, code, field) in cases {
            let err = create(&server, challenge).await.expect_err(name);
            assert_eq!(err.code(), code, "{name}: {}", err.message());
            assert!(
                err.message().contains(field),
                "{name}: {:?} does not name {field:?}",
                err.message()
            );
        }
        create(&server, base()).await.unwrap();
        let err = create(&server, base()).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
    })
    .await
}

#[tokio::test]
async fn callers_without_the_right_token_are_refused() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        // No token, and an unknown token.
        let anon = server.anonymous().await;
        let err = anon
            .challenges()
            .list_challenges(pb::ListChallengesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let err = anon
            .challenges()
            .list_challenges(authed("not-a-token", pb::ListChallengesRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        // A submitter calling an admin RPC.
        let sub = server.client(&server.submitter).await;
        let err = sub
            .challenges()
            .create_challenge(authed(
                &server.submitter,
                pb::CreateChallengeRequest {
                    challenge: Some(parity_challenge("parity", "parity")),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        // One platform reading another's submission.
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let s = sub
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        let other = server.client(&server.other).await;
        for err in [
            other
                .submissions()
                .get_submission(authed(
                    &server.other,
                    pb::GetSubmissionRequest { id: s.id.clone() },
                ))
                .await
                .unwrap_err(),
            other
                .submissions()
                .cancel_submission(authed(
                    &server.other,
                    pb::CancelSubmissionRequest { id: s.id.clone() },
                ))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(err.code(), Code::NotFound);
        }
        let list = other
            .submissions()
            .list_submissions(authed(
                &server.other,
                pb::ListSubmissionsRequest {
                    challenge_id: "parity".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(list.submissions.is_empty());
        sub.watch(&s.id, |_| {}).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_restart_keeps_challenges_and_submissions_in_their_states() {
    within(120, async {
        let mut server = spawn_app().await;
        parity_data(&server, "parity", 20);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        let done = client.watch(&s.id, |_| {}).await.unwrap();
        server.restart().await;
        let client = server.client(&server.submitter).await;
        let again = client
            .submissions()
            .get_submission(authed(
                &server.submitter,
                pb::GetSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, done);
        let c = client
            .challenges()
            .get_challenge(authed(
                &server.submitter,
                pb::GetChallengeRequest {
                    id: "parity".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.state, pb::ChallengeState::Open as i32);
    })
    .await
}

#[tokio::test]
async fn a_closed_challenge_refuses_new_submissions() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let admin = server.client(&server.admin).await;
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
        let client = server.client(&server.submitter).await;
        let err = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
    })
    .await
}

#[tokio::test]
async fn health_and_reflection_answer_generic_clients() {
    within(30, async {
        let server = spawn_app().await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "holdout.v1.Submissions".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        // Reflection answers in both versions: v1 (grpcurl) and v1alpha (grpcio-reflection,
        // grpc_cli, older tools).
        use tonic_reflection::pb::{v1, v1alpha};
        let mut c1 =
            v1::server_reflection_client::ServerReflectionClient::new(channel_of(&server).await);
        let mut r1 = c1
            .server_reflection_info(tokio_stream::iter([v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                )),
            }]))
            .await
            .unwrap()
            .into_inner();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            r1.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1 did not list services")
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "holdout.v1.Submissions"),
            "{list:?}"
        );
        let mut ca = v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel_of(&server).await,
        );
        let mut ra = ca
            .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            }]))
            .await
            .unwrap()
            .into_inner();
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            ra.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha did not list services")
        };
        assert!(
            list.service.iter().any(|s| s.name == "holdout.v1.Audit"),
            "{list:?}"
        );
    })
    .await
}

async fn channel_of(server: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
