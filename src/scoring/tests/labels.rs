//! Loading labels: each problem named for the organiser, splits that leave a part unusable
//! refused, the cache, and a split independent of row order.
use crate::scoring::tests::{labels_error, spec, split_fixture};
use crate::scoring::{LabelsError, Metric, Split, load_labels};

#[test]
fn the_label_set_counts_its_public_and_private_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, _, s) = split_fixture(dir.path(), 1000);
    let set = load_labels(&labels, &s.label_spec().unwrap()).unwrap();
    assert_eq!(set.len(), 1000);
    assert_eq!(set.public_len() + set.private_len(), 1000);
    assert!(
        (300..500).contains(&set.public_len()),
        "{}",
        set.public_len()
    );
}

#[test]
fn each_labels_problem_is_named() {
    let acc = spec(&[Metric::Accuracy]);
    let dir = tempfile::tempdir().unwrap();
    let missing =
        load_labels(&dir.path().join("nope.csv"), &acc.label_spec().unwrap()).unwrap_err();
    assert!(matches!(missing, LabelsError::Missing { .. }));
    let (reg, auc) = (spec(&[Metric::Rmse]), spec(&[Metric::RocAuc]));
    let mut pos = spec(&[Metric::RocAuc]);
    pos.positive_label = Some("yes".into());
    for (text, s, expected) in [
        ("", &acc, "labels file is empty"),
        ("id,y\n", &acc, "labels file has a header but no rows"),
        (
            "ident,y\n1,0\n",
            &acc,
            "labels file has no column named \"id\"",
        ),
        (
            "id,target\n1,0\n",
            &acc,
            "labels file has no column named \"y\"",
        ),
        (
            "id,y\n1,0\n2,1\n1,1\n",
            &acc,
            "labels file has duplicate id \"1\"",
        ),
        (
            "id,y\n1,0\n2\n",
            &acc,
            "labels file line 3: expected 2 fields, found 1",
        ),
        (
            "id,y\n1,0\n2,\n",
            &acc,
            "labels file line 3: target is empty",
        ),
        (
            "id,y\n1,0\n\"2,1\n",
            &acc,
            "labels file line 3: unbalanced quotes",
        ),
        (
            "id,y\n1,x\n",
            &reg,
            "labels file line 2: target is not a number",
        ),
        (
            "id,y\n1,inf\n",
            &reg,
            "labels file line 2: target is not finite",
        ),
        (
            "id,y\n1,a\n2,b\n3,c\n",
            &auc,
            "the metric needs exactly two classes, labels have 3",
        ),
        (
            "id,y\n1,0\n2,1\n",
            &pos,
            "positive label \"yes\" is not a class in the labels",
        ),
    ] {
        assert_eq!(labels_error(text, s), expected, "{text:?}");
    }
}

#[test]
fn a_split_that_leaves_a_part_empty_is_refused_when_labels_load() {
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 1e-12,
        seed: 1,
    });
    let err = labels_error("id,y\n1,0\n2,1\n3,1\n", &s);
    assert!(
        err.starts_with("the split leaves the public part empty (0 public, 3 private rows)"),
        "{err}"
    );
    s.split = Some(Split {
        public_fraction: 1.0 - 1e-12,
        seed: 1,
    });
    assert!(labels_error("id,y\n1,0\n2,1\n3,1\n", &s).contains("private part empty"));
}

#[test]
fn a_part_with_one_class_is_refused_for_roc_auc() {
    let mut s = spec(&[Metric::RocAuc]);
    s.split = Some(Split {
        public_fraction: 0.5,
        seed: 2,
    });
    let text: String = std::iter::once("id,y\n".to_owned())
        .chain((0..50).map(|i| format!("{i},{}\n", if i == 0 { 1 } else { 0 })))
        .collect();
    let err = labels_error(&text, &s);
    assert!(err.contains("has rows of only one class"), "{err}");
}

#[test]
fn the_labels_cache_reloads_only_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, "id,y\n1,0\n2,1\n").unwrap();
    let cache = crate::scoring::LabelsCache::new(4);
    let ls = spec(&[Metric::Accuracy]).label_spec().unwrap();
    let first = cache.get_or_load(&path, &ls).unwrap();
    let again = cache.get_or_load(&path, &ls).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    std::fs::write(&path, "id,y\n1,0\n2,1\n3,1\n").unwrap();
    let changed = cache.get_or_load(&path, &ls).unwrap();
    assert_eq!(changed.len(), 3);
    assert_eq!(cache.len(), 1, "the stale entry is dropped");
}

#[test]
fn the_split_of_a_labels_file_does_not_depend_on_its_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 0.3,
        seed: 77,
    });
    let ids: Vec<String> = (0..300).map(|i| format!("id-{i}")).collect();
    let load = |order: &[String], name: &str| {
        let path = dir.path().join(name);
        let body: String = order
            .iter()
            .map(|id| format!("{id},{}\n", id.len() % 2))
            .collect();
        std::fs::write(&path, format!("id,y\n{body}")).unwrap();
        load_labels(&path, &s.label_spec().unwrap()).unwrap()
    };
    let forward = load(&ids, "forward.csv");
    let mut reversed_ids = ids.clone();
    reversed_ids.reverse();
    let reversed = load(&reversed_ids, "reversed.csv");
    assert_eq!(forward.public_len(), reversed.public_len());
    for (i, id) in ids.iter().enumerate() {
        let j = reversed.find(id.as_bytes(), 0).unwrap();
        assert_eq!(forward.is_public(i), reversed.is_public(j), "{id}");
    }
}

#[test]
fn spec_errors_name_the_problem() {
    use crate::scoring::SpecError;
    assert_eq!(spec(&[]).label_spec(), Err(SpecError::NoMetrics));
    assert!(matches!(
        spec(&[Metric::Rmse, Metric::Accuracy]).label_spec(),
        Err(SpecError::MixedTargetKinds(..))
    ));
    assert!(matches!(
        spec(&[Metric::RocAuc, Metric::Accuracy]).label_spec(),
        Err(SpecError::ThresholdRequired(..))
    ));
    let mut s = spec(&[Metric::Accuracy]);
    s.split = Some(Split {
        public_fraction: 1.0,
        seed: 0,
    });
    assert_eq!(s.label_spec(), Err(SpecError::BadPublicFraction(1.0)));
}

#[test]
fn a_duplicate_label_id_is_the_first_repeated_one_in_file_order() {
    let mut text = String::from("id,y\n");
    for i in 0..5000 {
        text.push_str(&format!("{i},{}\n", i % 2));
    }
    text.push_str("4990,1\n17,0\n");
    let s = spec(&[Metric::Accuracy]);
    assert_eq!(
        labels_error(&text, &s),
        "labels file has duplicate id \"4990\""
    );
}
