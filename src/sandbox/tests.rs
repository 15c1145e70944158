//! The sandbox's specification, run against the real Docker Engine under runc and gVisor.
//!
//! Each test starts a real container from `holdout-busybox:test` (static busybox on scratch)
//! and proves one limit bites: it would fail if the flag in `hardening` were dropped. Every
//! test runs twice, as `<name>::runc` and `<name>::gvisor`, checks that no container of its
//! submission is left behind, and is bounded by a timeout. Limits are tiny so the suite is fast.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::docker::DockerBackend;
use super::{Backend, Isolation, Mount, RunLimits, RunOutcome, RunRole, RunSpec, SandboxError};

const IMAGE: &str = "holdout-busybox:test";
/// Upper bound on any single test, engine start-up included.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// Runs `body` once per isolation under a timeout, as `name::runc` and `name::gvisor`.
macro_rules! both_runtimes {
    ($(#[$meta:meta])* $name:ident, $body:expr) => {
        $(#[$meta])*
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn runc() {
                bounded($body(Isolation::Runc)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gvisor() {
                bounded($body(Isolation::Gvisor)).await;
            }
        }
    };
}

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test timed out");
}

/// One run's world: a backend, a temp folder holding `/submission`, `/data` and `/output`, and
/// a spec with small limits that a test adjusts.
struct Harness {
    backend: DockerBackend,
    spec: RunSpec,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new(isolation: Isolation, script: &str) -> Self {
        let backend = DockerBackend::connect("")
            .await
            .expect("docker engine reachable");
        let dir = tempfile::tempdir().expect("temp dir");
        // World-writable on the host, so only the read-only mount can stop a write from
        // uid 65534: the read-only probes would pass vacuously on root-owned 0755 folders.
        for sub in ["submission", "data", "output"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::set_permissions(dir.path().join(sub), std::fs::Permissions::from_mode(0o777))
                .unwrap();
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data/truth.csv"), "id,y\n1,0\n").unwrap();
        std::fs::write(dir.path().join("submission/main.sh"), "echo hi\n").unwrap();
        for f in ["data/truth.csv", "submission/main.sh"] {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o666))
                .unwrap();
        }
        let spec = RunSpec {
            submission_id: crate::domain::SubmissionId::generate(),
            run_name: "attempt-1".into(),
            role: RunRole::Participant,
            instance: "sandbox-tests".into(),
            image: IMAGE.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("SEED".to_string(), "7".to_string())]),
            isolation,
            mounts: vec![
                Mount::read_only(&dir.path().join("submission"), "/submission"),
                Mount::read_only(&dir.path().join("data"), "/data"),
            ],
            output_dir: dir.path().join("output"),
            limits: RunLimits {
                wall_time: Duration::from_secs(20),
                memory_bytes: 64 * MIB,
                cpu_millis: 1000,
                pids: 32,
                output_bytes: MIB,
                scratch_bytes: 4 * MIB,
                gpus: 0,
                log_bytes: 64 * 1024,
            },
        };
        Self { backend, spec, dir }
    }

    /// Runs the spec and checks the container is gone afterwards.
    async fn run(&self) -> RunOutcome {
        self.run_with(CancellationToken::new())
            .await
            .expect("run succeeds")
    }

    async fn run_with(&self, cancel: CancellationToken) -> Result<RunOutcome, SandboxError> {
        let out = self.backend.run(self.spec.clone(), cancel).await;
        self.assert_nothing_left().await;
        out
    }

    async fn assert_nothing_left(&self) {
        let left: Vec<_> = self
            .backend
            .list_owned()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.submission_id == self.spec.submission_id.as_str())
            .collect();
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }

    fn output(&self) -> &Path {
        &self.spec.output_dir
    }
}

fn stdout(o: &RunOutcome) -> String {
    String::from_utf8_lossy(&o.logs.stdout).into_owned()
}

fn stderr(o: &RunOutcome) -> String {
    String::from_utf8_lossy(&o.logs.stderr).into_owned()
}

