//! Organisers' custom scorers end to end, over gRPC against real Docker: a busybox `awk`
//! scorer reads the split's labels at `/labels/labels.csv` and the predictions at
//! `/predictions/predictions.csv` and writes `/output/scores.json`. Its scores match the
//! built-in metric on the same split; a rejection reaches the participant only as the
//! challenge allows; a scorer that crashes, hangs or writes nonsense is the service's fault
//! (INTERNAL_ERROR, uncharged) with its output kept for the admin; it has no network; and a
//! challenge with a bad scorer is refused by name.

mod common;

use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::scoring::Split;
use tonic::Code;

/// Accuracy over every label row: a prediction counts when its id has that label.
const ACCURACY_SCORER: &str = r#"awk -F, '
FNR == 1 { next }
NR == FNR { label[$1] = $2; n++; next }
($1 in label) && label[$1] == $2 { correct++ }
END { printf "{\"acc\": %.17g, \"correct\": %d, \"n\": %d}\n", correct / n, correct, n }
' /labels/labels.csv /predictions/predictions.csv > /output/scores.json
"#;

/// The split every challenge here uses (parity_challenge's).
const SPLIT: Split = Split {
    public_fraction: 0.5,
    seed: 7,
};

/// A parity challenge scored by `script` run with busybox `sh -c`, primary metric "acc".
fn custom_challenge(id: &str, script: &str, release_messages: bool) -> pb::Challenge {
    let mut c = parity_challenge(id, "parity");
    c.scoring.as_mut().unwrap().scorer = Some(pb::scoring::Scorer::Custom(pb::CustomScorer {
        image: BUSYBOX.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        primary_metric: "acc".into(),
        greater_is_better: true,
        release_messages,
    }));
    // These tests read the exact verdict a FULL run gets, as a Kaggle-like challenge shows it.
    c.release = Some(pb::ReleasePolicy {
        failure_detail: pb::FailureDetail::Verdict as i32,
        ..Default::default()
    });
    c
}

/// Accuracy of answering "even" everywhere on the rows the filter keeps, with the row count.
fn all_even_accuracy(rows: &[(String, String)], public: bool) -> (f64, usize) {
    let part: Vec<_> = rows
        .iter()
        .filter(|(id, _)| SPLIT.is_public(id.as_bytes()) == public)
        .collect();
    let correct = part.iter().filter(|(_, l)| l == "even").count();
    (correct as f64 / part.len() as f64, part.len())
}

async fn logs(
    server: &TestServer,
    token: &str,
    id: &str,
) -> Result<pb::SubmissionLogs, tonic::Status> {
    server
        .client(token)
        .await
        .submissions()
        .get_submission_logs(authed(
            token,
            pb::GetSubmissionLogsRequest { id: id.into() },
        ))
        .await
        .map(|r| r.into_inner())
}

/// Submits `code` and follows it to its end, as the submitter sees it.
async fn run(server: &TestServer, meta: pb::SubmitMetadata, code: &str) -> pb::Submission {
    let client = server.client(&server.submitter).await;
    let s = client
        .submit(meta, tar_gz(&[("run.sh", code)]))
        .await
        .unwrap();
    client.watch(&s.id, |_| {}).await.unwrap()
}

