//! The digits challenge end to end through the gRPC API with the offline Python image: every
//! example solution gets its documented verdict, and the good one's scores equal what
//! scikit-learn computes for its predictions.

mod common;

use std::path::Path;

use common::*;
use holdout::pb;

const PYTHON: &str = "holdout-python:1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn sh(cmd: &str) -> String {
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The challenge from examples/digits/challenge.toml, with a shorter wall time for the
/// solution that never ends.
fn digits_challenge() -> pb::Challenge {
    let mut c =
        holdout::cli::read_challenge_file(&repo().join("examples/digits/challenge.toml")).unwrap();
    c.limits.as_mut().unwrap().wall_time = Some(prost_types::Duration {
        seconds: 20,
        nanos: 0,
    });
    c
}

#[tokio::test]
async fn every_digits_solution_gets_its_documented_verdict() {
    within(600, async {
        let server = spawn_app_with(|c| c.concurrency = 2).await;
        let data = server.data_root.join("digits");
        sh(&format!("{}/examples/digits/make_data.sh {}", repo().display(), data.display())).await;
        server.write_data("digits", &[]);
        create(&server, digits_challenge()).await.unwrap();
        let client = server.client(&server.submitter).await;
        let expected = [
            ("good", pb::Verdict::Scored),
            ("baseline", pb::Verdict::Scored),
            ("crash", pb::Verdict::RuntimeError),
            ("timeout", pb::Verdict::TimeLimitExceeded),
            ("oom", pb::Verdict::MemoryLimitExceeded),
            ("attack", pb::Verdict::Scored),
        ];
        let mut subs = Vec::new();
        for (name, _) in &expected {
            let bytes = holdout::cli::archive_bytes(&repo().join("examples/digits/solutions").join(name)).unwrap();
            subs.push(client.submit(full("digits", name), bytes).await.unwrap());
        }
        let mut scores = std::collections::HashMap::new();
        let admin = server.client(&server.admin).await;
        for ((name, verdict), s) in expected.iter().zip(&subs) {
            let last = client.watch(&s.id, |_| {}).await.unwrap();
            // The platform reads only whether a FULL run was scored (the challenge's default
            // failure detail); the admin reads the exact, documented verdict.
            let shown = if *verdict == pb::Verdict::Scored { *verdict } else { pb::Verdict::NotScored };
            assert_eq!(last.verdict, shown as i32, "{name}: {last:?}");
            let exact = admin
                .submissions()
                .get_submission(authed(&server.admin, pb::GetSubmissionRequest { id: s.id.clone() }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(exact.verdict, *verdict as i32, "{name}: {exact:?}");
            scores.insert(*name, last.scores.get("accuracy").copied());
        }
        let good = scores["good"].unwrap();
        let baseline = scores["baseline"].unwrap();
        assert!(good >= 0.97, "good solution scored {good}");
        assert!(baseline < 0.2, "baseline scored {baseline}");
        assert_eq!(scores["attack"], Some(baseline), "the attack found nothing better than the baseline");

        // Recompute the good solution's scores with scikit-learn on its own predictions.
        let exact = admin
            .submissions()
            .get_submission(authed(&server.admin, pb::GetSubmissionRequest { id: subs[0].id.clone() }))
            .await
            .unwrap()
            .into_inner();
        let out = tempfile::tempdir().unwrap();
        sh(&format!("chmod 777 {}", out.path().display())).await;
        sh(&format!(
            "docker run --rm --network none --read-only --tmpfs /tmp --user 65534:65534 \
             -v {data}/inputs:/data:ro -v {sol}:/submission:ro -v {out}:/output -e HOLDOUT_DATA=/data -e HOLDOUT_OUTPUT=/output \
             {PYTHON} python3 /submission/main.py",
            data = data.display(),
            sol = repo().join("examples/digits/solutions/good").display(),
            out = out.path().display(),
        ))
        .await;
        let check = sh(&format!(
            "docker run --rm --network none --read-only --user 65534:65534 -v {data}:/d:ro -v {out}:/o:ro -v {scripts}:/s:ro \
             {PYTHON} python3 -c '
import sys, pandas as pd
sys.path.insert(0, \"/s\")
from sklearn_reference import split_position
from sklearn.metrics import accuracy_score
y = pd.read_csv(\"/d/labels.csv\", dtype=str)
p = pd.read_csv(\"/o/predictions.csv\", dtype=str)
m = y.merge(p, on=\"id\", suffixes=(\"_true\", \"_pred\"))
pub = m[[split_position(i, 2026) < 0.5 for i in m[\"id\"]]]
prv = m[[split_position(i, 2026) >= 0.5 for i in m[\"id\"]]]
print(repr(accuracy_score(pub.label_true, pub.label_pred)), repr(accuracy_score(prv.label_true, prv.label_pred)))
'",
            data = data.display(),
            out = out.path().display(),
            scripts = repo().join("scripts").display(),
        ))
        .await;
        let mut parts = check.split_whitespace().map(|v| v.parse::<f64>().unwrap());
        let (public, private) = (parts.next().unwrap(), parts.next().unwrap());
        assert!((exact.public_scores_exact["accuracy"] - public).abs() < 1e-12, "{exact:?} vs {public}");
        assert!((exact.private_scores_exact["accuracy"] - private).abs() < 1e-12, "{exact:?} vs {private}");
        assert_eq!(good, (public * 1e4).round() / 1e4);
        assert!(server.leftover_containers().await.is_empty());
    })
    .await
}
