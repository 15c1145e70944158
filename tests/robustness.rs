//! One bad run or upload can never break a challenge, fill the host, or swell the server:
//! each tried against the real server and Docker engine.

mod common;

use std::time::Duration;

use common::*;
use holdout::pb;
use tonic::Code;

/// A regression task: `labels.csv` (id,y) with y = 2x, and a sample.
fn regression_data(server: &TestServer, name: &str) {
    let mut test = String::from("id,x\n");
    let mut labels = String::from("id,y\n");
    for i in 0..40 {
        test.push_str(&format!("r{i:03},{i}\n"));
        labels.push_str(&format!("r{i:03},{}\n", 2 * i));
    }
    server.write_data(
        name,
        &[
            ("inputs/test.csv", &test),
            ("labels.csv", &labels),
            ("sample/inputs/test.csv", "id,x\ns1,1\ns2,2\n"),
            ("sample/labels.csv", "id,y\ns1,2\ns2,4\n"),
        ],
    );
}

fn regression_challenge(id: &str, data: &str) -> pb::Challenge {
    let mut c = parity_challenge(id, data);
    c.scoring.as_mut().unwrap().scorer = Some(pb::scoring::Scorer::Builtin(pb::BuiltinMetric {
        metric: pb::Metric::Rmse as i32,
        target_column: "y".into(),
        ..Default::default()
    }));
    c
}

/// Predicts `value` for every row.
fn predict(value: &str) -> String {
    format!(
        "awk -F, 'NR==1{{print \"id,y\"; next}}{{print $1\",{value}\"}}' /data/test.csv > /output/predictions.csv\n"
    )
}

#[tokio::test]
async fn a_huge_regression_prediction_is_invalid_and_every_board_still_answers() {
    within(120, async {
        let server = spawn_app().await;
        regression_data(&server, "reg");
        create(&server, regression_challenge("reg", "reg"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let admin = server.client(&server.admin).await;
        // A good submission first, so the board has a row to keep showing.
        let good = client
            .submit(full("reg", "alice"), tar_gz(&[("run.sh", &predict("0"))]))
            .await
            .unwrap();
        client.watch(&good.id, |_| {}).await.unwrap();
        for kind in ["full", "smoke"] {
            let meta = if kind == "full" {
                full("reg", "mallory")
            } else {
                smoke("reg", "mallory")
            };
            let s = client
                .submit(meta, tar_gz(&[("run.sh", &predict("1e308"))]))
                .await
                .unwrap();
            client.watch(&s.id, |_| {}).await.unwrap();
            let exact = admin
                .submissions()
                .get_submission(authed(
                    &server.admin,
                    pb::GetSubmissionRequest { id: s.id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                exact.verdict,
                pb::Verdict::InvalidPredictions as i32,
                "{exact:?}"
            );
            assert!(
                exact.message.contains("rmse"),
                "names the metric: {}",
                exact.message
            );
            assert!(
                !exact.message.contains("1e308"),
                "never a value: {}",
                exact.message
            );
        }
        for (token, view) in [
            (&server.submitter, pb::LeaderboardView::Public),
            (&server.admin, pb::LeaderboardView::Public),
            (&server.admin, pb::LeaderboardView::Private),
        ] {
            let board = server
                .client(token)
                .await
                .leaderboards()
                .get_leaderboard(authed(
                    token,
                    pb::GetLeaderboardRequest {
                        challenge_id: "reg".into(),
                        view: view as i32,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(board.entries.len(), 1, "{board:?}");
            assert!(board.entries[0].score.is_finite());
        }
        let listed = admin
            .submissions()
            .list_submissions(authed(
                &server.admin,
                pb::ListSubmissionsRequest {
                    challenge_id: "reg".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.submissions.len(), 3);
        let _ = (Code::Ok, Duration::ZERO);
    })
    .await
}
