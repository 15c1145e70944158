//! The Python platform client in `examples/python-client/` works against a live server.

mod common;

use common::*;

#[tokio::test]
async fn the_python_client_submits_watches_and_reads_the_leaderboard() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        create(&server, parity_challenge("parity", "parity")).await.unwrap();
        let solution = tempfile::tempdir().unwrap();
        std::fs::write(solution.path().join("run.sh"), PARITY_RIGHT).unwrap();
        let out = tokio::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python-client/holdout_client.py"))
            .args(["--addr", &server.addr.to_string(), "--token", &server.submitter])
            .args(["--challenge", "parity", "--participant", "py-alice"])
            .arg(solution.path())
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "client failed (is `pip install grpcio grpcio-tools` done? .ci/run does it)\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(stdout.contains("verdict: VERDICT_SCORED"), "{stdout}");
        assert!(stdout.contains("score accuracy = 1.0"), "{stdout}");
        assert!(stdout.contains("1. py-alice 1.0"), "{stdout}");
    })
    .await
}
