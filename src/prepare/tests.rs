//! The preparation check against generated challenges with every problem planted, and the
//! same challenge fixed.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::pseudonymise::{Key, Rules, pseudonymise};
use super::*;
use crate::scoring::split::mix64;

/// The personal data planted in the flawed sample; none may appear in any output.
pub(crate) const PLANTED: &[&str] = &[
    "jean.dupont@example.fr",
    "marie.curie@labo.example.org",
    "x.y+tag@mail.example.com",
    "1 85 05 78 006 084 91",
    "185057800608491",
    "1 85 05 78 006 084 36",
    "185057800608436",
    "FR76 3000 6000 0112 3456 7890 189",
    "FR7630006000011234567890189",
    "4111 1111 1111 1111",
    "4111111111111111",
    "4111 1111 1111 1112",
    "4111111111111112",
];

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn label(i: u64) -> u64 {
    mix64(i) & 1
}

/// (age, postcode, sex) of sample row `i`: groups of 10, 10, 9 and 8 rows, then two
/// groups of two (k = 2).
fn qi(i: usize) -> (u32, &'static str, &'static str) {
    let (ages, postcodes, sex) = match i {
        0..=9 => ([31, 35, 38], ["75011", "75015"], "F"),
        10..=19 => ([30, 33, 39], ["75002", "75020"], "M"),
        20..=28 => ([41, 45, 47], ["69003", "69007"], "F"),
        29..=36 => ([40, 44, 49], ["69001", "69008"], "M"),
        37 | 38 => ([23, 27, 27], ["13001", "13005"], "F"),
        _ => ([61, 66, 66], ["33000", "33100"], "M"),
    };
    (ages[i % 3], postcodes[i % 2], sex)
}

/// Writes a challenge data folder; `flawed` plants every problem the check must find.
pub(crate) fn plant(dir: &Path, flawed: bool) {
    plant_with(dir, flawed, false)
}

