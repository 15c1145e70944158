//! `holdout run-local` gives a participant, on their own machine, the verdict, message and
//! sample score a real server gives a SMOKE submission of the same solution on the same data.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use holdout::pb;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every example solution of the digits challenge.
fn solutions() -> Vec<(String, PathBuf)> {
    let mut all: Vec<_> = std::fs::read_dir(repo().join("examples/digits/solutions"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    all.sort();
    all
}

/// The digits challenge file with a 20 s wall time (for the solution that never ends),
/// written where both the server and `run-local` read it.
fn challenge_file(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/digits/challenge.toml")).unwrap();
    assert!(text.contains("wall_time = \"60s\""));
    let path = dir.join("challenge.toml");
    std::fs::write(
        &path,
        text.replace("wall_time = \"60s\"", "wall_time = \"20s\""),
    )
    .unwrap();
    path
}

async fn make_digits_data(server: &TestServer) -> PathBuf {
    let data = server.data_root.join("digits");
    let status = tokio::process::Command::new(repo().join("examples/digits/make_data.sh"))
        .arg(&data)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    server.write_data("digits", &[]);
    data
}

fn verdict_name(v: i32) -> String {
    pb::Verdict::try_from(v)
        .unwrap()
        .as_str_name()
        .trim_start_matches("VERDICT_")
        .to_owned()
}

fn state_name(s: i32) -> String {
    pb::SubmissionState::try_from(s)
        .unwrap()
        .as_str_name()
        .trim_start_matches("SUBMISSION_STATE_")
        .to_owned()
}

/// Holdout containers a `run-local` process left on the engine (its instance label names
/// its pid).
fn containers_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=io.holdout.owner=holdout",
            "--filter",
            &format!("label=io.holdout.instance=run-local-{pid}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `holdout run-local --json`: success, the printed submission, and the live output.
async fn run_local(
    solution: &Path,
    challenge: &Path,
    data: &Path,
    extra: &[&str],
) -> (bool, serde_json::Value, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
        .arg("run-local")
        .arg(solution)
        .arg("--challenge")
        .arg(challenge)
        .arg("--data")
        .arg(data)
        .args(extra)
        .arg("--json")
        .env_remove("HOLDOUT_ADDR")
        .env_remove("HOLDOUT_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        containers_of(pid),
        Vec::<String>::new(),
        "run-local left a container"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let printed = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), printed, stderr)
}

#[tokio::test]
async fn run_local_gives_every_digits_solution_the_servers_smoke_verdict_message_and_score() {
    within(900, async {
        let server = spawn_app().await;
        let data = make_digits_data(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let challenge = challenge_file(dir.path());
        let c = holdout::cli::read_challenge_file(&challenge).unwrap();
        create(&server, c).await.unwrap();
        let client = server.client(&server.submitter).await;

        // The server works through its queue while the local runs go one by one.
        let mut submitted = Vec::new();
        for (name, path) in solutions() {
            let bytes = holdout::cli::archive_bytes(&path).unwrap();
            let s = client.submit(smoke("digits", &name), bytes).await.unwrap();
            submitted.push((name, path, s.id));
        }
        assert!(submitted.len() >= 6, "{submitted:?}");
        for (name, path, id) in &submitted {
            let (ok, local, live) = run_local(path, &challenge, &data, &[]).await;
            let served = client.watch(id, |_| {}).await.unwrap();
            let verdict = verdict_name(served.verdict);
            assert_eq!(local["verdict"], verdict, "{name}: {local}\n{live}");
            assert_eq!(local["kind"], "SMOKE", "{name}");
            assert_eq!(local["state"], state_name(served.state), "{name}");
            assert_eq!(local["message"], served.message, "{name}: {local}");
            let scores: std::collections::HashMap<String, f64> =
                serde_json::from_value(local["scores"].clone()).unwrap();
            assert_eq!(scores, served.scores, "{name}: {local}");
            assert_eq!(
                ok,
                served.state == pb::SubmissionState::Succeeded as i32,
                "{name}"
            );
            // Usage against the same limits.
            let usage = &local["usage"];
            assert_eq!(usage["wall_time_limit_seconds"], 20.0, "{name}: {usage}");
            assert_eq!(usage["memory_limit_bytes"], 1u64 << 30, "{name}: {usage}");
            assert_eq!(usage["cpu_millis_limit"], 1000, "{name}: {usage}");
            let expected = match name.as_str() {
                "good" | "baseline" | "attack" | "bundled-wheel" => pb::Verdict::Scored,
                "crash" => pb::Verdict::RuntimeError,
                "timeout" => pb::Verdict::TimeLimitExceeded,
                "oom" => pb::Verdict::MemoryLimitExceeded,
                other => panic!("no documented verdict for {other}"),
            };
            assert_eq!(verdict, verdict_name(expected as i32), "{name}");
            // The run's output is shown: here on stderr, since --json owns stdout.
            if name == "crash" {
                assert!(live.contains("RuntimeError: deliberate crash"), "{live}");
            }
        }
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn run_local_under_gvisor_gives_the_same_verdicts_and_leaves_no_container() {
    within(300, async {
        let server = spawn_app().await;
        let data = make_digits_data(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let challenge = challenge_file(dir.path());
        let sol = repo().join("examples/digits/solutions");
        let (ok, good, live) = run_local(
            &sol.join("good"),
            &challenge,
            &data,
            &["--isolation", "gvisor"],
        )
        .await;
        assert!(ok, "{good}\n{live}");
        assert_eq!(good["verdict"], "SCORED");
        assert!(
            good["scores"]["accuracy"].as_f64().unwrap() >= 0.9,
            "{good}"
        );
        let (ok, crash, _) = run_local(
            &sol.join("crash"),
            &challenge,
            &data,
            &["--isolation", "gvisor"],
        )
        .await;
        assert!(!ok);
        assert_eq!(crash["verdict"], "RUNTIME_ERROR");
        assert_eq!(crash["message"], "the run exited with code 1");
    })
    .await
}

#[tokio::test]
async fn run_local_explains_a_data_folder_without_a_sample_and_an_archive_the_server_would_refuse()
{
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let challenge = challenge_file(dir.path());
        let data = dir.path().join("digits");
        std::fs::create_dir_all(data.join("inputs")).unwrap();
        let sol = repo().join("examples/digits/solutions/good");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .arg("run-local")
            .arg(&sol)
            .arg("--challenge")
            .arg(&challenge)
            .arg("--data")
            .arg(&data)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("has no public sample"), "{err}");

        std::fs::create_dir_all(data.join("sample/inputs")).unwrap();
        std::fs::write(data.join("sample/inputs/test.csv"), "id\n1\n").unwrap();
        std::fs::write(data.join("sample/labels.csv"), "id,label\n1,0\n").unwrap();
        let bad = dir.path().join("bad.tar.gz");
        std::fs::write(&bad, b"not an archive at all").unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_holdout"))
            .arg("run-local")
            .arg(&bad)
            .arg("--challenge")
            .arg(&challenge)
            .arg("--data")
            .arg(&data)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(
                "the server would refuse this archive: the upload is not a tar.gz or zip archive"
            ),
            "{err}"
        );
    })
    .await
}

/// A busybox parity challenge scored by a custom `awk` scorer in the sandbox.
const CUSTOM_CHALLENGE: &str = r#"
id = "parity-custom"
data_dir = "parity"
[runtime]
image = "holdout-busybox:1"
command = ["sh", "/submission/run.sh"]
[scoring]
public_fraction = 0.5
split_seed = 7
[scoring.custom]
image = "holdout-busybox:1"
command = ["sh", "-c", '''awk -F, 'FNR == 1 { next } NR == FNR { label[$1] = $2; n++; next } ($1 in label) && label[$1] == $2 { c++ } END { printf "{\"acc\": %.17g}\n", c / n }' /labels/labels.csv /predictions/predictions.csv > /output/scores.json''']
primary_metric = "acc"
greater_is_better = true
[limits]
wall_time = "20s"
memory_bytes = "64MiB"
"#;

#[tokio::test]
async fn run_local_scores_with_a_custom_scorer_like_the_server() {
    within(180, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 10);
        let dir = tempfile::tempdir().unwrap();
        let challenge = dir.path().join("challenge.toml");
        std::fs::write(&challenge, CUSTOM_CHALLENGE).unwrap();
        create(
            &server,
            holdout::cli::read_challenge_file(&challenge).unwrap(),
        )
        .await
        .unwrap();
        let solution = dir.path().join("solution");
        std::fs::create_dir(&solution).unwrap();
        std::fs::write(solution.join("run.sh"), PARITY_EVEN).unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(
                smoke("parity-custom", "alice"),
                holdout::cli::archive_bytes(&solution).unwrap(),
            )
            .await
            .unwrap();
        let served = client.watch(&s.id, |_| {}).await.unwrap();
        let (ok, local, live) =
            run_local(&solution, &challenge, &server.data_root.join("parity"), &[]).await;
        assert!(ok, "{local}\n{live}");
        assert_eq!(local["verdict"], verdict_name(served.verdict));
        let scores: std::collections::HashMap<String, f64> =
            serde_json::from_value(local["scores"].clone()).unwrap();
        assert_eq!(scores, served.scores);
        // "even" everywhere on the sample (even, odd, even).
        assert_eq!(scores["acc"], 0.6667, "{local}");
    })
    .await
}
