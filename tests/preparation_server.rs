//! The preparation check as the server runs it, end to end over gRPC against the real
//! server and the real engine: an error refuses CreateChallenge and UpdateChallenge by
//! finding code and never by value; warnings are stored and shown to admins only; the data
//! card is stored with the challenge, full for admins and public for submitters; the fraud
//! example's challenge file, `[preparation]` included, creates the challenge it checks.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use holdout::pb;
use tonic::Code;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the holdout binary; returns (exit code, stdout, stderr).
fn holdout(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdout"))
        .args(args)
        .output()
        .expect("the holdout binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes the fraud example's data under `dest` with its generator (`--flawed` or not).
fn fraud_data(dest: &Path, flawed: bool) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("examples/fraud/make_data.py"));
    if flawed {
        cmd.arg("--flawed");
    }
    assert!(cmd.arg(dest).status().expect("python3 runs").success());
}

/// Every distinct cell of at least 8 characters in the data rows of the CSV files under
/// `dir`: the personal values planted there (e-mails, IBANs, card numbers, notes).
fn long_cells(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                let text = std::fs::read_to_string(&p).unwrap();
                for line in text.lines().skip(1) {
                    out.extend(
                        line.split(',')
                            .map(|c| c.trim_matches('"'))
                            .filter(|c| c.len() >= 8)
                            .map(str::to_owned),
                    );
                }
            }
        }
    }
    out
}

/// The fraud example's own challenge file, as `holdout challenge create --file` reads it.
fn fraud_challenge(id: &str, data_dir: &str) -> pb::Challenge {
    let mut c = holdout::cli::read_challenge_file(&repo().join("examples/fraud/challenge.toml"))
        .expect("the example's challenge file reads, [preparation] included");
    c.id = id.into();
    c.data_dir = data_dir.into();
    c
}

