//! The predictions contract: what is accepted, one message per problem, messages that never
//! reveal a label or a split, the safe open, and the two-halves scoring that must report
//! exactly what one pass does.
use crate::scoring::tests::{
    message, score_files, score_text, score_texts, small_labels, spec, split_fixture, write_case,
};
use crate::scoring::{
    LabelsError, Metric, PredictionsError, Split, load_labels, score_predictions, score_reader,
};

#[test]
fn a_valid_predictions_file_with_crlf_quotes_bom_and_extra_columns_is_scored() {
    let report = score_text(
        b"\xEF\xBB\xBFextra,\"id\",p\r\nx,a,0.1\r\nx,\"b\",0.9\r\nx,c, 0.2 \r\nx,d,1\r\n\r\n",
    )
    .unwrap();
    assert!(report.all["log_loss"] > 0.0);
    assert_eq!(report.rows, 4);
}

#[test]
fn each_predictions_problem_gets_its_own_message() {
    assert_eq!(
        message(b"id,p\n"),
        "predictions.csv is missing predictions for 4 ids of the test set"
    );
    assert_eq!(
        message(b"a,0.5\nb,0.5\n"),
        "predictions.csv has no header line; the first line must name the columns"
    );
    assert_eq!(
        message(b"id,q\na,0.5\n"),
        "predictions.csv has no column named \"p\""
    );
    assert_eq!(
        message(b"ident,p\na,0.5\n"),
        "predictions.csv has no column named \"id\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,zero\n"),
        "predictions.csv line 3: the prediction is not a number"
    );
    assert_eq!(
        message(b"id,p\na,NaN\n"),
        "predictions.csv line 2: the prediction is NaN or infinite"
    );
    assert_eq!(
        message(b"id,p\na,inf\n"),
        "predictions.csv line 2: the prediction is NaN or infinite"
    );
    assert_eq!(
        message(b"id,p\na,1.5\n"),
        "predictions.csv line 2: the probability is outside [0, 1]"
    );
    assert_eq!(
        message(b"id,p\na,-0.1\n"),
        "predictions.csv line 2: the probability is outside [0, 1]"
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.1\na,0.2\n"),
        "predictions.csv line 4: duplicate id \"a\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.5\nc,0.5\nd,0.5\nz1,0.5\nz2,0.5\nz3,0.5\nz4,0.5\n"),
        "predictions.csv has 4 ids that are not in the test set, e.g. \"z1\", \"z2\", \"z3\""
    );
    assert_eq!(
        message(b"id,p\na,0.5\nc,0.5\n"),
        "predictions.csv is missing predictions for 2 ids of the test set"
    );
    assert_eq!(
        message(b"id,p\na,0.5\nb,0.5,7\n"),
        "predictions.csv line 3: expected 2 fields, found 3"
    );
    assert_eq!(
        message(b"id,p\na,0.5\n\xFF\xFE,0.5\n"),
        "predictions.csv line 3: invalid UTF-8"
    );
    assert_eq!(
        message(b"id,p\n\"a,0.5\n"),
        "predictions.csv line 2: unbalanced quotes"
    );
    assert_eq!(message(b"  \n\n"), "predictions.csv is empty");
}

#[test]
fn messages_never_reveal_labels_or_split_membership() {
    // Every message is built from the participant's own text, counts and caps. Scoring a
    // file with every kind of problem must never mention a label value or a part.
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "id,y\nk1,secret_pos\nk2,secret_neg\nk3,secret_pos\nk4,secret_neg\n",
    )
    .unwrap();
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 0.5,
        seed: 3,
    });
    let set = match load_labels(&labels, &s.label_spec().unwrap()) {
        Ok(set) => set,
        // A four-row split may leave a part empty; any seed that does not is fine here.
        Err(LabelsError::EmptySplit { .. }) => {
            s.split = Some(Split {
                public_fraction: 0.5,
                seed: 4,
            });
            load_labels(&labels, &s.label_spec().unwrap()).unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    for text in [
        &b"id,p\nk1,x\n"[..],
        b"id,p\nk1,x\nk1,y\n",
        b"id,p\nzz,x\n",
        b"id,p\nk1,x,1\n",
        b"nope\n",
    ] {
        let err = score_reader(&set, text, &s).unwrap_err().to_string();
        for secret in ["secret", "public", "private"] {
            assert!(!err.contains(secret), "{err:?} mentions {secret}");
        }
    }
}

#[test]
fn a_symlink_a_directory_and_a_fifo_are_not_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let fifo = dir.path().join("fifo.csv");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for (path, kind) in [
        (&link, "symbolic link"),
        (&sub, "directory"),
        (&fifo, "FIFO"),
    ] {
        // A FIFO with no writer would hang a blocking open; this returns at once.
        match score_predictions(&set, path, &s) {
            Err(PredictionsError::NotRegularFile { kind: found }) => assert_eq!(found, kind),
            other => panic!("{path:?}: {other:?}"),
        }
    }
    assert!(matches!(
        score_predictions(&set, &dir.path().join("absent.csv"), &s),
        Err(PredictionsError::Missing)
    ));
}

#[test]
fn a_huge_sparse_file_is_refused_by_its_size_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let path = dir.path().join("predictions.csv");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(10 << 30).unwrap();
    let started = std::time::Instant::now();
    let err = score_predictions(&set, &path, &s).unwrap_err();
    assert!(
        matches!(err, PredictionsError::TooLarge { cap_bytes: 1000 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "predictions.csv is larger than the 1000-byte limit"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        score_predictions(&set, &path, &s),
        Err(PredictionsError::Empty)
    ));
}

