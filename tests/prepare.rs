//! `holdout challenge check` and `holdout prepare` as an organiser runs them, on generated
//! data: exit codes, the report, the cards, the pseudonymiser, the fraud example flawed and
//! fixed — and no planted personal value in anything printed or written.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Personal data planted in the flawed sample.
const PLANTED: &[&str] = &[
    "jean.dupont@example.fr",
    "claire.martin@mail.example.org",
    "1 85 05 78 006 084 91",
    "1 85 05 78 006 084 36",
    "FR76 3000 6000 0112 3456 7890 189",
    "4111 1111 1111 1111",
    "4111 1111 1111 1112",
];

/// Runs the binary; returns (exit code, stdout, stderr).
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

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn assert_no_planted(what: &str, text: &str) {
    for p in PLANTED {
        assert!(!text.contains(p), "{p:?} leaked into {what}:\n{text}");
    }
}

/// A small challenge: 200 labelled test rows, training rows, and a public sample of 30
/// rows; `flawed` adds a duplicate label id and personal data in the sample.
fn layout(dir: &Path, flawed: bool) -> PathBuf {
    let mut labels = String::from("id,label\n");
    let mut test = String::from("id,x1,x2\n");
    let mut train = String::from("id,x1,x2,label\n");
    for i in 0..200u32 {
        let y = (i * 7919 % 13) % 2;
        let _ = writeln!(labels, "p{i:03},{y}");
        let _ = writeln!(test, "p{i:03},{},{}", i * 37 % 101, i * 53 % 97);
        let _ = writeln!(
            train,
            "t{i:03},{},{},{}",
            i * 41 % 103,
            i * 59 % 89,
            (i * 31 % 7) % 2
        );
    }
    if flawed {
        labels.push_str("p005,1\n");
    }
    let mut s_labels = String::from("id,label\n");
    let mut s_test = String::from("id,x1,x2,contact,notes,age,region\n");
    for k in 0..30u32 {
        let _ = writeln!(s_labels, "s{k:02},{}", (k / 3) % 2);
        let contact = match k {
            1 if flawed => "jean.dupont@example.fr",
            2 if flawed => "claire.martin@mail.example.org",
            _ => "",
        };
        let notes = match k {
            3 if flawed => "\"NIR 1 85 05 78 006 084 91\"",
            4 if flawed => "\"NIR 1 85 05 78 006 084 36\"",
            5 if flawed => "\"IBAN FR76 3000 6000 0112 3456 7890 189\"",
            6 if flawed => "\"card 4111 1111 1111 1111\"",
            7 if flawed => "\"card 4111 1111 1111 1112\"",
            _ => "none",
        };
        let age = if flawed && k < 2 {
            "60-79"
        } else {
            ["20-39", "40-59"][(k % 2) as usize]
        };
        let _ = writeln!(
            s_test,
            "s{k:02},{},{},{contact},{notes},{age},north",
            k * 3,
            k * 5
        );
    }
    write(&dir.join("labels.csv"), &labels);
    write(&dir.join("inputs/test.csv"), &test);
    write(&dir.join("inputs/train.csv"), &train);
    write(&dir.join("sample/labels.csv"), &s_labels);
    write(&dir.join("sample/inputs/test.csv"), &s_test);
    for d in ["", "inputs", "sample", "sample/inputs"] {
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let toml = dir
        .parent()
        .unwrap()
        .join(if flawed { "flawed.toml" } else { "clean.toml" });
    fs::write(
        &toml,
        "id = \"small\"\ntitle = \"Small\"\n[scoring]\nsplit_seed = 3\n[scoring.builtin]\nmetric = \"accuracy\"\ntarget_column = \"label\"\n\
         [preparation]\nquasi_identifiers = [\"age\", \"region\"]\nmin_k = 3\nmax_half_width = 0.2\n",
    )
    .unwrap();
    toml
}

fn codes(json: &str) -> Vec<(String, String, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).expect("--json prints one JSON report");
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["file"].as_str().unwrap_or("").to_owned(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_flawed_challenge_exits_1_and_nothing_it_prints_or_writes_holds_a_planted_value() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let toml = layout(&data, true);
    let cards = root.path().join("cards");
    let (d, t, c) = (
        data.to_str().unwrap(),
        toml.to_str().unwrap(),
        cards.to_str().unwrap(),
    );
    let (code, text, err) = holdout(&[
        "challenge",
        "check",
        d,
        "--challenge",
        t,
        "--card-dir",
        c,
        "--show-groups",
    ]);
    assert_eq!(code, 1, "{text}{err}");
    assert!(
        text.contains("error labels.duplicate_id labels.csv"),
        "{text}"
    );
    assert_no_planted("the text report", &text);
    assert_no_planted("stderr", &err);
    let (code, json, err) = holdout(&["challenge", "check", d, "--challenge", t, "--json"]);
    assert_eq!(code, 1, "{err}");
    assert_no_planted("the JSON report", &json);
    let found = codes(&json);
    let sample = "sample/inputs/test.csv";
    for (code, file, n) in [
        ("labels.duplicate_id", "labels.csv", 1),
        ("pii.email", sample, 2),
        ("pii.nir", sample, 1),
        ("pii.iban", sample, 1),
        ("pii.card", sample, 1),
        ("kanon.below_min_k", sample, 1),
    ] {
        assert!(
            found.contains(&(code.to_owned(), file.to_owned(), n)),
            "{code} {file} {n}: {found:?}"
        );
    }
    for name in ["card.md", "card.json", "card.public.md", "card.public.json"] {
        let text = fs::read_to_string(cards.join(name)).unwrap();
        assert_no_planted(name, &text);
    }
    let public: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(cards.join("card.public.json")).unwrap()).unwrap();
    assert_eq!(public["check_passed"], false);
    assert!(public.get("split").is_none() && !public.to_string().contains("\"seed\""));
}

