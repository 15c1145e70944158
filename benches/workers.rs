//! Scale-out throughput and latency: the same workload of trivial FULL submissions through
//! the single-process server (SQLite, local execution), and through an API replica on
//! PostgreSQL with 1, 2 and 3 execution workers, in the same run (a throw-away PostgreSQL
//! cluster; every process in this one, each with its own state folder).
//!
//! ```sh
//! cargo bench --bench workers                  # M=120 submissions, 12 participants
//! HOLDOUT_BENCH_M=240 cargo bench --bench workers
//! ```
//!
//! Throughput: M submissions sent at once; seconds until the last one ended, as a ratio to
//! the single-process server. Every worker has 2 run slots, like the single server, so 2 and
//! 3 workers also have more slots on the same 2 cores.
//!
//! Latency: on an idle deployment, single submissions one after another; the time from
//! acceptance to the run's start (its `started_at` − `created_at`), median over 15, single
//! server against one worker, and the worker's mean claim transaction
//! (`holdout_claim_seconds`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use holdout::app::{Application, WorkerProcess};
use holdout::cli::Client;
use holdout::config::{Config, Execution};
use holdout::domain::SubmissionId;
use holdout::pb;
use holdout::store::{DatabaseUrl, Store};
use holdout::testing::PgCluster;
use holdout::units::HumanDuration;
use tokio_util::sync::CancellationToken;

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
        .unwrap_or(120);
    println!("scale-out: {m} trivial FULL submissions from 12 participants, 2 slots per process");
    let mut single = Vec::new();
    let mut by_workers = [Vec::new(), Vec::new(), Vec::new()];
    // Two rounds, alternating, so drift on the machine hits every setup.
    for round in 0..2 {
        let s = Deployment::start(0).await.throughput(m).await;
        println!(
            "  round {round} single server     {s:6.2} s  {:6.2} submissions/s",
            m as f64 / s
        );
        single.push(s);
        for w in 1..=3 {
            let s = Deployment::start(w).await.throughput(m).await;
            println!(
                "  round {round} {w} worker(s)        {s:6.2} s  {:6.2} submissions/s",
                m as f64 / s
            );
            by_workers[w - 1].push(s);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let base = mean(&single);
    println!("throughput (mean of 2 rounds): single server {base:.2} s");
    for (i, v) in by_workers.iter().enumerate() {
        println!(
            "  {} worker(s): {:.2} s -> throughput ratio to the single server {:.3}",
            i + 1,
            mean(v),
            base / mean(v)
        );
    }
    let local = Deployment::start(0).await.latency(15).await;
    let worker = Deployment::start(1).await;
    let remote = worker.latency(15).await;
    let claim = worker.claim_seconds().await;
    println!(
        "acceptance to start, idle, median of 15: single server {:.1} ms, one worker {:.1} ms (+{:.1} ms); mean claim transaction {:.2} ms",
        local * 1e3,
        remote * 1e3,
        (remote - local) * 1e3,
        claim * 1e3
    );
}

/// A running deployment: a single server (`workers = 0`), or an API replica and workers.
struct Deployment {
    _dir: tempfile::TempDir,
    _pg: Option<PgCluster>,
    addr: String,
    store: Store,
    metrics: Option<String>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Deployment {
    async fn start(workers: usize) -> Deployment {
        let dir = tempfile::tempdir().expect("temp dir");
        write_data(dir.path());
        let pg = (workers > 0).then(|| PgCluster::start().expect("a PostgreSQL cluster"));
        let url = pg.as_ref().map(|p| p.url()).unwrap_or_default();
        let config = |name: &str| Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().join(name),
            data_root: dir.path().join("data"),
            concurrency: 2,
            // All M submissions go up at once through one token: above the default 16.
            max_uploads_per_token: 1024,
            database_url: url.clone(),
            lease_ttl: HumanDuration(Duration::from_secs(10)),
            tokens: tokens(),
            ..Config::default()
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut api_config = config("api");
        if workers > 0 {
            api_config.execution = Execution::Workers;
        }
        let app = Application::build(api_config).await.expect("server builds");
        let addr = app.local_addr().to_string();
        let app_stop = app.shutdown_token();
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            let _ = app.run_until(async move { s.cancelled().await }).await;
        }));
        let _ = app_stop;
        let mut metrics = None;
        for w in 0..workers {
            let mut c = config(&format!("worker-{w}"));
            c.metrics_listen = "127.0.0.1:0".into();
            let worker = WorkerProcess::build(c).await.expect("worker builds");
            if metrics.is_none() {
                metrics = worker.metrics_addr().map(|a| a.to_string());
            }
            let s = stop.clone();
            tasks.push(tokio::spawn(async move {
                worker.run_until(async move { s.cancelled().await }).await;
            }));
        }
        let store = match &pg {
            Some(p) => Store::connect(
                &DatabaseUrl::Postgres(p.url()),
                &holdout::paths::Paths::new(&dir.path().join("reader")),
            )
            .await
            .expect("store"),
            None => Store::open(&dir.path().join("api/holdout.db")).expect("store"),
        };
        let admin = Client::connect(&addr, Some(ADMIN)).await.unwrap();
        admin
            .challenges()
            .create_challenge(admin.request(pb::CreateChallengeRequest {
                challenge: Some(challenge(6)),
            }))
            .await
            .expect("challenge created");
        Deployment {
            _dir: dir,
            _pg: pg,
            addr,
            store,
            metrics,
            stop,
            tasks,
        }
    }

    /// Seconds from the first of `m` submissions to the end of the last.
    async fn throughput(self, m: usize) -> f64 {
        let client = Arc::new(Client::connect(&self.addr, Some(SUBMITTER)).await.unwrap());
        let archive = archive(ANSWER);
        let started = Instant::now();
        let mut sends = Vec::new();
        for i in 0..m {
            let (client, archive) = (client.clone(), archive.clone());
            sends.push(tokio::spawn(async move {
                let id = client
                    .submit(meta(&format!("p{}", i % 12)), archive)
                    .await
                    .expect("accepted")
                    .id;
                let last = client.watch(&id, |_| {}).await.expect("watch");
                assert_eq!(
                    last.state,
                    pb::SubmissionState::Succeeded as i32,
                    "{last:?}"
                );
            }));
        }
        for s in sends {
            s.await.unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        self.shutdown().await;
        seconds
    }

    /// Median seconds from acceptance to start of `n` submissions sent one at a time.
    async fn latency(&self, n: usize) -> f64 {
        let client = Client::connect(&self.addr, Some(SUBMITTER)).await.unwrap();
        let archive = archive(ANSWER);
        let mut waits = Vec::new();
        for i in 0..n {
            let id = client
                .submit(meta(&format!("p{i}")), archive.clone())
                .await
                .expect("accepted")
                .id;
            client.watch(&id, |_| {}).await.expect("watch");
            let s = self
                .store
                .get_submission(&SubmissionId::parse(&id).unwrap())
                .await
                .unwrap()
                .unwrap();
            waits.push((s.started_at.unwrap() - s.created_at) as f64 / 1e3);
        }
        waits.sort_by(f64::total_cmp);
        waits[n / 2]
    }

    /// The first worker's mean claim transaction, in seconds.
    async fn claim_seconds(self) -> f64 {
        let text = match &self.metrics {
            Some(addr) => scrape(addr).await,
            None => String::new(),
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (sum, count) = (
            value("holdout_claim_seconds_sum"),
            value("holdout_claim_seconds_count"),
        );
        self.shutdown().await;
        if count > 0.0 { sum / count } else { 0.0 }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn meta(participant: &str) -> pb::SubmitMetadata {
    pb::SubmitMetadata {
        challenge_id: "bench".into(),
        participant_id: participant.into(),
        kind: pb::SubmissionKind::Full as i32,
        ..Default::default()
    }
}
