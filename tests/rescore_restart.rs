//! A job across a server stop: the job's task is owned by the application, so a shutdown
//! mid-job ends it FAILED having written nothing, and after the restart the challenge takes
//! a new job that finishes.

mod common;

use std::time::Duration;

use common::*;
use holdout::pb;
use holdout::units::HumanDuration;

#[tokio::test]
async fn a_server_stopped_mid_job_ends_it_failed_with_nothing_written_and_takes_a_new_one_after() {
    within(180, async {
        let mut server = spawn_app_with(|c| {
            c.job_item_pause = HumanDuration(Duration::from_secs(20));
        })
        .await;
        parity_data(&server, "stop", 20);
        create(&server, parity_challenge("stop", "stop"))
            .await
            .unwrap();
        let client = server.client(&server.submitter).await;
        let s = client
            .submit(full("stop", "alice"), tar_gz(&[("run.sh", PARITY_RIGHT)]))
            .await
            .unwrap();
        client.watch(&s.id, |_| {}).await.unwrap();
        // Every label flipped: a committed rescore would change alice's scores.
        let mut labels = String::from("id,label\n");
        for i in 0..20 {
            let x = (i * 7 + 3) % 101;
            labels.push_str(&format!(
                "r{i:04},{}\n",
                if x % 2 == 0 { "odd" } else { "even" }
            ));
        }
        server.write_data("stop", &[("labels.csv", &labels)]);

        let admin = server.client(&server.admin).await;
        let get = |id: String| pb::GetJobRequest { id };
        let job = admin
            .jobs()
            .rescore_challenge(authed(
                &server.admin,
                pb::RescoreChallengeRequest {
                    challenge_id: "stop".into(),
                    metric: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = std::time::Instant::now();
        server.stop().await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the job's 20 s pause did not hold up the shutdown"
        );
        server.restart().await;
        let admin = server.client(&server.admin).await;
        let after = admin
            .jobs()
            .get_job(authed(&server.admin, get(job.id.clone())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after.state, pb::JobState::Failed as i32, "{after:?}");
        assert!(
            after.message.contains("nothing was changed"),
            "{}",
            after.message
        );
        let alice = admin
            .submissions()
            .get_submission(authed(
                &server.admin,
                pb::GetSubmissionRequest { id: s.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            alice.public_scores_exact["accuracy"], 1.0,
            "nothing was written"
        );
        // The challenge is free: a new job runs to its end.
        let again = admin
            .jobs()
            .rescore_challenge(authed(
                &server.admin,
                pb::RescoreChallengeRequest {
                    challenge_id: "stop".into(),
                    metric: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.state, pb::JobState::Running as i32);
        let cancelled = admin
            .jobs()
            .cancel_job(authed(&server.admin, pb::CancelJobRequest { id: again.id }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.state, pb::JobState::Cancelled as i32);
    })
    .await;
}
