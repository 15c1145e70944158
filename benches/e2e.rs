//! End-to-end overhead: a trivial submission through the whole service (upload, queue, run,
//! score, persist, watch) against a bare `docker run --rm` of the same image with the same
//! sandbox flags, measured in the same process, one after the other.
//!
//! ```sh
//! cargo bench --bench e2e                       # N=30 latency samples, M=100 for throughput
//! HOLDOUT_BENCH_N=50 HOLDOUT_BENCH_M=200 cargo bench --bench e2e
//! HOLDOUT_BENCH_ISOLATION=gvisor cargo bench --bench e2e
//! ```
//!
//! The `docker run` flags are not written by hand: they are derived from the very
//! `ContainerCreateBody` that `holdout::sandbox::hardening::container_body` builds for the
//! same spec, so both sides pay for exactly the same sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdout::app::Application;
use holdout::auth;
use holdout::cli::Client;
use holdout::config::{Config, Role, TokenConfig};
use holdout::pb;
use holdout::sandbox::hardening::container_body;
use holdout::sandbox::{Isolation, Mount, RunLimits, RunRole, RunSpec};

const IMAGE: &str = "holdout-busybox:1";
const ADMIN: &str = "bench-admin-token";
const SUBMITTER: &str = "bench-submitter-token";
const MIB: u64 = 1024 * 1024;