/// As [`plant`]; `raw_qis` writes ages and postcodes as they are instead of generalised.
fn plant_with(dir: &Path, flawed: bool, raw_qis: bool) {
    let n = 400u64;
    let features = |i: u64, y: u64| {
        let f1 = (mix64(i ^ 0xf1) % 1000) as f64 / 10.0;
        let f2 = ["north", "south", "east", "west"][(mix64(i ^ 0xf2) % 4) as usize];
        let leaky = if flawed {
            format!(
                "{:.3}",
                y as f64 * 10.0 + (mix64(i ^ 0x1e) % 1000) as f64 / 1000.0
            )
        } else {
            format!("{:.3}", (mix64(i ^ 0x1e) % 997) as f64)
        };
        let fd = if flawed {
            format!("k{}", y * 5 + mix64(i ^ 0xfd) % 5)
        } else {
            format!("k{}", mix64(i ^ 0xfd) % 10)
        };
        format!("{f1},{f2},{leaky},{fd}")
    };
    let mut labels = String::from("id,label\n");
    let mut test = String::from("id,f1,f2,leaky,fd_col\n");
    for i in 1..=n {
        let y = label(i);
        let target = if flawed && i == n {
            String::new()
        } else {
            y.to_string()
        };
        let _ = writeln!(labels, "r{i:04},{target}");
        let _ = writeln!(test, "r{i:04},{}", features(i, y));
    }
    if flawed {
        let _ = writeln!(labels, "r0007,{}\nr9001,0\nr9002,1", label(7));
        for x in 1..=3 {
            let _ = writeln!(test, "x{x:03},{}", features(9000 + x, 0));
        }
    }
    write(&dir.join("labels.csv"), &labels);
    write(&dir.join("inputs/test.csv"), &test);

    let mut train = String::from("id,f1,f2,leaky,fd_col,label\n");
    for i in 1..=300u64 {
        let y = label(i + 5000);
        let _ = writeln!(train, "t{i:04},{},{y}", features(i + 5000, y));
    }
    if flawed {
        for i in [11u64, 12, 13, 14] {
            let y = label(i);
            let _ = writeln!(train, "t9{i:03},{},{y}", features(i, y));
        }
        let mut extra = String::from("id,label\n");
        for i in 20..25u64 {
            let _ = writeln!(extra, "r{i:04},{}", label(i));
        }
        write(&dir.join("inputs/extra.csv"), &extra);
    }
    write(&dir.join("inputs/train.csv"), &train);

    let mut s_labels = String::from("id,label\n");
    let mut s_test =
        String::from("id,f1,f2,leaky,fd_col,email,notes,ref,payment,age,postcode,sex\n");
    for k in 0..41usize {
        let i = 7000 + k as u64;
        let id = if flawed && k == 40 {
            "r0010".to_owned()
        } else {
            format!("s{k:03}")
        };
        let y = label(i);
        let _ = writeln!(s_labels, "{id},{y}");
        let email = match k {
            3 if flawed => "jean.dupont@example.fr",
            9 if flawed => "marie.curie@labo.example.org",
            27 if flawed => "\"x.y+tag@mail.example.com\"",
            _ => "",
        };
        let notes = match k {
            5 if flawed => "\"client 1 85 05 78 006 084 91, rappel\"",
            6 if flawed => "1 85 05 78 006 084 36",
            _ => "ras",
        };
        let reference = if flawed && k == 8 {
            "FR76 3000 6000 0112 3456 7890 189"
        } else {
            "ok"
        };
        let payment = match k {
            1 if flawed => "4111 1111 1111 1111",
            2 if flawed => "4111 1111 1111 1112",
            _ => "cash",
        };
        let (age, postcode, sex) = qi(k);
        let (age, postcode) = if flawed || k < 37 {
            (age, postcode)
        } else {
            (35, "75011")
        };
        let (age, postcode) = if raw_qis {
            (age.to_string(), postcode.to_owned())
        } else {
            (
                format!("{}-{}", age / 10 * 10, age / 10 * 10 + 9),
                postcode[..2].to_owned(),
            )
        };
        let _ = writeln!(
            s_test,
            "{id},{},{email},{notes},{reference},{payment},{age},{postcode},{sex}",
            features(i, y)
        );
    }
    write(&dir.join("sample/labels.csv"), &s_labels);
    write(&dir.join("sample/inputs/test.csv"), &s_test);
    for d in ["", "inputs", "sample", "sample/inputs"] {
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

pub(crate) fn spec() -> CheckSpec {
    let mut s = CheckSpec::new(
        "id",
        Some("label"),
        Some(crate::scoring::Metric::Accuracy),
        0.5,
        42,
    );
    s.preparation.quasi_identifiers = vec!["age".into(), "postcode".into(), "sex".into()];
    s.preparation
        .generalise
        .insert("postcode".into(), "2".parse().unwrap());
    s.preparation
        .generalise
        .insert("age".into(), "bin:10".parse().unwrap());
    s
}

fn run(flawed: bool) -> Report {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), flawed);
    check(dir.path(), &spec(), &mut NoProgress).unwrap()
}

/// The counts of findings with `code` on `file` (and `column`, when given).
fn counts(r: &Report, code: Code, file: &str, column: Option<&str>) -> Vec<u64> {
    r.with_code(code)
        .filter(|f| {
            f.file.as_deref() == Some(file) && (column.is_none() || f.column.as_deref() == column)
        })
        .map(|f| f.count)
        .collect()
}

