//! The sandbox attack suite, end to end: every protection is an attack that must fail,
//! submitted through the real gRPC API to the real server and run by the real Docker Engine,
//! under runc and under gVisor.
//!
//! Attacks whose success would be silent (reaching the network, finding the labels, reading
//! the host's environment or the engine socket, writing where nothing may be written, gaining
//! privileges) write the right predictions only when the attack *failed*, after a control
//! that proves the probe itself works. SCORED with accuracy 1.0 therefore proves the attack
//! failed, and a successful attack would show as INVALID_PREDICTIONS. Attacks on resources
//! assert the verdict the classifier gives and that it came quickly; attacks on the archive
//! and on `predictions.csv` assert the refusal names the problem. Every test checks that no
//! container is left behind and runs under a timeout.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use holdout::cli::Client;
use holdout::pb;
use tonic::Code;

const MIB: u64 = 1024 * 1024;

/// Runs `body(isolation)` as `<name>::under_runc` and `<name>::under_gvisor`.
macro_rules! both_isolations {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn under_runc() {
                within(90, $body(pb::Isolation::Runc)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn under_gvisor() {
                within(90, $body(pb::Isolation::Gvisor)).await;
            }
        }
    };
}

/// A server with one parity challenge ("attack") under the given isolation.
struct Arena {
    server: TestServer,
    client: Client,
    admin: Client,
}

/// What a finished submission looked like to its submitter, plus what an admin can read.
struct Finished {
    /// The submitter's final view.
    seen: pb::Submission,
    /// The admin's view (usage, exact scores).
    admin: pb::Submission,
    stdout: String,
    stderr: String,
    /// From submit to the terminal update.
    elapsed: Duration,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "verdict {:?}, message {:?}, usage {:?}, after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            pb::Verdict::try_from(self.seen.verdict),
            self.seen.message,
            self.admin.usage,
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr),
        )
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

impl Finished {
    fn verdict(&self) -> pb::Verdict {
        pb::Verdict::try_from(self.seen.verdict).unwrap_or(pb::Verdict::Unspecified)
    }

    /// Asserts the exact verdict, showing everything the run left when it differs.
    fn assert_verdict(&self, expected: pb::Verdict) {
        assert_eq!(self.verdict(), expected, "{self:?}");
    }

    /// Asserts SCORED with a perfect accuracy: the script's "attack failed" branch ran.
    fn assert_attack_failed(&self) {
        self.assert_verdict(pb::Verdict::Scored);
        assert_eq!(self.seen.scores.get("accuracy"), Some(&1.0), "{self:?}");
    }
}

impl Arena {
    async fn new(isolation: pb::Isolation, adjust: impl FnOnce(&mut pb::Challenge)) -> Self {
        Self::with_config(isolation, |_| {}, adjust).await
    }

    async fn with_config(
        isolation: pb::Isolation,
        config: impl FnOnce(&mut holdout::config::Config),
        adjust: impl FnOnce(&mut pb::Challenge),
    ) -> Self {
        let server = spawn_app_with(config).await;
        parity_data(&server, "parity", 40);
        let mut c = parity_challenge("attack", "parity");
        let runtime = c.runtime.as_mut().unwrap();
        runtime.isolation = isolation as i32;
        let limits = c.limits.as_mut().unwrap();
        limits.pids = 32;
        adjust(&mut c);
        create(&server, c).await.expect("challenge is valid");
        let client = server.client(&server.submitter).await;
        let admin = server.client(&server.admin).await;
        Self {
            server,
            client,
            admin,
        }
    }

