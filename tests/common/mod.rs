//! The one test helper: starts the real server (real Docker, real SQLite) on port 0 with its
//! own temporary state and data folders, and gives typed clients for three tokens.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use holdout::app::Application;
use holdout::auth;
use holdout::cli::Client;
use holdout::config::{Config, Role, TokenConfig};
use holdout::pb;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The busybox test image (built by `sandbox-images/build-test-images.sh`).
pub const BUSYBOX: &str = "holdout-busybox:1";

/// Fails the test if `fut` takes longer than `secs`.
pub async fn within<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test timed out")
}

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves Prometheus metrics, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// An admin token.
    pub admin: String,
    /// A submitter token ("platform-a").
    pub submitter: String,
    /// Another submitter token ("platform-b").
    pub other: String,
    /// The data root (challenge folders go here).
    pub data_root: PathBuf,
    /// The state folder.
    pub state_dir: PathBuf,
    dirs: Option<(TempDir, TempDir)>,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
    config: Config,
    backend: Option<std::sync::Arc<dyn holdout::sandbox::Backend>>,
}

/// Tokens are fixed per test run so a restarted server accepts the same ones.
fn tokens() -> (String, String, String, Vec<TokenConfig>) {
    let admin = "admin-token-for-tests".to_owned();
    let submitter = "submitter-a-token-for-tests".to_owned();
    let other = "submitter-b-token-for-tests".to_owned();
    let cfg = vec![
        TokenConfig {
            name: "admin".into(),
            role: Role::Admin,
            sha256: auth::digest(&admin),
        },
        TokenConfig {
            name: "platform-a".into(),
            role: Role::Submitter,
            sha256: auth::digest(&submitter),
        },
        TokenConfig {
            name: "platform-b".into(),
            role: Role::Submitter,
            sha256: auth::digest(&other),
        },
    ];
    (admin, submitter, other, cfg)
}

/// The database every server of the suite uses: SQLite by default;
/// `HOLDOUT_TEST_DATABASE=postgres` runs every one on PostgreSQL instead (a fresh database
/// each, on a throw-away cluster the test binary starts once).
pub fn test_database_url() -> String {
    match std::env::var("HOLDOUT_TEST_DATABASE").as_deref() {
        Ok("postgres") => holdout::testing::PgCluster::shared_database()
            .expect("HOLDOUT_TEST_DATABASE=postgres needs PostgreSQL's server binaries"),
        _ => String::new(),
    }
}

/// Whether the suite runs on PostgreSQL (`HOLDOUT_TEST_DATABASE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("HOLDOUT_TEST_DATABASE").as_deref() == Ok("postgres")
}

/// Starts a server with default settings.
pub async fn spawn_app() -> TestServer {
    spawn_app_with(|_| {}).await
}

/// Starts a server on a scripted backend (scheduler tests only: it proves nothing about the
/// sandbox).
pub async fn spawn_app_on(
    backend: std::sync::Arc<dyn holdout::sandbox::Backend>,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    spawn_app_inner(adjust, Some(backend)).await
}

/// Starts a server after `adjust` has changed its config.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    spawn_app_inner(adjust, None).await
}

async fn spawn_app_inner(
    adjust: impl FnOnce(&mut Config),
    backend: Option<std::sync::Arc<dyn holdout::sandbox::Backend>>,
) -> TestServer {
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (admin, submitter, other, token_cfg) = tokens();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state.path().to_owned(),
        data_root: data.path().to_owned(),
        tokens: token_cfg,
        shutdown_grace: holdout::units::HumanDuration(Duration::from_secs(5)),
        database_url: test_database_url(),
        ..Config::default()
    };
    adjust(&mut config);
    let mut server = TestServer {
        addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: None,
        admin,
        submitter,
        other,
        data_root: data.path().to_owned(),
        state_dir: state.path().to_owned(),
        dirs: Some((state, data)),
        stop: CancellationToken::new(),
        handle: None,
        config,
        backend,
    };
    server.start().await;
    server
}

impl TestServer {
    async fn start(&mut self) {
        let app = match &self.backend {
            Some(b) => Application::build_with_backend(self.config.clone(), b.clone()).await,
            None => Application::build(self.config.clone()).await,
        }
        .expect("server builds");
        self.addr = app.local_addr();
        self.metrics_addr = app.metrics_addr();
        // Keep the same port across restarts.
        self.config.listen = self.addr;
        self.stop = app.shutdown_token();
        self.handle = Some(tokio::spawn(async move {
            app.run_until(std::future::pending())
                .await
                .expect("server runs");
        }));
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }

    /// Stops and starts the server on the same state folder.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    /// A client with `token`.
    pub async fn client(&self, token: &str) -> Client {
        Client::connect(&format!("http://{}", self.addr), Some(token))
            .await
            .unwrap()
    }

