//! Each hardening flag, as `container_body` builds it (no engine needed; the real engine
//! proves the limits bite in `super::tests`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::sandbox::{Mount, RunLimits, RunRole};

fn spec() -> RunSpec {
    RunSpec {
        submission_id: crate::domain::SubmissionId::parse("s-0123456789abcdef0123").unwrap(),
        run_name: "attempt-1".into(),
        role: RunRole::Participant,
        instance: "inst-1".into(),
        image: "holdout-busybox:test".into(),
        command: vec!["sh".into(), "-c".into(), "true".into()],
        env: BTreeMap::from([("SEED".to_string(), "7".to_string())]),
        isolation: Isolation::Runc,
        mounts: vec![
            Mount::read_only(std::path::Path::new("/srv/sub"), "/submission"),
            Mount::read_only(std::path::Path::new("/srv/data"), "/data"),
        ],
        output_dir: PathBuf::from("/srv/out"),
        limits: RunLimits {
            wall_time: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            cpu_millis: 500,
            pids: 32,
            output_bytes: 1 << 20,
            scratch_bytes: 4 << 20,
            gpus: 0,
            log_bytes: 4096,
        },
    }
}

fn host(body: &ContainerCreateBody) -> &HostConfig {
    body.host_config.as_ref().expect("host config")
}

#[test]
fn the_network_is_off_in_two_ways() {
    let b = container_body(&spec(), &[]).unwrap();
    assert_eq!(host(&b).network_mode.as_deref(), Some("none"));
    assert_eq!(b.network_disabled, Some(true));
}

#[test]
fn the_root_filesystem_is_read_only_and_tmp_is_a_capped_nosuid_nodev_tmpfs() {
    let b = container_body(&spec(), &[]).unwrap();
    let h = host(&b);
    assert_eq!(h.readonly_rootfs, Some(true));
    let tmp = &h.tmpfs.as_ref().unwrap()["/tmp"];
    for opt in ["nosuid", "nodev", "size=4194304", "mode=1777"] {
        assert!(tmp.split(',').any(|o| o == opt), "{opt} missing from {tmp}");
    }
    assert_eq!(h.shm_size, Some(4 << 20));
}

#[test]
fn only_output_is_writable_and_every_spec_mount_is_read_only() {
    let b = container_body(&spec(), &[]).unwrap();
    let mounts = host(&b).mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 3);
    for m in mounts {
        let writable = m.target.as_deref() == Some("/output");
        assert_eq!(m.read_only, Some(!writable), "{m:?}");
        assert_eq!(m.typ, Some(MountType::BIND));
    }
    let out = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/output"))
        .unwrap();
    assert_eq!(out.source.as_deref(), Some("/srv/out"));
    assert!(host(&b).binds.is_none());
}

#[test]
fn the_run_is_never_root_and_holds_no_capabilities() {
    let b = container_body(&spec(), &[]).unwrap();
    let h = host(&b);
    assert_eq!(b.user.as_deref(), Some("65534:65534"));
    assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(h.cap_add.is_none());
    assert_eq!(h.privileged, Some(false));
    assert!(
        h.security_opt
            .as_ref()
            .unwrap()
            .iter()
            .any(|o| o == "no-new-privileges:true")
    );
    // Engine defaults for seccomp, AppArmor and masked paths are kept.
    assert!(
        !h.security_opt
            .as_ref()
            .unwrap()
            .iter()
            .any(|o| o.contains("unconfined"))
    );
    // The engine's masked and read-only paths are kept: our masked list repeats its
    // defaults (a list replaces them), and the read-only ones are left to it.
    let masked = h.masked_paths.as_ref().unwrap();
    for p in ENGINE_MASKED_PATHS {
        assert!(masked.iter().any(|m| m == p), "{p} unmasked");
    }
    assert!(h.readonly_paths.is_none());
    assert!(h.pid_mode.is_none() && h.userns_mode.is_none() && h.uts_mode.is_none());
    assert_eq!(h.ipc_mode.as_deref(), Some("private"));
}

#[test]
fn memory_has_no_swap_and_cpu_pids_and_ulimits_are_set() {
    let b = container_body(&spec(), &[]).unwrap();
    let h = host(&b);
    assert_eq!(h.memory, Some(64 << 20));
    assert_eq!(h.memory_swap, Some(64 << 20));
    assert_eq!(h.nano_cpus, Some(500_000_000));
    assert_eq!(h.pids_limit, Some(32));
    let ul = h.ulimits.as_ref().unwrap();
    let get = |n: &str| {
        ul.iter()
            .find(|u| u.name.as_deref() == Some(n))
            .map(|u| (u.soft, u.hard))
    };
    assert_eq!(get("nofile"), Some((Some(1024), Some(1024))));
    assert_eq!(get("fsize"), Some((Some(1 << 20), Some(1 << 20))));
    assert_eq!(get("core"), Some((Some(0), Some(0))));
    assert_eq!(h.init, Some(true));
}

#[test]
fn the_engine_keeps_no_logs() {
    let b = container_body(&spec(), &[]).unwrap();
    assert_eq!(
        host(&b).log_config.as_ref().unwrap().typ.as_deref(),
        Some("none")
    );
}

#[test]
fn env_is_only_the_spec_plus_the_holdout_paths() {
    let mut s = spec();
    s.env.insert("HOLDOUT_OUTPUT".into(), "/etc".into());
    let b = container_body(&s, &[]).unwrap();
    let env = b.env.unwrap();
    assert_eq!(
        env,
        vec!["SEED=7", "HOLDOUT_DATA=/data", "HOLDOUT_OUTPUT=/output"]
    );
}