#[test]
fn a_reader_that_exceeds_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (set, s) = small_labels(dir.path());
    let mut text = b"id,p\na,0.5\nb,0.5\nc,0.5\nd,0.5\n".to_vec();
    text.extend(std::iter::repeat_n(b'\n', 2000));
    assert!(matches!(
        score_reader(&set, &text[..], &s),
        Err(PredictionsError::TooLarge { .. })
    ));
}

#[test]
fn class_predictions_may_name_classes_the_labels_do_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions) = write_case(
        dir.path(),
        &["a".into(), "b".into(), "a".into()],
        &[" a".into(), "zz".into(), "b".into()],
        false,
    );
    let report = score_files(
        &labels,
        &predictions,
        &spec(&[Metric::Accuracy, Metric::F1Macro]),
    )
    .unwrap();
    assert!((report.all["accuracy"] - 1.0 / 3.0).abs() < 1e-15);
    // f1: a = 2/3, b = 0, zz = 0 -> 2/9.
    assert!((report.all["f1_macro"] - 2.0 / 9.0).abs() < 1e-15);
}

#[test]
fn a_file_scored_in_two_halves_scores_exactly_like_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, s) = split_fixture(dir.path(), 5000);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let text = std::fs::read(&predictions).unwrap();
    let halves = score_predictions(&set, &predictions, &s).unwrap();
    let one_pass = score_reader(&set, &text[..], &s).unwrap();
    assert_eq!(halves.rows, one_pass.rows);
    for (part, a, b) in [
        ("all", &halves.all, &one_pass.all),
        ("public", &halves.public, &one_pass.public),
        ("private", &halves.private, &one_pass.private),
    ] {
        for (metric, value) in a {
            assert!((b[metric] - value).abs() < 1e-12, "{part} {metric}");
        }
    }
}

#[test]
fn problems_in_the_second_half_or_across_halves_keep_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, predictions, s) = split_fixture(dir.path(), 400);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    let text = std::fs::read_to_string(&predictions).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let check = |edited: Vec<String>, expected: &str| {
        std::fs::write(&predictions, edited.join("\n") + "\n").unwrap();
        let got = score_predictions(&set, &predictions, &s)
            .unwrap_err()
            .to_string();
        assert_eq!(got, expected);
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    // A duplicate across the halves: line 5's id again on line 350.
    let mut edited = owned();
    edited[349] = edited[4].clone();
    let id = edited[4].split(',').next().unwrap().to_owned();
    check(
        edited,
        &format!("predictions.csv line 350: duplicate id {id:?}"),
    );
    // A bad value near the end.
    let mut edited = owned();
    edited[380] = "row9999,oops".into();
    check(
        edited,
        "predictions.csv line 381: the prediction is not a number",
    );
    // An unknown id in each half: both are quoted, in file order.
    let mut edited = owned();
    edited[10] = "nope1,0.5".into();
    edited[300] = "nope2,0.5".into();
    check(
        edited,
        "predictions.csv has 2 ids that are not in the test set, e.g. \"nope1\", \"nope2\"",
    );
}

#[test]
fn long_and_short_ids_score_alike_in_any_order() {
    // Ids of up to 7 bytes are kept inline, longer ones in an arena: both must join alike.
    let score = |prefix: &str| {
        let mut labels = String::from("id,y\n");
        let mut rows = Vec::new();
        for i in 0..3000 {
            labels.push_str(&format!("{prefix}{i},{}\n", (i * 7 + i / 3) % 2));
            rows.push(format!(
                "{prefix}{i},{:.3}\n",
                ((i * 37) % 101) as f64 / 100.0
            ));
        }
        rows.sort_by_key(|r| crate::scoring::split::hash_id(r.as_bytes(), 3));
        let mut s = spec(&[Metric::LogLoss, Metric::RocAuc]);
        s.want_row_losses = true;
        score_texts(&labels, &format!("id,p\n{}", rows.concat()), &s)
    };
    let (short, long) = (score("r"), score("a-much-longer-id-"));
    assert_eq!(short.all, long.all);
    assert_eq!(short.public_row_losses, long.public_row_losses);
}

#[test]
fn made_up_classes_count_once_each_in_f1_up_to_the_cap_and_as_one_past_it() {
    // Every true class is "a"; the first row predicts it, every other row a class of its own.
    // F1 of "a" is 2 * 1 / (rows + 1); each made-up class adds an F1 of 0 to the average.
    let f1 = |rows: usize| {
        let y: Vec<String> = vec!["a".into(); rows];
        let p: Vec<String> = (0..rows)
            .map(|i| {
                if i == 0 {
                    "a".into()
                } else {
                    format!("made-up {i}")
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let (labels, predictions) = write_case(dir.path(), &y, &p, false);
        let report = score_files(&labels, &predictions, &spec(&[Metric::F1Macro])).unwrap();
        report.all["f1_macro"]
    };
    // Below the cap, as sklearn: 1 + 100 classes.
    assert!((f1(101) - 2.0 / 102.0 / 101.0).abs() < 1e-15);
    // Past it, the made-up classes count as the cap plus one: 1 + 4097 classes, not 5001.
    let cap = crate::scoring::unknown_classes::MAX_UNKNOWN_CLASSES;
    let expected = 2.0 / 5002.0 / (1 + cap + 1) as f64;
    assert!((f1(5001) - expected).abs() < 1e-15, "{}", f1(5001));
}
