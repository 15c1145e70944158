//! Nothing lost, nothing stuck: a real `holdout serve` process and real Docker, killed,
//! signalled, restarted, flooded, and cut off mid-upload.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::process::{ServerProcess, write_config};
use common::*;
use holdout::cli::Client;
use holdout::pb;

/// A data root with the parity challenge's data, readable by the sandbox user.
fn data_root(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("data");
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,label\n");
    for i in 0..20 {
        test.push_str(&format!("r{i},{i}\n"));
        labels.push_str(&format!(
            "r{i},{}\n",
            if i % 2 == 0 { "even" } else { "odd" }
        ));
    }
    for (path, content) in [
        ("parity/inputs/test.csv", test.as_str()),
        ("parity/labels.csv", labels.as_str()),
        ("parity/sample/inputs/test.csv", "id,x\ns1,4\n"),
        ("parity/sample/labels.csv", "id,label\ns1,even\n"),
    ] {
        write_files(&root, &[(path, content)]);
    }
    make_world_readable(dir);
    root
}

async fn setup(server: &ServerProcess, concurrency: u32) -> Client {
    let admin = Client::connect(&server.addr, Some(&server.admin))
        .await
        .unwrap();
    let mut c = parity_challenge("parity", "parity");
    c.limits.as_mut().unwrap().concurrency = concurrency;
    admin
        .challenges()
        .create_challenge(authed(
            &server.admin,
            pb::CreateChallengeRequest { challenge: Some(c) },
        ))
        .await
        .unwrap();
    Client::connect(&server.addr, Some(&server.submitter))
        .await
        .unwrap()
}

