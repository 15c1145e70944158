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

#[tokio::test]
async fn pythons_grpcio_reflection_lists_the_services() {
    within(60, async {
        let server = spawn_app().await;
        // grpcio-reflection speaks grpc.reflection.v1alpha.
        let script = r#"
import sys, grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(sys.argv[1]))
for name in sorted(db.get_services()):
    print(name)
"#;
        let out = tokio::process::Command::new("python3")
            .args(["-c", script, &server.addr.to_string()])
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "is `pip install grpcio-reflection` done? .ci/run does it\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for service in ["holdout.v1.Challenges", "holdout.v1.Submissions", "holdout.v1.Leaderboards", "holdout.v1.Audit"] {
            assert!(stdout.lines().any(|l| l == service), "{service} missing from {stdout}");
        }
    })
    .await
}
