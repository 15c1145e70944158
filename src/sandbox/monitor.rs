//! What a run leaves as evidence while it runs: its stdout and stderr up to their cap
//! (`LogSink`, `capture_logs`, optionally teed live to a [`LogTee`]), the size of its
//! `/output` ([`output_usage`], `watch_output`) and its memory and CPU cgroups
//! (`CgroupProbe`).
//!
//! Engine-agnostic helpers for `docker.rs`: nothing here talks to the engine or kills anything;
//! the caller decides what to do when a cap is crossed. Nothing here follows a symlink the run
//! left in `/output`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use futures::{Stream, StreamExt};
use tracing::debug;

use bytes::Bytes;

use super::output_fs;
use super::{CapturedLogs, LogStream, LogTee};

/// How often `/output` is measured and the cgroups sampled.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes charged for each entry in `/output` on top of its size, so a flood of empty files or
/// directories (which still cost inodes and walk time) reaches the cap too.
pub const OUTPUT_ENTRY_COST: u64 = 512;

/// stdout and stderr kept up to a shared cap, and what is kept also sent to a tee.
pub(super) struct LogSink {
    cap: u64,
    logs: CapturedLogs,
    tee: Option<LogTee>,
}

impl LogSink {
    pub(super) fn new(cap: u64, tee: Option<LogTee>) -> Self {
        Self {
            cap,
            logs: CapturedLogs::default(),
            tee,
        }
    }

    /// Keeps what fits; returns `false` once anything had to be dropped.
    fn push(&mut self, stderr: bool, bytes: &[u8]) -> bool {
        let kept = (self.logs.stdout.len() + self.logs.stderr.len()) as u64;
        let room = self.cap.saturating_sub(kept) as usize;
        let take = bytes.len().min(room);
        let buf = if stderr {
            &mut self.logs.stderr
        } else {
            &mut self.logs.stdout
        };
        buf.extend_from_slice(&bytes[..take]);
        if take > 0
            && let Some(tee) = &self.tee
        {
            let stream = if stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            // A reader that went away only stops the copy, never the capture.
            let _ = tee.send((stream, Bytes::copy_from_slice(&bytes[..take])));
        }
        if take < bytes.len() {
            self.logs.truncated = true;
            return false;
        }
        true
    }

    pub(super) fn into_logs(self) -> CapturedLogs {
        self.logs
    }
}

/// Streams the attach output into `sink`. Returns `true` as soon as the cap is crossed (the
/// caller kills the run) and `false` when the stream ends.
///
/// Takes the stream by value so that returning closes the attach connection: an attach
/// nobody reads blocks the engine's copy of the container's stdout, and the engine does not
/// finish a kill until that copy ends.
pub(super) async fn capture_logs<S>(mut stream: S, sink: &mut LogSink) -> bool
where
    S: Stream<Item = Result<LogOutput, BollardError>> + Unpin,
{
    while let Some(item) = stream.next().await {
        let fits = match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                sink.push(false, &message)
            }
            Ok(LogOutput::StdErr { message }) => sink.push(true, &message),
            Ok(LogOutput::StdIn { .. }) => true,
            Err(e) => {
                debug!(error = %e, "attach stream ended with an error");
                return false;
            }
        };
        if !fits {
            return true;
        }
    }
    false
}

/// How `/output` is measured: through its own filesystem's counters when it is one (the
/// per-run output filesystem: no walk, nothing followed), or by a walk of the folder.
#[derive(Debug, Clone)]
pub(super) enum OutputMeter {
    /// A filesystem of its own: usage from `statvfs`, less what it held at the start.
    Fs {
        /// The mount point.
        dir: PathBuf,
        /// Bytes in use before the run started (the filesystem's own metadata).
        baseline: u64,
    },
    /// A plain folder (the `directory` fallback): walked.
    Walk {
        /// The folder.
        dir: PathBuf,
    },
}

impl OutputMeter {
    /// The meter for `dir`, read before the run starts. Blocking.
    pub(super) fn for_dir(dir: &Path) -> Self {
        if output_fs::is_mount_point(dir)
            && let Ok(u) = output_fs::usage(dir)
        {
            return OutputMeter::Fs {
                dir: dir.to_owned(),
                baseline: u.used_bytes,
            };
        }
        OutputMeter::Walk {
            dir: dir.to_owned(),
        }
    }

    /// Whether the run went over `cap`: wrote more than it, or (a filesystem) ran out of
    /// blocks or inodes. Blocking.
    pub(super) fn exceeded(&self, cap: u64) -> bool {
        match self {
            OutputMeter::Fs { dir, baseline } => match output_fs::usage(dir) {
                Ok(u) => {
                    u.used_bytes.saturating_sub(*baseline) > cap
                        || u.free_bytes < 4096
                        || u.free_inodes == 0
                }
                Err(_) => false,
            },
            OutputMeter::Walk { dir } => output_usage(dir, cap) > cap,
        }
    }
}

