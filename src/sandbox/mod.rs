//! The container seam: how one run of untrusted code (a participant's submission or an
//! organiser's scorer) is launched, limited, observed and cleaned up.
//!
//! [`Backend`] hides the engine. [`docker::DockerBackend`] drives a real Docker Engine through
//! bollard; [`fake::FakeBackend`] answers from a script for scheduler unit tests and proves
//! nothing about limits. Every hardening flag lives in [`hardening`], and nothing a caller
//! passes in a [`RunSpec`] can loosen it: a spec only names the image, command, env, mounts
//! and limits.
//!
//! This module never decides a verdict: it reports evidence ([`RunOutcome`]) and the
//! classifier in `crate::verdict` turns that into a verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::domain::Isolation;
use crate::domain::SubmissionId;

pub mod build;
pub mod docker;
pub mod fake;
mod guard;
pub mod hardening;
pub mod monitor;
pub mod output_fs;

#[cfg(test)]
mod tests;

/// Label every Holdout container carries, so orphans can be found after a crash.
pub const LABEL_OWNER: &str = "io.holdout.owner";
/// Label value of [`LABEL_OWNER`].
pub const LABEL_OWNER_VALUE: &str = "holdout";
/// Label holding the submission id the container runs for.
pub const LABEL_SUBMISSION: &str = "io.holdout.submission";
/// Label holding the role of the run ("participant" or "scorer").
pub const LABEL_ROLE: &str = "io.holdout.role";
/// Label naming the service instance (one per state folder) that owns the container, so a
/// restart reconciles only its own containers on a shared engine.
pub const LABEL_INSTANCE: &str = "io.holdout.instance";

/// Who the code in a run belongs to; recorded as a label and used in log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRole {
    /// A participant's submission.
    Participant,
    /// An organiser's custom scorer.
    Scorer,
}

impl RunRole {
    /// The label value for this role.
    pub fn as_str(self) -> &'static str {
        match self {
            RunRole::Participant => "participant",
            RunRole::Scorer => "scorer",
        }
    }
}

/// A host folder bound read-only into the container. There is no writable mount: the one
/// place a run can write is its [`RunSpec::output_dir`], so no spec can open a second way
/// out of the sandbox.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
}

impl Mount {
    /// `host` bound read-only at `container`.
    pub fn read_only(host: &Path, container: &str) -> Mount {
        Mount {
            host: host.to_owned(),
            container: container.to_owned(),
        }
    }
}

/// The resource limits of one run, already resolved against the server's defaults and caps.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// Our timer kills the container when this has passed since start.
    pub wall_time: Duration,
    /// Memory (RAM + tmpfs), with swap equal to memory so no swap is used.
    pub memory_bytes: u64,
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
    /// Most processes and threads at once.
    pub pids: u32,
    /// Most bytes under `/output`.
    pub output_bytes: u64,
    /// Size of the `/tmp` tmpfs.
    pub scratch_bytes: u64,
    /// GPUs requested from the engine.
    pub gpus: u32,
    /// Most bytes of stdout + stderr kept.
    pub log_bytes: u64,
}

/// Everything needed to start one run. Nothing here can weaken the sandbox.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The submission the run belongs to (label and container name).
    pub submission_id: SubmissionId,
    /// Distinguishes several runs of one submission (attempts, scorer splits).
    pub run_name: String,
    /// Participant or scorer.
    pub role: RunRole,
    /// The owning service instance (a label).
    pub instance: String,
    /// Image present on the engine.
    pub image: String,
    /// Command (argv) to run; empty means the image's default.
    pub command: Vec<String>,
    /// Extra environment; the sandbox adds `HOLDOUT_DATA` and `HOLDOUT_OUTPUT`.
    pub env: BTreeMap<String, String>,
    /// Runtime to use.
    pub isolation: Isolation,
    /// Read-only binds (`/submission`, `/data`, ...).
    pub mounts: Vec<Mount>,
    /// Host folder bound writable at `/output`; the only place the run can leave files.
    pub output_dir: PathBuf,
    /// Limits.
    pub limits: RunLimits,
}

/// Captured stdout and stderr, capped at `log_bytes` together.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs {
    /// Standard output, up to the cap.
    pub stdout: Vec<u8>,
    /// Standard error, up to the cap.
    pub stderr: Vec<u8>,
    /// Whether more was written than kept.
    pub truncated: bool,
}

