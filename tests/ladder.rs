//! Blum & Hardt's boosting attack against the leaderboard, through the service (API, store,
//! scoring, release), with a scripted backend whose "code" is a predictions file: what is
//! under test is the release policy, not the sandbox.
//!
//! 4,000 public rows with random binary labels; 400 random submissions; keep those whose
//! released score beat chance; submit their majority vote. Under LADDER_PARAMETER_FREE the
//! vote's released 0/1 loss stays at or above 0.468; under BEST_SO_FAR it falls clearly below.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::sandbox::RunOutcome;
use holdout::sandbox::fake::{FakeBackend, FakeRun};

/// A small deterministic generator (SplitMix64), so the attack is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bit(&mut self) -> u8 {
        (self.next() & 1) as u8
    }
}

/// The backend copies `/submission/preds.csv` to `/output/predictions.csv`.
fn replaying_backend() -> Arc<FakeBackend> {
    Arc::new(FakeBackend::new(|spec| {
        let code = spec
            .mounts
            .iter()
            .find(|m| m.container == "/submission")
            .unwrap();
        FakeRun {
            outcome: RunOutcome {
                exit_code: Some(0),
                ..Default::default()
            },
            predictions: Some(std::fs::read(code.host.join("preds.csv")).unwrap()),
            delay: Duration::ZERO,
        }
    }))
}

fn predictions(ids: &[String], bits: &[u8]) -> String {
    let mut out = String::from("id,label\n");
    for (id, b) in ids.iter().zip(bits) {
        out.push_str(&format!("{id},{b}\n"));
    }
    out
}

/// Runs the attack against a challenge in `mode`; returns the released 0/1 loss of the vote.
async fn attack(mode: pb::LeaderboardMode) -> f64 {
    let server = spawn_app_on(replaying_backend(), |c| c.concurrency = 2).await;
    let mut rng = Rng(2015);
    // 8,000 label rows with a public fraction of one half: about 4,000 public rows.
    let rows = 8000;
    let ids: Vec<String> = (0..rows).map(|i| format!("r{i:05}")).collect();
    let mut labels = String::from("id,label\n");
    for id in &ids {
        labels.push_str(&format!("{id},{}\n", rng.bit()));
    }
    // The test ids, as participants would get them (an inputs file without them is a
    // challenge the preparation check refuses).
    let inputs = ids.iter().fold(String::from("id\n"), |a, id| a + id + "\n");
    server.write_data(
        "boost",
        &[("inputs/ids.csv", &inputs), ("labels.csv", &labels)],
    );
    let mut c = parity_challenge("boost", "boost");
    c.release = Some(pb::ReleasePolicy {
        mode: mode as i32,
        score_decimals: 6,
        ..Default::default()
    });
    create(&server, c).await.unwrap();
    let client = server.client(&server.submitter).await;

    let mut kept: Vec<Vec<u8>> = Vec::new();
    for _ in 0..400 {
        let bits: Vec<u8> = (0..rows).map(|_| rng.bit()).collect();
        let archive = tar_gz(&[("preds.csv", &predictions(&ids, &bits))]);
        let s = client
            .submit(full("boost", "attacker"), archive)
            .await
            .unwrap();
        let done = client.watch(&s.id, |_| {}).await.unwrap();
        let released = done.scores.get("accuracy").copied().unwrap_or(0.0);
        if released > 0.5 {
            kept.push(bits);
        }
    }
    let vote: Vec<u8> = (0..rows)
        .map(|i| {
            let ones = kept.iter().filter(|b| b[i] == 1).count();
            u8::from(ones * 2 > kept.len())
        })
        .collect();
    let s = client
        .submit(
            full("boost", "attacker"),
            tar_gz(&[("preds.csv", &predictions(&ids, &vote))]),
        )
        .await
        .unwrap();
    let done = client.watch(&s.id, |_| {}).await.unwrap();
    1.0 - done.scores["accuracy"]
}

#[tokio::test]
async fn the_parameter_free_ladder_resists_the_boosting_attack_that_beats_best_so_far() {
    within(600, async {
        let ladder = attack(pb::LeaderboardMode::LadderParameterFree).await;
        let best = attack(pb::LeaderboardMode::BestSoFar).await;
        eprintln!(
            "released 0/1 loss of the boosted vote: ladder {ladder:.4}, best-so-far {best:.4}"
        );
        assert!(ladder >= 0.468, "the ladder released {ladder}");
        assert!(
            best < 0.46,
            "best-so-far released only {best}: the attack should work there"
        );
    })
    .await
}
