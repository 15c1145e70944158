//! When the engine fails: an unreachable engine at start is a one-line error naming the
//! socket; an engine that goes away mid-run hands the run back (or fails it uncharged), and
//! the service carries on when the engine is back. Uses a second, private Docker daemon so
//! the shared one is never disturbed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use holdout::pb;
use tokio::process::{Child, Command};

/// A throw-away dockerd on its own socket and data root.
struct PrivateEngine {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateEngine {
    fn socket(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    async fn start(dir: &Path) -> PrivateEngine {
        let mut e = PrivateEngine {
            dir: dir.to_owned(),
            child: None,
        };
        e.launch().await;
        e
    }

    async fn launch(&mut self) {
        let d = &self.dir;
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("dockerd");
        let child = Command::new(dockerd)
            .arg("--host")
            .arg(self.socket())
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dockerd.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("dockerd is installed (scripts/setup-docker.sh)");
        self.child = Some(child);
        for _ in 0..300 {
            let ok = Command::new("docker")
                .args(["-H", &self.socket(), "info"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "private dockerd did not start; see {}",
            d.join("dockerd.log").display()
        );
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id().unwrap() as i32, libc::SIGTERM) };
            let _ = tokio::time::timeout(Duration::from_secs(30), c.wait()).await;
        }
    }

    async fn load(&self, image: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {image} | docker -H {} load -q",
                self.socket()
            ))
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
}

#[tokio::test]
async fn an_unreachable_engine_at_start_is_one_line_naming_the_socket() {
    within(30, async {
        let dir = tempfile::tempdir().unwrap();
        let config = common::process::write_config(
            dir.path(),
            dir.path(),
            "docker_host = \"unix:///nonexistent/docker.sock\"",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_holdout"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains("/nonexistent/docker.sock"), "{stderr}");
        assert!(last.starts_with("holdout: "), "{stderr}");
    })
    .await
}

#[tokio::test]
async fn a_run_cut_off_by_the_engine_going_away_completes_once_it_is_back() {
    within(300, async {
        let engine_dir = tempfile::Builder::new()
            .prefix("holdout-engine-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut engine = PrivateEngine::start(engine_dir.path()).await;
        engine.load(BUSYBOX).await;
        let socket = engine.socket();
        let server = spawn_app_with(move |c| c.docker_host = socket).await;
        parity_data(&server, "parity", 10);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let slow = format!("sleep 5\n{PARITY_RIGHT}");
        let s = client
            .submit(full("parity", "alice"), tar_gz(&[("run.sh", &slow)]))
            .await
            .unwrap();
        loop {
            let now = client
                .submissions()
                .get_submission(authed(
                    &server.submitter,
                    pb::GetSubmissionRequest { id: s.id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            if now.state == pb::SubmissionState::Running as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.stop().await;
        // While the engine is away, a new submission is still accepted.
        let queued = client
            .submit(full("parity", "bob"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        engine.launch().await;
        for id in [&s.id, &queued.id] {
            let last = client.watch(id, |_| {}).await.unwrap();
            assert_eq!(
                last.state,
                pb::SubmissionState::Succeeded as i32,
                "{last:?}"
            );
        }
        engine.stop().await;
    })
    .await
}