/// Which stream a piece of a run's output was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives a copy of a run's output while it runs, exactly what is kept (so never more than
/// `log_bytes`), for showing it live (`holdout run-local`). A closed receiver is ignored.
pub type LogTee = tokio::sync::mpsc::UnboundedSender<(LogStream, bytes::Bytes)>;

/// What happened in a run: evidence for the verdict classifier, not a verdict.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Exit code of the main process, when it exited.
    pub exit_code: Option<i64>,
    /// Whether the cgroup's OOM killer fired (engine flag or cgroup evidence).
    pub oom_killed: bool,
    /// Whether our wall-time timer fired and killed the container.
    pub timed_out: bool,
    /// Whether memory use was at its limit when our wall-time timer fired: the run was held
    /// at its memory limit (reclaiming, not killed) rather than merely slow.
    pub memory_at_limit_on_timeout: bool,
    /// Whether the run was cancelled through the cancellation token and killed.
    pub cancelled: bool,
    /// Whether `/output` went over `output_bytes` (the run was killed when seen).
    pub output_exceeded: bool,
    /// Whether stdout + stderr went over `log_bytes` (the run was killed when seen); the
    /// classifier treats it like `output_exceeded`.
    pub log_exceeded: bool,
    /// Captured output.
    pub logs: CapturedLogs,
    /// From start to exit.
    pub wall_time: Duration,
    /// Peak memory of the container's cgroup, when the engine reports it.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time the container's cgroup used (all cores together), sampled while it ran, when
    /// the cgroup or the engine reports it.
    pub cpu_time: Option<Duration>,
}

/// A container that carries Holdout's owner label.
#[derive(Debug, Clone)]
pub struct OwnedContainer {
    /// Engine container id.
    pub container_id: String,
    /// Value of the submission label.
    pub submission_id: String,
    /// Value of the instance label.
    pub instance: String,
    /// Whether the container is running.
    pub running: bool,
}

/// Failures of the engine or of the service, never of the participant's code.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be reached.
    #[error("docker engine unreachable at {endpoint}: {reason}")]
    Unreachable {
        /// Socket or URL tried.
        endpoint: String,
        /// Cause as text.
        reason: String,
    },
    /// The image is not present on the engine.
    #[error("image {0} is not present on the engine")]
    ImageMissing(String),
    /// The engine refused or failed an operation.
    #[error("engine error during {op}: {reason}")]
    Engine {
        /// What we were doing.
        op: &'static str,
        /// Cause as text.
        reason: String,
    },
    /// Host-side I/O around the run failed.
    #[error("host i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The spec would weaken the sandbox or cannot be expressed safely (a zero limit that the
    /// engine reads as "unlimited", a mount over a reserved path, a mount holding the engine's
    /// socket, ...). A bug in the caller, never the participant's doing.
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
}

/// Launches runs. One implementation drives Docker; a fake one serves scheduler tests.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs the spec to completion: starts it, enforces the wall time and output cap, kills it
    /// when `cancel` fires, captures logs, and removes the container on every path before
    /// returning (also when the future is dropped).
    async fn run(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, SandboxError>;
    /// [`Backend::run`], with a copy of the output sent to `tee` as it is captured. An engine
    /// that cannot stream sends nothing; the outcome's logs are the same either way.
    async fn run_teed(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
        tee: LogTee,
    ) -> Result<RunOutcome, SandboxError> {
        drop(tee);
        self.run(spec, cancel).await
    }
    /// Whether `image` is present on the engine.
    async fn image_exists(&self, image: &str) -> Result<bool, SandboxError>;
    /// The engine's id of `image` (`sha256:...`, the digest of its configuration, which names
    /// its content); [`SandboxError::ImageMissing`] when it is not present.
    async fn image_id(&self, image: &str) -> Result<String, SandboxError>;
    /// Whether the engine can run this isolation (runsc registered for gVisor).
    async fn supports(&self, isolation: Isolation) -> Result<bool, SandboxError>;
    /// Every container carrying the owner label, running or not.
    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, SandboxError>;
    /// Kills and removes a container by id; a missing container is not an error.
    async fn remove(&self, container_id: &str) -> Result<(), SandboxError>;
    /// Checks that the engine answers.
    async fn ping(&self) -> Result<(), SandboxError>;
    /// The engine's own id: execution workers on one engine share a host, and with it a
    /// time partition.
    async fn engine_id(&self) -> Result<String, SandboxError> {
        Ok("local".into())
    }
}
