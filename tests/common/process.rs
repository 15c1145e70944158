//! A real `holdout serve` process, for tests that kill, signal or restart it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use holdout::auth;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server process on a state folder that outlives it.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: String,
    /// Admin token.
    pub admin: String,
    /// Submitter token.
    pub submitter: String,
    /// A second platform's submitter token.
    pub other: String,
    config: PathBuf,
}

/// Writes a config for a server process under `dir` and returns its path.
pub fn write_config(dir: &Path, data_root: &Path, extra: &str) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let grace = if extra.contains("shutdown_grace") {
        ""
    } else {
        "shutdown_grace = \"5s\""
    };
    let database = if extra.contains("database_url") {
        String::new()
    } else {
        format!("database_url = {:?}", super::test_database_url())
    };
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_root = "{}"
state_dir = "{}"
{grace}
{database}
{extra}

[[tokens]]
name = "admin"
role = "admin"
sha256 = "{}"

[[tokens]]
name = "platform-a"
role = "submitter"
sha256 = "{}"

[[tokens]]
name = "platform-b"
role = "submitter"
sha256 = "{}"
"#,
        data_root.display(),
        state.display(),
        auth::digest("admin-token-for-tests"),
        auth::digest("submitter-a-token-for-tests"),
        auth::digest("submitter-b-token-for-tests"),
    );
    let path = dir.join("holdout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl ServerProcess {
    /// Starts `holdout serve --config <config>` and waits until it listens.
    pub async fn start(config: &Path, listen: Option<&str>) -> ServerProcess {
        Self::start_with_nofile(config, listen, None).await
    }

    /// [`Self::start`] with the process's open-file limit set to `nofile` (systemd's
    /// default soft limit is 1,024).
    pub async fn start_with_nofile(
        config: &Path,
        listen: Option<&str>,
        nofile: Option<u64>,
    ) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdout"));
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json");
        if let Some(addr) = listen {
            cmd.arg("--listen").arg(addr);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("holdout serving") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    return v["addr"].as_str().unwrap().to_owned();
                }
                seen.push(line);
            }
            panic!("server exited before listening:\n{}", seen.join("\n"));
        })
        .await
        .expect("server did not start");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess {
            child,
            addr,
            admin: "admin-token-for-tests".into(),
            submitter: "submitter-a-token-for-tests".into(),
            other: "submitter-b-token-for-tests".into(),
            config: config.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// kill -9, then starts again on the same config and address.
    pub async fn crash_and_restart(self) -> ServerProcess {
        self.crash_and_restart_with_nofile(None).await
    }

    /// kill -9, then starts again with an open-file limit.
    pub async fn crash_and_restart_with_nofile(mut self, nofile: Option<u64>) -> ServerProcess {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
        ServerProcess::start_with_nofile(&self.config, Some(&self.addr), nofile).await
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A real `holdout worker` process; its log lines are kept for the test to read.
pub struct WorkerProcess {
    /// The process.
    pub child: Child,
    /// Every log line so far (JSON).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    config: PathBuf,
}

impl WorkerProcess {
    /// Starts `holdout worker --config <config>` and waits until it runs.
    pub async fn start(config: &Path) -> WorkerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_holdout"))
            .arg("worker")
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let keep = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("holdout worker running")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let started = tokio::time::timeout(Duration::from_secs(30), ready).await;
        if !matches!(started, Ok(Ok(()))) {
            panic!("worker did not start:\n{}", log.lock().unwrap().join("\n"));
        }
        WorkerProcess {
            child,
            log,
            config: config.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// kill -9, and waits for the process to be gone.
    pub async fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
    }

    /// Starts again on the same config.
    pub async fn restart(&mut self) {
        let _ = self.child.kill().await;
        *self = WorkerProcess::start(&self.config).await;
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// The instance label of this worker's containers (derived from its state folder).
    pub fn instance(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let state = text
            .lines()
            .find_map(|l| l.strip_prefix("state_dir = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let dir = std::fs::canonicalize(state).unwrap();
        auth::digest(&dir.to_string_lossy())[..16].to_owned()
    }
}

/// Containers on the engine labelled with `instance`.
pub async fn containers_of(instance: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.holdout.instance={instance}"),
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