/// An IPv4 address of this host other than loopback, if it has one.
fn host_address() -> Option<Ipv4Addr> {
    let mut found = None;
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(ip);
                    break;
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

both_runtimes!(
    the_network_is_unreachable_but_loopback_inside_works,
    |iso| async move {
        // A host listener on every address: with any network path out, these connects would land.
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let host = host_address()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let script = format!(
            "nslookup -timeout=1 example.com >/dev/null 2>&1 && echo DNS_REACHED; \
         nc -w 2 127.0.0.1 {port} </dev/null && echo HOST_LOOPBACK_REACHED; \
         nc -w 2 {host} {port} </dev/null && echo HOST_ADDRESS_REACHED; \
         nc -l -p 7000 -e true & sleep 0.5; nc -w 2 127.0.0.1 7000 </dev/null && echo INNER_LOOPBACK_WORKS; \
         grep : /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -v '^lo$' | sed 's/^/IFACE=/'; echo done"
        );
        let h = Harness::new(iso, &script).await;
        let o = h.run().await;
        let out = stdout(&o);
        assert!(out.contains("done"), "{out} {}", stderr(&o));
        assert!(
            out.contains("INNER_LOOPBACK_WORKS"),
            "control failed, the probes prove nothing: {out}"
        );
        for leak in [
            "DNS_REACHED",
            "HOST_LOOPBACK_REACHED",
            "HOST_ADDRESS_REACHED",
            "IFACE=",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        drop(listener);
    }
);

both_runtimes!(
    only_output_and_tmp_are_writable_and_the_engine_socket_is_absent,
    |iso| async move {
        let script = "for p in /probe /bin/probe /submission/probe /data/probe /data/truth.csv \
                      /tmp/probe /output/probe; do \
                    if echo x > $p 2>/dev/null; then echo WRITABLE=$p; else echo READONLY=$p; fi; done; \
                  for s in /var/run/docker.sock /run/docker.sock; do test -e $s && echo SOCKET=$s; done; \
                  grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | sed 's/^/ROOT=/'; \
                  cat /data/truth.csv; echo done";
        let h = Harness::new(iso, script).await;
        let o = h.run().await;
        let out = stdout(&o);
        assert!(out.contains("done"), "{out} {}", stderr(&o));
        for p in [
            "/probe",
            "/bin/probe",
            "/submission/probe",
            "/data/probe",
            "/data/truth.csv",
        ] {
            assert!(
                out.contains(&format!("READONLY={p}\n")),
                "{p} should be read-only: {out}"
            );
        }
        for p in ["/tmp/probe", "/output/probe"] {
            assert!(
                out.contains(&format!("WRITABLE={p}\n")),
                "{p} should be writable: {out}"
            );
        }
        assert!(out.contains("id,y"), "data must be readable: {out}");
        // The image has no folder uid 65534 may write, so the mount flag itself is checked.
        assert!(
            out.contains("ROOT=ro\n"),
            "root filesystem not mounted read-only: {out}"
        );
        assert!(!out.contains("SOCKET="), "{out}");
        assert!(h.output().join("probe").exists());
        assert_eq!(
            std::fs::read_to_string(h.dir.path().join("data/truth.csv")).unwrap(),
            "id,y\n1,0\n"
        );
    }
);

both_runtimes!(
    the_run_is_uid_65534_with_no_capabilities,
    |iso| async move {
        let h = Harness::new(
            iso,
            "id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; pwd",
        )
        .await;
        let o = h.run().await;
        let out = stdout(&o);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("65534"), "{out}");
        assert_eq!(lines.next(), Some("65534"), "{out}");
        for cap in ["CapEff", "CapPrm", "CapBnd"] {
            assert!(
                out.contains(&format!("{cap}:\t0000000000000000")),
                "{cap} not empty: {out}"
            );
        }
        // gVisor does not report NoNewPrivs; where the kernel does, it must be set.
        if out.contains("NoNewPrivs") {
            assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        }
        assert!(out.ends_with("/submission\n"), "working dir: {out}");
    }
);

both_runtimes!(no_host_environment_reaches_the_run, |iso| async move {
    let h = Harness::new(iso, "env").await;
    let o = h.run().await;
    let out = stdout(&o);
    // What the engine and the shell add, what the image sets, and what the spec asked for.
    let allowed = [
        "PATH",
        "HOSTNAME",
        "HOME",
        "PWD",
        "SHLVL",
        "SEED",
        "HOLDOUT_DATA",
        "HOLDOUT_OUTPUT",
    ];
    for line in out.lines() {
        let key = line.split('=').next().unwrap();
        assert!(
            allowed.contains(&key),
            "unexpected variable {key} in the run"
        );
    }
    assert!(out.lines().any(|l| l == "HOLDOUT_DATA=/data"), "{out}");
    assert!(out.lines().any(|l| l == "HOLDOUT_OUTPUT=/output"), "{out}");
    assert!(out.lines().any(|l| l == "SEED=7"), "{out}");
    assert!(
        std::env::vars().count() > 0 && !out.contains("CARGO"),
        "{out}"
    );
});

both_runtimes!(a_memory_bomb_is_oom_killed, |iso| async move {
    let mut h = Harness::new(iso, "x=a; while true; do x=\"$x$x\"; done").await;
    h.spec.limits.memory_bytes = 32 * MIB;
    let o = h.run().await;
    assert!(o.oom_killed, "{o:?}");
    assert!(!o.timed_out, "{o:?}");
    let peak = o.peak_memory_bytes.expect("peak memory sampled");
    // The kernel charges in batches, so the recorded maximum can sit a little over the limit.
    assert!((32 * MIB..=34 * MIB).contains(&peak), "peak {peak}");
});

both_runtimes!(
    a_run_holding_memory_under_its_limit_reports_that_peak_and_is_not_oom,
    |iso| async move {
        // Holds ~16 MiB for half a second: long enough for the sampler, well under the limit.
        let h = Harness::new(
            iso,
            "x=$(head -c 16000000 /dev/zero | tr '\\0' a); sleep 0.5; echo ${#x}",
        )
        .await;
        let o = h.run().await;
        assert_eq!(o.exit_code, Some(0), "{o:?}");
        assert_eq!(stdout(&o), "16000000\n");
        assert!(!o.oom_killed);
        assert!(
            o.peak_memory_bytes
                .is_some_and(|p| (16 * MIB..64 * MIB).contains(&p)),
            "{o:?}"
        );
    }
);

both_runtimes!(a_fork_bomb_is_stopped_by_the_pids_limit, |iso| async move {
    let h = Harness::new(
        iso,
        "i=0; while [ $i -lt 400 ]; do sleep 60 & i=$((i+1)); done; echo SPAWNED_ALL",
    )
    .await;
    let o = h.run().await;
    assert!(
        !o.timed_out,
        "the bomb should fail fast, not run out the clock: {o:?}"
    );
    assert!(!stdout(&o).contains("SPAWNED_ALL"), "{o:?}");
    assert!(!o.oom_killed, "memory is not what stopped it: {o:?}");
    // busybox sh exits 2 when fork fails. Under gVisor the sandbox is then out of host
    // threads and the "can't fork" message itself does not make it out; under runc it does.
    assert_eq!(o.exit_code, Some(2), "{o:?}");
    if iso == Isolation::Runc {
        assert!(stderr(&o).contains("can't fork"), "{o:?}");
    }
});

both_runtimes!(a_run_that_sleeps_forever_is_timed_out, |iso| async move {
    let mut h = Harness::new(iso, "sleep 1000").await;
    h.spec.limits.wall_time = Duration::from_secs(1);
    let o = h.run().await;
    assert!(o.timed_out, "{o:?}");
    assert!(!o.cancelled && !o.oom_killed);
    assert!(
        o.wall_time >= Duration::from_secs(1) && o.wall_time < Duration::from_secs(6),
        "{:?}",
        o.wall_time
    );
});

both_runtimes!(
    a_run_ignoring_sigterm_is_still_timed_out,
    |iso| async move {
        let mut h = Harness::new(iso, "trap '' TERM INT HUP; while true; do sleep 1; done").await;
        h.spec.limits.wall_time = Duration::from_secs(1);
        let o = h.run().await;
        assert!(o.timed_out, "{o:?}");
        assert!(o.wall_time < Duration::from_secs(6), "{:?}", o.wall_time);
    }
);

both_runtimes!(
    cancelling_a_run_kills_it_and_reports_cancelled,
    |iso| async move {
        let h = Harness::new(iso, "sleep 1000").await;
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let fire = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            trigger.cancel();
        });
        let o = h.run_with(cancel).await.unwrap();
        fire.await.unwrap();
        assert!(o.cancelled, "{o:?}");
        assert!(!o.timed_out);
        assert!(o.wall_time < Duration::from_secs(8), "{:?}", o.wall_time);
    }
);