#[tokio::test]
async fn a_custom_scorer_scores_each_split_exactly_like_the_builtin_metric() {
    within(120, async {
        let server = spawn_app().await;
        let rows = parity_data(&server, "parity", 60);
        create(&server, custom_challenge("custom", ACCURACY_SCORER, false))
            .await
            .unwrap();
        create(&server, parity_challenge("builtin", "parity"))
            .await
            .unwrap();

        let done = run(&server, full("custom", "alice"), PARITY_EVEN).await;
        assert_eq!(
            done.state,
            pb::SubmissionState::Succeeded as i32,
            "{done:?}"
        );
        assert_eq!(done.verdict, pb::Verdict::Scored as i32);
        let custom = server.admin_get(&done.id).await;

        let (public_acc, public_n) = all_even_accuracy(&rows, true);
        let (private_acc, private_n) = all_even_accuracy(&rows, false);
        assert!(public_acc < 1.0 && private_acc < 1.0 && public_n > 0 && private_n > 0);
        assert_eq!(custom.public_scores_exact.get("acc"), Some(&public_acc));
        assert_eq!(custom.private_scores_exact.get("acc"), Some(&private_acc));
        // The scorer saw exactly the split's rows: the same split function as the built-ins.
        assert_eq!(
            custom.public_scores_exact.get("n"),
            Some(&(public_n as f64))
        );
        assert_eq!(
            custom.private_scores_exact.get("n"),
            Some(&(private_n as f64))
        );
        // The submitter gets the rounded public primary metric.
        let rounded = (public_acc * 1e4).round() / 1e4;
        assert_eq!(done.scores.get("acc"), Some(&rounded), "{:?}", done.scores);

        // The same code under the built-in accuracy scores the same, split by split.
        let builtin = run(&server, full("builtin", "alice"), PARITY_EVEN).await;
        let builtin = server.admin_get(&builtin.id).await;
        assert_eq!(
            builtin.public_scores_exact.get("accuracy"),
            custom.public_scores_exact.get("acc")
        );
        assert_eq!(
            builtin.private_scores_exact.get("accuracy"),
            custom.private_scores_exact.get("acc")
        );
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_smoke_run_is_scored_by_the_custom_scorer_on_the_sample() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        create(&server, custom_challenge("custom", ACCURACY_SCORER, false))
            .await
            .unwrap();
        let done = run(&server, smoke("custom", "alice"), PARITY_EVEN).await;
        assert_eq!(
            done.state,
            pb::SubmissionState::Succeeded as i32,
            "{done:?}"
        );
        // sample/labels.csv: s1 even, s2 odd, s3 even.
        assert_eq!(done.scores.get("acc"), Some(&0.6667), "{:?}", done.scores);
        assert_eq!(done.scores.get("n"), Some(&3.0));
        let admin = server.admin_get(&done.id).await;
        assert_eq!(admin.public_scores_exact.get("acc"), Some(&(2.0 / 3.0)));
        assert_eq!(admin.public_scores_exact.get("n"), Some(&3.0));
        assert!(admin.private_scores_exact.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_scorer_rejection_reaches_the_participant_only_as_the_challenge_allows() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        let reject =
            r#"echo '{"error": "row r0003 has an impossible label"}' > /output/scores.json"#;
        create(&server, custom_challenge("quiet", reject, false))
            .await
            .unwrap();
        create(&server, custom_challenge("loud", reject, true))
            .await
            .unwrap();

        let cases = [
            (
                "SMOKE, messages not released",
                smoke("quiet", "alice"),
                true,
            ),
            ("FULL, messages released", full("loud", "alice"), true),
            ("FULL, messages not released", full("quiet", "alice"), false),
        ];
        for (name, meta, shown) in cases {
            let done = run(&server, meta, PARITY_RIGHT).await;
            assert_eq!(
                done.state,
                pb::SubmissionState::Failed as i32,
                "{name}: {done:?}"
            );
            assert_eq!(
                done.verdict,
                pb::Verdict::InvalidPredictions as i32,
                "{name}"
            );
            assert!(done.scores.is_empty(), "{name}");
            if shown {
                assert!(
                    done.message.contains("row r0003 has an impossible label"),
                    "{name}: {}",
                    done.message
                );
            } else {
                assert!(!done.message.contains("r0003"), "{name}: {}", done.message);
                assert!(
                    !done.message.contains("impossible"),
                    "{name}: {}",
                    done.message
                );
                assert!(
                    done.message
                        .contains("predictions.csv is missing or invalid"),
                    "{name}: {}",
                    done.message
                );
                // The admin still sees why.
                let admin = server.admin_get(&done.id).await;
                assert!(
                    admin.message.contains("row r0003 has an impossible label"),
                    "{name}: {}",
                    admin.message
                );
            }
        }
    })
    .await
}

/// Runs one FULL submission on a challenge whose scorer is broken and checks it fails as the
/// service's fault, uncharged (a quota of one FULL run a day, failures counted, still admits
/// the next), with the scorer's output in the admin's logs and not in the submitter's view.
async fn assert_scorer_failure_is_internal_and_uncharged(
    server: &TestServer,
    id: &str,
    script: &str,
    wall_secs: i64,
    admin_log_needle: &str,
    admin_detail: &str,
) {
    let mut c = custom_challenge(id, script, true);
    c.quota = Some(pb::Quota {
        full_per_day: 1,
        count_failed: Some(true),
        ..Default::default()
    });
    c.limits.as_mut().unwrap().wall_time = Some(prost_types::Duration {
        seconds: wall_secs,
        nanos: 0,
    });
    create(server, c).await.unwrap();

    let code = format!("{PARTICIPANT_WITH_STDERR}{PARITY_RIGHT}");
    let done = run(server, full(id, "alice"), &code).await;
    assert_eq!(
        done.state,
        pb::SubmissionState::Failed as i32,
        "{id}: {done:?}"
    );
    assert_eq!(
        done.verdict,
        pb::Verdict::InternalError as i32,
        "{id}: {done:?}"
    );
    assert!(
        done.message.contains("not charged"),
        "{id}: {}",
        done.message
    );
    assert!(!done.message.contains("scorer"), "{id}: {}", done.message);

    let admin = server.admin_get(&done.id).await;
    assert!(
        admin.message.contains("scorer (public)") && admin.message.contains(admin_detail),
        "{id}: the admin sees which scorer run failed and why: {}",
        admin.message
    );
    let admin_logs = logs(server, &server.admin, &done.id).await.unwrap();
    let stderr = String::from_utf8_lossy(&admin_logs.stderr);
    assert!(
        stderr.contains("===== custom scorer, public split") && stderr.contains(admin_log_needle),
        "{id}: scorer output missing from the admin's logs: {stderr:?}"
    );
    // The participant's own output is still there, first.
    assert!(
        stderr.starts_with("participant says hi\n"),
        "{id}: {stderr:?}"
    );

    // Not charged: the quota of one still admits another FULL run today.
    let client = server.client(&server.submitter).await;
    let again = client
        .submit(full(id, "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
        .await
        .unwrap_or_else(|e| panic!("{id}: a failed scorer run was charged: {e:?}"));
    let again = client.watch(&again.id, |_| {}).await.unwrap();
    assert_eq!(again.verdict, pb::Verdict::InternalError as i32, "{id}");
}

const PARTICIPANT_WITH_STDERR: &str = "echo participant says hi >&2\n";

#[tokio::test]
async fn a_crashing_scorer_is_an_uncharged_internal_error_with_its_output_kept_for_the_admin() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        assert_scorer_failure_is_internal_and_uncharged(
            &server,
            "crash",
            "echo scorer is about to crash >&2; exit 1",
            20,
            "scorer is about to crash",
            "exited with code 1",
        )
        .await;
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_scorer_past_the_wall_time_is_killed_and_is_an_uncharged_internal_error() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let started = std::time::Instant::now();
        assert_scorer_failure_is_internal_and_uncharged(
            &server,
            "slow",
            "echo scorer started, now hanging; sleep 60",
            3,
            "scorer started, now hanging",
            "wall-time limit of 3s",
        )
        .await;
        // Two runs, each killed at the 3 s wall time, not after the scorer's 60 s.
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "{:?}",
            started.elapsed()
        );
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_scorer_writing_nonsense_is_an_uncharged_internal_error() {
    within(240, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let cases = [
            ("not-json", "echo 'acc=1'", "not valid JSON"),
            ("no-primary", r#"echo '{"accuracy": 1}'"#, "primary metric"),
            ("nan", r#"echo '{"acc": NaN}'"#, "not valid JSON"),
            (
                "not-a-number",
                r#"echo '{"acc": "0.9"}'"#,
                "not a finite number",
            ),
            ("not-an-object", "echo '[0.9]'", "JSON object"),
            ("no-file", "true", "no usable scores.json"),
        ];
        for (id, write, detail) in cases {
            let script = format!("echo writing {id}; {write} > /output/scores.json");
            assert_scorer_failure_is_internal_and_uncharged(
                &server,
                id,
                &script,
                20,
                &format!("writing {id}"),
                detail,
            )
            .await;
        }
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

/// An IPv4 address of this host that is not loopback, if routing picks one.
fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?; // TEST-NET-1: routing only, nothing is sent
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_custom_scorer_has_no_network_and_a_read_only_root() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        // A host listener on every address: any network path out would land here.
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut targets = vec!["127.0.0.1".to_owned(), "172.17.0.1".to_owned()];
        targets.extend(host_address().map(|a| a.to_string()));
        let mut probes = String::new();
        for t in &targets {
            probes.push_str(&format!(
                "nc -w 2 {t} {port} </dev/null && echo REACHED={t}; "
            ));
        }
        let script = format!(
            "{probes}\
             nslookup -timeout=1 example.com >/dev/null 2>&1 && echo DNS_REACHED; \
             nc -l -p 7000 -e true & sleep 0.5; nc -w 2 127.0.0.1 7000 </dev/null && echo INNER_LOOPBACK_WORKS; \
             grep : /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -v '^lo$' | sed 's/^/IFACE=/'; \
             for p in /probe /labels/probe /predictions/probe; do echo x > $p 2>/dev/null && echo WRITABLE=$p; done; \
             echo probes done; {ACCURACY_SCORER}"
        );
        create(&server, custom_challenge("netless", &script, false))
            .await
            .unwrap();
        let done = run(&server, full("netless", "alice"), PARITY_RIGHT).await;
        assert_eq!(done.state, pb::SubmissionState::Succeeded as i32, "{done:?}");
        let admin_logs = logs(&server, &server.admin, &done.id).await.unwrap();
        let out = String::from_utf8_lossy(&admin_logs.stderr).into_owned();
        assert!(out.contains("probes done"), "{out}");
        assert!(
            out.contains("INNER_LOOPBACK_WORKS"),
            "control failed, the probes prove nothing: {out}"
        );
        for leak in ["REACHED=", "DNS_REACHED", "IFACE=", "WRITABLE="] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        drop(listener);
    })
    .await
}

#[tokio::test]
async fn the_submitter_never_sees_the_scorer_output_even_for_smoke_runs() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        let script = format!("echo scorer private chatter; {ACCURACY_SCORER}");
        create(&server, custom_challenge("chatty", &script, false))
            .await
            .unwrap();
        let code = format!("{PARTICIPANT_WITH_STDERR}{PARITY_RIGHT}");
        let done = run(&server, smoke("chatty", "alice"), &code).await;
        assert_eq!(
            done.state,
            pb::SubmissionState::Succeeded as i32,
            "{done:?}"
        );
        let mine = logs(&server, &server.submitter, &done.id).await.unwrap();
        assert_eq!(mine.stderr, b"participant says hi\n");
        let admin = logs(&server, &server.admin, &done.id).await.unwrap();
        let stderr = String::from_utf8_lossy(&admin.stderr);
        assert!(
            stderr.starts_with("participant says hi\n")
                && stderr.contains(
                    "===== custom scorer, sample split, stdout =====\nscorer private chatter\n"
                ),
            "{stderr:?}"
        );
    })
    .await
}

