//! Scale-out against the real parts: a throw-away PostgreSQL cluster of each test's own,
//! `holdout serve` replicas and `holdout worker` processes (separate processes, each with
//! its own state folder and instance label), the real Docker engine.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{ServerProcess, WorkerProcess, containers_of, write_config};
use common::{PARITY_RIGHT, full, make_world_readable, tar_gz, within, write_files};
use holdout::cli::Client;
use holdout::pb;
use holdout::testing::PgCluster;

const ADMIN: &str = "admin-token-for-tests";
const SUBMITTER: &str = "submitter-a-token-for-tests";

/// A deployment under test: its database, its data, and a folder per process.
struct Deployment {
    pg: PgCluster,
    root: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Deployment {
        let root = tempfile::tempdir().unwrap();
        let d = Deployment {
            pg: PgCluster::start().expect("a PostgreSQL cluster"),
            root,
        };
        d.write_parity("parity", 40);
        d
    }

    fn data_root(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Writes the parity data set under `data_root` (or another data root).
    fn write_parity(&self, name: &str, rows: usize) {
        write_parity_at(&self.data_root(), name, rows);
    }

    /// A config for process `name`: its own state folder, the shared database.
    fn config(&self, name: &str, data_root: &Path, extra: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_config(
            &dir,
            data_root,
            &format!(
                "database_url = {:?}\noutput_filesystem = \"directory\"\n{extra}",
                self.pg.url()
            ),
        )
    }

    async fn replica(&self, name: &str) -> ServerProcess {
        let config = self.config(name, &self.data_root(), "execution = \"workers\"");
        ServerProcess::start(&config, None).await
    }

    async fn worker(&self, name: &str, extra: &str) -> WorkerProcess {
        self.worker_on(name, &self.data_root(), extra).await
    }

    async fn worker_on(&self, name: &str, data_root: &Path, extra: &str) -> WorkerProcess {
        let config = self.config(name, data_root, extra);
        WorkerProcess::start(&config).await
    }

    async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

fn write_parity_at(data_root: &Path, name: &str, rows: usize) {
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,label\n");
    for i in 0..rows {
        let x = (i * 7 + 3) % 101;
        test.push_str(&format!("r{i:04},{x}\n"));
        labels.push_str(&format!(
            "r{i:04},{}\n",
            if x % 2 == 0 { "even" } else { "odd" }
        ));
    }
    let files = [
        ("inputs/test.csv", test.as_str()),
        ("labels.csv", labels.as_str()),
        ("sample/inputs/test.csv", "id,x\ns1,4\ns2,7\ns3,10\n"),
        ("sample/labels.csv", "id,label\ns1,even\ns2,odd\ns3,even\n"),
    ];
    write_files(&data_root.join(name), &files);
    make_world_readable(data_root);
}

async fn client(addr: &str, token: &str) -> Client {
    Client::connect(&format!("http://{addr}"), Some(token))
        .await
        .unwrap()
}

/// The parity challenge, with `concurrency` runs at once (on all workers together).
async fn create_parity(addr: &str, concurrency: u32) {
    let mut c = common::parity_challenge("parity", "parity");
    c.limits.as_mut().unwrap().concurrency = concurrency;
    let admin = client(addr, ADMIN).await;
    admin
        .challenges()
        .create_challenge(admin.request(pb::CreateChallengeRequest { challenge: Some(c) }))
        .await
        .unwrap();
}

/// A parity solution that sleeps first.
fn sleepy(seconds: f64) -> Vec<u8> {
    tar_gz(&[("run.sh", &format!("sleep {seconds}\n{PARITY_RIGHT}"))])
}

async fn state_of(c: &Client, id: &str) -> pb::Submission {
    c.submissions()
        .get_submission(c.request(pb::GetSubmissionRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn wait_state(c: &Client, id: &str, want: pb::SubmissionState, secs: u64) -> pb::Submission {
    within(secs, async {
        loop {
            let s = state_of(c, id).await;
            if s.state == want as i32 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// What the database says of a submission.
#[derive(Debug, Clone)]
struct Row {
    attempts: i64,
    worker: Option<String>,
    started_at: Option<i64>,
    created_at: i64,
    state: String,
    participant: String,
}

/// Every submission, by id, as the database has it.
async fn rows(sql: &tokio_postgres::Client) -> HashMap<String, Row> {
    sql.query(
        "SELECT id, attempts, worker_id, started_at, created_at, state, participant_id FROM submissions",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get::<_, String>(0),
            Row {
                attempts: r.get(1),
                worker: r.get(2),
                started_at: r.get(3),
                created_at: r.get(4),
                state: r.get(5),
                participant: r.get(6),
            },
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_and_two_replicas_run_300_submissions_from_30_participants_each_once_and_fairly()
 {
    within(600, async {
        let d = Deployment::new();
        let a = d.replica("api-a").await;
        let b = d.replica("api-b").await;
        let extra = "concurrency = 2\nlease_ttl = \"5s\"";
        let workers = [
            d.worker("worker-1", extra).await,
            d.worker("worker-2", extra).await,
            d.worker("worker-3", extra).await,
        ];
        create_parity(&a.addr, 4).await;
        let on = [
            client(&a.addr, SUBMITTER).await,
            client(&b.addr, SUBMITTER).await,
        ];
        let archive = tar_gz(&[("run.sh", PARITY_RIGHT)]);
        // A flood from one participant, three each from 28 others, then a lone one, while
        // the queue is deep; through both replicas, concurrently.
        let mut plan: Vec<String> = std::iter::repeat_n("flood".to_owned(), 215).collect();
        for p in 0..28 {
            plan.extend(std::iter::repeat_n(format!("p{p:02}"), 3));
        }
        let mut ids = Vec::new();
        for (i, chunk) in plan.chunks(20).enumerate() {
            let mut sends = Vec::new();
            for (j, participant) in chunk.iter().enumerate() {
                let c = on[(i + j) % 2].clone();
                let (meta, bytes) = (full("parity", participant), archive.clone());
                sends.push(tokio::spawn(async move { c.submit(meta, bytes).await }));
            }
            for s in sends {
                ids.push(s.await.unwrap().unwrap().id);
            }
        }
        let lone = on[0]
            .submit(full("parity", "lone"), archive.clone())
            .await
            .unwrap();
        assert_eq!(ids.len() + 1, 300);
        // Watched to the end on the other replica.
        let watched = within(300, on[1].watch(&lone.id, |_| {})).await.unwrap();
        assert_eq!(watched.state, pb::SubmissionState::Succeeded as i32);
        ids.push(lone.id.clone());
        let sql = d.sql().await;
        within(400, async {
            loop {
                let r = rows(&sql).await;
                if r.values().all(|v| v.state == "succeeded") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        let r = rows(&sql).await;
        assert_eq!(r.len(), 300);
        // Each ran exactly once, and every worker took a share.
        let mut per_worker: HashMap<String, usize> = HashMap::new();
        for (id, row) in &r {
            assert_eq!(row.attempts, 1, "{id} ran {} times", row.attempts);
            *per_worker.entry(row.worker.clone().unwrap()).or_default() += 1;
        }
        assert_eq!(per_worker.len(), 3, "{per_worker:?}");
        let public: Vec<f64> = {
            let admin = client(&a.addr, ADMIN).await;
            let mut out = Vec::new();
            for id in &ids[..5] {
                out.push(state_of(&admin, id).await.public_scores_exact["accuracy"]);
            }
            out
        };
        assert!(public.iter().all(|s| *s == 1.0), "{public:?}");
        // The lone participant is not stuck behind the flood: once it queued, at most the
        // runs already being claimed (six slots) of the flood started before it. (Others
        // who had not run yet may go first: they waited too.)
        let lone_row = &r[&lone.id];
        let lone_started = lone_row.started_at.unwrap();
        let flood_overtaking = r
            .values()
            .filter(|v| v.participant == "flood")
            .filter(|v| {
                v.started_at
                    .is_some_and(|s| s > lone_row.created_at && s < lone_started)
            })
            .count();
        let flood_left = r
            .values()
            .filter(|v| v.participant == "flood")
            .filter(|v| v.started_at.is_some_and(|s| s > lone_started))
            .count();
        eprintln!(
            "lone: {flood_overtaking} flood runs overtook it, {flood_left} flood runs after it"
        );
        assert!(
            flood_left > 50,
            "the lone submission came while the flood was queued"
        );
        assert!(
            flood_overtaking <= 6,
            "{flood_overtaking} flood runs started between the lone submission and its run"
        );
        // The challenge's limit (4 at once) held across the workers' six slots.
        let spans: Vec<(i64, i64)> = sql
            .query("SELECT started_at, finished_at FROM submissions", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let most = most_at_once(&spans);
        assert!(most <= 4, "{most} runs of the challenge at once");
        // The registry shows three live workers.
        let admin = client(&b.addr, ADMIN).await;
        let listed = admin
            .audit()
            .list_workers(admin.request(pb::ListWorkersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .workers;
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|w| w.alive && w.slots == 2), "{listed:?}");
        drop(workers);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_runs_finish_elsewhere_once_and_its_restart_leaves_no_container() {
    within(240, async {
        let d = Deployment::new();
        let api = d.replica("api").await;
        let extra = "concurrency = 2\nlease_ttl = \"2s\"";
        let mut w1 = d.worker("worker-1", extra).await;
        create_parity(&api.addr, 4).await;
        let c = client(&api.addr, SUBMITTER).await;
        let mut ids = Vec::new();
        for p in ["a", "b"] {
            ids.push(c.submit(full("parity", p), sleepy(8.0)).await.unwrap().id);
        }
        for id in &ids {
            wait_state(&c, id, pb::SubmissionState::Running, 60).await;
        }
        // Looked at before the second worker starts: on a loaded machine its start alone can
        // outlast a short run.
        // RUNNING is committed before the container is created: wait for it.
        let w1_instance = w1.instance();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while containers_of(&w1_instance).await.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "worker 1 started no container"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let w2 = d.worker("worker-2", extra).await;
        w1.kill9().await;
        // After the lease, worker 2 hands them back and runs them.
        let admin = client(&api.addr, ADMIN).await;
        for id in &ids {
            let s = wait_state(&admin, id, pb::SubmissionState::Succeeded, 90).await;
            assert_eq!(s.public_scores_exact["accuracy"], 1.0);
        }
        let r = rows(&d.sql().await).await;
        for id in &ids {
            assert_eq!(
                r[id].attempts, 2,
                "one run lost with the worker, one that counted"
            );
            assert_eq!(r[id].worker.as_deref(), Some(w2.instance().as_str()));
        }
        // The dead worker's containers are still there until it comes back...
        w1.restart().await;
        // ...and gone once it has.
        within(30, async {
            while !containers_of(&w1_instance).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        // Nothing ran twice to the end: each submission has one result.
        for id in &ids {
            assert_eq!(
                state_of(&admin, id).await.state,
                pb::SubmissionState::Succeeded as i32
            );
        }
    })
    .await;
}

/// The most of `spans` (start, end) that overlap at any moment.
fn most_at_once(spans: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = spans
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // An end before a start at the same millisecond: back-to-back runs do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_time_partition_holds_across_two_workers_on_one_docker_host() {
    within(240, async {
        let d = Deployment::new();
        let api = d.replica("api").await;
        let extra = "concurrency = 2\nlease_ttl = \"5s\"\npartition_slice = \"2s\"";
        let _w = [
            d.worker("worker-1", extra).await,
            d.worker("worker-2", extra).await,
        ];
        create_parity(&api.addr, 4).await;
        let c = client(&api.addr, SUBMITTER).await;
        let mut ids = Vec::new();
        for i in 0..16 {
            let p = format!("p{}", i % 4);
            let meta = if i % 2 == 0 {
                full("parity", &p)
            } else {
                common::smoke("parity", &p)
            };
            let sleep = if i % 2 == 0 { 1.0 } else { 0.5 };
            ids.push(c.submit(meta, sleepy(sleep)).await.unwrap().id);
        }
        let admin = client(&api.addr, ADMIN).await;
        for id in &ids {
            wait_state(&admin, id, pb::SubmissionState::Succeeded, 200).await;
        }
        let sql = d.sql().await;
        let spans =
            |kind: &'static str| {
                let sql = &sql;
                async move {
                    sql.query(
                    "SELECT started_at, finished_at, worker_id FROM submissions WHERE kind = $1",
                    &[&kind],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, String>(2)))
                .collect::<Vec<_>>()
                }
            };
        let (fulls, smokes) = (spans("full").await, spans("smoke").await);
        for (fs, fe, fw) in &fulls {
            for (ss, se, sw) in &smokes {
                assert!(
                    fe <= ss || se <= fs,
                    "a FULL run on {fw} ({fs}..{fe}) overlapped a SMOKE run on {sw} ({ss}..{se})"
                );
            }
        }
        let workers: std::collections::HashSet<_> =
            fulls.iter().chain(&smokes).map(|r| r.2.clone()).collect();
        assert_eq!(workers.len(), 2, "both workers ran some");
    })
    .await;
}

/// The Prometheus text a process serves on `port`.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_with_sigterm_finishes_its_run_or_hands_it_back_and_says_stopped() {
    within(180, async {
        let d = Deployment::new();
        let api = d.replica("api").await;
        // A grace shorter than the run: the run is handed back, not lost, not charged twice.
        let mut w1 = d
            .worker(
                "worker-1",
                "concurrency = 1\nlease_ttl = \"2s\"\nshutdown_grace = \"1s\"",
            )
            .await;
        create_parity(&api.addr, 2).await;
        let c = client(&api.addr, SUBMITTER).await;
        let id = c.submit(full("parity", "a"), sleepy(5.0)).await.unwrap().id;
        wait_state(&c, &id, pb::SubmissionState::Running, 60).await;
        w1.signal(libc::SIGTERM);
        let status = within(30, w1.child.wait()).await.unwrap();
        assert!(status.success(), "{status:?}");
        assert!(w1.logged("holdout worker stopped"));
        let admin = client(&api.addr, ADMIN).await;
        let s = state_of(&admin, &id).await;
        assert_eq!(s.state, pb::SubmissionState::Queued as i32, "handed back");
        let listed = admin
            .audit()
            .list_workers(admin.request(pb::ListWorkersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .workers;
        assert_eq!(
            (listed[0].state.as_str(), listed[0].alive),
            ("stopped", false)
        );
        assert!(containers_of(&w1.instance()).await.is_empty());
        // Another worker runs it; a shutdown is not an attempt of the code.
        let _w2 = d
            .worker("worker-2", "concurrency = 1\nlease_ttl = \"2s\"")
            .await;
        let s = wait_state(&admin, &id, pb::SubmissionState::Succeeded, 60).await;
        assert_eq!(s.public_scores_exact["accuracy"], 1.0);
        let attempts: i64 = d
            .sql()
            .await
            .query_one("SELECT attempts FROM submissions WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(attempts, 1);
    })
    .await;
}

/// A TCP proxy whose forwarding can be paused (a network gone silent: no error, no answer)
/// and resumed.
struct Proxy {
    port: u16,
    paused: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (paused, _) = tokio::sync::watch::channel(false);
        let gate = paused.clone();
        tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let gate = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, gate.clone()), pump(ur, dw, gate));
                });
            }
        });
        Proxy { port, paused }
    }

    fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        // Held while paused: the bytes arrive late, as after a partition heals.
        if gate.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_cut_off_from_postgres_cannot_commit_once_its_lease_expired() {
    within(240, async {
        let d = Deployment::new();
        let api = d.replica("api").await;
        let proxy = Proxy::start(d.pg.port()).await;
        let via_proxy = d.pg.url().replace(&format!(":{}/", d.pg.port()), &format!(":{}/", proxy.port));
        let dir = d.root.path().join("worker-1");
        std::fs::create_dir_all(&dir).unwrap();
        let config = write_config(
            &dir,
            &d.data_root(),
            &format!(
                "database_url = {via_proxy:?}\noutput_filesystem = \"directory\"\nconcurrency = 1\nlease_ttl = \"6s\""
            ),
        );
        let w1 = WorkerProcess::start(&config).await;
        create_parity(&api.addr, 2).await;
        let c = client(&api.addr, SUBMITTER).await;
        // The run must end while the network is silent and before the worker can tell on
        // its own that its lease is gone (a third of a lease after its last renewal and a
        // whole lease later): 3 s of code under a 6 s lease leaves seconds of slack for a
        // slow start on a loaded machine.
        let id = c.submit(full("parity", "a"), sleepy(3.0)).await.unwrap().id;
        wait_state(&c, &id, pb::SubmissionState::Running, 60).await;
        // The worker's network to the database goes silent mid-run; the run ends while it
        // is, and its result waits in the worker for the network to come back.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.pause(true);
        let sql = d.sql().await;
        within(30, async {
            loop {
                let expired: bool = sql
                    .query_one(
                        "SELECT lease_until < holdout_now_ms() - 1500 FROM submissions WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if expired {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        let (state, attempts): (String, i64) = {
            let r = sql
                .query_one("SELECT state, attempts FROM submissions WHERE id = $1", &[&id])
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((state.as_str(), attempts), ("running", 1), "nobody wrote while it was cut off");
        // The network comes back, after the lease expired: the late write is refused...
        proxy.pause(false);
        within(30, async {
            while !w1.logged("write refused") {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        // ...and the run is handed back and run again, to one result.
        let admin = client(&api.addr, ADMIN).await;
        let s = wait_state(&admin, &id, pb::SubmissionState::Succeeded, 60).await;
        assert_eq!(s.public_scores_exact["accuracy"], 1.0);
        let attempts: i64 = sql
            .query_one("SELECT attempts FROM submissions WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(attempts, 2);
        assert!(w1.logged("lease"), "the worker says it lost the lease");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_with_another_copy_of_the_data_refuses_the_challenge_and_another_runs_it() {
    within(180, async {
        let d = Deployment::new();
        let api = d.replica("api").await;
        create_parity(&api.addr, 2).await;
        // This worker's copy has one label flipped.
        let other_root = d.root.path().join("other-data");
        write_parity_at(&other_root, "parity", 40);
        let labels = other_root.join("parity/labels.csv");
        let text = std::fs::read_to_string(&labels).unwrap();
        let flipped = text.replacen(",even\n", ",odd\n", 1);
        std::fs::write(&labels, flipped).unwrap();
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stale = d
            .worker_on(
                "stale",
                &other_root,
                &format!(
                    "concurrency = 1\nlease_ttl = \"2s\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\""
                ),
            )
            .await;
        let c = client(&api.addr, SUBMITTER).await;
        let id = c
            .submit(full("parity", "a"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap()
            .id;
        within(30, async {
            while !stale.logged("refusing the challenge") {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        // It stays queued for a worker with the data, never scored against other labels.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            state_of(&c, &id).await.state,
            pb::SubmissionState::Queued as i32
        );
        let admin = client(&api.addr, ADMIN).await;
        let listed = admin
            .audit()
            .list_workers(admin.request(pb::ListWorkersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .workers;
        assert_eq!(listed[0].refused_challenges, ["parity"]);
        // Its own metrics say so, under its name.
        let metrics = scrape(metrics_port).await;
        assert!(metrics.contains("holdout_data_refusals_total 1"), "{metrics}");
        assert!(
            metrics.contains(&format!("holdout_worker_info{{worker=\"{}\"", stale.instance())),
            "{metrics}"
        );
        let good = d
            .worker("good", "concurrency = 1\nlease_ttl = \"2s\"")
            .await;
        let s = wait_state(&admin, &id, pb::SubmissionState::Succeeded, 60).await;
        assert_eq!(s.public_scores_exact["accuracy"], 1.0);
        assert!(good.logged("copy of the challenge data matches"));
    })
    .await;
}
