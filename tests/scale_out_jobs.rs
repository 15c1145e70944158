//! Rescoring and re-running across processes: two `holdout serve` replicas (API only) and a
//! `holdout worker` on one throw-away PostgreSQL, the real Docker engine. A job started on
//! one replica is followed and cancelled from the other; kept predictions written by the
//! worker are rescored by a replica; re-runs are run by the worker.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{ServerProcess, WorkerProcess, write_config};
use common::{PARITY_EVEN, PARITY_RIGHT, full, tar_gz, within};
use holdout::cli::Client;
use holdout::pb;
use holdout::testing::PgCluster;

const ADMIN: &str = "admin-token-for-tests";
const SUBMITTER: &str = "submitter-a-token-for-tests";
const ROWS: usize = 20;

/// The parity data set under `data_root/parity`; the first `odd_first` rows labelled "odd"
/// (a labels fix).
fn write_parity(data_root: &Path, odd_first: usize) {
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,label\n");
    for i in 0..ROWS {
        let x = (i * 7 + 3) % 101;
        test.push_str(&format!("r{i:04},{x}\n"));
        let label = if i < odd_first || x % 2 == 1 {
            "odd"
        } else {
            "even"
        };
        labels.push_str(&format!("r{i:04},{label}\n"));
    }
    let dir = data_root.join("parity");
    std::fs::create_dir_all(dir.join("inputs")).unwrap();
    std::fs::create_dir_all(dir.join("sample/inputs")).unwrap();
    std::fs::write(dir.join("inputs/test.csv"), test).unwrap();
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
    std::fs::write(dir.join("sample/inputs/test.csv"), "id,x\ns1,4\n").unwrap();
    std::fs::write(dir.join("sample/labels.csv"), "id,label\ns1,even\n").unwrap();
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(data_root.parent().unwrap())
        .status();
}

/// The config file of process `name` on the shared PostgreSQL, with `extra` lines.
fn process_config(
    root: &tempfile::TempDir,
    data_root: &Path,
    pg: &PgCluster,
    name: &str,
    extra: &str,
) -> std::path::PathBuf {
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_config(
        &dir,
        data_root,
        &format!(
            "database_url = {:?}\noutput_filesystem = \"directory\"\n{extra}",
            pg.url()
        ),
    )
}

async fn client(addr: &str, token: &str) -> Client {
    Client::connect(&format!("http://{addr}"), Some(token))
        .await
        .unwrap()
}

