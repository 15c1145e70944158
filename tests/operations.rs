//! Operating the service: Prometheus metrics over plain HTTP, backpressure at Submit (a full
//! queue, an oversized or mislabelled upload, a malformed stream), and JSON logs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::sandbox::RunOutcome;
use holdout::sandbox::fake::{FakeBackend, FakeRun};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tonic::Code;

/// One plain HTTP/1.1 GET; returns (status line, body).
async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Scrapes until every expected line is present (the counters move just after the state
/// change a watcher sees), then returns the exposition.
async fn scrape_until(addr: SocketAddr, expected: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        if expected.iter().all(|e| body.lines().any(|l| l == *e)) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing some of {expected:?} in:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn prometheus_metrics_count_runs_by_verdict_and_time_them() {
    within(120, async {
        let server = spawn_app_with(|c| c.metrics_listen = "127.0.0.1:0".into()).await;
        let metrics = server.metrics_addr.expect("metrics are on");
        parity_data(&server, "parity", 20);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        for code in [PARITY_RIGHT, "exit 3\n"] {
            let s = client
                .submit(full("parity", "alice"), tar_gz(&[("run.sh", code)]))
                .await
                .unwrap();
            client.watch(&s.id, |_| {}).await.unwrap();
        }

        let body = scrape_until(
            metrics,
            &[
                "holdout_queue_depth 0",
                "holdout_runs_total{verdict=\"scored\"} 1",
                "holdout_runs_total{verdict=\"runtime_error\"} 1",
                "holdout_runs_total{verdict=\"internal_error\"} 0",
                "holdout_run_duration_seconds_count 2",
                "holdout_queue_wait_seconds_count 2",
                "holdout_engine_errors_total 0",
                "holdout_submissions_accepted_total 2",
            ],
        )
        .await;
        for family in [
            "# TYPE holdout_queue_depth gauge",
            "# TYPE holdout_runs_total counter",
            "# TYPE holdout_run_duration_seconds histogram",
            "# TYPE holdout_queue_wait_seconds histogram",
            "# TYPE holdout_engine_errors_total counter",
        ] {
            assert!(body.contains(family), "{family} missing:\n{body}");
        }
        assert!(
            body.contains("holdout_run_duration_seconds_bucket{le=\"+Inf\"} 2"),
            "{body}"
        );

        let (status, body) = http_get(metrics, "/other").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert!(body.is_empty(), "{body}");
    })
    .await
}

/// A scripted backend whose every run takes `delay` (cancellation cuts it short).
fn slow_backend(delay: Duration) -> Arc<FakeBackend> {
    Arc::new(FakeBackend::new(move |_spec| FakeRun {
        outcome: RunOutcome {
            exit_code: Some(0),
            ..Default::default()
        },
        predictions: Some(b"id,label\n".to_vec()),
        delay,
    }))
}

async fn state_of(server: &TestServer, id: &str) -> i32 {
    server
        .client(&server.submitter)
        .await
        .submissions()
        .get_submission(authed(
            &server.submitter,
            pb::GetSubmissionRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .state
}

#[tokio::test]
async fn a_full_queue_refuses_new_submissions_with_resource_exhausted() {
    within(60, async {
        let server = spawn_app_on(slow_backend(Duration::from_secs(60)), |c| {
            c.concurrency = 1;
            c.max_queued = 2;
            c.metrics_listen = "127.0.0.1:0".into();
        })
        .await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);

        let running = client
            .submit(full("parity", "p0"), archive.clone())
            .await
            .unwrap();
        while state_of(&server, &running.id).await != pb::SubmissionState::Running as i32 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut accepted = vec![running.id];
        for p in ["p1", "p2"] {
            let s = client
                .submit(full("parity", p), archive.clone())
                .await
                .unwrap();
            assert_eq!(s.state, pb::SubmissionState::Queued as i32);
            accepted.push(s.id);
        }
        let err = client
            .submit(full("parity", "p3"), archive.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("queue is full"), "{}", err.message());
        scrape_until(server.metrics_addr.unwrap(), &["holdout_queue_depth 2"]).await;

        // Room again once one leaves the queue.
        client
            .submissions()
            .cancel_submission(authed(
                &server.submitter,
                pb::CancelSubmissionRequest {
                    id: accepted[2].clone(),
                },
            ))
            .await
            .unwrap();
        accepted.push(
            client
                .submit(full("parity", "p3"), archive.clone())
                .await
                .unwrap()
                .id,
        );
        for id in accepted {
            client
                .submissions()
                .cancel_submission(authed(
                    &server.submitter,
                    pb::CancelSubmissionRequest { id },
                ))
                .await
                .unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn malformed_uploads_are_invalid_argument_naming_the_problem() {
    within(60, async {
        let server = spawn_app_on(slow_backend(Duration::from_millis(10)), |_| {}).await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.limits.as_mut().unwrap().archive_bytes = 4096;
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;

        // Over the challenge's archive limit (incompressible bytes: the size is what counts).
        let big: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let err = client
            .submit(full("parity", "alice"), big)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("archive") && err.message().contains("limit of 4 KiB"),
            "{}",
            err.message()
        );

        // A declared SHA-256 that is not the archive's.
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let meta = pb::SubmitMetadata {
            sha256: "0".repeat(64),
            ..full("parity", "alice")
        };
        let err = client.submit(meta, archive.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("sha256"), "{}", err.message());

        // The right one is accepted.
        use sha2::Digest;
        let meta = pb::SubmitMetadata {
            sha256: hex::encode(sha2::Sha256::digest(&archive)),
            ..full("parity", "alice")
        };
        let ok = client.submit(meta, archive.clone()).await.unwrap();
        client.watch(&ok.id, |_| {}).await.unwrap();

        // A stream that starts with a chunk instead of the metadata.
        let stream = futures::stream::iter(vec![pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Chunk(archive.clone())),
        }]);
        let err = client
            .submissions()
            .submit(authed(&server.submitter, stream))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("metadata"), "{}", err.message());
    })
    .await
}

#[tokio::test]
async fn serve_with_json_log_format_writes_one_json_object_per_line() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = process::write_config(dir.path(), &data, "");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg("json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
            seen += 1;
            if v["message"] == "holdout serving" {
                assert!(
                    v["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
                    "{line}"
                );
                break;
            }
        }
        assert!(seen >= 1, "the server wrote no log line before exiting");
        child.kill().await.unwrap();
    })
    .await
}
