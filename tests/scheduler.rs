//! The scheduler through the real API and store, on a scripted backend: fairness,
//! concurrency limits, cancellation and idempotency. (The scripted backend runs nothing;
//! the Docker tests prove the sandbox.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::sandbox::RunOutcome;
use holdout::sandbox::fake::{FakeBackend, FakeRun};

fn scripted(delay_ms: u64) -> Arc<FakeBackend> {
    Arc::new(FakeBackend::new(move |_spec| FakeRun {
        outcome: RunOutcome {
            exit_code: Some(0),
            ..Default::default()
        },
        predictions: Some(b"id,label\n".to_vec()),
        delay: Duration::from_millis(delay_ms),
    }))
}

#[tokio::test]
async fn a_lone_participant_waits_at_most_one_run_behind_a_flood() {
    within(120, async {
        let backend = scripted(50);
        let server = spawn_app_on(backend.clone(), |c| c.concurrency = 1).await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let mut flood = Vec::new();
        for _ in 0..20 {
            flood.push(
                client
                    .submit(full("parity", "flood"), archive.clone())
                    .await
                    .unwrap(),
            );
        }
        let started_before = backend.started().len();
        let alone = client
            .submit(full("parity", "alone"), archive.clone())
            .await
            .unwrap();
        assert!(
            alone.queue_position <= 2,
            "queue position {}",
            alone.queue_position
        );
        client.watch(&alone.id, |_| {}).await.unwrap();
        let started = backend.started();
        let at = started.iter().position(|id| id == &alone.id).unwrap();
        // Runs already started when it arrived, plus at most one more slot.
        assert!(
            at <= started_before + 1,
            "{} flood runs started between the lone one's arrival and its run",
            at - started_before
        );
        for s in &flood {
            client.watch(&s.id, |_| {}).await.unwrap();
        }
        assert_eq!(backend.max_active(), 1);
    })
    .await
}

#[tokio::test]
async fn a_challenge_never_runs_more_than_its_concurrency() {
    within(60, async {
        let backend = scripted(100);
        let server = spawn_app_on(backend.clone(), |c| c.concurrency = 4).await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.limits.as_mut().unwrap().concurrency = 2;
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let mut subs = Vec::new();
        for i in 0..8 {
            subs.push(
                client
                    .submit(full("parity", &format!("p{i}")), archive.clone())
                    .await
                    .unwrap(),
            );
        }
        for s in &subs {
            client.watch(&s.id, |_| {}).await.unwrap();
        }
        assert_eq!(backend.max_active(), 2);
    })
    .await
}

#[tokio::test]
async fn cancelling_ends_a_submission_cancelled_charging_only_a_full_run_that_started() {
    within(60, async {
        let backend = scripted(60_000);
        let server = spawn_app_on(backend.clone(), |c| c.concurrency = 1).await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.quota = Some(pb::Quota {
            full_per_day: 2,
            ..Default::default()
        });
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let running = client
            .submit(full("parity", "alice"), archive.clone())
            .await
            .unwrap();
        let queued = client
            .submit(full("parity", "alice"), archive.clone())
            .await
            .unwrap();
        // Wait until the first runs.
        loop {
            let s = client
                .submissions()
                .get_submission(authed(
                    &server.submitter,
                    pb::GetSubmissionRequest {
                        id: running.id.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if s.state == pb::SubmissionState::Running as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in [&queued.id, &running.id] {
            let s = client
                .submissions()
                .cancel_submission(authed(
                    &server.submitter,
                    pb::CancelSubmissionRequest { id: id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(s.state, pb::SubmissionState::Cancelled as i32);
            assert_eq!(s.verdict, pb::Verdict::Cancelled as i32);
        }
        // The queued one was not charged; the running FULL one was, like a failed run (a
        // cancel at a chosen moment must not be a free probe): one more fits in the quota
        // of two.
        client
            .submit(full("parity", "alice"), archive.clone())
            .await
            .unwrap();
        let err = client
            .submit(full("parity", "alice"), archive.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("resets at"), "{}", err.message());
    })
    .await
}

#[tokio::test]
async fn racing_submits_with_one_idempotency_key_return_one_submission() {
    within(60, async {
        let server = spawn_app_on(scripted(10), |_| {}).await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = server.client(&server.submitter).await;
            let archive = archive.clone();
            tasks.push(tokio::spawn(async move {
                let meta = pb::SubmitMetadata {
                    idempotency_key: "same-key".into(),
                    ..full("parity", "alice")
                };
                client.submit(meta, archive).await.unwrap().id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
    })
    .await
}

#[tokio::test]
async fn a_panic_in_a_run_fails_that_submission_as_internal_error_and_the_queue_goes_on() {
    within(60, async {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        let backend = Arc::new(FakeBackend::new(move |_spec| {
            if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                panic!("scripted panic in the worker");
            }
            FakeRun {
                outcome: RunOutcome {
                    exit_code: Some(0),
                    ..Default::default()
                },
                predictions: Some(b"id,label\n".to_vec()),
                delay: Duration::from_millis(10),
            }
        }));
        let server = spawn_app_on(backend, |c| c.concurrency = 1).await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        for i in 0..5 {
            let s = client
                .submit(full("parity", &format!("p{i}")), archive.clone())
                .await
                .unwrap();
            let last = client.watch(&s.id, |_| {}).await.unwrap();
            if i == 2 {
                assert_eq!(last.verdict, pb::Verdict::InternalError as i32, "{last:?}");
                assert!(
                    !last.message.contains("panic"),
                    "internal causes stay internal: {}",
                    last.message
                );
            } else {
                assert_ne!(last.verdict, pb::Verdict::InternalError as i32, "{last:?}");
            }
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 5);
    })
    .await
}