/// The participant's code: read 10 rows, write 10 predictions.
const SCRIPT: &str = r#"awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The challenge's limits, stated once: the challenge and the `docker run` spec both use them.
fn limits() -> RunLimits {
    RunLimits {
        wall_time: Duration::from_secs(30),
        memory_bytes: 64 * MIB,
        cpu_millis: 1000,
        pids: 64,
        output_bytes: 16 * MIB,
        scratch_bytes: 16 * MIB,
        gpus: 0,
        log_bytes: MIB,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let n = env_usize("HOLDOUT_BENCH_N", 30);
    let m = env_usize("HOLDOUT_BENCH_M", 100);
    let isolation = match std::env::var("HOLDOUT_BENCH_ISOLATION").as_deref() {
        Ok("gvisor") => Isolation::Gvisor,
        _ => Isolation::Runc,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let data_root = dir.path().join("data");
    write_data(&data_root.join("bench"));
    let state = dir.path().join("state");

    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state.clone(),
        data_root: data_root.clone(),
        concurrency: 2,
        // All M submissions go up at once through one token: above the default 16.
        max_uploads_per_token: 1024,
        tokens: vec![
            TokenConfig {
                name: "admin".into(),
                role: Role::Admin,
                sha256: auth::digest(ADMIN),
            },
            TokenConfig {
                name: "portal".into(),
                role: Role::Submitter,
                sha256: auth::digest(SUBMITTER),
            },
        ],
        ..Config::default()
    };
    let app = Application::build(config).await.expect("server builds");
    let addr = app.local_addr();
    let stop = app.shutdown_token();
    let server = tokio::spawn(async move { app.run_until(std::future::pending()).await });

    let admin = Client::connect(&addr.to_string(), Some(ADMIN))
        .await
        .unwrap();
    admin
        .challenges()
        .create_challenge(admin.request(pb::CreateChallengeRequest {
            challenge: Some(challenge(isolation)),
        }))
        .await
        .expect("challenge created");
    let client = Arc::new(
        Client::connect(&addr.to_string(), Some(SUBMITTER))
            .await
            .unwrap(),
    );
    let archive = archive();
    let docker = DockerRun::new(dir.path(), isolation);

    // Warm up both paths (page cache, image layers, runsc, the database).
    for _ in 0..3 {
        submit_and_wait(&client, &archive, "warmup").await;
        docker.run().await;
    }

    println!(
        "holdout e2e benchmark: image {IMAGE}, isolation {isolation:?}, N={n} latency samples, \
         M={m} submissions at concurrency 2"
    );
    let mut service = Vec::with_capacity(n);
    let mut bare = Vec::with_capacity(n);
    for i in 0..n {
        // Interleaved, so a slow moment of the engine hurts both sides alike.
        let t = Instant::now();
        let verdict = submit_and_wait(&client, &archive, &format!("p{}", i % 4)).await;
        service.push(t.elapsed());
        assert_eq!(
            verdict,
            pb::Verdict::Scored as i32,
            "benchmark run not scored"
        );
        let t = Instant::now();
        docker.run().await;
        bare.push(t.elapsed());
    }
    let (s_med, s_p90) = (percentile(&mut service, 50), percentile(&mut service, 90));
    let (d_med, d_p90) = (percentile(&mut bare, 50), percentile(&mut bare, 90));
    println!("latency (submit -> terminal state, sequential):");
    println!(
        "  service          median {:>7.1} ms   p90 {:>7.1} ms",
        ms(s_med),
        ms(s_p90)
    );
    println!(
        "  docker run --rm  median {:>7.1} ms   p90 {:>7.1} ms",
        ms(d_med),
        ms(d_p90)
    );
    println!(
        "  ratio service/docker-run  median {:.2}   p90 {:.2}",
        ms(s_med) / ms(d_med),
        ms(s_p90) / ms(d_p90)
    );

    // Throughput: M submissions at once, the service running two at a time.
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..m {
        let client = client.clone();
        let archive = archive.clone();
        tasks
            .spawn(async move { submit_and_wait(&client, &archive, &format!("t{}", i % 8)).await });
    }
    let mut scored = 0;
    while let Some(v) = tasks.join_next().await {
        scored += usize::from(v.unwrap() == pb::Verdict::Scored as i32);
    }
    let service_rate = m as f64 / t.elapsed().as_secs_f64();
    assert_eq!(scored, m, "every throughput run must be scored");

    // The same count of bare runs, two workers each running them one after the other.
    let t = Instant::now();
    let docker = Arc::new(docker);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..2 {
        let docker = docker.clone();
        let count = m / 2 + usize::from(w < m % 2);
        workers.spawn(async move {
            for _ in 0..count {
                docker.run().await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let docker_rate = m as f64 / t.elapsed().as_secs_f64();
    println!("throughput (M at once, concurrency 2):");
    println!("  service          {service_rate:>6.2} submissions/s");
    println!("  docker run --rm  {docker_rate:>6.2} runs/s (two sequential workers)");
    println!(
        "  ratio service/docker-run  {:.2}",
        service_rate / docker_rate
    );

    stop.cancel();
    let _ = server.await;
}

/// Submits the trivial archive and waits for the terminal update; returns the verdict.
async fn submit_and_wait(client: &Client, archive: &[u8], participant: &str) -> i32 {
    let s = client
        .submit(
            pb::SubmitMetadata {
                challenge_id: "bench".into(),
                participant_id: participant.into(),
                kind: pb::SubmissionKind::Full as i32,
                ..Default::default()
            },
            archive.to_vec(),
        )
        .await
        .expect("submission accepted");
    client
        .watch(&s.id, |_| {})
        .await
        .expect("watch ends")
        .verdict
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() * p).div_ceil(100)).clamp(1, samples.len()) - 1;
    samples[i]
}

fn write_data(dir: &Path) {
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,label\n");
    for i in 0..10 {
        let label = if i % 2 == 0 { "even" } else { "odd" };
        test.push_str(&format!("r{i},{i}\n"));
        labels.push_str(&format!("r{i},{label}\n"));
    }
    std::fs::create_dir_all(dir.join("inputs")).unwrap();
    std::fs::create_dir_all(dir.join("sample/inputs")).unwrap();
    std::fs::write(dir.join("inputs/test.csv"), &test).unwrap();
    std::fs::write(dir.join("labels.csv"), &labels).unwrap();
    // The sample has ids of its own: private ids in it would be handed out, and the
    // server's preparation check refuses that.
    let sample = |t: &str| t.replace("\nr", "\ns");
    std::fs::write(dir.join("sample/inputs/test.csv"), sample(&test)).unwrap();
    std::fs::write(dir.join("sample/labels.csv"), sample(&labels)).unwrap();
    open_up(dir);
}

/// Makes a tree readable (folders traversable) by the sandbox user, up to the temp root.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    let mut p = dir.to_owned();
    while let Some(parent) = p.parent() {
        if parent == Path::new("/") || parent == Path::new("/tmp") {
            break;
        }
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        p = parent.to_owned();
    }
}

fn challenge(isolation: Isolation) -> pb::Challenge {
    let l = limits();
    pb::Challenge {
        id: "bench".into(),
        title: "e2e benchmark".into(),
        data_dir: "bench".into(),
        runtime: Some(pb::Runtime {
            image: IMAGE.into(),
            command: vec!["sh".into(), "/submission/run.sh".into()],
            isolation: match isolation {
                Isolation::Runc => pb::Isolation::Runc,
                Isolation::Gvisor => pb::Isolation::Gvisor,
            } as i32,
            ..Default::default()
        }),
        scoring: Some(pb::Scoring {
            scorer: Some(pb::scoring::Scorer::Builtin(pb::BuiltinMetric {
                metric: pb::Metric::Accuracy as i32,
                target_column: "label".into(),
                ..Default::default()
            })),
            id_column: "id".into(),
            public_fraction: 0.5,
            split_seed: 1,
        }),
        limits: Some(pb::Limits {
            wall_time: Some(prost_types::Duration {
                seconds: l.wall_time.as_secs() as i64,
                nanos: 0,
            }),
            memory_bytes: l.memory_bytes,
            cpu_millis: l.cpu_millis,
            pids: l.pids,
            output_bytes: l.output_bytes,
            scratch_bytes: l.scratch_bytes,
            log_bytes: l.log_bytes as u32,
            concurrency: 2,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn archive() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.sh"), SCRIPT).unwrap();
    let mut out = Vec::new();
    holdout::archive::pack_dir(dir.path(), &mut out).unwrap();
    out
}

/// `docker run --rm` with the service's sandbox flags, on a folder laid out like a run's.
struct DockerRun {
    /// CLI arguments up to (not including) a fresh `/output` bind.
    args: Vec<String>,
    /// Where each run gets a fresh output folder.
    root: PathBuf,
    image_and_command: Vec<String>,
}

impl DockerRun {
    fn new(tmp: &Path, isolation: Isolation) -> Self {
        let root = tmp.join("bare");
        let submission = root.join("submission");
        std::fs::create_dir_all(&submission).unwrap();
        std::fs::write(submission.join("run.sh"), SCRIPT).unwrap();
        open_up(&root);
        let spec = RunSpec {
            submission_id: holdout::domain::SubmissionId::generate(),
            run_name: "bare".into(),
            role: RunRole::Participant,
            instance: "bench".into(),
            image: IMAGE.into(),
            command: vec!["sh".into(), "/submission/run.sh".into()],
            env: BTreeMap::from([("HOLDOUT_KIND".to_string(), "full".to_string())]),
            isolation,
            mounts: vec![
                Mount::read_only(&submission, "/submission"),
                Mount::read_only(&tmp.join("data/bench/inputs"), "/data"),
            ],
            output_dir: root.join("output-template"),
            limits: limits(),
        };
        let body = container_body(&spec, &[]).expect("valid spec");
        let h = body.host_config.clone().unwrap();
        let mut a: Vec<String> = vec!["run".into(), "--rm".into()];
        kv(&mut a, "--network", h.network_mode.clone().unwrap());
        if h.readonly_rootfs == Some(true) {
            a.push("--read-only".into());
        }
        for (path, opts) in h.tmpfs.clone().unwrap_or_default() {
            kv(&mut a, "--tmpfs", format!("{path}:{opts}"));
        }
        for m in h.mounts.clone().unwrap_or_default() {
            let target = m.target.unwrap();
            if target == "/output" {
                continue; // a fresh one per run, added in `run`
            }
            kv(
                &mut a,
                "--mount",
                format!(
                    "type=bind,src={},dst={target},readonly={},bind-propagation=rprivate",
                    m.source.unwrap(),
                    m.read_only.unwrap_or(false)
                ),
            );
        }
        for c in h.cap_drop.clone().unwrap_or_default() {
            kv(&mut a, "--cap-drop", c);
        }
        for o in h.security_opt.clone().unwrap_or_default() {
            kv(&mut a, "--security-opt", o);
        }
        kv(&mut a, "--ipc", h.ipc_mode.clone().unwrap());
        kv(&mut a, "--memory", h.memory.unwrap().to_string());
        kv(&mut a, "--memory-swap", h.memory_swap.unwrap().to_string());
        kv(
            &mut a,
            "--cpus",
            format!("{}", h.nano_cpus.unwrap() as f64 / 1e9),
        );
        kv(&mut a, "--pids-limit", h.pids_limit.unwrap().to_string());
        kv(&mut a, "--shm-size", h.shm_size.unwrap().to_string());
        for u in h.ulimits.clone().unwrap_or_default() {
            kv(
                &mut a,
                "--ulimit",
                format!(
                    "{}={}:{}",
                    u.name.unwrap(),
                    u.soft.unwrap(),
                    u.hard.unwrap()
                ),
            );
        }
        kv(
            &mut a,
            "--log-driver",
            h.log_config.clone().unwrap().typ.unwrap(),
        );
        if let Some(rt) = h.runtime.clone() {
            kv(&mut a, "--runtime", rt);
        }
        kv(&mut a, "--user", body.user.clone().unwrap());
        kv(&mut a, "--hostname", body.hostname.clone().unwrap());
        if let Some(w) = body.working_dir.clone() {
            kv(&mut a, "--workdir", w);
        }
        for e in body.env.clone().unwrap_or_default() {
            kv(&mut a, "--env", e);
        }
        if h.init == Some(true) {
            a.push("--init".into());
        }
        let mut image_and_command = vec![body.image.clone().unwrap()];
        image_and_command.extend(body.cmd.clone().unwrap_or_default());
        Self {
            args: a,
            root,
            image_and_command,
        }
    }

    /// One `docker run --rm`, with a fresh `/output` the sandbox user owns; checks it wrote
    /// its predictions.
    async fn run(&self) {
        let out = tempfile::tempdir_in(&self.root).unwrap();
        std::os::unix::fs::chown(out.path(), Some(65534), Some(65534)).unwrap();
        let mut args = self.args.clone();
        args.push("--mount".into());
        args.push(format!(
            "type=bind,src={},dst=/output,bind-propagation=rprivate",
            out.path().display()
        ));
        args.extend(self.image_and_command.iter().cloned());
        let status = tokio::process::Command::new("docker")
            .args(&args)
            .status()
            .await
            .expect("docker CLI runs");
        assert!(
            status.success(),
            "docker run failed: docker {}",
            args.join(" ")
        );
        assert!(out.path().join("predictions.csv").exists());
    }
}

/// Appends `--flag value`.
fn kv(a: &mut Vec<String>, flag: &str, value: String) {
    a.push(flag.into());
    a.push(value);
}