async fn watch_job(c: &Client, id: &str) -> pb::Job {
    let mut stream = c
        .jobs()
        .watch_job(c.request(pb::WatchJobRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(j) = stream.message().await.unwrap() {
        last = Some(j);
    }
    last.unwrap()
}

async fn exact(c: &Client, id: &str) -> (f64, f64) {
    let s = c
        .submissions()
        .get_submission(c.request(pb::GetSubmissionRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner();
    (
        s.public_scores_exact["accuracy"],
        s.private_scores_exact["accuracy"],
    )
}

#[tokio::test]
async fn jobs_started_on_one_replica_are_followed_and_cancelled_on_another_and_reruns_run_on_a_worker()
 {
    within(240, async {
        let pg = PgCluster::start().expect("a PostgreSQL cluster");
        let root = tempfile::tempdir().unwrap();
        let data_root = root.path().join("data");
        write_parity(&data_root, 0);
        let config = |name: &str, extra: &str| process_config(&root, &data_root, &pg, name, extra);
        let a = ServerProcess::start(
            &config("api-a", "execution = \"workers\"\njob_item_pause = \"1s\""),
            None,
        )
        .await;
        let b = ServerProcess::start(&config("api-b", "execution = \"workers\""), None).await;
        let _worker = WorkerProcess::start(&config("worker", "concurrency = 2")).await;

        let admin_a = client(&a.addr, ADMIN).await;
        let admin_b = client(&b.addr, ADMIN).await;
        admin_a
            .challenges()
            .create_challenge(admin_a.request(pb::CreateChallengeRequest {
                challenge: Some(common::parity_challenge("parity", "parity")),
            }))
            .await
            .unwrap();
        let submitter = client(&a.addr, SUBMITTER).await;
        let mut ids = Vec::new();
        for (who, sh) in [("alice", PARITY_RIGHT), ("bob", PARITY_EVEN)] {
            let s = submitter
                .submit(full("parity", who), tar_gz(&[("run.sh", sh)]))
                .await
                .unwrap();
            let last = submitter.watch(&s.id, |_| {}).await.unwrap();
            assert_eq!(last.verdict, pb::Verdict::Scored as i32, "{last:?}");
            ids.push(s.id);
        }
        let before = exact(&admin_b, &ids[0]).await;
        assert_eq!(before, (1.0, 1.0));

        // Rescore on replica A (predictions kept by the worker, in PostgreSQL), cancelled
        // from replica B mid-way: nothing changes.
        write_parity(&data_root, 8);
        let job = admin_a
            .jobs()
            .rescore_challenge(admin_a.request(pb::RescoreChallengeRequest {
                challenge_id: "parity".into(),
                metric: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen_on_b = admin_b
            .jobs()
            .get_job(admin_b.request(pb::GetJobRequest { id: job.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            seen_on_b.state,
            pb::JobState::Running as i32,
            "{seen_on_b:?}"
        );
        assert_eq!(seen_on_b.total, 2);
        admin_b
            .jobs()
            .cancel_job(admin_b.request(pb::CancelJobRequest { id: job.id.clone() }))
            .await
            .unwrap();
        let last = watch_job(&admin_a, &job.id).await;
        assert_eq!(last.state, pb::JobState::Cancelled as i32, "{last:?}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            exact(&admin_b, &ids[0]).await,
            before,
            "a cancelled job wrote nothing"
        );

        // Again, watched from B to its end: the new scores show on both replicas.
        let job = admin_a
            .jobs()
            .rescore_challenge(admin_a.request(pb::RescoreChallengeRequest {
                challenge_id: "parity".into(),
                metric: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let last = watch_job(&admin_b, &job.id).await;
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        assert!(last.message.contains("2 changed"), "{}", last.message);
        let rescored = exact(&admin_b, &ids[0]).await;
        assert_ne!(rescored, before);
        assert_eq!(exact(&admin_a, &ids[0]).await, rescored);

        // A re-run started on B is run by the worker; its swap agrees with the rescore
        // (same code, same data: same scores), and is audited.
        let job = admin_b
            .jobs()
            .rerun_submissions(admin_b.request(pb::RerunSubmissionsRequest {
                challenge_id: "parity".into(),
                participant_ids: vec!["alice".into()],
                submission_ids: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        let last = watch_job(&admin_a, &job.id).await;
        assert_eq!(last.state, pb::JobState::Finished as i32, "{last:?}");
        assert_eq!((last.done, last.total), (1, 1));
        assert!(last.message.contains("1 unchanged"), "{}", last.message);
        assert_eq!(exact(&admin_a, &ids[0]).await, rescored);
        let changes = admin_a
            .jobs()
            .list_job_changes(admin_a.request(pb::ListJobChangesRequest { id: job.id }))
            .await
            .unwrap()
            .into_inner()
            .changes;
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].submission_id, ids[0]);
    })
    .await;
}

#[tokio::test]
async fn a_rerun_job_whose_replica_died_is_ended_elsewhere_and_its_queued_reruns_cancelled() {
    within(180, async {
        let pg = PgCluster::start().expect("a PostgreSQL cluster");
        let root = tempfile::tempdir().unwrap();
        let data_root = root.path().join("data");
        write_parity(&data_root, 0);
        let config = |name: &str, extra: &str| process_config(&root, &data_root, &pg, name, extra);
        let mut a = ServerProcess::start(&config("api-a", "execution = \"workers\""), None).await;
        let b = ServerProcess::start(&config("api-b", "execution = \"workers\""), None).await;
        let mut worker = WorkerProcess::start(&config("worker", "concurrency = 1")).await;
        let admin_a = client(&a.addr, ADMIN).await;
        let admin_b = client(&b.addr, ADMIN).await;
        admin_a
            .challenges()
            .create_challenge(admin_a.request(pb::CreateChallengeRequest {
                challenge: Some(common::parity_challenge("parity", "parity")),
            }))
            .await
            .unwrap();
        let submitter = client(&a.addr, SUBMITTER).await;
        let s = submitter
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        submitter.watch(&s.id, |_| {}).await.unwrap();
        // No worker from now on: the re-run stays queued.
        worker.kill9().await;
        let job = admin_a
            .jobs()
            .rerun_submissions(admin_a.request(pb::RerunSubmissionsRequest {
                challenge_id: "parity".into(),
                participant_ids: vec![],
                submission_ids: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        let (sql, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // The job's task queues the re-run, which waits for a worker.
        let rerun_owner = format!("rerun:{}", job.id);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let queued: i64 = sql
                .query_one(
                    "SELECT count(*) FROM submissions WHERE owner = $1 AND state = 'queued'",
                    &[&rerun_owner],
                )
                .await
                .unwrap()
                .get(0);
            if queued == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no re-run queued");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Replica A dies with the job; a minute later its heartbeat is stale (made so here).
        a.child.kill().await.unwrap();
        sql.execute("UPDATE jobs SET beat = 0 WHERE id = $1", &[&job.id])
            .await
            .unwrap();
        // Read on replica B: the job ends FAILED and its re-run is cancelled.
        let seen = admin_b
            .jobs()
            .get_job(admin_b.request(pb::GetJobRequest { id: job.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(seen.state, pb::JobState::Failed as i32, "{seen:?}");
        let states: Vec<String> = sql
            .query(
                "SELECT state FROM submissions WHERE owner = $1",
                &[&rerun_owner],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(states, vec!["cancelled".to_owned()]);
        // The original keeps its result.
        assert_eq!(exact(&admin_b, &s.id).await, (1.0, 1.0));
    })
    .await;
}