#[tokio::test]
async fn challenges_with_a_bad_custom_scorer_are_refused_naming_the_field() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);

        let mut missing_image = custom_challenge("no-image", ACCURACY_SCORER, false);
        if let Some(pb::scoring::Scorer::Custom(s)) =
            &mut missing_image.scoring.as_mut().unwrap().scorer
        {
            s.image = "holdout-no-such-scorer:0".into();
        }
        let err = create(&server, missing_image).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains("scoring.custom.image"),
            "{}",
            err.message()
        );

        let mut no_metric = custom_challenge("no-metric", ACCURACY_SCORER, false);
        if let Some(pb::scoring::Scorer::Custom(s)) =
            &mut no_metric.scoring.as_mut().unwrap().scorer
        {
            s.primary_metric = "  ".into();
        }
        let err = create(&server, no_metric).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("scoring.custom.primary_metric"),
            "{}",
            err.message()
        );

        // A valid one is accepted and reads back as it was given.
        let created = create(&server, custom_challenge("fine", ACCURACY_SCORER, true))
            .await
            .unwrap();
        match created.scoring.unwrap().scorer {
            Some(pb::scoring::Scorer::Custom(s)) => {
                assert_eq!(s.image, BUSYBOX);
                assert_eq!(s.primary_metric, "acc");
                assert!(s.greater_is_better && s.release_messages);
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

/// Polls the admin view until the submission is in `state`.
async fn wait_for_state(server: &TestServer, id: &str, state: pb::SubmissionState) {
    loop {
        let s = server.admin_get(id).await;
        if s.state == state as i32 {
            return;
        }
        assert!(
            ![
                pb::SubmissionState::Succeeded as i32,
                pb::SubmissionState::Failed as i32,
                pb::SubmissionState::Cancelled as i32
            ]
            .contains(&s.state),
            "ended before reaching {state:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A challenge whose scorer hangs well inside a long wall time.
fn hanging_scorer_challenge(id: &str) -> pb::Challenge {
    let mut c = custom_challenge(id, "echo scorer hanging; sleep 120", false);
    c.limits.as_mut().unwrap().wall_time = Some(prost_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    c.quota = Some(pb::Quota {
        full_per_day: 1,
        count_failed: Some(true),
        ..Default::default()
    });
    c
}

#[tokio::test]
async fn cancelling_a_submission_while_its_scorer_runs_kills_the_scorer_and_is_charged_like_a_failure()
 {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        create(&server, hanging_scorer_challenge("hang"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(full("hang", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        wait_for_state(&server, &s.id, pb::SubmissionState::Scoring).await;

        let asked = std::time::Instant::now();
        let cancelled = client
            .submissions()
            .cancel_submission(authed(
                &server.submitter,
                pb::CancelSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            cancelled.state,
            pb::SubmissionState::Cancelled as i32,
            "{cancelled:?}"
        );
        assert_eq!(cancelled.verdict, pb::Verdict::Cancelled as i32);
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "{:?}",
            asked.elapsed()
        );
        assert!(server.leftover_containers().await.is_empty());

        // Charged like a failed run (failures count here): a cancel at a chosen moment is no
        // free probe of whether the code had finished. The quota of one is spent.
        let again = client
            .submit(full("hang", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap_err();
        assert_eq!(again.code(), tonic::Code::ResourceExhausted, "{again:?}");
    })
    .await
}

#[tokio::test]
async fn a_shutdown_while_a_scorer_runs_stops_it_after_the_grace_and_requeues_the_submission() {
    within(120, async {
        let mut server = spawn_app_with(|c| {
            c.shutdown_grace = holdout::units::HumanDuration(Duration::from_secs(2))
        })
        .await;
        parity_data(&server, "parity", 20);
        create(&server, hanging_scorer_challenge("hang"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(full("hang", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        wait_for_state(&server, &s.id, pb::SubmissionState::Scoring).await;

        let stopping = std::time::Instant::now();
        server.stop().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "shutdown waited for the scorer: {:?}",
            stopping.elapsed()
        );
        assert!(server.leftover_containers().await.is_empty());
        server.restart().await;
        // Handed back to the queue, not failed: the service's interruption is not the code's.
        let seen = server.admin_get(&s.id).await;
        assert!(
            [
                pb::SubmissionState::Queued as i32,
                pb::SubmissionState::Running as i32,
                pb::SubmissionState::Scoring as i32
            ]
            .contains(&seen.state),
            "{seen:?}"
        );
        let client = server.client(&server.submitter).await;
        let ended = client
            .submissions()
            .cancel_submission(authed(
                &server.submitter,
                pb::CancelSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ended.state,
            pb::SubmissionState::Cancelled as i32,
            "{ended:?}"
        );
    })
    .await
}