#[test]
fn the_keys_of_small_sample_groups_go_to_stderr_only_and_only_when_asked() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let toml = layout(&data, true);
    let (d, t) = (data.to_str().unwrap(), toml.to_str().unwrap());
    let (_, out, err) = holdout(&["challenge", "check", d, "--challenge", t]);
    assert!(!out.contains("60-79 | north") && !err.contains("60-79 | north"));
    let (_, out, err) = holdout(&["challenge", "check", d, "--challenge", t, "--show-groups"]);
    assert!(!out.contains("60-79 | north"), "{out}");
    assert!(err.contains("60-79 | north  (2 rows)"), "{err}");
}

#[test]
fn a_clean_challenge_exits_0_and_writes_four_cards() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let toml = layout(&data, false);
    let cards = root.path().join("cards");
    let (code, out, err) = holdout(&[
        "challenge",
        "check",
        data.to_str().unwrap(),
        "--challenge",
        toml.to_str().unwrap(),
        "--card-dir",
        cards.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 errors"), "{out}");
    let md = fs::read_to_string(cards.join("card.public.md")).unwrap();
    assert!(md.starts_with("# Data card: Small (`small`)"), "{md}");
    assert!(md.contains("Preparation check: passed."));
    let full: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(cards.join("card.json")).unwrap()).unwrap();
    assert_eq!(full["card"], "full");
    assert_eq!(full["files"].as_array().unwrap().len(), 5);
    assert!(full["files"][0]["sha256"].as_str().unwrap().len() == 64);
}

#[test]
fn usage_and_io_problems_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nowhere");
    assert_eq!(
        holdout(&["challenge", "check", missing.to_str().unwrap()]).0,
        2
    );
    let data = root.path().join("data");
    layout(&data, false);
    let bad = root.path().join("bad.toml");
    fs::write(&bad, "[scoring]\npublic_fraction = 2.0\n").unwrap();
    let (code, _, err) = holdout(&[
        "challenge",
        "check",
        data.to_str().unwrap(),
        "--challenge",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("public_fraction"), "{err}");
    assert_eq!(
        holdout(&[
            "challenge",
            "check",
            data.to_str().unwrap(),
            "--metric",
            "top5"
        ])
        .0,
        2
    );
}