#[test]
fn labels_name_owner_submission_and_role() {
    let b = container_body(&spec(), &[]).unwrap();
    let l = b.labels.unwrap();
    assert_eq!(l[LABEL_OWNER], LABEL_OWNER_VALUE);
    assert_eq!(l[LABEL_SUBMISSION], "s-0123456789abcdef0123");
    assert_eq!(l[LABEL_ROLE], "participant");
}

#[test]
fn gvisor_selects_runsc_and_scales_pids_for_its_host_threads() {
    let mut s = spec();
    assert!(host(&container_body(&s, &[]).unwrap()).runtime.is_none());
    s.isolation = Isolation::Gvisor;
    let b = container_body(&s, &[]).unwrap();
    assert_eq!(host(&b).runtime.as_deref(), Some("runsc"));
    assert_eq!(
        host(&b).pids_limit,
        Some(GVISOR_PIDS_BASE + GVISOR_PIDS_PER_TASK * 32)
    );
}

#[test]
fn gvisor_also_limits_processes_inside_the_sandbox_and_runc_does_not() {
    let nproc = |s: &RunSpec| {
        host(&container_body(s, &[]).unwrap())
            .ulimits
            .as_ref()
            .unwrap()
            .iter()
            .find(|u| u.name.as_deref() == Some("nproc"))
            .map(|u| (u.soft, u.hard))
    };
    let mut s = spec();
    assert_eq!(nproc(&s), None, "nproc is host-wide per uid under runc");
    s.isolation = Isolation::Gvisor;
    assert_eq!(nproc(&s), Some((Some(32), Some(32))));
}

#[test]
fn gpus_are_requested_only_when_asked_for() {
    let mut s = spec();
    assert!(
        host(&container_body(&s, &[]).unwrap())
            .device_requests
            .is_none()
    );
    s.limits.gpus = 2;
    let b = container_body(&s, &[]).unwrap();
    let req = &host(&b).device_requests.as_ref().unwrap()[0];
    assert_eq!(req.count, Some(2));
    assert_eq!(req.capabilities, Some(vec![vec!["gpu".to_string()]]));
}

#[test]
fn the_working_dir_is_the_submission_only_when_mounted() {
    let mut s = spec();
    assert_eq!(
        container_body(&s, &[]).unwrap().working_dir.as_deref(),
        Some("/submission")
    );
    s.mounts.retain(|m| m.container != "/submission");
    assert!(container_body(&s, &[]).unwrap().working_dir.is_none());
}

#[test]
fn a_zero_limit_is_refused_rather_than_read_as_unlimited() {
    for f in [
        (|s: &mut RunSpec| s.limits.memory_bytes = 0) as fn(&mut RunSpec),
        |s| s.limits.cpu_millis = 0,
        |s| s.limits.pids = 0,
        |s| s.limits.output_bytes = 0,
        |s| s.limits.scratch_bytes = 0,
        |s| s.limits.wall_time = Duration::ZERO,
        |s| s.limits.memory_bytes = u64::MAX,
    ] {
        let mut s = spec();
        f(&mut s);
        assert!(matches!(
            container_body(&s, &[]),
            Err(SandboxError::InvalidSpec(_))
        ));
    }
}

#[test]
fn mounts_over_reserved_or_odd_paths_are_refused() {
    for target in [
        "/output",
        "/tmp/x",
        "/proc",
        "/",
        "data",
        "/data/../etc",
        "/etc/passwd",
        "/dev/shm",
    ] {
        let mut s = spec();
        s.mounts
            .push(Mount::read_only(std::path::Path::new("/srv/x"), target));
        assert!(
            matches!(container_body(&s, &[]), Err(SandboxError::InvalidSpec(_))),
            "{target}"
        );
    }
    let mut s = spec();
    s.mounts
        .push(Mount::read_only(std::path::Path::new("/srv/x"), "/data"));
    assert!(container_body(&s, &[]).is_err(), "duplicate target");
    let mut s = spec();
    s.mounts[0].host = "relative".into();
    assert!(container_body(&s, &[]).is_err(), "relative host");
}

#[test]
fn env_entries_the_engine_would_misread_are_refused() {
    for (k, v) in [("A=B", "1"), ("", "1"), ("A", "x\0y")] {
        let mut s = spec();
        s.env.insert(k.into(), v.into());
        assert!(container_body(&s, &[]).is_err(), "{k:?}");
    }
}

#[test]
fn container_names_only_use_characters_docker_accepts() {
    let mut s = spec();
    s.run_name = "a/b c".into();
    assert_eq!(container_name(&s), "holdout-s-0123456789abcdef0123-a-b-c");
}

#[test]
fn host_wide_counters_are_masked_with_the_hosts_own_devices() {
    let b = container_body(
        &spec(),
        &["/sys/devices/pci0000:00/virtio1/block/vda".into()],
    )
    .unwrap();
    let masked = host(&b).masked_paths.clone().unwrap();
    for p in [
        "/proc/stat",
        "/proc/loadavg",
        "/proc/vmstat",
        "/proc/diskstats",
        "/proc/pressure",
        "/sys/block",
        "/sys/devices/pci0000:00/virtio1/block/vda",
    ] {
        assert!(masked.iter().any(|m| m == p), "{p} not masked");
    }
}