    /// Submits `script` as `run.sh` and follows it to its end.
    async fn run(&self, kind: pb::SubmissionKind, script: &str) -> Finished {
        let meta = match kind {
            pb::SubmissionKind::Smoke => smoke("attack", "mallory"),
            _ => full("attack", "mallory"),
        };
        let started = Instant::now();
        let s = self
            .client
            .submit(meta, tar_gz(&[("run.sh", script)]))
            .await
            .expect("submission accepted");
        let seen = self.client.watch(&s.id, |_| {}).await.expect("watch ends");
        let elapsed = started.elapsed();
        let admin = self
            .admin
            .submissions()
            .get_submission(authed(
                &self.server.admin,
                pb::GetSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        let logs = self
            .admin
            .submissions()
            .get_submission_logs(authed(
                &self.server.admin,
                pb::GetSubmissionLogsRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        Finished {
            seen,
            admin,
            stdout: String::from_utf8_lossy(&logs.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&logs.stderr).into_owned(),
            elapsed,
        }
    }

    async fn assert_nothing_left(&self) {
        let left = self.server.leftover_containers().await;
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

fn set_limits(c: &mut pb::Challenge, f: impl FnOnce(&mut pb::Limits)) {
    f(c.limits.as_mut().unwrap());
}

fn wall_time(secs: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: secs,
        nanos: 0,
    })
}

/// Every IPv4 address of this host other than loopback (the default route's, docker0's...).
fn host_addresses() -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !found.contains(&ip) {
                    found.push(ip);
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// `find` over everything but the kernel's pseudo-filesystems.
const FIND_ALL: &str = r"find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o";

// ---- silent attacks: success would show as INVALID_PREDICTIONS ------------------------------

both_isolations!(
    dns_loopback_and_the_hosts_addresses_are_unreachable,
    |iso| async move {
        // A listener on every host address: any network path out would land a connect here.
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = Arena::new(iso, |_| {}).await;
        let grpc = a.server.addr.port();
        let mut probes = format!(
            "if nslookup -timeout=1 example.com >/dev/null 2>&1; then echo DNS; exit 0; fi\n\
             if wget -q -T 2 -O /dev/null http://example.com/ 2>/dev/null; then echo WGET; exit 0; fi\n\
             if nc -w 2 127.0.0.1 {port} </dev/null; then echo LOOPBACK; exit 0; fi\n\
             if nc -w 2 127.0.0.1 {grpc} </dev/null; then echo SERVICE; exit 0; fi\n"
        );
        let hosts = host_addresses();
        assert!(!hosts.is_empty(), "this host has no address but loopback");
        for ip in &hosts {
            probes.push_str(&format!(
                "if nc -w 2 {ip} {port} </dev/null; then echo HOST {ip}; exit 0; fi\n\
                 if nc -w 2 {ip} {grpc} </dev/null; then echo HOST {ip}; exit 0; fi\n"
            ));
        }
        // Control: nc can connect where a listener exists (loopback inside the sandbox), so a
        // failed connect above is the network's doing, not a broken nc.
        let script = format!(
            "nc -l -p 7000 -e true & sleep 0.5\n\
             nc -w 2 127.0.0.1 7000 </dev/null || {{ echo CONTROL FAILED; exit 0; }}\n\
             {probes}\
             if grep : /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -qv '^lo$'; then echo IFACE; exit 0; fi\n\
             {PARITY_RIGHT}"
        );
        let o = a.run(pb::SubmissionKind::Smoke, &script).await;
        o.assert_attack_failed();
        drop(listener);
        a.assert_nothing_left().await;
    }
);

both_isolations!(labels_are_nowhere_in_the_sandbox, |iso| async move {
    let a = Arena::new(iso, |_| {}).await;
    // `r0000,odd` is the first row of labels.csv and appears in no other file; the script
    // builds it at run time so that run.sh itself does not contain it.
    let script = format!(
        "p=r0000,; p=\"${{p}}odd\"\n\
         echo \"$p\" > /tmp/control.csv\n\
         {FIND_ALL} -type f -print | xargs grep -l -F \"$p\" 2>/dev/null > /tmp/hits\n\
         grep -qx /tmp/control.csv /tmp/hits || {{ echo CONTROL FAILED; exit 0; }}\n\
         if grep -vx /tmp/control.csv /tmp/hits; then echo FOUND; exit 0; fi\n\
         if {FIND_ALL} -name 'labels*' -print | grep .; then exit 0; fi\n\
         if [ -e /data/../labels.csv ] || [ -e /labels.csv ]; then exit 0; fi\n\
         {PARITY_RIGHT}"
    );
    let o = a.run(pb::SubmissionKind::Full, &script).await;
    o.assert_attack_failed();
    a.assert_nothing_left().await;
});

both_isolations!(
    the_hosts_environment_does_not_reach_the_run,
    |iso| async move {
        // The server runs in this process, so its environment is the test's.
        let host_keys: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("CARGO"))
            .collect();
        assert!(!host_keys.is_empty(), "cargo sets CARGO_* for tests");
        let a = Arena::new(iso, |_| {}).await;
        let script = format!(
            "env | grep -q '^HOLDOUT_DATA=/data$' || {{ echo CONTROL FAILED; exit 0; }}\n\
             if env | grep -e CARGO -e RUST -e '^USER=' -e '^HOME=/root'; then exit 0; fi\n\
             for f in /proc/[0-9]*/environ; do\n\
               if tr '\\0' '\\n' < $f | grep -e CARGO -e RUST; then exit 0; fi\n\
             done\n\
             {PARITY_RIGHT}"
        );
        let o = a.run(pb::SubmissionKind::Smoke, &script).await;
        o.assert_attack_failed();
        a.assert_nothing_left().await;
    }
);

both_isolations!(the_docker_socket_is_absent, |iso| async move {
    let a = Arena::new(iso, |_| {}).await;
    let script = format!(
        "for s in /var/run/docker.sock /run/docker.sock /docker.sock /var/run/containerd/containerd.sock; do\n\
           if [ -e $s ]; then echo $s; exit 0; fi\n\
         done\n\
         if {FIND_ALL} -type s -print | grep .; then exit 0; fi\n\
         if {FIND_ALL} \\( -name '*.sock' -o -name '*.socket' \\) -print | grep .; then exit 0; fi\n\
         {PARITY_RIGHT}"
    );
    let o = a.run(pb::SubmissionKind::Smoke, &script).await;
    o.assert_attack_failed();
    a.assert_nothing_left().await;
});

both_isolations!(
    writes_to_the_root_the_submission_and_the_data_fail,
    |iso| async move {
        let a = Arena::new(iso, |_| {}).await;
        // World-writable on the host, so only the read-only mount can stop uid 65534.
        let inputs = a.server.data_root.join("parity/inputs");
        let test_csv = inputs.join("test.csv");
        let before = std::fs::read(&test_csv).unwrap();
        std::fs::set_permissions(&inputs, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&test_csv, std::fs::Permissions::from_mode(0o666)).unwrap();
        let script = format!(
            "echo x > /tmp/ok && echo x > /output/ok || {{ echo CONTROL FAILED; exit 0; }}\n\
             for p in /probe /bin/probe /etc/probe /submission/probe /submission/run.sh \
                      /data/probe /data/test.csv; do\n\
               if echo x >> $p; then echo WROTE $p; exit 0; fi\n\
             done\n\
             for d in / /submission /data; do\n\
               if mkdir $d/newdir; then echo MKDIR $d; exit 0; fi\n\
             done\n\
             if rm -f /data/test.csv && [ ! -e /data/test.csv ]; then echo RM; exit 0; fi\n\
             if mv /data/test.csv /data/moved.csv; then echo MV; exit 0; fi\n\
             rm -f /output/ok\n\
             {PARITY_RIGHT}"
        );
        let o = a.run(pb::SubmissionKind::Full, &script).await;
        o.assert_attack_failed();
        assert_eq!(std::fs::read(&test_csv).unwrap(), before);
        assert_eq!(std::fs::read_dir(&inputs).unwrap().count(), 1);
        a.assert_nothing_left().await;
    }
);

both_isolations!(
    chown_setuid_and_user_namespace_tricks_gain_nothing,
    |iso| async move {
        let a = Arena::new(iso, |_| {}).await;
        let script = format!(
            "[ \"$(id -u)\" = 65534 ] || exit 0\n\
             mkdir /tmp/s /output/s || exit 0\n\
             cp /bin/busybox /tmp/s/busybox && chmod u+s,g+s /tmp/s/busybox || {{ echo CONTROL FAILED; exit 0; }}\n\
             cp /bin/busybox /output/s/busybox && chmod 6755 /output/s/busybox || {{ echo CONTROL FAILED; exit 0; }}\n\
             if chown 0:0 /tmp/s/busybox || chown 0:0 /output/s/busybox; then echo CHOWN; exit 0; fi\n\
             for b in /tmp/s/busybox /output/s/busybox; do\n\
               ids=$($b id -u):$($b id -g) || {{ echo CONTROL FAILED; exit 0; }}\n\
               if [ \"$ids\" != 65534:65534 ]; then echo SETUID $b $ids; exit 0; fi\n\
             done\n\
             if su -c true root </dev/null; then echo SU; exit 0; fi\n\
             if unshare -r true; then echo USERNS; exit 0; fi\n\
             if grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status | grep -v '0000000000000000$'; then exit 0; fi\n\
             if grep '^NoNewPrivs:' /proc/self/status | grep -v '1$'; then exit 0; fi\n\
             rm -rf /output/s\n\
             {PARITY_RIGHT}"
        );
        let o = a.run(pb::SubmissionKind::Smoke, &script).await;
        o.assert_attack_failed();
        a.assert_nothing_left().await;
    }
);

// ---- resource attacks: the classifier names the limit ---------------------------------------

both_isolations!(
    a_fork_bomb_is_contained_and_the_run_goes_on,
    |iso| async move {
        let a = Arena::new(iso, |_| {}).await;
        // The bomb runs in a subshell until fork fails (busybox sh then exits 2), far past the
        // pids limit of 32. The script then kills every process it can (builtins only: no
        // fork is possible while the sleepers hold the slots), waits for init to reap them,
        // and writes its predictions: SCORED proves the bomb was contained and the sandbox
        // survived it. Had the bomb spawned everything, the marker makes it INVALID.
        let script = format!(
            "( i=0; while [ $i -lt 2000 ]; do sleep 600 & i=$((i+1)); done; echo > /output/spawned_all )\n\
             echo bomb ended with $?\n\
             kill -9 -1\n\
             i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n\
             if [ -e /output/spawned_all ]; then exit 0; fi\n\
             {PARITY_RIGHT}"
        );
        let o = a.run(pb::SubmissionKind::Smoke, &script).await;
        o.assert_attack_failed();
        assert!(
            o.stdout.contains("bomb ended with 2"),
            "the bomb should end on a failed fork: {o:?}"
        );
        assert!(
            o.elapsed < Duration::from_secs(12),
            "a contained bomb must not run out the 20 s clock: {o:?}"
        );
        a.assert_nothing_left().await;
    }
);

both_isolations!(a_memory_bomb_is_memory_limit_exceeded, |iso| async move {
    let a = Arena::new(iso, |c| set_limits(c, |l| l.memory_bytes = 32 * MIB)).await;
    let o = a
        .run(
            pb::SubmissionKind::Smoke,
            "x=a; while true; do x=\"$x$x\"; done\n",
        )
        .await;
    o.assert_verdict(pb::Verdict::MemoryLimitExceeded);
    assert!(o.elapsed < Duration::from_secs(15), "{o:?}");
    a.assert_nothing_left().await;
});

both_isolations!(filling_output_is_output_limit_exceeded, |iso| async move {
    let a = Arena::new(iso, |c| set_limits(c, |l| l.output_bytes = MIB)).await;
    // Every file is under the per-file limit: only the watchdog can stop this.
    let o = a
            .run(
                pb::SubmissionKind::Smoke,
                "i=0; while true; do dd if=/dev/zero of=/output/f$i bs=16k count=1 2>/dev/null; i=$((i+1)); done\n",
            )
            .await;
    o.assert_verdict(pb::Verdict::OutputLimitExceeded);
    assert!(o.elapsed < Duration::from_secs(15), "{o:?}");
    a.assert_nothing_left().await;
});

both_isolations!(filling_tmp_fails_with_no_space_left, |iso| async move {
    let a = Arena::new(iso, |c| set_limits(c, |l| l.scratch_bytes = 2 * MIB)).await;
    let script = format!(
        "if dd if=/dev/zero of=/tmp/fill bs=64k count=256 2>/output/dd.err; then echo FILLED; exit 0; fi\n\
             grep -q 'No space left on device' /output/dd.err || {{ cat /output/dd.err; exit 0; }}\n\
             rm -f /tmp/fill /output/dd.err\n\
             {PARITY_RIGHT}"
    );
    let o = a.run(pb::SubmissionKind::Smoke, &script).await;
    o.assert_attack_failed();
    a.assert_nothing_left().await;
});

both_isolations!(
    a_stdout_flood_is_output_limit_exceeded_quickly,
    |iso| async move {
        let a = Arena::new(iso, |c| set_limits(c, |l| l.log_bytes = 64 * 1024)).await;
        // Unstopped, this prints gigabytes a minute.
        let o = a
            .run(pb::SubmissionKind::Smoke, "yes flood >&2 & cat /dev/zero\n")
            .await;
        o.assert_verdict(pb::Verdict::OutputLimitExceeded);
        assert!(o.seen.message.contains("log limit"), "{o:?}");
        assert!(o.stdout.len() + o.stderr.len() <= 64 * 1024, "{o:?}");
        assert!(o.elapsed < Duration::from_secs(10), "{o:?}");
        a.assert_nothing_left().await;
    }
);

both_isolations!(sleeping_forever_is_time_limit_exceeded, |iso| async move {
    let a = Arena::new(iso, |c| set_limits(c, |l| l.wall_time = wall_time(3))).await;
    let o = a.run(pb::SubmissionKind::Smoke, "sleep 100000\n").await;
    o.assert_verdict(pb::Verdict::TimeLimitExceeded);
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(12)).contains(&o.elapsed),
        "{o:?}"
    );
    a.assert_nothing_left().await;
});

both_isolations!(
    ignoring_sigterm_is_still_time_limit_exceeded,
    |iso| async move {
        let a = Arena::new(iso, |c| set_limits(c, |l| l.wall_time = wall_time(3))).await;
        let o = a
            .run(
                pb::SubmissionKind::Smoke,
                "trap '' TERM INT HUP QUIT; while true; do sleep 1; done\n",
            )
            .await;
        o.assert_verdict(pb::Verdict::TimeLimitExceeded);
        assert!(
            (Duration::from_secs(3)..Duration::from_secs(12)).contains(&o.elapsed),
            "{o:?}"
        );
        a.assert_nothing_left().await;
    }
);

// ---- predictions.csv that is not a file -----------------------------------------------------

/// Runs `script`, which leaves something odd at `/output/predictions.csv`, and checks the run
/// ends INVALID_PREDICTIONS well inside its wall time with one of `messages`.
async fn odd_predictions(iso: pb::Isolation, script: &str, messages: &[&str]) {
    let a = Arena::new(iso, |_| {}).await;
    let o = a.run(pb::SubmissionKind::Smoke, script).await;
    o.assert_verdict(pb::Verdict::InvalidPredictions);
    assert!(
        messages.iter().any(|m| o.seen.message.contains(m)),
        "expected one of {messages:?}: {o:?}"
    );
    assert!(
        !o.seen.message.contains("root:"),
        "the host's /etc/passwd was read: {o:?}"
    );
    assert!(o.elapsed < Duration::from_secs(10), "{o:?}");
    a.assert_nothing_left().await;
}

both_isolations!(
    predictions_as_a_symlink_to_etc_passwd_are_refused,
    |iso| async move {
        odd_predictions(
            iso,
            "ln -s /etc/passwd /output/predictions.csv || exit 7\n",
            &["not a regular file (found a symbolic link)"],
        )
        .await;
    }
);

both_isolations!(
    predictions_as_a_fifo_are_refused_without_hanging,
    |iso| async move {
        // Under gVisor a FIFO made in a bind mount lives in the sandbox's own kernel only: the
        // host sees no file at all.
        let expected: &[&str] = match iso {
            pb::Isolation::Gvisor => &["predictions.csv was not found"],
            _ => &["not a regular file (found a FIFO)"],
        };
        odd_predictions(iso, "mkfifo /output/predictions.csv || exit 7\n", expected).await;
    }
);

both_isolations!(predictions_as_a_directory_are_refused, |iso| async move {
    odd_predictions(
        iso,
        "mkdir /output/predictions.csv && echo id,label > /output/predictions.csv/x || exit 7\n",
        &["not a regular file (found a directory)"],
    )
    .await;
});

both_isolations!(
    a_10_gb_sparse_predictions_file_is_stopped_by_the_file_size_limit,
    |iso| async move {
        // The per-file limit is the output cap (64 MiB by default): the kernel refuses the
        // size, truncate dies of SIGXFSZ, and what is left is an empty file.
        odd_predictions(
            iso,
            "truncate -s 10G /output/predictions.csv; echo truncate exited $?\n",
            &["predictions.csv is empty"],
        )
        .await;
    }
);

both_isolations!(
    a_10_gb_sparse_predictions_file_under_a_larger_output_cap_is_refused_without_reading_it,
    |iso| async move {
        // With an output cap above 10 GB the file does get made; the scorer must still answer
        // at once instead of reading ten gigabytes of zeros.
        let a = Arena::with_config(
            iso,
            |cfg| cfg.caps.output_bytes = holdout::units::ByteSize(16 << 30),
            |c| set_limits(c, |l| l.output_bytes = 16 << 30),
        )
        .await;
        let o = a
            .run(
                pb::SubmissionKind::Smoke,
                "truncate -s 10G /output/predictions.csv || exit 7\n",
            )
            .await;
        o.assert_verdict(pb::Verdict::InvalidPredictions);
        // It stops at the first megabyte-long "line" of zeros.
        assert!(
            o.seen
                .message
                .contains("line 1: the line is longer than 1048576 bytes"),
            "{o:?}"
        );
        assert!(o.elapsed < Duration::from_secs(10), "{o:?}");
        a.assert_nothing_left().await;
    }
);

// ---- hostile archives: refused at Submit, naming the problem --------------------------------

mod archives {
    use std::io::{Cursor, Write};

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use tar::{EntryType, Header};
    use zip::write::SimpleFileOptions;

    use super::*;

    /// Appends one tar entry, writing `name` straight into the header so that hostile names
    /// get through the tar crate's checks.
    fn tar_entry(tar: &mut Vec<u8>, name: &str, kind: EntryType, link: Option<&str>, data: &[u8]) {
        let mut header = Header::new_ustar();
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }

    fn gzip(mut tar: Vec<u8>, level: Compression) -> Vec<u8> {
        tar.extend_from_slice(&[0; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), level);
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    /// Submits `archive` and expects INVALID_ARGUMENT naming every one of `names`; nothing
    /// may be queued or run.
    async fn refused(archive: Vec<u8>, names: &[&str], adjust: impl FnOnce(&mut pb::Challenge)) {
        let a = Arena::new(pb::Isolation::Runc, adjust).await;
        let err = a
            .client
            .submit(full("attack", "mallory"), archive)
            .await
            .expect_err("a hostile archive must be refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        for name in names {
            assert!(
                err.message().contains(name),
                "{:?} does not name {name:?}",
                err.message()
            );
        }
        let list = a
            .client
            .submissions()
            .list_submissions(authed(
                &a.server.submitter,
                pb::ListSubmissionsRequest {
                    challenge_id: "attack".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(list.submissions.is_empty(), "{list:?}");
        a.assert_nothing_left().await;
    }

    #[tokio::test]
    async fn a_zip_slip_archive_is_refused_naming_the_entry() {
        within(60, async {
            let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
            zip.start_file("run.sh", SimpleFileOptions::default())
                .unwrap();
            zip.write_all(PARITY_RIGHT.as_bytes()).unwrap();
            zip.start_file("a/../../evil.sh", SimpleFileOptions::default())
                .unwrap();
            zip.write_all(b"pwned").unwrap();
            let bytes = zip.finish().unwrap().into_inner();
            assert!(bytes.windows(15).any(|w| w == b"a/../../evil.sh"));
            refused(bytes, &["`a/../../evil.sh`", "`..`"], |_| {}).await;

            let mut tar = Vec::new();
            tar_entry(
                &mut tar,
                "run.sh",
                EntryType::Regular,
                None,
                PARITY_RIGHT.as_bytes(),
            );
            tar_entry(
                &mut tar,
                "../../etc/cron.d/evil",
                EntryType::Regular,
                None,
                b"pwned",
            );
            refused(
                gzip(tar, Compression::default()),
                &["`../../etc/cron.d/evil`", "`..`"],
                |_| {},
            )
            .await;
        })
        .await
    }

    #[tokio::test]
    async fn a_symlink_archive_is_refused_naming_the_link() {
        within(60, async {
            let mut tar = Vec::new();
            tar_entry(
                &mut tar,
                "run.sh",
                EntryType::Regular,
                None,
                PARITY_RIGHT.as_bytes(),
            );
            tar_entry(&mut tar, "data", EntryType::Symlink, Some("/etc"), b"");
            refused(
                gzip(tar, Compression::default()),
                &["`data`", "symbolic link"],
                |_| {},
            )
            .await;
        })
        .await
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_refused_at_the_extracted_size_cap() {
        within(60, async {
            // 64 MiB of zeros in 1 MiB files, about 64 KiB on the wire, against an 8 MiB cap.
            let mut tar = Vec::new();
            tar_entry(
                &mut tar,
                "run.sh",
                EntryType::Regular,
                None,
                PARITY_RIGHT.as_bytes(),
            );
            let zeros = vec![0u8; MIB as usize];
            for i in 0..64 {
                tar_entry(
                    &mut tar,
                    &format!("zeros/{i}.bin"),
                    EntryType::Regular,
                    None,
                    &zeros,
                );
            }
            let bytes = gzip(tar, Compression::best());
            assert!(bytes.len() < 512 * 1024, "bomb is {} bytes", bytes.len());
            let started = Instant::now();
            refused(bytes, &["expands to more than 8 MiB"], |c| {
                set_limits(c, |l| l.extracted_bytes = 8 * MIB)
            })
            .await;
            assert!(started.elapsed() < Duration::from_secs(30));
        })
        .await
    }

    #[tokio::test]
    async fn an_archive_of_100000_tiny_files_is_refused_at_the_entry_cap() {
        within(60, async {
            let mut tar = Vec::with_capacity(100_001 * 512 + 1024);
            tar_entry(
                &mut tar,
                "run.sh",
                EntryType::Regular,
                None,
                PARITY_RIGHT.as_bytes(),
            );
            for i in 0..100_000 {
                tar_entry(&mut tar, &format!("f/{i}"), EntryType::Regular, None, b"");
            }
            let started = Instant::now();
            refused(
                gzip(tar, Compression::fast()),
                &["more than 10000 entries"],
                |_| {},
            )
            .await;
            assert!(started.elapsed() < Duration::from_secs(30));
        })
        .await
    }
}

// ---- an engine that cannot run gVisor -------------------------------------------------------

#[tokio::test]
async fn a_challenge_asking_for_gvisor_on_an_engine_without_runsc_is_refused_naming_the_field() {
    within(30, async {
        let backend =
            holdout::sandbox::fake::FakeBackend::new(|_| Default::default()).without_gvisor();
        let server = spawn_app_on(Arc::new(backend), |_| {}).await;
        parity_data(&server, "parity", 20);
        let mut c = parity_challenge("gvisor-wanted", "parity");
        c.runtime.as_mut().unwrap().isolation = pb::Isolation::Gvisor as i32;
        let err = create(&server, c)
            .await
            .expect_err("no runsc on this engine");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains("runtime.isolation"),
            "{:?}",
            err.message()
        );
        assert!(err.message().contains("runsc"), "{:?}", err.message());
        // The same challenge under runc is fine on that engine.
        let mut c = parity_challenge("runc-wanted", "parity");
        c.runtime.as_mut().unwrap().isolation = pb::Isolation::Runc as i32;
        create(&server, c).await.unwrap();
    })
    .await
}
