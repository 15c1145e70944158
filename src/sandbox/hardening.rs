//! Every sandbox flag, in one function: [`container_body`] turns a [`RunSpec`] into the
//! engine's container-create body.
//!
//! A spec only chooses the image, command, env, read-only mounts, output folder and limits;
//! everything else (no network, read-only root, non-root user, no capabilities, no new
//! privileges, private IPC, no swap, no engine-side logs) is fixed here and cannot be turned
//! off by a spec. Values the engine would read as "unlimited" (a zero memory, CPU or pids
//! limit) are refused rather than passed on.
//!
//! This module must never set `privileged`, add a capability, unconfine seccomp or AppArmor,
//! clear the engine's masked paths, or share a host namespace. It does no I/O: the host-side
//! checks (mount sources exist, the engine socket is not inside one) live in `docker.rs`.

use std::collections::HashMap;
use std::path::{Component, Path};

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, Mount as EngineMount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountType, ResourcesUlimits,
};

use super::{
    Isolation, LABEL_INSTANCE, LABEL_OWNER, LABEL_OWNER_VALUE, LABEL_ROLE, LABEL_SUBMISSION,
    RunSpec, SandboxError,
};

/// User and group every run executes as: `nobody:nogroup`, never root, whatever the image says.
pub const SANDBOX_USER: &str = "65534:65534";
/// Numeric uid of [`SANDBOX_USER`], for preparing host folders it must write to.
pub const SANDBOX_UID: u32 = 65534;
/// Numeric gid of [`SANDBOX_USER`].
pub const SANDBOX_GID: u32 = 65534;
/// Where the writable output folder is mounted.
pub const OUTPUT_PATH: &str = "/output";
/// Where the scratch tmpfs is mounted.
pub const SCRATCH_PATH: &str = "/tmp";
/// Where read-only data is expected; exported to the run as `HOLDOUT_DATA`.
pub const DATA_PATH: &str = "/data";
/// The working directory when the spec mounts the submission there.
pub const SUBMISSION_PATH: &str = "/submission";
/// Most open files per process.
pub const NOFILE_LIMIT: i64 = 1024;
/// Runtime name of gVisor as registered with the engine.
pub const GVISOR_RUNTIME: &str = "runsc";
/// Host threads gVisor's sentry and gofer need before the sandbox runs anything.
///
/// Under runsc the pids cgroup counts the sandbox's host threads, not the processes inside it:
/// measured on runsc 2022-12 (ptrace platform), an idle sandbox holds ~35 host threads and each
/// process inside adds ~8. A limit below that overhead makes `runsc start` hang, so the
/// participant's pids limit is scaled instead of passed through.
pub const GVISOR_PIDS_BASE: i64 = 128;
/// Host threads counted per process inside a gVisor sandbox (see [`GVISOR_PIDS_BASE`]).
pub const GVISOR_PIDS_PER_TASK: i64 = 10;
/// Smallest memory limit the engine accepts (Docker refuses less than 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// The paths the engine masks by default (Docker's own list): giving the engine a list
/// replaces its default, so ours repeats it.
pub const ENGINE_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Host-wide counters a run could read under runc (gVisor shows its own): CPU, fork and
/// context-switch counts, load and pressure averages, memory, I/O and interrupt statistics.
/// Concurrent runs never share the host across the SMOKE/FULL partition, but these carry
/// state from one run to the next (cumulative counts, minute-long averages), so a FULL run
/// could write to them and a later SMOKE run read them. Masked for every run.
pub const HOST_COUNTER_PATHS: &[&str] = &[
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/vmstat",
    "/proc/diskstats",
    "/proc/schedstat",
    "/proc/interrupts",
    "/proc/softirqs",
    "/proc/pressure",
    "/proc/zoneinfo",
    "/proc/buddyinfo",
    "/proc/pagetypeinfo",
    "/proc/slabinfo",
    "/proc/locks",
    "/proc/swaps",
    "/proc/sys/fs/file-nr",
    "/proc/sys/fs/inode-nr",
    "/proc/sys/fs/dentry-state",
    "/proc/sys/kernel/random",
    "/sys/block",
    "/sys/class/block",
    "/sys/devices/virtual/block",
    "/sys/devices/system/node",
    "/sys/kernel/mm",
    "/sys/fs/ext4",
    "/sys/fs/btrfs",
    "/sys/fs/xfs",
];

/// Every path masked in a run: the engine's defaults, the host counters, and `extra` (the
/// host's own block devices, found at start: see `super::docker`).
pub fn masked_paths(extra: &[String]) -> Vec<String> {
    ENGINE_MASKED_PATHS
        .iter()
        .chain(HOST_COUNTER_PATHS)
        .map(|p| (*p).to_owned())
        .chain(extra.iter().cloned())
        .collect()
}