/// Polls the size of `/output` every [`WATCH_INTERVAL`] and samples the cgroups;
/// returns only when the output goes over `cap`.
pub(super) async fn watch_output(meter: OutputMeter, cap: u64, probe: Arc<CgroupProbe>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let meter = meter.clone();
        let probe = probe.clone();
        let over = tokio::task::spawn_blocking(move || {
            probe.sample();
            meter.exceeded(cap)
        })
        .await
        .unwrap_or(false);
        if over {
            return;
        }
    }
}

/// Bytes used under `dir`: each entry's size (the larger of its length and its allocated
/// blocks, so sparse files count at their apparent size) plus [`OUTPUT_ENTRY_COST`]. Never
/// follows a symlink. Stops counting once past `stop_after`, which bounds the walk.
pub fn output_usage(dir: &Path, stop_after: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            total = total.saturating_add(OUTPUT_ENTRY_COST);
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.file_type().is_dir() {
                stack.push(entry.path());
            } else {
                total = total.saturating_add(meta.len().max(meta.blocks().saturating_mul(512)));
            }
            if total > stop_after {
                return total;
            }
        }
    }
    total
}

/// Memory and CPU evidence from the container's cgroups, sampled while it runs: the cgroups
/// are gone once the container has exited, so nothing can be read "just before removal".
/// Under gVisor the container's cgroups hold the whole sandbox (sentry and gofer), so they
/// account what the run costs the host.
pub(super) struct CgroupProbe {
    /// The container's memory cgroup folder, when found.
    dir: Option<PathBuf>,
    /// The container's CPU accounting folder (v1 `cpuacct`, v2 the unified folder), when found.
    cpu_dir: Option<PathBuf>,
    /// Highest usage seen (cgroup v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    peak: AtomicU64,
    /// Usage at the last sample (`memory.usage_in_bytes`; v2 `memory.current`).
    current: AtomicU64,
    /// Times the limit was hit (`memory.failcnt`; v2 `memory.events` "max").
    failcnt: AtomicU64,
    /// OOM kills counted by the kernel (`oom_kill` in v1 `memory.oom_control`, v2 `memory.events`).
    oom_kills: AtomicU64,
    /// CPU time used so far in nanoseconds, plus one (0 = never read): v1
    /// `cpuacct.usage`, v2 `cpu.stat` `usage_usec`. It only grows, so the last sample is
    /// at most one [`WATCH_INTERVAL`] short of the total.
    cpu_ns: AtomicU64,
}

/// The container's memory cgroup folders Docker makes (cgroupfs and systemd drivers, v1
/// and v2).
fn memory_dirs(id: &str) -> [String; 4] {
    [
        format!("/sys/fs/cgroup/memory/docker/{id}"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
    ]
}

/// The container's CPU accounting folders: v1 `cpuacct` (alone or co-mounted with `cpu`),
/// then the v2 unified folders.
fn cpu_dirs(id: &str) -> [String; 6] {
    [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}"),
        format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
    ]
}

/// CPU time from cgroup v1's `cpuacct.usage`: one integer, nanoseconds.
pub(super) fn parse_cpuacct_usage(text: &str) -> Option<Duration> {
    text.trim().parse::<u64>().ok().map(Duration::from_nanos)
}

/// CPU time from cgroup v2's `cpu.stat`: its `usage_usec` line, microseconds.
pub(super) fn parse_cpu_stat(text: &str) -> Option<Duration> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == "usage_usec")
            .then(|| parts.next()?.parse::<u64>().ok().map(Duration::from_micros))
            .flatten()
    })
}

