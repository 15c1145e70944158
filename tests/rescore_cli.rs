//! `holdout challenge rescore|rerun` and `holdout job ...` against the real server: the
//! progress bar on a terminal (a pseudo-terminal from `script`), a line per update
//! otherwise, the audit, and a non-zero exit for a job that did not finish.

mod common;

use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::units::HumanDuration;

/// Runs the CLI under a pseudo-terminal (util-linux `script`), as a person at a terminal.
async fn holdout_on_a_terminal(server: &TestServer, args: &[&str]) -> (bool, String) {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_holdout"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOLDOUT_ADDR", server.addr.to_string())
        .env("HOLDOUT_TOKEN", &server.admin)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_rescores_and_reruns_with_a_progress_bar_on_a_terminal_and_lines_otherwise() {
    within(240, async {
        let server = spawn_app_with(|c| {
            c.job_item_pause = HumanDuration(Duration::from_millis(400));
        })
        .await;
        parity_data(&server, "cli", 20);
        create(&server, parity_challenge("cli", "cli"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        for (who, sh) in [("alice", PARITY_RIGHT), ("bob", PARITY_EVEN)] {
            let s = client
                .submit(full("cli", who), tar_gz(&[("run.sh", sh)]))
                .await
                .unwrap();
            client.watch(&s.id, |_| {}).await.unwrap();
        }

        let (ok, screen) =
            holdout_on_a_terminal(&server, &["challenge", "rescore", "cli", "--wait"]).await;
        assert!(ok, "{screen}");
        let full_bar = format!("[{}] 2/2 FINISHED", "#".repeat(30));
        assert!(screen.contains(&full_bar), "{screen}");
        assert!(
            screen.contains('\r'),
            "the bar is redrawn in place: {screen:?}"
        );
        assert!(screen.contains("FINISHED"), "{screen}");

        let (ok, out, err) = holdout(
            &server,
            &server.admin,
            &[
                "challenge",
                "rescore",
                "cli",
                "--metric",
                "f1_macro",
                "--wait",
                "--json",
            ],
        )
        .await;
        assert!(ok, "{err}");
        let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(last["state"], "FINISHED");
        let job = last["id"].as_str().unwrap().to_owned();
        let (ok, out, err) = holdout(&server, &server.admin, &["job", "changes", &job]).await;
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("f1_macro"), "{out}");
        let (ok, out, err) = holdout(
            &server,
            &server.admin,
            &["job", "list", "--challenge", "cli"],
        )
        .await;
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.lines().next().unwrap().contains(&job),
            "newest first: {out}"
        );
        let (ok, out, _) = holdout(&server, &server.admin, &["job", "get", &job]).await;
        assert!(
            ok && out.contains("rescore on cli: FINISHED (2/2)"),
            "{out}"
        );

        // A closed challenge's archives are re-run too (queued runs of a closed challenge run).
        let (ok, _, err) = holdout(&server, &server.admin, &["challenge", "close", "cli"]).await;
        assert!(ok, "{err}");
        let (ok, out, err) = holdout(
            &server,
            &server.admin,
            &[
                "challenge",
                "rerun",
                "cli",
                "--participant",
                "alice",
                "--wait",
            ],
        )
        .await;
        assert!(ok, "{err}");
        assert!(
            out.lines().any(|l| l.starts_with("RUNNING ")),
            "a line per update: {out}"
        );
        assert!(out.contains("rerun on cli: FINISHED (1/1)"), "{out}");

        // A job that does not finish makes the command fail, saying how it ended.
        let (ok, _, err) = holdout(
            &server,
            &server.admin,
            &["challenge", "rescore", "cli", "--metric", "rmse", "--wait"],
        )
        .await;
        assert!(!ok);
        assert!(err.contains("ended FAILED"), "{err}");
        let submitter = server.client(&server.submitter).await;
        let refused = submitter
            .jobs()
            .get_job(authed(&server.submitter, pb::GetJobRequest { id: job }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    })
    .await;
}