    /// Submission `id` as the holder of `token` sees it.
    pub async fn get_as(&self, token: &str, id: &str) -> pb::Submission {
        self.client(token)
            .await
            .submissions()
            .get_submission(authed(token, pb::GetSubmissionRequest { id: id.into() }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Submission `id` as an admin sees it.
    pub async fn admin_get(&self, id: &str) -> pb::Submission {
        self.get_as(&self.admin, id).await
    }

    /// A client without a token.
    pub async fn anonymous(&self) -> Client {
        Client::connect(&format!("http://{}", self.addr), None)
            .await
            .unwrap()
    }

    /// Writes a challenge data folder `name` under the data root.
    pub fn write_data(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.data_root.join(name);
        write_files(&dir, files);
        dir
    }

    /// Names of this server's containers still on the engine.
    pub async fn leftover_containers(&self) -> Vec<String> {
        let out = tokio::process::Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "label=io.holdout.owner=holdout",
                "--format",
                "{{.Names}} {{.Labels}}",
            ])
            .output()
            .await
            .unwrap();
        let instance = self.instance();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("io.holdout.instance={instance}")))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }

    fn instance(&self) -> String {
        let dir = std::fs::canonicalize(&self.state_dir).unwrap();
        auth::digest(&dir.to_string_lossy())[..16].to_owned()
    }
}

impl Drop for TestServer {
    /// A test may end while runs are still in flight; its runtime then goes away before the
    /// server's own cleanup can run. Remove this server's containers synchronously so no test
    /// leaves anything on the engine (the service itself reconciles them at its next start).
    fn drop(&mut self) {
        self.stop.cancel();
        if self.backend.is_some() {
            return;
        }
        let Ok(dir) = std::fs::canonicalize(&self.state_dir) else {
            return;
        };
        let instance = auth::digest(&dir.to_string_lossy())[..16].to_owned();
        let Ok(out) = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.holdout.instance={instance}"),
            ])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
    }
}

/// Writes `files` (path under `dir`, content) and makes `dir` readable by the sandbox user.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    make_world_readable(dir);
}

/// Folders 0755 and files 0644 under `dir`, and every folder above it up to the temp root
/// traversable: the sandbox user must read challenge data.
pub fn make_world_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // The temp root itself is 0700 by default; the sandbox user must traverse it.
    let mut p = dir.to_owned();
    while let Some(parent) = p.parent() {
        if parent == Path::new("/") || parent == Path::new("/tmp") {
            break;
        }
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        p = parent.to_owned();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A tar.gz of the given files (path, content, executable).
pub fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let mut out = Vec::new();
    holdout::archive::pack_dir(dir.path(), &mut out).unwrap();
    out
}

/// Metadata for a FULL submission.
pub fn full(challenge: &str, participant: &str) -> pb::SubmitMetadata {
    pb::SubmitMetadata {
        challenge_id: challenge.into(),
        participant_id: participant.into(),
        kind: pb::SubmissionKind::Full as i32,
        ..Default::default()
    }
}

/// Metadata for a SMOKE submission.
pub fn smoke(challenge: &str, participant: &str) -> pb::SubmitMetadata {
    pb::SubmitMetadata {
        kind: pb::SubmissionKind::Smoke as i32,
        ..full(challenge, participant)
    }
}

/// Parity data set: `inputs/test.csv` (id,x), `labels.csv` (id,label = even|odd), and a
/// sample. Returns the ids and labels.
pub fn parity_data(server: &TestServer, name: &str, rows: usize) -> Vec<(String, String)> {
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,label\n");
    let mut out = Vec::new();
    for i in 0..rows {
        let id = format!("r{i:04}");
        let x = (i * 7 + 3) % 101;
        let label = if x % 2 == 0 { "even" } else { "odd" };
        test.push_str(&format!("{id},{x}\n"));
        labels.push_str(&format!("{id},{label}\n"));
        out.push((id, label.to_owned()));
    }
    server.write_data(
        name,
        &[
            ("inputs/test.csv", &test),
            ("labels.csv", &labels),
            ("sample/inputs/test.csv", "id,x\ns1,4\ns2,7\ns3,10\n"),
            ("sample/labels.csv", "id,label\ns1,even\ns2,odd\ns3,even\n"),
        ],
    );
    out
}

/// A shell solution that solves the parity task.
pub const PARITY_RIGHT: &str = r#"awk -F, 'NR==1{print "id,label"; next}{print $1","(($2%2==0)?"even":"odd")}' /data/test.csv > /output/predictions.csv
"#;

/// A shell solution that always answers "even".
pub const PARITY_EVEN: &str = r#"awk -F, 'NR==1{print "id,label"; next}{print $1",even"}' /data/test.csv > /output/predictions.csv
"#;

/// A busybox parity challenge with accuracy.
pub fn parity_challenge(id: &str, data_dir: &str) -> pb::Challenge {
    pb::Challenge {
        id: id.into(),
        title: format!("parity {id}"),
        data_dir: data_dir.into(),
        runtime: Some(pb::Runtime {
            image: BUSYBOX.into(),
            command: vec!["sh".into(), "/submission/run.sh".into()],
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
            split_seed: 7,
        }),
        limits: Some(pb::Limits {
            wall_time: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
            memory_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates a challenge as admin.
pub async fn create(server: &TestServer, c: pb::Challenge) -> Result<pb::Challenge, tonic::Status> {
    let client = server.client(&server.admin).await;
    let mut req = tonic::Request::new(pb::CreateChallengeRequest { challenge: Some(c) });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", server.admin).parse().unwrap(),
    );
    client
        .challenges()
        .create_challenge(req)
        .await
        .map(|r| r.into_inner())
}

/// A request with a bearer token.
pub fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}
pub mod process;

/// Runs the `holdout` CLI against `server` with `token`: (success, stdout, stderr).
pub async fn holdout(server: &TestServer, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
        .args(args)
        .env("HOLDOUT_ADDR", server.addr.to_string())
        .env("HOLDOUT_TOKEN", token)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
