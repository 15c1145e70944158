//! The throughput cost of time partitioning: the same mixed workload of FULL and SMOKE
//! submissions through the real service, once with SMOKE and FULL runs kept apart in time
//! (the default) and once without (the scheduler before it), in the same process.
//!
//! ```sh
//! cargo bench --bench partition                 # M=40 per workload
//! HOLDOUT_BENCH_M=80 cargo bench --bench partition
//! ```
//!
//! Workloads of M submissions alternating FULL and SMOKE across four participants, all
//! submitted at once, two run slots: trivial runs (the scheduler's overhead shows); and FULL
//! runs of 1 s with SMOKE runs of 0.3 s, under the default 60 s slice (one switch) and under
//! a 2 s slice (a switch every few runs, so the slots drained before each switch show).

mod common;

use std::sync::Arc;
use std::time::Instant;

use holdout::app::Application;
use holdout::cli::Client;
use holdout::config::Config;
use holdout::pb;

use common::{ADMIN, ANSWER, SUBMITTER, archive, challenge, tokens, write_data};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let m: usize = std::env::var("HOLDOUT_BENCH_M")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    println!("time partitioning: {m} submissions per workload, half FULL, half SMOKE, 2 slots");
    for (name, sleeps, slice) in [
        ("trivial runs", (0.0, 0.0), 60),
        ("1 s / 0.3 s", (1.0, 0.3), 60),
        ("1 s / 0.3 s, 2 s slice", (1.0, 0.3), 2),
    ] {
        let mut seconds = [0.0f64; 2];
        // Alternate the two schedulers twice, so drift on the machine hits both.
        for round in 0..2 {
            for (i, partition) in [false, true].into_iter().enumerate() {
                let s = run_workload(m, sleeps, partition, slice).await;
                seconds[i] += s / 2.0;
                println!(
                    "  {name:<24} round {round} partition={partition:<5} {s:6.2} s  {:5.2} submissions/s",
                    m as f64 / s
                );
            }
        }
        println!(
            "{name}: without {:.2} s, with {:.2} s -> throughput ratio with/without {:.3}",
            seconds[0],
            seconds[1],
            seconds[0] / seconds[1]
        );
    }
}

/// Submits `m` submissions at once (FULL runs sleeping `sleeps.0`, SMOKE runs `sleeps.1`)
/// and returns the seconds until the last one ended.
async fn run_workload(m: usize, sleeps: (f64, f64), partition: bool, slice: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    write_data(dir.path());
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: dir.path().join("state"),
        data_root: dir.path().join("data"),
        concurrency: 2,
        // All M submissions go up at once through one token: above the default 16.
        max_uploads_per_token: 1024,
        time_partition: partition,
        partition_slice: holdout::units::HumanDuration(std::time::Duration::from_secs(slice)),
        tokens: tokens(),
        ..Config::default()
    };
    let app = Application::build(config).await.expect("server builds");
    let addr = app.local_addr().to_string();
    let stop = app.shutdown_token();
    let server = tokio::spawn(async move { app.run_until(std::future::pending()).await });
    let admin = Client::connect(&addr, Some(ADMIN)).await.unwrap();
    admin
        .challenges()
        .create_challenge(admin.request(pb::CreateChallengeRequest {
            challenge: Some(challenge(0)),
        }))
        .await
        .expect("challenge created");
    let client = Arc::new(Client::connect(&addr, Some(SUBMITTER)).await.unwrap());
    let full_archive = archive(&format!("sleep {}\n{ANSWER}", sleeps.0));
    let smoke_archive = archive(&format!("sleep {}\n{ANSWER}", sleeps.1));
    let started = Instant::now();
    let mut ids = Vec::with_capacity(m);
    for i in 0..m {
        let (kind, archive) = if i % 2 == 0 {
            (pb::SubmissionKind::Full, &full_archive)
        } else {
            (pb::SubmissionKind::Smoke, &smoke_archive)
        };
        let meta = pb::SubmitMetadata {
            challenge_id: "bench".into(),
            participant_id: format!("p{}", i % 4),
            kind: kind as i32,
            ..Default::default()
        };
        ids.push(
            client
                .submit(meta, archive.clone())
                .await
                .expect("accepted")
                .id,
        );
    }
    let mut waits = Vec::new();
    for id in ids {
        let client = client.clone();
        waits.push(tokio::spawn(async move {
            let last = client.watch(&id, |_| {}).await.expect("watch");
            assert_eq!(
                last.state,
                pb::SubmissionState::Succeeded as i32,
                "{last:?}"
            );
        }));
    }
    for w in waits {
        w.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    seconds
}