#[test]
fn every_planted_problem_is_reported_with_its_code_and_exact_count() {
    let r = run(true);
    let lines: Vec<String> = r.findings.iter().map(Finding::line).collect();
    let all = lines.join("\n");
    let expect = |code, file, column, n: u64| {
        assert_eq!(
            counts(&r, code, file, column),
            vec![n],
            "{code} {file} {column:?}\n{all}"
        );
    };
    expect(Code::LabelsDuplicateId, "labels.csv", None, 1);
    expect(Code::LabelsMissingTarget, "labels.csv", None, 1);
    expect(Code::InputsRowsWithoutLabel, "inputs/test.csv", None, 3);
    expect(Code::InputsLabelsWithoutRow, "inputs/test.csv", None, 2);
    expect(Code::SampleOverlapsPrivate, "sample/", None, 1);
    expect(
        Code::LeakTargetInInputs,
        "inputs/extra.csv",
        Some("label"),
        5,
    );
    // 403 test rows, of which the three x ids and r0400 (no target) have no label.
    expect(
        Code::LeakPredictiveColumn,
        "inputs/test.csv",
        Some("leaky"),
        399,
    );
    expect(
        Code::LeakFunctionalDependency,
        "inputs/test.csv",
        Some("fd_col"),
        399,
    );
    expect(Code::LeakTrainTestDuplicates, "inputs/test.csv", None, 4);
    expect(Code::PiiEmail, "sample/inputs/test.csv", Some("email"), 3);
    expect(
        Code::PiiIdentifierColumn,
        "sample/inputs/test.csv",
        Some("email"),
        41,
    );
    expect(Code::PiiNir, "sample/inputs/test.csv", Some("notes"), 1);
    expect(Code::PiiIban, "sample/inputs/test.csv", Some("ref"), 1);
    expect(Code::PiiCard, "sample/inputs/test.csv", Some("payment"), 1);
    expect(Code::KanonBelowMinK, "sample/inputs/test.csv", None, 2);
    assert_eq!(
        r.with_code(Code::PiiPhone).count(),
        0,
        "a wrong-key NIR is no phone number\n{all}"
    );
    assert_eq!(r.with_code(Code::LeakRowOrder).count(), 0, "{all}");
    let kanon = r.with_code(Code::KanonBelowMinK).next().unwrap();
    assert_eq!((kanon.severity, kanon.value), (Severity::Error, Some(2.0)));
    assert_eq!(r.kanon[0].k, Some(2));
    assert_eq!(r.kanon[0].smallest_groups[..2], [2, 2]);
    for code in [
        Code::PiiEmail,
        Code::PiiNir,
        Code::PiiIban,
        Code::PiiCard,
        Code::LeakPredictiveColumn,
        Code::LabelsDuplicateId,
    ] {
        assert!(
            r.with_code(code).all(|f| f.severity == Severity::Error),
            "{code}"
        );
    }
    assert!(r.has_errors());
    assert_eq!(r.first_error().unwrap().severity, Severity::Error);
    assert!(
        r.findings
            .windows(2)
            .all(|w| w[0].severity <= w[1].severity)
    );
}

#[test]
fn no_planted_value_appears_in_any_report_or_card() {
    let r = run(true);
    let meta = CardMeta {
        challenge_id: Some("planted".into()),
        title: Some("Planted".into()),
    };
    let public = public_card(&r, &meta);
    let outputs = [
        serde_json::to_string(&r).unwrap(),
        format!("{r:?}"),
        r.findings
            .iter()
            .map(Finding::line)
            .collect::<Vec<_>>()
            .join("\n"),
        full_card_markdown(&r, &meta),
        full_card_json(&r, &meta).to_string(),
        public.markdown(),
        serde_json::to_string(&public).unwrap(),
    ];
    for out in &outputs {
        for planted in PLANTED {
            assert!(!out.contains(planted), "{planted} leaked into:\n{out}");
        }
        // The generalised key of a small sample group stays on the organiser's terminal.
        assert!(
            !out.contains("20-29 | 13 | F"),
            "a group key leaked into:\n{out}"
        );
    }
    assert!(
        r.local
            .groups
            .iter()
            .any(|(_, key, n)| key == "20-29 | 13 | F" && *n == 2)
    );
    let back: Report = serde_json::from_str(&outputs[0]).unwrap();
    assert_eq!(back.findings, r.findings);
}

#[test]
fn files_read_in_chunks_by_several_workers_give_the_report_of_one_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), true);
    let chunked = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    super::scan::SEQUENTIAL.with(|s| s.set(true));
    let in_order = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    super::scan::SEQUENTIAL.with(|s| s.set(false));
    assert!(
        fs::metadata(dir.path().join("inputs/test.csv"))
            .unwrap()
            .len()
            > 2 * super::parallel::CHUNK_BYTES as u64
    );
    assert_eq!(chunked.findings, in_order.findings);
    assert_eq!(chunked.files, in_order.files);
    assert_eq!(chunked.kanon, in_order.kanon);
    assert_eq!(chunked.local, in_order.local);
}

#[test]
fn the_fixed_challenge_passes_with_no_error() {
    let r = run(false);
    let errors: Vec<String> = r
        .with_severity(Severity::Error)
        .map(Finding::line)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        r.with_code(Code::KanonK).next().unwrap().count,
        8,
        "groups of 12, 12, 9 and 8"
    );
    let split = r.split.as_ref().unwrap();
    assert_eq!(split.public.rows + split.private.rows, 400);
    assert_eq!(
        counts(&r, Code::SplitPartTooSmall, "labels.csv", None).len(),
        2,
        "200 rows a part cannot separate within ±0.05"
    );
    let public = public_card(&r, &CardMeta::default());
    assert!(public.check_passed);
    assert!(
        public
            .sample_files
            .iter()
            .all(|f| f.path.starts_with("sample/"))
    );
    assert!(public.inputs.iter().all(|s| !s.columns.is_empty()));
}