async fn get(server: &TestServer, token: &str, id: &str) -> pb::Challenge {
    let client = server.client(token).await;
    client
        .challenges()
        .get_challenge(client.request(pb::GetChallengeRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

async fn card(
    server: &TestServer,
    token: &str,
    id: &str,
    public_only: bool,
) -> Result<pb::ChallengeCard, tonic::Status> {
    let client = server.client(token).await;
    client
        .challenges()
        .get_challenge_card(client.request(pb::GetChallengeCardRequest {
            id: id.into(),
            public_only,
        }))
        .await
        .map(|r| r.into_inner())
}

async fn update(
    server: &TestServer,
    c: pb::Challenge,
    fields: &[&str],
) -> Result<pb::Challenge, tonic::Status> {
    let client = server.client(&server.admin).await;
    client
        .challenges()
        .update_challenge(client.request(pb::UpdateChallengeRequest {
            challenge: Some(c),
            update_mask: fields.iter().map(|f| f.to_string()).collect(),
        }))
        .await
        .map(|r| r.into_inner())
}

/// `holdout challenge card parity` against the test server.
async fn card_cli(server: &TestServer, token: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["challenge", "card", "parity"];
    args.extend_from_slice(extra);
    cli(server, token, &args).await
}

/// The holdout CLI against the test server (off the runtime the server runs on).
async fn cli(server: &TestServer, token: &str, command: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = vec![
        "--addr".into(),
        format!("http://{}", server.addr),
        "--token".into(),
        token.into(),
    ];
    args.extend(command.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        holdout(&args)
    })
    .await
    .unwrap()
}

fn check_of(c: &pb::Challenge) -> Option<&pb::PreparationCheck> {
    c.preparation.as_ref().and_then(|p| p.check.as_ref())
}

#[tokio::test]
async fn a_challenge_whose_check_finds_an_error_is_refused_by_code_without_a_planted_value() {
    within(240, async {
        let server = spawn_app().await;
        let dir = server.data_root.join("fraud-flawed");
        fraud_data(&dir, true);
        make_world_readable(&dir);
        let planted = long_cells(&dir.join("sample"));
        assert!(
            planted.iter().any(|c| c.contains('@')),
            "the flawed sample holds e-mails"
        );
        let err = create(&server, fraud_challenge("fraud", "fraud-flawed"))
            .await
            .expect_err("the flawed export must not open");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let msg = err.message();
        assert!(
            msg.starts_with("data_dir: the preparation check refuses the data: "),
            "{msg}"
        );
        let codes = [
            "leak.functional_dependency",
            "leak.predictive_column",
            "pii.email",
            "pii.iban",
            "pii.card",
            "pii.nir",
            "kanon.below_min_k",
        ];
        assert!(codes.iter().any(|c| msg.contains(c)), "{msg}");
        assert!(msg.contains(" more errors"), "{msg}");
        for value in &planted {
            assert!(!msg.contains(value.as_str()), "{value:?} leaked: {msg}");
        }
        // Nothing was stored.
        let client = server.client(&server.admin).await;
        let missing = client
            .challenges()
            .get_challenge(client.request(pb::GetChallengeRequest { id: "fraud".into() }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    })
    .await;
}

#[tokio::test]
async fn the_fraud_example_file_with_its_preparation_table_creates_the_challenge_it_checks() {
    within(300, async {
        let server = spawn_app().await;
        let work = tempfile::tempdir().unwrap();
        let raw = work.path().join("raw");
        fraud_data(&raw, false);
        // As exported, the quasi-identifiers single people out: refused by k-anonymity.
        let raw_dir = server.data_root.join("fraud-raw");
        std::fs::rename(&raw, &raw_dir).unwrap();
        make_world_readable(&raw_dir);
        let err = create(&server, fraud_challenge("fraud", "fraud-raw"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("kanon.below_min_k"), "{err:?}");
        // Pseudonymised and generalised as the README says, it opens.
        let key = work.path().join("fraud.key");
        assert_eq!(
            holdout(&["prepare", "key", "--out", key.to_str().unwrap()]).0,
            0
        );
        let data = server.data_root.join("fraud");
        let (code, _, stderr) = holdout(&[
            "prepare",
            "pseudonymise",
            "--key-file",
            key.to_str().unwrap(),
            "--column",
            "customer_id",
            "--generalise",
            "customer_age:bin:20",
            "--generalise",
            "postcode:2",
            raw_dir.to_str().unwrap(),
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        make_world_readable(&data);
        let created = create(&server, fraud_challenge("fraud", "fraud"))
            .await
            .expect("the fixed export opens");
        let p = created.preparation.as_ref().expect("settings are returned");
        assert_eq!(p.quasi_identifiers, ["customer_age", "postcode", "sex"]);
        assert_eq!(p.min_k, 5);
        assert_eq!(p.generalise.get("postcode").map(String::as_str), Some("2"));
        assert_eq!(
            p.generalise.get("customer_age").map(String::as_str),
            Some("bin:20")
        );
        let check = check_of(&created).expect("admins see the check");
        assert_eq!(check.errors, 0);
        assert!(check.data_digest.starts_with("sha256:"));
        // The full card names the quasi-identifiers and k, as the CLI's does.
        let full = card(&server, &server.admin, "fraud", false).await.unwrap();
        assert!(!full.public);
        let v: serde_json::Value = serde_json::from_str(&full.json).unwrap();
        assert_eq!(v["card"], "full");
        assert_eq!(v["challenge_id"], "fraud");
        assert_eq!(
            v["spec"]["preparation"]["quasi_identifiers"],
            serde_json::json!(["customer_age", "postcode", "sex"])
        );
    })
    .await;
}

#[tokio::test]
async fn a_passing_challenge_keeps_its_warnings_for_admins_and_submitters_never_see_them() {
    within(120, async {
        let server = spawn_app().await;
        // Ten rows: each split part is too small to separate submissions (a warning).
        parity_data(&server, "parity", 10);
        let created = create(&server, parity_challenge("parity", "parity"))
            .await
            .expect("warnings do not refuse");
        let check = check_of(&created).expect("the admin's reply carries the check");
        assert_eq!(check.errors, 0);
        assert!(check.warnings >= 2, "{check:?}");
        assert_eq!(check.findings.len() as u32, check.warnings);
        let small: Vec<_> = check
            .findings
            .iter()
            .filter(|f| f.code == "split.part_too_small")
            .collect();
        assert_eq!(small.len(), 2, "{check:?}");
        assert!(
            small
                .iter()
                .all(|f| f.severity == "warning" && f.file == "labels.csv" && f.count == 5)
        );

        let admin = get(&server, &server.admin, "parity").await;
        assert_eq!(check_of(&admin), Some(check));
        let submitter = get(&server, &server.submitter, "parity").await;
        assert!(check_of(&submitter).is_none(), "{submitter:?}");
        assert!(
            submitter.preparation.is_some(),
            "the settings themselves are not secret"
        );
        let client = server.client(&server.submitter).await;
        let listed = client
            .challenges()
            .list_challenges(client.request(pb::ListChallengesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.challenges.iter().all(|c| check_of(c).is_none()));

        // `holdout challenge get` prints them for an admin, and not for a submitter.
        let admin = server.admin.clone();
        let (code, out, err) = cli(&server, &admin, &["challenge", "get", "parity"]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("check       0 errors, "), "{out}");
        assert!(
            out.contains("  warning split.part_too_small labels.csv: "),
            "{out}"
        );
        let (_, json, _) = cli(&server, &admin, &["--json", "challenge", "get", "parity"]).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["preparation_check"]["errors"], 0, "{json}");
        let submitter = server.submitter.clone();
        let (code, out, _) = cli(&server, &submitter, &["challenge", "get", "parity"]).await;
        assert_eq!(code, 0);
        assert!(!out.contains("check "), "{out}");
        assert!(!out.contains("split.part_too_small"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn the_card_is_full_for_admins_and_public_for_submitters_over_grpc_and_the_cli() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let full = card(&server, &server.admin, "parity", false).await.unwrap();
        assert!(!full.public);
        assert!(full.data_digest.starts_with("sha256:"));
        let v: serde_json::Value = serde_json::from_str(&full.json).unwrap();
        assert_eq!(v["card"], "full");
        assert!(full.markdown.contains("labels.csv"), "{}", full.markdown);

        let public = card(&server, &server.admin, "parity", true).await.unwrap();
        assert!(public.public);
        let v: serde_json::Value = serde_json::from_str(&public.json).unwrap();
        assert_eq!(v["card"], "public");
        // A submitter gets the public card, whatever it asks for, and no digest.
        let theirs = card(&server, &server.submitter, "parity", false)
            .await
            .unwrap();
        assert!(theirs.public);
        assert_eq!(theirs.json, public.json);
        assert_eq!(theirs.markdown, public.markdown);
        assert!(theirs.data_digest.is_empty());
        // The full card has the private part and the seed; the public one neither, nor
        // the private files.
        assert!(full.markdown.contains("private part"), "{}", full.markdown);
        assert!(full.markdown.contains("seed 7"), "{}", full.markdown);
        for text in [&theirs.json, &theirs.markdown] {
            assert!(!text.contains("private part"), "{text}");
            assert!(!text.contains("seed"), "{text}");
            assert!(!text.contains("\"labels.csv\""), "{text}");
            assert!(!text.contains("`labels.csv`"), "{text}");
        }
        // The inputs' schema only: names and types, no size, hash or count.
        let v: serde_json::Value = serde_json::from_str(&theirs.json).unwrap();
        for file in v["inputs"].as_array().unwrap() {
            let keys: Vec<&String> = file.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["columns", "path"], "{file}");
        }

        let missing = card(&server, &server.admin, "nope", false)
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        // `holdout challenge card` prints the same cards.
        let admin = server.admin.clone();
        let (code, out, err) = card_cli(&server, &admin, &["--json"]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim_end(), full.json.trim_end());
        let (code, out, _) = card_cli(&server, &admin, &["--public"]).await;
        assert_eq!(code, 0);
        assert_eq!(out.trim_end(), public.markdown.trim_end());
        let submitter = server.submitter.clone();
        let (code, out, _) = card_cli(&server, &submitter, &[]).await;
        assert_eq!(code, 0);
        assert_eq!(out.trim_end(), public.markdown.trim_end());
    })
    .await;
}

#[tokio::test]
async fn an_update_checks_again_when_the_data_or_the_preparation_changes() {
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        let created = create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let first = check_of(&created).unwrap().clone();
        let first_card = card(&server, &server.admin, "parity", false).await.unwrap();

        // The data changed on disk: a private id in the public sample refuses the update,
        // by code and count, without the id.
        let sample = server.data_root.join("parity/sample");
        let originals: Vec<(PathBuf, String)> = ["labels.csv", "inputs/test.csv"]
            .iter()
            .map(|f| {
                let p = sample.join(f);
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect();
        std::fs::write(&originals[0].0, format!("{}r0003,odd\n", originals[0].1)).unwrap();
        std::fs::write(&originals[1].0, format!("{}r0003,24\n", originals[1].1)).unwrap();
        let mut c = parity_challenge("parity", "parity");
        c.title = "renamed".into();
        let err = update(&server, c.clone(), &["title"]).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("sample.overlaps_private"), "{err:?}");
        assert!(err.message().contains("count 1"), "{err:?}");
        assert!(!err.message().contains("r0003"), "{err:?}");
        let stored = get(&server, &server.admin, "parity").await;
        assert_eq!(
            stored.title, created.title,
            "a refused update stores nothing"
        );
        assert_eq!(check_of(&stored), Some(&first));

        // Fixed again: the update passes, the check ran on the same data as at first.
        for (path, text) in &originals {
            std::fs::write(path, text).unwrap();
        }
        let updated = update(&server, c.clone(), &["title"]).await.unwrap();
        assert_eq!(updated.title, "renamed");
        assert_eq!(check_of(&updated), Some(&first));
        // The card is the same check's, under the new title.
        let renamed = card(&server, &server.admin, "parity", false).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&renamed.json).unwrap();
        assert_eq!(v["title"], "renamed");
        let was: serde_json::Value = serde_json::from_str(&first_card.json).unwrap();
        assert_eq!(v["findings"], was["findings"]);
        assert_eq!(v["files"], was["files"]);
        assert!(renamed.markdown.contains("renamed"), "{}", renamed.markdown);

        // New preparation settings are checked: every sample row is its own group of x.
        c.preparation = Some(pb::Preparation {
            quasi_identifiers: vec!["x".into()],
            min_k: 2,
            ..Default::default()
        });
        let err = update(&server, c.clone(), &["preparation"])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("kanon.below_min_k"), "{err:?}");
        // An unusable setting is the caller's mistake.
        c.preparation = Some(pb::Preparation {
            quasi_identifiers: vec!["id".into()],
            ..Default::default()
        });
        let err = update(&server, c.clone(), &["preparation"])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("preparation: "), "{err:?}");
        // Settings that pass are stored, and the card is the one of this check.
        c.preparation = Some(pb::Preparation {
            quasi_identifiers: vec!["x".into()],
            min_k: 1,
            ..Default::default()
        });
        let updated = update(&server, c, &["preparation"]).await.unwrap();
        let p = updated.preparation.as_ref().unwrap();
        assert_eq!(p.quasi_identifiers, ["x"]);
        assert_eq!(p.min_k, 1);
        let now = card(&server, &server.admin, "parity", false).await.unwrap();
        assert_ne!(now.json, first_card.json);
        let v: serde_json::Value = serde_json::from_str(&now.json).unwrap();
        assert_eq!(
            v["spec"]["preparation"]["quasi_identifiers"],
            serde_json::json!(["x"])
        );
    })
    .await;
}

#[tokio::test]
async fn a_long_check_on_create_holds_up_no_other_request() {
    within(300, async {
        let server = spawn_app().await;
        parity_data(&server, "small", 10);
        create(&server, parity_challenge("small", "small"))
            .await
            .unwrap();
        // 300,000 rows whose feature says nothing of the label: a check that takes a while.
        let mut test = String::from("id,x\n");
        let mut labels = String::from("id,label\n");
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300_000u32 {
            let (x, y) = (next() % 1_000_000, next() % 2);
            test.push_str(&format!("r{i:06},{x}\n"));
            labels.push_str(&format!("r{i:06},{}\n", ["even", "odd"][y as usize]));
        }
        server.write_data(
            "large",
            &[
                ("inputs/test.csv", &test),
                ("labels.csv", &labels),
                ("sample/inputs/test.csv", "id,x\ns1,4\ns2,7\ns3,10\n"),
                ("sample/labels.csv", "id,label\ns1,even\ns2,odd\ns3,even\n"),
            ],
        );
        let started = std::time::Instant::now();
        let creating = tokio::spawn({
            let c = parity_challenge("large", "large");
            let client = server.client(&server.admin).await;
            async move {
                client
                    .challenges()
                    .create_challenge(
                        client.request(pb::CreateChallengeRequest { challenge: Some(c) }),
                    )
                    .await
            }
        });
        let client = server.client(&server.submitter).await;
        let (mut reads, mut slowest) = (0u32, std::time::Duration::ZERO);
        while !creating.is_finished() {
            let t = std::time::Instant::now();
            client
                .challenges()
                .get_challenge(client.request(pb::GetChallengeRequest { id: "small".into() }))
                .await
                .unwrap();
            slowest = slowest.max(t.elapsed());
            reads += 1;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        let created = creating.await.unwrap().expect("the large challenge opens");
        assert!(check_of(created.get_ref()).is_some());
        eprintln!("create took {took:?}; {reads} reads meanwhile, the slowest {slowest:?}");
        assert!(reads >= 5, "the create was too quick to tell: {took:?}");
        // Had the check run on the runtime's one thread, a read would have waited for most
        // of the create.
        assert!(
            slowest * 3 < took,
            "a read waited {slowest:?} while the create took {took:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_backup_and_restore_of_a_sqlite_state_folder_keeps_the_card() {
    if on_postgres() {
        eprintln!("skipped: PostgreSQL keeps cards as rows and is backed up with pg_dump");
        return;
    }
    within(120, async {
        let server = spawn_app().await;
        parity_data(&server, "parity", 40);
        create(&server, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let before = card(&server, &server.admin, "parity", false).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (backup, fresh) = (dir.path().join("backup"), dir.path().join("restored"));
        let state = server.state_dir.to_str().unwrap().to_owned();
        let (b, f) = (
            backup.to_str().unwrap().to_owned(),
            fresh.to_str().unwrap().to_owned(),
        );
        let (code, _, err) = tokio::task::spawn_blocking(move || {
            let taken = holdout(&["backup", "--state-dir", &state, "--to", &b]);
            if taken.0 != 0 {
                return taken;
            }
            holdout(&["restore", "--from", &b, "--state-dir", &f])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{err}");
        let data_root = server.data_root.clone();
        let restored = spawn_app_with(|c| {
            c.state_dir = fresh.clone();
            c.data_root = data_root;
        })
        .await;
        let after = card(&restored, &restored.admin, "parity", false)
            .await
            .unwrap();
        assert_eq!(after, before);
    })
    .await;
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_serve_the_same_card_and_findings() {
    within(180, async {
        let url = holdout::testing::PgCluster::shared_database()
            .expect("a throw-away PostgreSQL for the test");
        let first = spawn_app_with({
            let url = url.clone();
            move |c| c.database_url = url
        })
        .await;
        let data_root = first.data_root.clone();
        let second = spawn_app_with(move |c| {
            c.database_url = url;
            c.data_root = data_root;
        })
        .await;
        parity_data(&first, "parity", 40);
        let created = create(&first, parity_challenge("parity", "parity"))
            .await
            .unwrap();
        let there = get(&second, &second.admin, "parity").await;
        assert_eq!(check_of(&there), check_of(&created));
        assert!(check_of(&there).is_some());
        for public_only in [false, true] {
            assert_eq!(
                card(&second, &second.admin, "parity", public_only)
                    .await
                    .unwrap(),
                card(&first, &first.admin, "parity", public_only)
                    .await
                    .unwrap()
            );
        }
        // An update through one replica is the card the other one serves.
        let mut c = parity_challenge("parity", "parity");
        c.title = "renamed".into();
        update(&second, c, &["title"]).await.unwrap();
        let renamed = card(&first, &first.admin, "parity", false).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&renamed.json).unwrap();
        assert_eq!(v["title"], "renamed");
    })
    .await;
}