both_runtimes!(
    filling_output_with_many_files_is_stopped,
    |iso| async move {
        // Each file is under the per-file limit: only the watchdog can stop this.
        let script = "i=0; while true; do \
                      dd if=/dev/zero of=/output/f$i bs=16k count=1 2>/dev/null; i=$((i+1)); done";
        let h = Harness::new(iso, script).await;
        let o = h.run().await;
        assert!(o.output_exceeded, "{o:?}");
        assert!(!o.timed_out, "{o:?}");
        assert!(o.wall_time < Duration::from_secs(10), "{:?}", o.wall_time);
    }
);

both_runtimes!(one_file_cannot_grow_past_the_output_cap, |iso| async move {
    let h = Harness::new(
        iso,
        "dd if=/dev/zero of=/output/big bs=64k count=64; echo rc=$?",
    )
    .await;
    let o = h.run().await;
    let size = std::fs::metadata(h.output().join("big")).unwrap().len();
    assert!(size <= MIB, "file grew to {size}");
    assert!(o.output_exceeded || o.exit_code != Some(0), "{o:?}");
    assert!(!stdout(&o).contains("rc=0"), "{}", stdout(&o));
});

both_runtimes!(
    symlinks_in_output_are_not_followed_when_measuring,
    |iso| async move {
        let h = Harness::new(
            iso,
            "ln -s / /output/root; ln -s /data /output/data; sleep 0.5; echo ok",
        )
        .await;
        let o = h.run().await;
        assert!(!o.output_exceeded, "{o:?}");
        assert_eq!(o.exit_code, Some(0));
    }
);

