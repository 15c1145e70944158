//! Support for tests that need a real PostgreSQL: a throw-away cluster made with `initdb` in
//! a temporary folder and started with `pg_ctl` on a free loopback port, as Debian's
//! `postgresql` package provides them (`scripts/setup-docker.sh` installs it). Stopped and
//! removed when dropped. Not used by the service itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL cluster of its own, for one test.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgClusterError {
    /// The server binaries are not installed.
    #[error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install Debian's postgresql package: scripts/setup-docker.sh does)"
    )]
    NotInstalled,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// What it printed.
        detail: String,
    },
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

/// Runs `cmd`, as the `postgres` user when we are root (initdb refuses root).
fn run(step: &'static str, bin: &Path, args: &[&str]) -> Result<(), PgClusterError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd.args(args).output().map_err(|e| PgClusterError::Step {
        step,
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PgClusterError::Step {
            step,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

impl PgCluster {
    /// Makes and starts a cluster; its database `holdout` is ready.
    pub fn start() -> Result<PgCluster, PgClusterError> {
        let bin = bin_dir().ok_or(PgClusterError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("holdout-pg-")
            .tempdir()
            .map_err(|e| PgClusterError::Step {
                step: "temp dir",
                detail: e.to_string(),
            })?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let data = dir.path().join("data");
        let port = free_port();
        let d = data.to_string_lossy().into_owned();
        run(
            "initdb",
            &bin.join("initdb"),
            &[
                "-D",
                &d,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        let log = dir.path().join("log");
        run(
            "pg_ctl start",
            &bin.join("pg_ctl"),
            &[
                "-D",
                &d,
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        let cluster = PgCluster { dir, bin, port };
        run(
            "createdb",
            &cluster.bin.join("createdb"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "holdout",
            ],
        )?;
        Ok(cluster)
    }

    /// The URL of its `holdout` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/holdout", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh database and returns its URL.
    pub fn database(&self, name: &str) -> Result<String, PgClusterError> {
        run(
            "createdb",
            &self.bin.join("createdb"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        )?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// A fresh database on a cluster shared by every test of this process (started on first
    /// use, stopped and removed when the process exits), for tests that need a database of
    /// their own but not a server of their own.
    pub fn shared_database() -> Result<String, PgClusterError> {
        static SHARED: std::sync::OnceLock<Result<PgCluster, String>> = std::sync::OnceLock::new();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        extern "C" fn stop_shared() {
            if let Some(Ok(c)) = SHARED.get() {
                c.stop();
                let _ = std::fs::remove_dir_all(c.dir.path());
            }
        }
        let cluster = SHARED.get_or_init(|| {
            let c = PgCluster::start().map_err(|e| e.to_string())?;
            // SAFETY: registers a plain function with no preconditions; it runs once at exit.
            unsafe { libc::atexit(stop_shared) };
            Ok(c)
        });
        let cluster = cluster.as_ref().map_err(|e| PgClusterError::Step {
            step: "shared cluster",
            detail: e.clone(),
        })?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cluster.database(&format!("t{n}"))
    }

    fn stop(&self) {
        let d = self.dir.path().join("data").to_string_lossy().into_owned();
        let _ = run(
            "pg_ctl stop",
            &self.bin.join("pg_ctl"),
            &["-D", &d, "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
