//! [`DockerBackend`]: the [`Backend`] that drives a real Docker Engine through bollard.
//!
//! It owns the life of one container per run: create with the flags from [`hardening`],
//! attach before start so no output is missed, start, then watch four things at once (exit,
//! the wall-time timer, the cancellation token, the size of `/output`) while streaming logs
//! up to their cap, and kill the container the moment a limit is crossed. It reads the OOM
//! flag and exit code, samples the memory and CPU cgroups for the peak memory and the CPU
//! time, and removes the container on every path through `ContainerGuard`. The measuring
//! itself (log cap, `/output` size, cgroups) lives in [`super::monitor`].
//!
//! It never decides a verdict, and never follows a symlink the run left in `/output`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptions, StatsOptions,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use super::guard::{ContainerGuard, remove_container};
use super::hardening::{self, SANDBOX_GID, SANDBOX_UID};
use super::monitor::{CgroupProbe, LogSink, OutputMeter, capture_logs, watch_output};
use super::{
    Backend, Isolation, LABEL_INSTANCE, LABEL_OWNER, LABEL_OWNER_VALUE, LABEL_SUBMISSION, LogTee,
    OwnedContainer, RunOutcome, RunSpec, SandboxError,
};

/// Socket used when the configured `docker_host` is empty.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Seconds bollard waits for the engine to answer one request (not for a stream to end).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long `start` may take. A runsc sandbox whose pids limit is below its own thread count
/// hangs in start forever; this turns that into an error (and the guard removes it).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long we wait for the container to stop after a SIGKILL before calling it an engine fault.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long logs may keep flowing after exit before we stop reading: the exit, not the end of
/// the stream, ends capture (a leftover child may hold stdout open).
const LOG_DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// Exit code of a process killed by SIGKILL (how the OOM killer ends a process).
const SIGKILL_EXIT: i64 = 128 + 9;

/// Why we killed a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillReason {
    TimedOut,
    Cancelled,
    OutputExceeded,
    LogExceeded,
}