both_runtimes!(filling_tmp_fails_with_no_space, |iso| async move {
    let mut h = Harness::new(
        iso,
        "dd if=/dev/zero of=/tmp/fill bs=64k count=128; echo rc=$?",
    )
    .await;
    h.spec.limits.scratch_bytes = 2 * MIB;
    h.spec.limits.output_bytes = 16 * MIB;
    let o = h.run().await;
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("rc=0"));
    assert!(!o.oom_killed && !o.output_exceeded);
});

both_runtimes!(
    a_stdout_flood_is_capped_and_stopped_quickly,
    |iso| async move {
        let h = Harness::new(iso, "cat /dev/zero").await;
        let cap = h.spec.limits.log_bytes;
        let o = h.run().await;
        assert!(o.log_exceeded && o.logs.truncated, "{o:?}");
        assert!((o.logs.stdout.len() + o.logs.stderr.len()) as u64 <= cap);
        assert_eq!(o.logs.stdout.len() as u64, cap);
        assert!(!o.timed_out);
        assert!(o.wall_time < Duration::from_secs(5), "{:?}", o.wall_time);
    }
);

both_runtimes!(
    stdout_and_stderr_are_captured_separately,
    |iso| async move {
        let h = Harness::new(
            iso,
            "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; exit 3",
        )
        .await;
        let o = h.run().await;
        assert_eq!(stdout(&o), "out-1\nout-2\n");
        assert_eq!(stderr(&o), "err-1\nerr-2\n");
        assert_eq!(o.exit_code, Some(3));
        assert!(!o.logs.truncated && !o.log_exceeded && !o.timed_out && !o.oom_killed);
    }
);

both_runtimes!(
    a_background_child_holding_stdout_does_not_block_completion,
    |iso| async move {
        let h = Harness::new(iso, "(sleep 1000; echo late) & echo started; exit 0").await;
        let o = h.run().await;
        assert_eq!(o.exit_code, Some(0));
        assert!(!o.timed_out);
        assert_eq!(stdout(&o), "started\n");
        assert!(o.wall_time < Duration::from_secs(5), "{:?}", o.wall_time);
    }
);