async fn get(client: &Client, token: &str, id: &str) -> pb::Submission {
    client
        .submissions()
        .get_submission(authed(token, pb::GetSubmissionRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn containers_of(state_dir: &std::path::Path) -> usize {
    let dir = std::fs::canonicalize(state_dir).unwrap();
    let instance = holdout::auth::digest(&dir.to_string_lossy())[..16].to_owned();
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.holdout.instance={instance}"),
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn a_server_killed_mid_run_loses_and_duplicates_nothing_after_restart() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let root = data_root(dir.path());
        let config = write_config(dir.path(), &root, "concurrency = 3");
        let server = ServerProcess::start(&config, None).await;
        let client = setup(&server, 3).await;
        let slow = format!("sleep 3\n{PARITY_RIGHT}");
        let archive = tar_gz(&[("run.sh", &slow)]);
        let mut ids = Vec::new();
        for i in 0..23 {
            ids.push(
                client
                    .submit(full("parity", &format!("p{}", i % 5)), archive.clone())
                    .await
                    .unwrap()
                    .id,
            );
        }
        // Wait until three run.
        loop {
            let mut running = 0;
            for id in &ids {
                if get(&client, &server.submitter, id).await.state
                    == pb::SubmissionState::Running as i32
                {
                    running += 1;
                }
            }
            if running == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let server = server.crash_and_restart().await;
        let client = Client::connect(&server.addr, Some(&server.submitter))
            .await
            .unwrap();
        for id in &ids {
            let last = client.watch(id, |_| {}).await.unwrap();
            assert_eq!(
                last.state,
                pb::SubmissionState::Succeeded as i32,
                "{last:?}"
            );
        }
        let list = client
            .submissions()
            .list_submissions(authed(
                &server.submitter,
                pb::ListSubmissionsRequest {
                    challenge_id: "parity".into(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.submissions.len(), 23, "none lost, none duplicated");
        assert_eq!(containers_of(&dir.path().join("state")).await, 0);
    })
    .await
}

#[tokio::test]
async fn sigterm_finishes_or_hands_back_live_runs_and_exits_cleanly() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let root = data_root(dir.path());
        let config = write_config(
            dir.path(),
            &root,
            "concurrency = 2\nshutdown_grace = \"1s\"",
        );
        let mut server = ServerProcess::start(&config, None).await;
        let client = setup(&server, 2).await;
        let slow = format!("sleep 4\n{PARITY_RIGHT}");
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                client
                    .submit(
                        full("parity", &format!("p{i}")),
                        tar_gz(&[("run.sh", &slow)]),
                    )
                    .await
                    .unwrap()
                    .id,
            );
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.signal(libc::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "exit status {status:?}");
        assert_eq!(
            containers_of(&dir.path().join("state")).await,
            0,
            "no container outlives the server"
        );
        let server = ServerProcess::start(&config, Some(&server.addr)).await;
        let client = Client::connect(&server.addr, Some(&server.submitter))
            .await
            .unwrap();
        for id in &ids {
            let last = client.watch(id, |_| {}).await.unwrap();
            assert_eq!(
                last.state,
                pb::SubmissionState::Succeeded as i32,
                "{last:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn cancelling_a_running_submission_kills_its_container_at_once() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(
                full("parity", "alice"),
                tar_gz(&[("run.sh", "sleep 600\n")]),
            )
            .await
            .unwrap();
        loop {
            if get(&client, &server.submitter, &s.id).await.state
                == pb::SubmissionState::Running as i32
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let done = client
            .submissions()
            .cancel_submission(authed(
                &server.submitter,
                pb::CancelSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cancel took {:?}",
            started.elapsed()
        );
        assert_eq!(done.state, pb::SubmissionState::Cancelled as i32);
        assert_eq!(done.verdict, pb::Verdict::Cancelled as i32);
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing_behind() {
    within(60, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Metadata(full("parity", "alice"))),
        })
        .await
        .unwrap();
        tx.send(pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Chunk(vec![
                0x1f, 0x8b, 8, 0, 0, 0,
            ])),
        })
        .await
        .unwrap();
        let mut subs = client.submissions();
        let call = tokio::spawn(async move {
            subs.submit(authed(
                &server_token(),
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        call.abort();
        drop(tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let uploads: Vec<_> = std::fs::read_dir(server.state_dir.join("uploads"))
            .unwrap()
            .collect();
        assert!(uploads.is_empty(), "upload debris: {uploads:?}");
        let list = client
            .submissions()
            .list_submissions(authed(
                &server.submitter,
                pb::ListSubmissionsRequest {
                    challenge_id: "parity".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(list.submissions.is_empty());
    })
    .await
}

fn server_token() -> String {
    "submitter-a-token-for-tests".into()
}

#[tokio::test]
async fn five_hundred_submissions_from_fifty_participants_all_finish_fairly_in_flat_memory() {
    within(900, async {
        let dir = tempfile::tempdir().unwrap();
        let root = data_root(dir.path());
        let config = write_config(dir.path(), &root, "concurrency = 2");
        let server = ServerProcess::start(&config, None).await;
        let client = setup(&server, 2).await;
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        let mut ids: Vec<(String, String)> = Vec::new();
        // 45 busy participants with 11 submissions each...
        for round in 0..11 {
            for p in 0..45 {
                let s = client.submit(full("parity", &format!("busy{p}")), archive.clone()).await.unwrap();
                ids.push((s.id, format!("busy{p}-{round}")));
            }
        }
        let rss_early = server.rss_kib();
        // ...then 5 participants with a single submission each, behind ~490 queued ones.
        let mut lone = Vec::new();
        for p in 0..5 {
            let s = client.submit(full("parity", &format!("lone{p}")), archive.clone()).await.unwrap();
            lone.push((s.id.clone(), Instant::now()));
            ids.push((s.id, format!("lone{p}")));
        }
        assert_eq!(ids.len(), 500);
        let mut waits = Vec::new();
        let mut run_times = Vec::new();
        for (id, submitted) in &lone {
            let mut running_at = None;
            client
                .watch(id, |u| {
                    if u.state != pb::SubmissionState::Queued as i32 && running_at.is_none() {
                        running_at = Some(Instant::now());
                    }
                })
                .await
                .unwrap();
            waits.push(running_at.unwrap() - *submitted);
        }
        let mut verdicts: HashMap<i32, usize> = HashMap::new();
        for (id, _) in &ids {
            let last = client.watch(id, |_| {}).await.unwrap();
            *verdicts.entry(last.verdict).or_default() += 1;
            let admin = Client::connect(&server.addr, Some(&server.admin)).await.unwrap();
            if run_times.len() < 50 {
                let s = get(&admin, &server.admin, id).await;
                if let Some(u) = s.usage.and_then(|u| u.wall_time) {
                    run_times.push(Duration::new(u.seconds as u64, u.nanos as u32));
                }
            }
        }
        assert_eq!(verdicts.get(&(pb::Verdict::Scored as i32)), Some(&500), "{verdicts:?}");
        run_times.sort();
        let typical = run_times[run_times.len() / 2];
        let longest = *waits.iter().max().unwrap();
        // Behind ~490 queued runs, a lone submission waits at most one round of the
        // round-robin (each of the 45 busy participants' next run, two at a time, about 23
        // slots), never for the queue (about 245 slots in FIFO order).
        assert!(
            longest < typical * 40 + Duration::from_secs(5),
            "a lone participant waited {longest:?}; a run takes about {typical:?}"
        );
        let rss_late = server.rss_kib();
        eprintln!("server rss: {rss_early} KiB after 495 submits, {rss_late} KiB after 500 runs; longest lone wait {longest:?}");
        assert!(rss_late < rss_early + 64 * 1024, "memory grew from {rss_early} KiB to {rss_late} KiB");
        assert_eq!(containers_of(&dir.path().join("state")).await, 0);
    })
    .await
}