#[test]
fn pseudonymised_folders_share_tokens_and_the_key_must_live_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let raw = root.path().join("raw");
    write(
        &raw.join("a.csv"),
        "email,postcode\njean.dupont@example.fr,75011\nclaire.martin@mail.example.org,69003\n",
    );
    write(
        &raw.join("sub/b.csv"),
        "who,email\n1,jean.dupont@example.fr\n",
    );
    let key = root.path().join("challenge.key");
    let k = key.to_str().unwrap();
    assert_eq!(holdout(&["prepare", "key", "--out", k]).0, 0);
    assert_eq!(
        holdout(&["prepare", "key", "--out", k]).0,
        2,
        "never overwrites a key"
    );
    let inside = raw.join("k");
    fs::copy(&key, &inside).unwrap();
    let out = root.path().join("out");
    let (r, o) = (raw.to_str().unwrap(), out.to_str().unwrap());
    let (code, _, err) = holdout(&[
        "prepare",
        "pseudonymise",
        "--key-file",
        inside.to_str().unwrap(),
        "--column",
        "email",
        r,
        o,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("keep the key apart"), "{err}");
    fs::remove_file(&inside).unwrap();
    let short = root.path().join("short.key");
    fs::write(&short, "0123456789").unwrap();
    assert_eq!(
        holdout(&[
            "prepare",
            "pseudonymise",
            "--key-file",
            short.to_str().unwrap(),
            "--column",
            "email",
            r,
            o
        ])
        .0,
        2
    );
    let (code, text, err) = holdout(&[
        "prepare",
        "pseudonymise",
        "--key-file",
        k,
        "--column",
        "email",
        "--generalise",
        "postcode:2",
        r,
        o,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_no_planted("the summary", &(text.clone() + &err));
    let a = fs::read_to_string(out.join("a.csv")).unwrap();
    let b = fs::read_to_string(out.join("sub/b.csv")).unwrap();
    assert_no_planted("a.csv", &a);
    let token = a
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 32);
    assert!(
        b.contains(&token),
        "the same e-mail has the same token in every file:\n{a}\n{b}"
    );
    assert!(a.ends_with(",69\n"), "{a}");
}

#[test]
fn the_fraud_example_fails_as_exported_and_passes_once_fixed() {
    let root = tempfile::tempdir().unwrap();
    let script = repo().join("examples/fraud/make_data.py");
    let toml = repo().join("examples/fraud/challenge.toml");
    let t = toml.to_str().unwrap();
    let flawed = root.path().join("flawed");
    let made = Command::new("python3")
        .arg(&script)
        .arg("--flawed")
        .arg(&flawed)
        .status()
        .expect("python3 runs");
    assert!(made.success());
    let (code, json, err) = holdout(&[
        "challenge",
        "check",
        flawed.to_str().unwrap(),
        "--challenge",
        t,
        "--json",
    ]);
    assert_eq!(code, 1, "{err}");
    let found: Vec<String> = codes(&json)
        .into_iter()
        .map(|c| format!("{} {}", c.0, c.1))
        .collect();
    for expected in [
        "leak.functional_dependency inputs/test.csv",
        "pii.email sample/inputs/test.csv",
        "pii.iban sample/inputs/test.csv",
        "pii.card sample/inputs/test.csv",
        "pii.nir sample/inputs/test.csv",
        "kanon.below_min_k sample/inputs/train.csv",
    ] {
        assert!(found.iter().any(|f| f == expected), "{expected}: {found:?}");
    }
    let raw = root.path().join("raw");
    assert!(
        Command::new("python3")
            .arg(&script)
            .arg(&raw)
            .status()
            .unwrap()
            .success()
    );
    let (code, out, _) = holdout(&[
        "challenge",
        "check",
        raw.to_str().unwrap(),
        "--challenge",
        t,
    ]);
    assert_eq!(code, 1, "raw quasi-identifiers fail k-anonymity:\n{out}");
    assert!(
        out.contains("with the declared generalisations k would be"),
        "{out}"
    );
    let key = root.path().join("fraud.key");
    let data = root.path().join("data");
    assert_eq!(
        holdout(&["prepare", "key", "--out", key.to_str().unwrap()]).0,
        0
    );
    let (code, _, err) = holdout(&[
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
        raw.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = holdout(&[
        "challenge",
        "check",
        data.to_str().unwrap(),
        "--challenge",
        t,
    ]);
    assert_eq!(code, 0, "{out}{err}");
}
