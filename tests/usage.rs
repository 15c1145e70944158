//! What a run used, against its limits: SMOKE runs show it to their submitter, FULL runs only
//! to admins, in the API and in the CLI.

mod common;

use common::*;
use holdout::pb;

/// Burns about a second of one core (busybox shell arithmetic, no forks), then solves the
/// parity task.
fn busy_solution() -> String {
    format!("i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done\n{PARITY_RIGHT}")
}

fn seconds(d: &Option<prost_types::Duration>) -> f64 {
    let d = d.as_ref().expect("a duration");
    d.seconds as f64 + d.nanos as f64 / 1e9
}

/// The usage of a busy run: CPU time close to the work done, never more than its wall time
/// allows on its one core; and the limits it is measured against.
fn assert_busy_usage(u: &pb::RunUsage) {
    let (wall, cpu) = (seconds(&u.wall_time), seconds(&u.cpu_time));
    assert!(cpu >= 0.5, "cpu {cpu}s for about 1 s of work: {u:?}");
    assert!(
        cpu <= wall + 0.2,
        "cpu {cpu}s in {wall}s on one core: {u:?}"
    );
    assert!(u.peak_memory_bytes > 0, "{u:?}");
    assert!(u.peak_memory_bytes <= 64 << 20, "{u:?}");
    assert_eq!(seconds(&u.wall_time_limit), 20.0, "{u:?}");
    assert_eq!(u.memory_limit_bytes, 64 << 20, "{u:?}");
    // The parity challenge leaves CPU at 0: the server's default, one core.
    assert_eq!(u.cpu_millis_limit, 1000, "{u:?}");
    assert_eq!(u.exit_code, 0);
}

#[tokio::test]
async fn a_smoke_run_reports_its_cpu_time_and_limits_to_its_submitter_and_a_full_run_only_to_admins()
 {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 20);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let archive = tar_gz(&[("run.sh", &busy_solution())]);
        let smoke_run = client
            .submit(smoke("parity", "alice"), archive.clone())
            .await
            .unwrap();
        let full_run = client
            .submit(full("parity", "alice"), archive)
            .await
            .unwrap();
        for s in [&smoke_run, &full_run] {
            let last = client.watch(&s.id, |_| {}).await.unwrap();
            assert_eq!(last.verdict, pb::Verdict::Scored as i32, "{last:?}");
        }

        let shown = server.get_as(&server.submitter, &smoke_run.id).await;
        assert_busy_usage(shown.usage.as_ref().expect("a SMOKE run shows its usage"));

        let shown = server.get_as(&server.submitter, &full_run.id).await;
        assert_eq!(shown.usage, None, "a FULL run's usage is admin-only");
        let admin = server.get_as(&server.admin, &full_run.id).await;
        assert_busy_usage(admin.usage.as_ref().expect("admins see a FULL run's usage"));

        // The CLI prints it against the limits.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .args(["status", &smoke_run.id])
            .env("HOLDOUT_ADDR", server.addr.to_string())
            .env("HOLDOUT_TOKEN", &server.submitter)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("usage "))
            .unwrap_or_else(|| panic!("no usage line: {text}"));
        for part in [
            " of 20s, cpu ",
            "s (1 core), peak memory ",
            " of 64 MiB, exit 0",
        ] {
            assert!(line.contains(part), "{part:?} not in {line:?}");
        }
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .args(["status", &full_run.id, "--json"])
            .env("HOLDOUT_ADDR", server.addr.to_string())
            .env("HOLDOUT_TOKEN", &server.admin)
            .output()
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let cpu = json["usage"]["cpu_time_seconds"].as_f64().unwrap();
        assert!(cpu >= 0.5, "{json}");
        assert_eq!(json["usage"]["memory_limit_bytes"], 64 << 20);
        assert_eq!(json["usage"]["cpu_millis_limit"], 1000);
        assert_eq!(json["usage"]["wall_time_limit_seconds"], 20.0);
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_run_held_at_its_cpu_limit_uses_at_most_its_share_of_the_wall_time() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        let mut c = parity_challenge("parity", "parity");
        c.limits.as_mut().unwrap().cpu_millis = 500;
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;
        // Two busy processes at once on half a core.
        let script = format!(
            "busy() {{ i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; }}\nbusy & busy & wait\n{PARITY_RIGHT}"
        );
        let s = client
            .submit(smoke("parity", "alice"), tar_gz(&[("run.sh", &script)]))
            .await
            .unwrap();
        client.watch(&s.id, |_| {}).await.unwrap();
        let u = server.get_as(&server.submitter, &s.id).await.usage.unwrap();
        let (wall, cpu) = (seconds(&u.wall_time), seconds(&u.cpu_time));
        assert_eq!(u.cpu_millis_limit, 500);
        assert!(cpu > 0.2, "{u:?}");
        // CFS quota periods are 100 ms: allow one period of slack.
        assert!(cpu <= wall * 0.5 + 0.1, "cpu {cpu}s in {wall}s at half a core: {u:?}");
    })
    .await
}
