//! `holdout backup` of a running server and `holdout restore` into a fresh state folder:
//! every submission comes back as it was in the snapshot.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use holdout::pb;

fn holdout(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
        .args(args)
        .output()
        .expect("holdout runs")
}

/// (id, state) of every submission in a state folder's database.
fn snapshot(state: &Path) -> BTreeMap<String, String> {
    let conn = rusqlite::Connection::open(state.join("holdout.db")).unwrap();
    let mut stmt = conn.prepare("SELECT id, state FROM submissions").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_submission_into_a_fresh_state_folder() {
    if common::on_postgres() {
        eprintln!(
            "skipped: holdout backup snapshots the SQLite store; PostgreSQL is backed up with pg_dump"
        );
        return;
    }
    within(300, async {
        let server = spawn_app_with(|c| c.concurrency = 2).await;
        parity_data(&server, "parity", 20);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let slow = format!("sleep 1\n{PARITY_RIGHT}");
        let mut ids = Vec::new();
        for i in 0..12 {
            let meta = if i % 3 == 0 {
                smoke("parity", &format!("p{i}"))
            } else {
                full("parity", &format!("p{i}"))
            };
            ids.push(
                client
                    .submit(meta, tar_gz(&[("run.sh", &slow)]))
                    .await
                    .unwrap()
                    .id,
            );
        }
        // Under load: some ended (a FULL run among them), some running, some queued.
        let full_ids: Vec<&String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, id)| id)
            .collect();
        loop {
            let now = snapshot(&server.state_dir);
            let is_done = |s: &String| ["succeeded", "failed", "cancelled"].contains(&s.as_str());
            let done = now.values().filter(|s| is_done(s)).count();
            let full_done = full_ids.iter().any(|id| now.get(*id).is_some_and(&is_done));
            if done >= 4 && full_done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("backup");
        let out = holdout(&[
            "backup",
            "--state-dir",
            server.state_dir.to_str().unwrap(),
            "--to",
            backup.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let taken = snapshot(&backup);
        assert_eq!(taken.len(), 12);
        let ended: Vec<&String> = taken
            .iter()
            .filter(|(_, s)| ["succeeded", "failed", "cancelled"].contains(&s.as_str()))
            .map(|(id, _)| id)
            .collect();
        assert!(ended.len() >= 4 && ended.len() < 12, "{taken:?}");

        // A damaged backup is refused before anything is written.
        let archive = std::fs::read_dir(backup.join("archives"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let good = std::fs::read(&archive).unwrap();
        let mut bad = good.clone();
        bad[0] ^= 1;
        std::fs::write(&archive, &bad).unwrap();
        let refused = holdout(&[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--state-dir",
            dir.path().join("x").to_str().unwrap(),
        ]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("damaged"));
        std::fs::write(&archive, &good).unwrap();

        let fresh = dir.path().join("restored");
        let out = holdout(&[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--state-dir",
            fresh.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Let the original finish, then start a server on the restored folder.
        for id in &ids {
            client.watch(id, |_| {}).await.unwrap();
        }
        let data_root = server.data_root.clone();
        let restored = spawn_app_with(|c| {
            c.state_dir = fresh.clone();
            c.data_root = data_root;
        })
        .await;
        let mut kept_checked = 0;
        for (id, state) in &taken {
            let back = restored.admin_get(id).await;
            if ended.contains(&id) {
                // Ended in the snapshot: exactly as it was, logs included.
                let original = server.admin_get(id).await;
                assert_eq!(back, original, "{id} ({state})");
                if back.kind == pb::SubmissionKind::Smoke as i32 {
                    let logs = |s: &TestServer| {
                        let token = s.admin.clone();
                        let id = id.clone();
                        let addr = s.addr;
                        async move {
                            holdout::cli::Client::connect(&format!("http://{addr}"), Some(&token))
                                .await
                                .unwrap()
                                .submissions()
                                .get_submission_logs(authed(
                                    &token,
                                    pb::GetSubmissionLogsRequest { id },
                                ))
                                .await
                                .unwrap()
                                .into_inner()
                        }
                    };
                    assert_eq!(logs(&restored).await, logs(&server).await);
                }
                if back.kind == pb::SubmissionKind::Full as i32
                    && back.verdict == pb::Verdict::Scored as i32
                {
                    // Its kept predictions came along: a rescore after a restore works.
                    let name = format!("predictions/{id}.csv.gz");
                    let kept = std::fs::read(fresh.join(&name)).expect("kept predictions restored");
                    assert_eq!(kept, std::fs::read(server.state_dir.join(&name)).unwrap());
                    kept_checked += 1;
                }
            } else {
                // In flight in the snapshot: run again, to its end.
                let last = restored
                    .client(&restored.admin)
                    .await
                    .watch(id, |_| {})
                    .await
                    .unwrap();
                assert_eq!(
                    last.state,
                    pb::SubmissionState::Succeeded as i32,
                    "{id}: {last:?}"
                );
            }
        }
        assert!(kept_checked > 0, "no scored FULL run ended in the snapshot");
    })
    .await
}