/// The Docker Engine backend.
#[derive(Clone)]
pub struct DockerBackend {
    /// Client, already negotiated down to the engine's API version.
    docker: Docker,
    /// What we connected to, for error messages and logs.
    endpoint: String,
    /// The engine's socket on this host, when local; no mount may contain it.
    socket_path: Option<PathBuf>,
    /// This host's block devices in sysfs, masked in every run (their I/O counters are
    /// host-wide; see `hardening::HOST_COUNTER_PATHS`).
    host_masks: Vec<String>,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl DockerBackend {
    /// Connects to `docker_host` (empty: the local default socket; `unix:///path` or a bare
    /// absolute path: that socket; `tcp://` or `http://`: plain HTTP) and negotiates the API
    /// version down to what the engine speaks (1.41 on Engine 20.10).
    pub async fn connect(docker_host: &str) -> Result<Self, SandboxError> {
        let host = docker_host.trim();
        let (docker, endpoint, socket_path) = if host.is_empty()
            || host.starts_with("unix://")
            || host.starts_with('/')
        {
            let path = if host.is_empty() {
                DEFAULT_SOCKET
            } else {
                host.trim_start_matches("unix://")
            };
            let endpoint = format!("unix://{path}");
            let docker =
                Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                    .map_err(|e| unreachable(&endpoint, &e))?;
            (docker, endpoint, Some(PathBuf::from(path)))
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            let docker =
                Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                    .map_err(|e| unreachable(host, &e))?;
            (docker, host.to_string(), None)
        } else {
            return Err(SandboxError::Unreachable {
                endpoint: host.to_string(),
                reason: "unsupported docker_host scheme (use unix://, tcp:// or http://)".into(),
            });
        };
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&endpoint, &e))?;
        info!(endpoint = %endpoint, api_version = %docker.client_version(), "docker engine connected");
        let host_masks = if socket_path.is_some() {
            block_device_dirs()
        } else {
            // A remote engine's host is not this one: its own sysfs paths are unknown here,
            // and the fixed list still applies.
            Vec::new()
        };
        Ok(Self {
            docker,
            endpoint,
            socket_path,
            host_masks,
        })
    }

    /// Host-side checks and preparation, off the runtime: mount sources exist, none holds the
    /// engine socket, and `/output` is a real folder the sandbox user can write.
    async fn prepare_host(&self, spec: &RunSpec) -> Result<(), SandboxError> {
        let mounts: Vec<PathBuf> = spec.mounts.iter().map(|m| m.host.clone()).collect();
        let output = spec.output_dir.clone();
        let socket = self.socket_path.clone();
        tokio::task::spawn_blocking(move || {
            prepare_host_blocking(&mounts, &output, socket.as_deref())
        })
        .await
        .map_err(|e| SandboxError::Io(io::Error::other(e)))?
    }

    /// Creates the container, replacing a leftover of ours with the same name (a crash between
    /// create and remove leaves one behind).
    async fn create(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<String, SandboxError> {
        let options = || CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        match self
            .docker
            .create_container(Some(options()), body.clone())
            .await
        {
            Ok(r) => return Ok(r.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(self.create_error(&body, e)),
        }
        let ours = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.config?.labels)
            .is_some_and(|l| l.get(LABEL_OWNER).map(String::as_str) == Some(LABEL_OWNER_VALUE));
        if !ours {
            return Err(SandboxError::Engine {
                op: "create",
                reason: format!("name {name} is taken by a container Holdout does not own"),
            });
        }
        warn!(container = %name, "removing leftover container with the same name");
        self.remove(name).await?;
        self.docker
            .create_container(Some(options()), body.clone())
            .await
            .map(|r| r.id)
            .map_err(|e| self.create_error(&body, e))
    }

    fn create_error(
        &self,
        body: &bollard::models::ContainerCreateBody,
        e: BollardError,
    ) -> SandboxError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => SandboxError::ImageMissing(body.image.clone().unwrap_or_default()),
            e => self.engine("create", e),
        }
    }

    /// Everything between create and remove. The caller's guard removes the container whatever
    /// this returns.
    async fn supervise(
        &self,
        id: &str,
        spec: &RunSpec,
        cancel: &CancellationToken,
        tee: Option<LogTee>,
    ) -> Result<RunOutcome, SandboxError> {
        let limits = &spec.limits;
        // Attach before start: output written in the first microseconds is not lost.
        let attach = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| self.engine("attach", e))?;
        let output = attach.output;
        drop(attach.input);
        // Measured before the code can write anything.
        let meter = {
            let dir = spec.output_dir.clone();
            tokio::task::spawn_blocking(move || OutputMeter::for_dir(&dir))
                .await
                .map_err(|e| SandboxError::Io(io::Error::other(e)))?
        };

        match tokio::time::timeout(START_TIMEOUT, self.docker.start_container(id, None)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.engine("start", e)),
            Err(_) => {
                return Err(SandboxError::Engine {
                    op: "start",
                    reason: format!("no answer within {START_TIMEOUT:?}"),
                });
            }
        }
        let started = Instant::now();
        debug!(container = %id, "container started");

        let probe = Arc::new(CgroupProbe::find(id));
        let mut sink = LogSink::new(limits.log_bytes, tee);
        let mut outcome = RunOutcome::default();

        let exit_code = {
            let wait = self.docker.wait_container(id, None);
            tokio::pin!(wait);
            let logs = capture_logs(output, &mut sink);
            tokio::pin!(logs);
            let watch = watch_output(meter.clone(), limits.output_bytes, probe.clone());
            tokio::pin!(watch);
            // Without a readable cgroup (engine on another host, cgroup v2 layouts we do not
            // know) the engine's stats stream is the fallback source for peak memory and CPU.
            let stats = self.sample_stats(id, probe.clone());
            tokio::pin!(stats);
            let deadline = tokio::time::sleep(limits.wall_time);
            tokio::pin!(deadline);
            let kill_deadline = tokio::time::sleep(Duration::MAX / 4);
            tokio::pin!(kill_deadline);

            let mut killed: Option<KillReason> = None;
            let mut logs_done = false;
            let mut stats_done = probe.has_cgroups();
            let exit = loop {
                let reason = tokio::select! {
                    biased;
                    w = wait.next() => break w,
                    _ = cancel.cancelled(), if killed.is_none() => KillReason::Cancelled,
                    _ = &mut deadline, if killed.is_none() => KillReason::TimedOut,
                    _ = &mut watch, if killed.is_none() => KillReason::OutputExceeded,
                    overflow = &mut logs, if !logs_done => {
                        logs_done = true;
                        if overflow && killed.is_none() { KillReason::LogExceeded } else { continue }
                    }
                    _ = &mut stats, if !stats_done => { stats_done = true; continue }
                    _ = &mut kill_deadline, if killed.is_some() => {
                        let reason = format!("container still running {KILL_TIMEOUT:?} after SIGKILL");
                        return Err(SandboxError::Engine { op: "kill", reason });
                    }
                };
                let elapsed_ms = started.elapsed().as_millis() as u64;
                info!(container = %id, reason = ?reason, elapsed_ms, "killing container");
                killed = Some(reason);
                match reason {
                    KillReason::TimedOut => {
                        outcome.timed_out = true;
                        let probe = probe.clone();
                        let limit = limits.memory_bytes;
                        outcome.memory_at_limit_on_timeout =
                            tokio::task::spawn_blocking(move || {
                                probe.sample();
                                probe.at_limit_now(limit)
                            })
                            .await
                            .unwrap_or(false);
                    }
                    KillReason::Cancelled => outcome.cancelled = true,
                    KillReason::OutputExceeded => outcome.output_exceeded = true,
                    KillReason::LogExceeded => outcome.log_exceeded = true,
                }
                self.kill(id).await?;
                kill_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KILL_TIMEOUT);
            };
            outcome.wall_time = started.elapsed();
            let code = match exit {
                Some(Ok(r)) => Some(r.status_code),
                // bollard reports a non-zero exit as an error; it is the run's exit code.
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Some(code),
                Some(Err(e)) => return Err(self.engine("wait", e)),
                None => None,
            };
            probe.sample();
            if !logs_done {
                // The exit ends capture; leftovers get a short grace to flush what they wrote.
                if let Ok(overflow) = tokio::time::timeout(LOG_DRAIN_AFTER_EXIT, &mut logs).await {
                    outcome.log_exceeded |= overflow;
                } else {
                    debug!(container = %id, "log stream still open after exit, stopped reading");
                }
            }
            code
        };

        // One last measurement: the watchdog may have slept through the final writes.
        let cap = limits.output_bytes;
        let final_meter = meter.clone();
        if tokio::task::spawn_blocking(move || final_meter.exceeded(cap))
            .await
            .map_err(|e| SandboxError::Io(io::Error::other(e)))?
        {
            outcome.output_exceeded = true;
        }

        let state = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.engine("inspect", e))?
            .state
            .unwrap_or_default();
        outcome.exit_code = exit_code.or(state.exit_code);
        let killed_by_us = outcome.timed_out
            || outcome.cancelled
            || outcome.output_exceeded
            || outcome.log_exceeded;
        outcome.oom_killed = state.oom_killed.unwrap_or(false)
            || probe.oom_kills() > 0
            // Flag and counter missing (older kernels, other runtimes): a SIGKILL we did not
            // send, from a cgroup that hit its limit, is the OOM killer.
            || (!killed_by_us
                && outcome.exit_code == Some(SIGKILL_EXIT)
                && probe.hit_limit(limits.memory_bytes));
        // A fast OOM can end between two samples, and the cgroup is gone by the time we could
        // read it again; an OOM kill means usage reached the limit, so that is the peak.
        outcome.peak_memory_bytes = match probe.peak() {
            Some(p) if outcome.oom_killed => Some(p.max(limits.memory_bytes)),
            None if outcome.oom_killed => Some(limits.memory_bytes),
            p => p,
        };
        outcome.cpu_time = probe.cpu_time();
        outcome.logs = sink.into_logs();
        info!(
            container = %id,
            exit_code = ?outcome.exit_code,
            oom_killed = outcome.oom_killed,
            timed_out = outcome.timed_out,
            cancelled = outcome.cancelled,
            output_exceeded = outcome.output_exceeded,
            log_exceeded = outcome.log_exceeded,
            wall_ms = outcome.wall_time.as_millis() as u64,
            peak_memory_bytes = ?outcome.peak_memory_bytes,
            cpu_ms = ?outcome.cpu_time.map(|d| d.as_millis() as u64),
            "run finished"
        );
        Ok(outcome)
    }

    /// One run from create to removal; `Backend::run` and `Backend::run_teed` call it.
    #[instrument(
        skip(self, spec, cancel, tee),
        fields(
            submission_id = %spec.submission_id,
            run = %spec.run_name,
            isolation = ?spec.isolation,
            role = spec.role.as_str(),
        )
    )]
    async fn run_supervised(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
        tee: Option<LogTee>,
    ) -> Result<RunOutcome, SandboxError> {
        let body = hardening::container_body(&spec, &self.host_masks)?;
        self.prepare_host(&spec).await?;
        let name = hardening::container_name(&spec);
        // Armed with the name before create: if this future is dropped while create is in
        // flight, the container the engine may already have made is still removed.
        let mut guard = ContainerGuard::new(self.docker.clone(), name.clone());
        let id = self.create(&name, body).await?;
        guard.target = id.clone();
        let result = self.supervise(&id, &spec, &cancel, tee).await;
        guard.remove().await;
        if let Err(e) = &result {
            warn!(container = %id, error = %e, "run failed");
        }
        result
    }

    /// Reads the engine's stats stream into `probe` until it ends.
    async fn sample_stats(&self, id: &str, probe: Arc<CgroupProbe>) {
        if probe.has_cgroups() {
            return;
        }
        let mut stats = self.docker.stats(
            id,
            Some(StatsOptions {
                stream: true,
                one_shot: false,
            }),
        );
        while let Some(Ok(s)) = stats.next().await {
            if let Some(m) = s.memory_stats {
                probe.record(
                    m.max_usage.or(m.usage).unwrap_or(0),
                    m.failcnt.unwrap_or(0),
                    0,
                );
            }
            if let Some(ns) = s.cpu_stats.and_then(|c| c.cpu_usage?.total_usage) {
                probe.record_cpu(Duration::from_nanos(ns));
            }
        }
    }

    async fn kill(&self, id: &str) -> Result<(), SandboxError> {
        let options = KillContainerOptions {
            signal: "KILL".into(),
        };
        match tokio::time::timeout(KILL_TIMEOUT, self.docker.kill_container(id, Some(options)))
            .await
        {
            Ok(Ok(())) => Ok(()),
            // Already stopped or gone: the wait branch sees the exit.
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            })) => Ok(()),
            Ok(Err(e)) => Err(self.engine("kill", e)),
            Err(_) => Err(SandboxError::Engine {
                op: "kill",
                reason: format!("no answer within {KILL_TIMEOUT:?}"),
            }),
        }
    }

    /// The bollard client (for image builds: `super::build`).
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// An engine error as a [`SandboxError`]: unreachable, or the engine's answer to `op`.
    pub(super) fn engine(&self, op: &'static str, e: BollardError) -> SandboxError {
        match e {
            BollardError::DockerResponseServerError {
                message,
                status_code,
            } => SandboxError::Engine {
                op,
                reason: format!("{status_code}: {message}"),
            },
            e @ (BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)) => unreachable(&self.endpoint, &e),
            e => SandboxError::Engine {
                op,
                reason: e.to_string(),
            },
        }
    }
}

