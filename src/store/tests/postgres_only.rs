//! Store tests that only PostgreSQL can run: archives read by another host, and the
//! coordination of execution workers (claims, leases, sweeps).

use super::*;

#[tokio::test]
async fn an_archive_stored_in_postgres_is_fetched_by_another_host_and_checked() {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let f = Fixture::new(Kind::Postgres).await;
        f.store.insert_challenge(challenge("c")).await.unwrap();
        // 20 MiB of incompressible bytes: three chunks.
        let bytes: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let mut s = submission("p", "a", None);
        s = Submission::from_record(SubmissionRecord {
            archive_sha256: sha.clone(),
            ..(*s).clone()
        });
        let temp = tempfile::NamedTempFile::new_in(f.paths.uploads())
            .unwrap()
            .into_temp_path();
        std::fs::write(&temp, &bytes).unwrap();
        let pending = PendingArchive {
            temp,
            dest: f.paths.archive(&sha),
        };
        f.store.insert_submission(s, OPEN, Some(pending)).await.unwrap();
        // Another host: its own state folder, the same database.
        let other = tempfile::tempdir().unwrap();
        let other_paths = crate::paths::Paths::new(other.path());
        other_paths.create().unwrap();
        let there = Store::connect(&f.url, &other_paths).await.unwrap();
        let file = there.archive_file(&sha).await.unwrap();
        assert_eq!(file, other_paths.archive(&sha));
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        // A stored archive whose bytes do not hash to its name is refused, not used.
        let bad = "cd".repeat(32);
        let client = tokio_postgres::connect(
            match &f.url {
                DatabaseUrl::Postgres(u) => u,
                DatabaseUrl::Sqlite => unreachable!(),
            },
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(client.1);
        client
            .0
            .batch_execute(&format!(
                "INSERT INTO archives VALUES ('{bad}', 3, 0); INSERT INTO archive_chunks VALUES ('{bad}', 0, 'abc')"
            ))
            .await
            .unwrap();
        assert!(matches!(
            there.archive_file(&bad).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(!other_paths.archive(&bad).exists());
    })
    .await
    .expect("test timed out");
}

/// A claim that takes the oldest queued run.
fn oldest() -> Decide {
    Box::new(|view: &ClaimView| ClaimDecision {
        pick: view.queued.first().map(|r| r.id.clone()),
        phase: view.phase,
    })
}

fn claim_for(worker: &str, ttl_ms: i64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        host_id: "host".into(),
        lease_ttl_ms: ttl_ms,
    }
}

#[tokio::test]
async fn on_postgres_a_write_without_a_live_lease_is_refused_and_an_expired_run_is_handed_back_once()
 {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let f = Fixture::new(Kind::Postgres).await;
        let store = f.store.clone();
        store.insert_challenge(challenge("c")).await.unwrap();
        let s = submission("p", "a", None);
        store
            .insert_submission(s.clone(), OPEN, None)
            .await
            .unwrap();
        let (w1, w2) = (store.for_worker("w1"), store.for_worker("w2"));
        let claim = store
            .claim(claim_for("w1", 400), oldest())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.row.id, s.id);
        assert!(
            store
                .claim(claim_for("w2", 400), oldest())
                .await
                .unwrap()
                .is_none(),
            "a reserved run is nobody else's"
        );
        let running = w1.commit(s.start(2).unwrap()).await.unwrap().unwrap();
        assert!(
            w2.commit(running.begin_scoring(Usage::default()).unwrap())
                .await
                .unwrap()
                .is_none(),
            "another worker's write is refused"
        );
        let renewal = store
            .renew_leases("w1".into(), vec![s.id.clone()], 400)
            .await
            .unwrap();
        assert!(renewal.lost.is_empty() && renewal.cancel.is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        // The lease expired: w1's write is refused though the row is as it expects.
        assert!(
            w1.commit(running.begin_scoring(Usage::default()).unwrap())
                .await
                .unwrap()
                .is_none()
        );
        let expired = store.expired_runs().await.unwrap();
        assert_eq!(expired.len(), 1);
        assert!(!expired[0].cancel_requested);
        let back = running.requeue(Interruption::Restart, 3, 3).unwrap();
        assert!(store.commit_expired(back.clone()).await.unwrap().is_some());
        assert!(
            store.commit_expired(back).await.unwrap().is_none(),
            "handed back once"
        );
        // Another worker takes it; the first one learns it lost it.
        let again = store
            .claim(claim_for("w2", 5_000), oldest())
            .await
            .unwrap()
            .unwrap();
        let queued = store.get_submission(&again.row.id).await.unwrap().unwrap();
        w2.commit(queued.start(4).unwrap()).await.unwrap().unwrap();
        let lost = store
            .renew_leases("w1".into(), vec![s.id.clone()], 400)
            .await
            .unwrap();
        assert_eq!(lost.lost, std::slice::from_ref(&s.id));
        // A cancel made anywhere reaches the worker at its next renewal.
        store.request_cancel(&s.id).await.unwrap();
        let renewal = store
            .renew_leases("w2".into(), vec![s.id.clone()], 5_000)
            .await
            .unwrap();
        assert_eq!(renewal.cancel, std::slice::from_ref(&s.id));
        assert!(renewal.lost.is_empty());
        let workers = store.workers().await.unwrap();
        assert!(workers.is_empty(), "no heartbeat yet");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn on_sqlite_claims_are_refused_with_a_clear_error() {
    let f = Fixture::new(Kind::Sqlite).await;
    match f.store.claim(claim_for("w", 1_000), oldest()).await {
        Err(StoreError::Unsupported(what)) => assert_eq!(what, "claiming runs"),
        other => panic!("{other:?}"),
    }
}