both_runtimes!(
    dropping_the_run_future_still_removes_the_container,
    |iso| async move {
        let h = Harness::new(iso, "sleep 1000").await;
        let run = h.backend.run(h.spec.clone(), CancellationToken::new());
        assert!(
            tokio::time::timeout(Duration::from_secs(3), run)
                .await
                .is_err(),
            "run should still be going"
        );
        // The guard hands removal to the runtime; give it a moment to land.
        for _ in 0..50 {
            let owned = h.backend.list_owned().await.unwrap();
            if !owned
                .iter()
                .any(|c| c.submission_id == h.spec.submission_id.as_str())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        h.assert_nothing_left().await;
    }
);

both_runtimes!(
    a_missing_image_is_reported_and_leaves_nothing,
    |iso| async move {
        let mut h = Harness::new(iso, "true").await;
        h.spec.image = "holdout-no-such-image:never".into();
        let r = h.run_with(CancellationToken::new()).await;
        assert!(matches!(r, Err(SandboxError::ImageMissing(_))), "{r:?}");
        assert!(
            !h.backend
                .image_exists("holdout-no-such-image:never")
                .await
                .unwrap()
        );
        assert!(h.backend.image_exists(IMAGE).await.unwrap());
    }
);

#[tokio::test]
async fn a_mount_containing_the_engine_socket_is_refused() {
    bounded(async {
        let mut h = Harness::new(Isolation::Runc, "true").await;
        h.spec.mounts.push(Mount::read_only(
            std::path::Path::new("/var/run"),
            "/hostrun",
        ));
        let r = h.run_with(CancellationToken::new()).await;
        assert!(matches!(r, Err(SandboxError::InvalidSpec(_))), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn the_engine_answers_and_supports_both_runtimes() {
    bounded(async {
        let b = DockerBackend::connect("unix:///var/run/docker.sock")
            .await
            .unwrap();
        b.ping().await.unwrap();
        assert!(b.supports(Isolation::Runc).await.unwrap());
        assert!(
            b.supports(Isolation::Gvisor).await.unwrap(),
            "runsc must be registered on this engine"
        );
    })
    .await;
}

#[tokio::test]
async fn an_absent_socket_is_reported_as_unreachable_naming_it() {
    bounded(async {
        let err = DockerBackend::connect("unix:///nonexistent/docker.sock")
            .await
            .unwrap_err();
        let names_socket = matches!(&err, SandboxError::Unreachable { endpoint, .. }
            if endpoint.contains("/nonexistent/docker.sock"));
        assert!(names_socket, "{err}");
    })
    .await;
}

#[tokio::test]
async fn removing_a_missing_container_is_not_an_error() {
    bounded(async {
        let b = DockerBackend::connect("").await.unwrap();
        b.remove("holdout-definitely-not-here").await.unwrap();
    })
    .await;
}

both_runtimes!(
    the_cpu_time_of_a_busy_run_is_measured_from_its_cgroup,
    |iso| async move {
        // A fixed amount of work (about a second of one core here: shell arithmetic, no
        // forks), so its CPU time does not depend on how busy the host is; never more than
        // the wall time allows on one core (the CPU limit).
        let h = Harness::new(
            iso,
            "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; echo done",
        )
        .await;
        let o = h.run().await;
        assert!(stdout(&o).contains("done"), "{}", stderr(&o));
        let cpu = o.cpu_time.expect("cpu time measured");
        assert!(
            cpu >= Duration::from_millis(500),
            "{cpu:?} of {:?}",
            o.wall_time
        );
        assert!(
            cpu <= o.wall_time + Duration::from_millis(200),
            "{cpu:?} of {:?} on one core",
            o.wall_time
        );
        let idle = Harness::new(iso, "sleep 1").await.run().await;
        assert!(
            idle.cpu_time.expect("cpu time measured") < Duration::from_millis(500),
            "{idle:?}"
        );
    }
);

both_runtimes!(
    a_teed_run_streams_its_output_while_it_runs,
    |iso| async move {
        let h = Harness::new(iso, "echo first; sleep 2; echo oops >&2; echo second").await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = h
            .backend
            .run_teed(h.spec.clone(), CancellationToken::new(), tx);
        tokio::pin!(run);
        // The first line arrives while the run is still sleeping.
        let first = tokio::select! {
            chunk = rx.recv() => chunk.expect("a chunk before the end"),
            o = &mut run => panic!("the run ended before any output was teed: {o:?}"),
        };
        assert_eq!(first.0, super::super::LogStream::Stdout);
        assert_eq!(&first.1[..], b"first\n");
        let o = run.await.unwrap();
        h.assert_nothing_left().await;
        let mut seen = (first.1.to_vec(), Vec::new());
        while let Ok((stream, bytes)) = rx.try_recv() {
            match stream {
                super::super::LogStream::Stdout => seen.0.extend_from_slice(&bytes),
                super::super::LogStream::Stderr => seen.1.extend_from_slice(&bytes),
            }
        }
        // The copy is exactly what was kept.
        assert_eq!(seen, (o.logs.stdout.clone(), o.logs.stderr.clone()));
        assert_eq!(stdout(&o), "first\nsecond\n");
    }
);

#[tokio::test]
async fn an_image_id_is_the_engines_and_a_missing_image_is_named() {
    bounded(async {
        let b = DockerBackend::connect("").await.unwrap();
        let id = b.image_id(IMAGE).await.unwrap();
        let out = std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
            .output()
            .unwrap();
        assert_eq!(id, String::from_utf8_lossy(&out.stdout).trim());
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        let missing = b.image_id("holdout-no-such-image:never").await;
        assert!(
            matches!(&missing, Err(SandboxError::ImageMissing(i)) if i == "holdout-no-such-image:never"),
            "{missing:?}"
        );
    })
    .await;
}