/// Container paths a spec mount may not cover: ours, or the kernel's.
const RESERVED_PATHS: &[&str] = &[OUTPUT_PATH, SCRATCH_PATH, "/proc", "/sys", "/dev", "/etc"];

/// The engine name of a run's container: `holdout-<submission>-<run>`, restricted to the
/// characters Docker accepts so an odd id cannot fail the create call.
pub fn container_name(spec: &RunSpec) -> String {
    fn clean(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
    format!(
        "holdout-{}-{}",
        clean(spec.submission_id.as_str()),
        clean(&spec.run_name)
    )
}

/// The pids limit handed to the engine for this spec (scaled under gVisor, see
/// [`GVISOR_PIDS_BASE`]).
pub fn engine_pids_limit(spec: &RunSpec) -> i64 {
    let pids = i64::from(spec.limits.pids);
    match spec.isolation {
        Isolation::Runc => pids,
        Isolation::Gvisor => GVISOR_PIDS_BASE + GVISOR_PIDS_PER_TASK * pids,
    }
}

/// Builds the container-create body for `spec` with every hardening flag applied.
///
/// Fails with [`SandboxError::InvalidSpec`] when the spec cannot be run safely: a zero limit,
/// a relative or reserved mount path, a duplicate mount, or an env entry the engine would
/// misread.
/// `host_masks` are host-specific paths to mask besides [`masked_paths`]' fixed list (the
/// host's block devices, found by the backend).
pub fn container_body(
    spec: &RunSpec,
    host_masks: &[String],
) -> Result<ContainerCreateBody, SandboxError> {
    validate_limits(spec)?;
    let limits = &spec.limits;

    let mut mounts = Vec::with_capacity(spec.mounts.len() + 1);
    let mut seen = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        check_container_path(&m.container)?;
        if seen.contains(&m.container.as_str()) {
            return Err(invalid(format!(
                "mount target {} appears twice",
                m.container
            )));
        }
        seen.push(m.container.as_str());
        check_host_path(&m.host)?;
        // Every spec mount is read-only (`Mount` has no other kind); /output is the one
        // writable bind.
        mounts.push(bind(&m.host, &m.container, true));
    }
    check_host_path(&spec.output_dir)?;
    mounts.push(bind(&spec.output_dir, OUTPUT_PATH, false));

    let mut env = Vec::with_capacity(spec.env.len() + 2);
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!(
                "env key {k:?} or its value cannot be passed safely"
            )));
        }
        // Ours win: the run must always find its data and output where we say.
        if k == "HOLDOUT_DATA" || k == "HOLDOUT_OUTPUT" {
            continue;
        }
        env.push(format!("{k}={v}"));
    }
    env.push(format!("HOLDOUT_DATA={DATA_PATH}"));
    env.push(format!("HOLDOUT_OUTPUT={OUTPUT_PATH}"));

    let labels = HashMap::from([
        (LABEL_OWNER.to_string(), LABEL_OWNER_VALUE.to_string()),
        (LABEL_SUBMISSION.to_string(), spec.submission_id.to_string()),
        (LABEL_ROLE.to_string(), spec.role.as_str().to_string()),
        (LABEL_INSTANCE.to_string(), spec.instance.clone()),
    ]);

    let memory = to_i64(limits.memory_bytes, "memory_bytes")?;
    let output = to_i64(limits.output_bytes, "output_bytes")?;
    let scratch = to_i64(limits.scratch_bytes, "scratch_bytes")?;

    let host_config = HostConfig {
        // Network: no interface but loopback, and the engine is told networking is off.
        network_mode: Some("none".into()),
        // Filesystem: nothing writable but /output and the size-capped tmpfs scratch.
        readonly_rootfs: Some(true),
        // `exec` on purpose: /submission is already executable, and participants' toolchains
        // (numba, compiled extensions) write and load code in /tmp. nosuid/nodev still hold.
        tmpfs: Some(HashMap::from([(
            SCRATCH_PATH.to_string(),
            format!("rw,exec,nosuid,nodev,size={scratch},mode=1777"),
        )])),
        mounts: Some(mounts),
        // Privileges: no capabilities, no way to gain any back through setuid binaries.
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: None,
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        masked_paths: Some(masked_paths(host_masks)),
        privileged: Some(false),
        ipc_mode: Some("private".into()),
        // Resources. memory_swap == memory means "no swap" to the engine.
        memory: Some(memory),
        memory_swap: Some(memory),
        oom_kill_disable: Some(false),
        nano_cpus: Some(i64::from(limits.cpu_millis) * 1_000_000),
        pids_limit: Some(engine_pids_limit(spec)),
        // /dev/shm is a second tmpfs; cap it like /tmp (it is charged to the memory cgroup too).
        shm_size: Some(scratch),
        ulimits: Some(ulimits(spec, output)),
        // docker-init as pid 1 reaps zombies and forwards signals.
        init: Some(true),
        // Capture is through attach only: the engine keeps no copy, so a flood of stdout can
        // never fill the engine's disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        // We remove the container ourselves after reading its state.
        auto_remove: Some(false),
        runtime: match spec.isolation {
            Isolation::Gvisor => Some(GVISOR_RUNTIME.into()),
            Isolation::Runc => None,
        },
        device_requests: (limits.gpus > 0).then(|| {
            vec![DeviceRequest {
                driver: Some(String::new()),
                count: Some(i64::from(limits.gpus)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };

    let submission_mounted = spec.mounts.iter().any(|m| m.container == SUBMISSION_PATH);
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(env),
        user: Some(SANDBOX_USER.into()),
        working_dir: submission_mounted.then(|| SUBMISSION_PATH.to_string()),
        hostname: Some("sandbox".into()),
        labels: Some(labels),
        network_disabled: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Per-process limits. Under gVisor the participant's pids limit is also enforced inside the
/// sandbox as `nproc`: the sentry keeps its own per-uid process count, so a fork bomb gets
/// `EAGAIN` from the user-space kernel long before the host thread budget of the pids cgroup
/// (see [`GVISOR_PIDS_BASE`]) runs out. Without it the bomb exhausts the host threads the
/// sentry and gofer need themselves, and the whole sandbox dies (exit 2 or 137, stdout lost)
/// instead of the code seeing a failed fork. Never under runc: there `nproc` counts every
/// process of uid 65534 on the host, so concurrent runs would share one budget.
fn ulimits(spec: &RunSpec, output: i64) -> Vec<ResourcesUlimits> {
    let mut v = vec![
        ulimit("nofile", NOFILE_LIMIT),
        // One file can never exceed the output cap, even between two watchdog polls.
        ulimit("fsize", output),
        ulimit("core", 0),
    ];
    if spec.isolation == Isolation::Gvisor {
        v.push(ulimit("nproc", i64::from(spec.limits.pids)));
    }
    v
}

fn validate_limits(spec: &RunSpec) -> Result<(), SandboxError> {
    let l = &spec.limits;
    // The engine reads 0 as "no limit" for memory, CPU and pids: refuse rather than loosen.
    if l.memory_bytes < MIN_MEMORY_BYTES {
        return Err(invalid(format!(
            "memory_bytes {} is below {MIN_MEMORY_BYTES}",
            l.memory_bytes
        )));
    }
    if l.cpu_millis == 0 || l.pids == 0 || l.output_bytes == 0 || l.scratch_bytes == 0 {
        return Err(invalid(
            "cpu_millis, pids, output_bytes and scratch_bytes must be positive".into(),
        ));
    }
    if l.wall_time.is_zero() {
        return Err(invalid("wall_time must be positive".into()));
    }
    if spec.image.is_empty() {
        return Err(invalid("image is empty".into()));
    }
    Ok(())
}

/// A container path must be absolute, normal, and clear of the paths we or the kernel own.
fn check_container_path(target: &str) -> Result<(), SandboxError> {
    let p = Path::new(target);
    let normal = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !target.ends_with('/')
        && target != "/";
    if !normal {
        return Err(invalid(format!(
            "mount target {target:?} is not a plain absolute path"
        )));
    }
    if RESERVED_PATHS.iter().any(|r| p.starts_with(r)) {
        return Err(invalid(format!(
            "mount target {target:?} covers a reserved path"
        )));
    }
    Ok(())
}

fn check_host_path(host: &Path) -> Result<(), SandboxError> {
    if !host.is_absolute() || host.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid(format!(
            "host path {} is not absolute and normal",
            host.display()
        )));
    }
    if host.to_str().is_none() {
        return Err(invalid(format!(
            "host path {} is not valid utf-8",
            host.display()
        )));
    }
    Ok(())
}

fn bind(host: &Path, target: &str, read_only: bool) -> EngineMount {
    EngineMount {
        target: Some(target.to_string()),
        source: Some(host.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        bind_options: Some(MountBindOptions {
            // Host mounts appearing later under the source must not show up inside the run.
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(value),
        hard: Some(value),
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, SandboxError> {
    i64::try_from(v).map_err(|_| invalid(format!("{what} {v} does not fit the engine's range")))
}

fn invalid(reason: String) -> SandboxError {
    SandboxError::InvalidSpec(reason)
}

#[cfg(test)]
#[path = "hardening_tests.rs"]
mod unit_tests;