#[async_trait::async_trait]
impl Backend for DockerBackend {
    async fn run(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, SandboxError> {
        self.run_supervised(spec, cancel, None).await
    }

    async fn run_teed(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
        tee: LogTee,
    ) -> Result<RunOutcome, SandboxError> {
        self.run_supervised(spec, cancel, Some(tee)).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool, SandboxError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.engine("inspect image", e)),
        }
    }

    async fn image_id(&self, image: &str) -> Result<String, SandboxError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => i.id.ok_or_else(|| SandboxError::Engine {
                op: "inspect image",
                reason: format!("the engine gave no id for {image}"),
            }),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(SandboxError::ImageMissing(image.to_owned())),
            Err(e) => Err(self.engine("inspect image", e)),
        }
    }

    async fn supports(&self, isolation: Isolation) -> Result<bool, SandboxError> {
        match isolation {
            Isolation::Runc => Ok(true),
            Isolation::Gvisor => {
                let info = self
                    .docker
                    .info()
                    .await
                    .map_err(|e| self.engine("info", e))?;
                Ok(info
                    .runtimes
                    .is_some_and(|r| r.contains_key(hardening::GVISOR_RUNTIME)))
            }
        }
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, SandboxError> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_OWNER}={LABEL_OWNER_VALUE}")],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.engine("list", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let mut labels = c.labels.unwrap_or_default();
                Some(OwnedContainer {
                    container_id: c.id?,
                    submission_id: labels.remove(LABEL_SUBMISSION).unwrap_or_default(),
                    instance: labels.remove(LABEL_INSTANCE).unwrap_or_default(),
                    running: matches!(
                        c.state,
                        Some(
                            ContainerSummaryStateEnum::RUNNING
                                | ContainerSummaryStateEnum::RESTARTING
                        )
                    ),
                })
            })
            .collect())
    }

    async fn remove(&self, container_id: &str) -> Result<(), SandboxError> {
        remove_container(&self.docker, container_id)
            .await
            .map_err(|e| self.engine("remove", e))
    }

    async fn ping(&self) -> Result<(), SandboxError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| unreachable(&self.endpoint, &e))
    }

    async fn engine_id(&self) -> Result<String, SandboxError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| unreachable(&self.endpoint, &e))?;
        Ok(info
            .id
            .filter(|id| !id.is_empty())
            .or(info.name)
            .unwrap_or_else(|| self.endpoint.clone()))
    }
}