#[test]
fn declared_generalisations_never_pass_raw_values_but_say_what_they_would_give() {
    let dir = tempfile::tempdir().unwrap();
    plant_with(dir.path(), false, true);
    let r = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    let k = &r.kanon[0];
    assert_eq!((k.k, k.k_if_generalised), (Some(1), Some(8)), "{k:?}");
    assert_eq!(k.generalisations, ["age:bin:10", "postcode:2"]);
    let f = r.with_code(Code::KanonBelowMinK).next().unwrap();
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message
            .contains("--generalise age:bin:10 --generalise postcode:2"),
        "{}",
        f.message
    );
}

#[test]
fn a_file_the_sandbox_user_cannot_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), false);
    fs::set_permissions(
        dir.path().join("inputs/train.csv"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let r = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    assert_eq!(
        counts(&r, Code::PermSandboxUnreadable, "inputs/train.csv", None),
        vec![1]
    );
}

#[test]
fn a_header_that_looks_like_data_is_shown_by_position() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), false);
    write(
        &dir.path().join("sample/inputs/raw.csv"),
        "s001,jean.dupont@example.fr,42\ns002,a@b.fr,7\n",
    );
    let r = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    assert_eq!(
        counts(
            &r,
            Code::FileHeaderLooksLikeData,
            "sample/inputs/raw.csv",
            None
        ),
        vec![2]
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("jean.dupont@example.fr"));
    let raw = r
        .files
        .iter()
        .find(|f| f.path == "sample/inputs/raw.csv")
        .unwrap();
    assert_eq!(
        raw.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["s001", "#2", "#3"]
    );
}

#[test]
fn a_regression_target_must_hold_finite_numbers() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), false);
    write(
        &dir.path().join("labels.csv"),
        &(1..=400)
            .map(|i| {
                format!(
                    "r{i:04},{}\n",
                    if i % 100 == 0 {
                        "n/a".into()
                    } else {
                        format!("{}.5", i % 7)
                    }
                )
            })
            .fold("id,label\n".to_owned(), |a, l| a + &l),
    );
    let mut s = spec();
    s.metric = Some(crate::scoring::Metric::Rmse);
    let r = check(dir.path(), &s, &mut NoProgress).unwrap();
    assert_eq!(
        counts(&r, Code::LabelsBadTarget, "labels.csv", None),
        vec![4]
    );
}

#[test]
fn inputs_without_the_id_column_are_a_warning_and_inputs_with_other_ids_an_error() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), false);
    // Rows in label order, without an id column: the check cannot match them.
    let test = fs::read_to_string(dir.path().join("inputs/test.csv")).unwrap();
    let no_ids: String = test
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_owned() + "\n")
        .collect();
    write(&dir.path().join("inputs/test.csv"), &no_ids);
    let train = fs::read_to_string(dir.path().join("inputs/train.csv")).unwrap();
    let train_no_ids: String = train
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_owned() + "\n")
        .collect();
    write(&dir.path().join("inputs/train.csv"), &train_no_ids);
    let r = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    let found: Vec<&Finding> = r.with_code(Code::InputsNoTestRows).collect();
    assert_eq!(found.len(), 1, "{:?}", r.findings);
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(found[0].file.as_deref(), Some("inputs/"));
    assert!(!r.has_errors(), "{:?}", r.first_error());

    // A file with the id column but none of the labels' ids is still an error.
    let other: String = test
        .lines()
        .enumerate()
        .map(|(n, l)| {
            if n == 0 {
                format!("{l}\n")
            } else {
                format!("z{}\n", &l[1..])
            }
        })
        .collect();
    write(&dir.path().join("inputs/test.csv"), &other);
    let r = check(dir.path(), &spec(), &mut NoProgress).unwrap();
    let found: Vec<&Finding> = r.with_code(Code::InputsNoTestRows).collect();
    assert_eq!(found.len(), 1, "{:?}", r.findings);
    assert_eq!(found[0].severity, Severity::Error);
}