impl CgroupProbe {
    /// Looks for the container's memory and CPU cgroups under the layouts Docker uses.
    pub(super) fn find(id: &str) -> Self {
        let first_dir = |candidates: &[String], marker: &[&str]| {
            candidates
                .iter()
                .map(PathBuf::from)
                .find(|p| marker.iter().any(|m| p.join(m).is_file()))
        };
        let probe = Self {
            dir: memory_dirs(id)
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_dir()),
            cpu_dir: first_dir(&cpu_dirs(id), &["cpuacct.usage", "cpu.stat"]),
            peak: AtomicU64::new(0),
            current: AtomicU64::new(0),
            failcnt: AtomicU64::new(0),
            oom_kills: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
        };
        probe.sample();
        probe
    }

    /// Whether both cgroups were found; otherwise the engine's stats stream fills in.
    pub(super) fn has_cgroups(&self) -> bool {
        self.dir.is_some() && self.cpu_dir.is_some()
    }

    /// Reads the cgroup files once (a few sysfs reads: microseconds).
    pub(super) fn sample(&self) {
        self.sample_cpu();
        let Some(dir) = &self.dir else { return };
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        if let Some(peak) = read("memory.max_usage_in_bytes").or_else(|| read("memory.peak")) {
            let current = read("memory.usage_in_bytes")
                .or_else(|| read("memory.current"))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            self.current.store(current, Ordering::Relaxed);
            let fail = read("memory.failcnt")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let oom = read("memory.oom_control")
                .and_then(|t| field(&t, "oom_kill "))
                .unwrap_or(0);
            self.record(peak.trim().parse().unwrap_or(0), fail, oom);
        } else if let Some(events) = read("memory.events") {
            let usage = read("memory.current")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            self.current.store(usage, Ordering::Relaxed);
            self.record(
                usage,
                field(&events, "max ").unwrap_or(0),
                field(&events, "oom_kill ").unwrap_or(0),
            );
        }
    }

    fn sample_cpu(&self) {
        let Some(dir) = &self.cpu_dir else { return };
        let used = match std::fs::read_to_string(dir.join("cpuacct.usage")) {
            Ok(text) => parse_cpuacct_usage(&text),
            Err(_) => std::fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|t| parse_cpu_stat(&t)),
        };
        if let Some(used) = used {
            self.record_cpu(used);
        }
    }

    pub(super) fn record(&self, peak: u64, failcnt: u64, oom_kills: u64) {
        self.peak.fetch_max(peak, Ordering::Relaxed);
        self.failcnt.fetch_max(failcnt, Ordering::Relaxed);
        self.oom_kills.fetch_max(oom_kills, Ordering::Relaxed);
    }

    /// Records CPU time used so far (from a cgroup or the engine's stats).
    pub(super) fn record_cpu(&self, used: Duration) {
        let ns = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX - 1);
        self.cpu_ns
            .fetch_max(ns.saturating_add(1), Ordering::Relaxed);
    }

    pub(super) fn peak(&self) -> Option<u64> {
        Some(self.peak.load(Ordering::Relaxed)).filter(|&p| p > 0)
    }

    /// CPU time used, as last sampled; `None` when no source could be read.
    pub(super) fn cpu_time(&self) -> Option<Duration> {
        match self.cpu_ns.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }

    pub(super) fn oom_kills(&self) -> u64 {
        self.oom_kills.load(Ordering::Relaxed)
    }

    /// Whether usage at the last sample was within 5% of `limit`: a run slowed down at its
    /// memory limit (gVisor reclaims rather than kills) rather than one that was simply slow.
    pub(super) fn at_limit_now(&self, limit: u64) -> bool {
        self.current.load(Ordering::Relaxed) >= limit / 20 * 19
    }

    /// Whether the cgroup hit its limit or came within 5% of it.
    pub(super) fn hit_limit(&self, limit: u64) -> bool {
        self.failcnt.load(Ordering::Relaxed) > 0
            || self.peak.load(Ordering::Relaxed) >= limit / 20 * 19
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_cpu_usage_is_read_in_nanoseconds() {
        assert_eq!(
            parse_cpuacct_usage("1234567890\n"),
            Some(Duration::from_nanos(1_234_567_890))
        );
        assert_eq!(parse_cpuacct_usage("0"), Some(Duration::ZERO));
        assert_eq!(parse_cpuacct_usage(""), None);
        assert_eq!(parse_cpuacct_usage("-1\n"), None);
    }

    #[test]
    fn cgroup_v2_cpu_usage_is_the_usage_usec_line_of_cpu_stat() {
        let text = "usage_usec 905123\nuser_usec 800000\nsystem_usec 105123\n\
                    nr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n";
        assert_eq!(parse_cpu_stat(text), Some(Duration::from_micros(905_123)));
        // Only the exact key counts, wherever it is.
        assert_eq!(
            parse_cpu_stat("core_sched.force_idle_usec 7\nusage_usec 3\n"),
            Some(Duration::from_micros(3))
        );
        assert_eq!(parse_cpu_stat("user_usec 1\n"), None);
        assert_eq!(parse_cpu_stat("usage_usec x\n"), None);
    }

    #[test]
    fn cpu_time_is_unknown_until_read_and_never_goes_back() {
        let probe = CgroupProbe {
            dir: None,
            cpu_dir: None,
            peak: AtomicU64::new(0),
            current: AtomicU64::new(0),
            failcnt: AtomicU64::new(0),
            oom_kills: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
        };
        assert_eq!(probe.cpu_time(), None);
        probe.record_cpu(Duration::ZERO);
        assert_eq!(probe.cpu_time(), Some(Duration::ZERO));
        probe.record_cpu(Duration::from_millis(900));
        probe.record_cpu(Duration::from_millis(400));
        assert_eq!(probe.cpu_time(), Some(Duration::from_millis(900)));
    }

    #[test]
    fn this_hosts_cgroup_layout_has_a_readable_cpu_counter() {
        // The root of the hierarchy carries the same files as a container's folder.
        let v1 = ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"]
            .iter()
            .filter_map(|d| std::fs::read_to_string(format!("{d}/cpuacct.usage")).ok())
            .find_map(|t| parse_cpuacct_usage(&t));
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cpu.stat")
            .ok()
            .and_then(|t| parse_cpu_stat(&t));
        if !std::path::Path::new("/sys/fs/cgroup").is_dir() {
            return; // not Linux with cgroups: nothing to read
        }
        assert!(
            v1.or(v2).is_some(),
            "neither cpuacct.usage nor cpu.stat parses on this host"
        );
    }
}
