//! The `holdout` command-line client against a live server: every command, readable output
//! and `--json`, and one clear line with a non-zero exit for a server error.

mod common;

use common::*;

#[tokio::test]
async fn the_cli_runs_a_challenge_end_to_end() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 30);
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("challenge.toml");
        std::fs::write(
            &toml,
            r#"
id = "parity"
title = "Parity"
data_dir = "parity"
[runtime]
image = "holdout-busybox:1"
command = ["sh", "/submission/run.sh"]
[scoring]
public_fraction = 0.5
split_seed = 7
[scoring.builtin]
metric = "accuracy"
target_column = "label"
[limits]
wall_time = "20s"
memory_bytes = "64MiB"
[quota]
full_per_day = 5
"#,
        )
        .unwrap();
        let path = toml.to_str().unwrap();
        let (ok, out, err) = holdout(
            &server,
            &server.admin,
            &["challenge", "create", "--file", path],
        )
        .await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("challenge   parity  (OPEN)"), "{out}");

        let (ok, out, _) = holdout(&server, &server.submitter, &["challenge", "list"]).await;
        assert!(ok && out.contains("parity"), "{out}");

        let solution = dir.path().join("solution");
        std::fs::create_dir(&solution).unwrap();
        std::fs::write(solution.join("run.sh"), PARITY_RIGHT).unwrap();
        let sol = solution.to_str().unwrap();
        let (ok, out, err) = holdout(
            &server,
            &server.submitter,
            &[
                "submit",
                sol,
                "--challenge",
                "parity",
                "--participant",
                "alice",
                "--watch",
            ],
        )
        .await;
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("SUCCEEDED") && out.contains("accuracy=1"),
            "{out}"
        );
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("submission  "))
            .unwrap()
            .trim()
            .to_owned();

        let (ok, out, _) = holdout(&server, &server.submitter, &["status", &id, "--json"]).await;
        assert!(ok);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "SUCCEEDED");
        assert_eq!(v["scores"]["accuracy"], 1.0);

        let (ok, out, _) = holdout(
            &server,
            &server.submitter,
            &["leaderboard", "parity", "--json"],
        )
        .await;
        assert!(ok);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["entries"][0]["participant_id"], "alice");

        let (ok, out, _) = holdout(
            &server,
            &server.submitter,
            &["list", "--challenge", "parity"],
        )
        .await;
        assert!(ok && out.contains(&id), "{out}");

        // A server error is one clear line and a non-zero exit.
        let (ok, out, err) = holdout(&server, &server.submitter, &["logs", &id]).await;
        assert!(!ok);
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("holdout: PERMISSION_DENIED: "), "{err}");
        let (ok, out, _) = holdout(&server, &server.admin, &["logs", &id]).await;
        assert!(ok, "{out}");

        let (ok, _, err) = holdout(
            &server,
            &server.submitter,
            &["challenge", "close", "parity"],
        )
        .await;
        assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
        let (ok, out, _) = holdout(&server, &server.admin, &["challenge", "close", "parity"]).await;
        assert!(ok && out.contains("CLOSED"), "{out}");
        let (ok, out, _) =
            holdout(&server, &server.admin, &["audit", "--challenge", "parity"]).await;
        assert!(ok && out.contains("platform-a"), "{out}");
    })
    .await
}

#[tokio::test]
async fn token_new_prints_a_token_and_the_block_that_accepts_it() {
    within(30, async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .args(["token", "new", "--name", "portal", "--role", "submitter"])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap();
        let sha = text
            .lines()
            .find_map(|l| l.strip_prefix("sha256 = "))
            .unwrap()
            .trim_matches('"');
        assert_eq!(holdout::auth::digest(token), sha);
        assert!(text.contains("role = \"submitter\""));
    })
    .await
}

#[tokio::test]
async fn holdout_score_scores_local_files_like_the_server() {
    within(30, async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("labels.csv"),
            "id,label\na,1\nb,0\nc,1\nd,0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pred.csv"),
            "id,label\na,1\nb,1\nc,1\nd,0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.csv"), "id,label\na,1\na,1\n").unwrap();
        let run = |pred: &str| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
                .current_dir(dir.path())
                .args([
                    "score",
                    "--labels",
                    "labels.csv",
                    "--predictions",
                    pred,
                    "--metric",
                    "accuracy",
                    "--json",
                ])
                .output()
        };
        let out = run("pred.csv").await.unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["all"]["accuracy"], 0.75);
        let out = run("bad.csv").await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("duplicate"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
}