#[test]
fn the_challenge_file_is_read_leniently_with_its_preparation_table() {
    let text = r#"
id = "fraud"
title = "Fraud"
unknown_future_key = 1
[scoring]
public_fraction = 0.3
split_seed = 7
[scoring.builtin]
metric = "roc_auc"
target_column = "is_fraud"
[preparation]
quasi_identifiers = ["age", "postcode"]
min_k = 10
generalise = { postcode = 2, age = "bin:5" }
"#;
    let s = CheckSpec::from_challenge_toml(text).unwrap();
    assert_eq!(s.id_column, "id");
    assert_eq!(s.target_column.as_deref(), Some("is_fraud"));
    assert_eq!(s.metric, Some(crate::scoring::Metric::RocAuc));
    assert_eq!((s.public_fraction, s.split_seed), (0.3, 7));
    assert_eq!(s.preparation.min_k, 10);
    assert_eq!(s.preparation.min_l, 2);
    assert_eq!(
        s.preparation.generalise["postcode"],
        Generalisation::Prefix(2)
    );
    assert_eq!(s.preparation.generalise["age"], Generalisation::Bin(5.0));
    assert_eq!(
        CardMeta::from_challenge_toml(text).challenge_id.as_deref(),
        Some("fraud")
    );
    assert!(matches!(
        CheckSpec::from_challenge_toml("[preparation]\nmin_kk = 3\n"),
        Err(SpecError::Preparation(_))
    ));
    assert!(matches!(
        CheckSpec::from_challenge_toml("[scoring]\npublic_fraction = 1.0\n"),
        Err(SpecError::BadPublicFraction(_))
    ));
    assert!(matches!(
        CheckSpec::from_challenge_toml(
            "[scoring.builtin]\nmetric = \"top5\"\ntarget_column = \"y\"\n"
        ),
        Err(SpecError::UnknownMetric(_))
    ));
}

#[test]
fn pseudonymised_files_share_tokens_and_keep_the_key_apart() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("raw");
    write(
        &input.join("customers.csv"),
        "customer_id,email,postcode,birth\nc1,jean.dupont@example.fr,75011,1985-05-17\nc2,,69003,1990-01-02\n",
    );
    write(
        &input.join("orders/orders.csv"),
        "order,email,amount\no1,jean.dupont@example.fr,12.5\n",
    );
    write(&input.join("README.txt"), "notes\n");
    let key_path = root.path().join("key");
    Key::generate(&key_path).unwrap();
    assert!(
        Key::generate(&key_path).is_err(),
        "an existing key is never overwritten"
    );
    assert_eq!(
        fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let inside = input.join("key");
    fs::copy(&key_path, &inside).unwrap();
    let out = root.path().join("clean");
    assert!(matches!(
        Key::load(&inside, &input, &out),
        Err(pseudonymise::PseudonymiseError::KeyWithData(_))
    ));
    fs::remove_file(&inside).unwrap();
    let key = Key::load(&key_path, &input, &out).unwrap();
    let rules = Rules {
        tokenise: vec!["email".into(), "customer_id".into()],
        generalise: vec![
            ("postcode".into(), "2".parse().unwrap()),
            ("birth".into(), "year".parse().unwrap()),
        ],
    };
    let summary = pseudonymise(&input, &out, &key, &rules).unwrap();
    assert_eq!(summary.copied, ["README.txt"]);
    let customers = fs::read_to_string(out.join("customers.csv")).unwrap();
    let orders = fs::read_to_string(out.join("orders/orders.csv")).unwrap();
    let token = key.token(b"jean.dupont@example.fr");
    assert!(
        customers.contains(&token) && orders.contains(&token),
        "{customers}{orders}"
    );
    assert!(
        !customers.contains("jean.dupont")
            && !customers.contains("75011")
            && !customers.contains("05-17")
    );
    assert!(customers.contains(",75,1985\n"));
    assert_eq!(
        summary.files[0].tokenised,
        [("customer_id".to_owned(), 2), ("email".to_owned(), 1)]
    );
    let again = root.path().join("again");
    pseudonymise(&input, &again, &key, &rules).unwrap();
    assert_eq!(
        fs::read_to_string(again.join("customers.csv")).unwrap(),
        customers,
        "same key, same tokens"
    );
    let typo = Rules {
        tokenise: vec!["e_mail".into()],
        generalise: Vec::new(),
    };
    assert!(matches!(
        pseudonymise(&input, &root.path().join("typo"), &key, &typo),
        Err(pseudonymise::PseudonymiseError::UnknownColumn(_))
    ));
    assert!(!root.path().join("typo").exists());
}