fn prepare_host_blocking(
    mounts: &[PathBuf],
    output: &Path,
    socket: Option<&Path>,
) -> Result<(), SandboxError> {
    let socket = socket.and_then(|s| std::fs::canonicalize(s).ok());
    for host in mounts {
        let real = std::fs::canonicalize(host)?;
        let meta = std::fs::metadata(&real)?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(SandboxError::InvalidSpec(format!(
                "mount source {} is not a file or folder",
                host.display()
            )));
        }
        if socket.as_ref().is_some_and(|s| s.starts_with(&real)) {
            return Err(SandboxError::InvalidSpec(format!(
                "mount source {} contains the engine socket",
                host.display()
            )));
        }
    }
    let meta = std::fs::symlink_metadata(output)?;
    if !meta.is_dir() {
        return Err(SandboxError::InvalidSpec(format!(
            "output dir {} is not a folder",
            output.display()
        )));
    }
    // The run is uid 65534; give it the folder. Without root, an open folder is the fallback.
    if let Err(e) = std::os::unix::fs::chown(output, Some(SANDBOX_UID), Some(SANDBOX_GID)) {
        use std::os::unix::fs::PermissionsExt;
        debug!(error = %e, "cannot chown output dir, opening its permissions instead");
        std::fs::set_permissions(output, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// The sysfs folders of this host's block devices (`/sys/block/*` resolved), whose `stat`
/// files count every read and write on the host.
fn block_device_dirs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter_map(|e| std::fs::canonicalize(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with("/sys/devices/") && !p.starts_with("/sys/devices/virtual/block"))
        .collect();
    dirs.sort();
    dirs
}

fn unreachable(endpoint: &str, e: &BollardError) -> SandboxError {
    SandboxError::Unreachable {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    }
}
