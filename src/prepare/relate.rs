//! The checks that relate files to each other, from the sets their passes collected: test
//! inputs whose ids match the labels exactly, the target column in a file of private test
//! ids, a sample disjoint from the private ids, and identical feature rows across training,
//! test and sample files.
//!
//! Id sets are compared in one merge over all of them ([`Membership`]); feature rows were
//! either probed in memory during the test file's pass (when the training and sample sides
//! are small) or are merged here.

use std::io;

use super::idset::{MAX_GROUPS, Membership, Sorted};
use super::report::{Code, Finding, Role, Severity};
use super::scan::RowSet;

/// The ids of one file.
pub struct IdSet {
    /// The file.
    pub rel: String,
    /// Its role.
    pub role: Role,
    /// The target column as shown, when the file has it.
    pub target: Option<String>,
    /// The ids' hashes (one set per worker that read the file).
    pub ids: Vec<Sorted>,
    /// Data rows.
    pub rows: u64,
    /// Rows with an empty id.
    pub empty_ids: u64,
}

/// What the id comparison found.
#[derive(Default)]
pub struct IdRelations {
    /// Findings.
    pub findings: Vec<Finding>,
    /// Distinct ids of `labels.csv` and of `sample/labels.csv`.
    pub labels_distinct: [Option<u64>; 2],
    /// Inputs files that turned out to be test files (their ids are label ids).
    pub tests: Vec<String>,
}

/// Compares every id set in one pass: group 0 is `labels.csv`, 1 `sample/labels.csv`, then
/// one group per file.
pub fn ids<'a>(
    labels: Option<&'a IdSet>,
    sample_labels: Option<&'a IdSet>,
    files: &'a [IdSet],
) -> io::Result<IdRelations> {
    let mut out = IdRelations::default();
    let cross = files.len() + 2 <= MAX_GROUPS;
    if !cross {
        out.findings.push(Finding::new(
            Code::LayoutTooManyFiles,
            Severity::Warning,
            files.len() as u64,
            format!("{} files carry the id column; ids are compared across at most {} of them, so cross-file id checks were skipped", files.len(), MAX_GROUPS - 2),
        ));
    }
    let set = |s: Option<&'a IdSet>| -> Vec<&'a Sorted> {
        s.map(|s| s.ids.iter().collect()).unwrap_or_default()
    };
    let mut groups: Vec<Vec<&Sorted>> = vec![set(labels), set(sample_labels)];
    if cross {
        groups.extend(files.iter().map(|f| f.ids.iter().collect()));
    }
    let refs: Vec<&[&Sorted]> = groups.iter().map(Vec::as_slice).collect();
    let m = Membership::of(&refs)?;
    out.labels_distinct = [
        labels.map(|_| m.distinct(0)),
        sample_labels.map(|_| m.distinct(1)),
    ];
    if !cross {
        return Ok(out);
    }
    let (mut tests, mut sample_tests, mut public) = (Vec::new(), Vec::new(), vec![1]);
    for (k, f) in files.iter().enumerate() {
        let g = k + 2;
        let reference = if f.role == Role::Inputs { 0 } else { 1 };
        if f.role == Role::SampleInputs {
            public.push(g);
        }
        let both = m.distinct_in(g, &[reference]);
        if both == 0 {
            continue;
        }
        if let (Some(t), Role::Inputs) = (&f.target, f.role) {
            let rows = m.rows_in(g, &[reference]);
            out.findings.push(
                Finding::new(
                    Code::LeakTargetInInputs,
                    Severity::Error,
                    rows,
                    format!("{rows} rows carry a private test id and the target column: their labels are given away"),
                )
                .file(&f.rel)
                .column(t)
                .total(f.rows),
            );
            continue;
        }
        if f.target.is_some() {
            continue;
        }
        if f.role == Role::Inputs {
            tests.push(g);
            out.tests.push(f.rel.clone());
        } else {
            sample_tests.push(g);
        }
        let distinct = m.distinct(g);
        let without = distinct - both;
        if without > 0 {
            out.findings.push(
                Finding::new(
                    Code::InputsRowsWithoutLabel,
                    Severity::Error,
                    without,
                    format!("{without} ids of this test file have no label: predictions for them cannot be scored"),
                )
                .file(&f.rel)
                .total(distinct),
            );
        }
        let dup = f.ids.iter().map(Sorted::len).sum::<u64>() - distinct;
        if dup > 0 {
            out.findings.push(
                Finding::new(
                    Code::InputsDuplicateId,
                    Severity::Error,
                    dup,
                    format!("{dup} rows repeat an id of an earlier row"),
                )
                .file(&f.rel)
                .total(f.rows),
            );
        }
        if f.empty_ids > 0 {
            let n = f.empty_ids;
            out.findings.push(
                Finding::new(
                    Code::InputsEmptyId,
                    Severity::Error,
                    n,
                    format!("{n} rows have an empty id"),
                )
                .file(&f.rel)
                .total(f.rows),
            );
        }
    }
    for (group, reference, tested, folder, role) in [
        (0, labels, &tests, "inputs/", Role::Inputs),
        (
            1,
            sample_labels,
            &sample_tests,
            "sample/inputs/",
            Role::SampleInputs,
        ),
    ] {
        let Some(l) = reference.filter(|l| l.ids.iter().any(|s| !s.is_empty())) else {
            continue;
        };
        if tested.is_empty() {
            // No file has the id column at all: the check cannot match ids, and the inputs
            // may still be usable (rows in label order, a custom scorer), so an admin
            // decides. Files that have the column without one label id are an error.
            let carriers = files.iter().any(|f| f.role == role);
            let (severity, why) = if carriers {
                (Severity::Error, "participants cannot predict its rows")
            } else {
                (
                    Severity::Warning,
                    "the check cannot match test rows to labels",
                )
            };
            out.findings.push(
                Finding::new(
                    Code::InputsNoTestRows,
                    severity,
                    0,
                    format!(
                        "no file under {folder} has the id column with ids of {}: {why}",
                        l.rel
                    ),
                )
                .file(folder),
            );
            continue;
        }
        let distinct = m.distinct(group);
        let missing = distinct - m.distinct_in(group, tested);
        if missing > 0 {
            let file = if tested.len() == 1 {
                files[tested[0] - 2].rel.as_str()
            } else {
                folder
            };
            out.findings.push(
                Finding::new(
                    Code::InputsLabelsWithoutRow,
                    Severity::Error,
                    missing,
                    format!("{missing} ids of {} have no row in the test inputs: no submission can predict them", l.rel),
                )
                .file(file)
                .total(distinct),
            );
        }
    }
    if labels.is_some() && (sample_labels.is_some() || public.len() > 1) {
        let overlap = m.distinct_in(0, &public);
        if overlap > 0 {
            out.findings.push(
                Finding::new(
                    Code::SampleOverlapsPrivate,
                    Severity::Error,
                    overlap,
                    format!("{overlap} ids of the public sample are private label ids: their labels would be handed out"),
                )
                .file("sample/"),
            );
        }
    }
    Ok(out)
}

/// A test file's feature rows and the training and sample rows compared with them.
pub struct TestRows {
    /// The test file.
    pub rel: String,
    /// Its feature columns (every column but the id), by name.
    pub names: Vec<String>,
    /// Training files' row hashes over `names`.
    pub train: Vec<Sorted>,
    /// Sample files' row hashes over `names` (one set per worker), with their row counts.
    pub sample: Vec<(Vec<Sorted>, u64)>,
    /// The test file's own row set after its pass.
    pub done: Option<RowSet>,
    /// The test file's rows.
    pub rows: u64,
    /// The prefixes of every training and sample row, as bits; `None` once a side came
    /// without them (then no prefilter).
    pub prefixes: Option<Vec<u64>>,
}

/// Most hashes probed in memory (training and sample sides together): 32 MiB of hashes.
pub const PROBE_MAX: u64 = 1 << 21;

impl TestRows {
    /// Adds a training or sample file's row prefixes.
    pub fn add_prefixes(&mut self, bits: &[u64]) {
        match (&mut self.prefixes, bits.is_empty()) {
            (_, true) => self.prefixes = None,
            (Some(mine), false) if mine.is_empty() => *mine = bits.to_vec(),
            (Some(mine), false) => mine.iter_mut().zip(bits).for_each(|(a, b)| *a |= b),
            (None, false) => {}
        }
    }

    /// The row set to feed during the test file's pass over columns `cols`: probes in memory
    /// when the other sides are small, else collects every row for a merge.
    pub fn row_set(&self, cols: Vec<usize>) -> io::Result<RowSet> {
        let total: u64 = self
            .train
            .iter()
            .chain(self.sample.iter().flat_map(|s| &s.0))
            .map(Sorted::len)
            .sum();
        let mut set = RowSet {
            cols,
            ..RowSet::default()
        };
        if total > PROBE_MAX {
            set.collect = true;
            return Ok(set);
        }
        if !self.train.is_empty() {
            let mut train = hashbrown::HashSet::new();
            for t in &self.train {
                train.extend(
                    t.load(PROBE_MAX)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|h| h as u64),
                );
            }
            set.train = Some(train);
        }
        for (sets, _) in &self.sample {
            let mut counts: hashbrown::HashMap<u64, (u64, bool)> = hashbrown::HashMap::new();
            for s in sets {
                for (h, n) in s.load_counts(PROBE_MAX)?.unwrap_or_default() {
                    counts.entry(h as u64).or_insert((0, false)).0 += n;
                }
            }
            set.samples.push(counts);
        }
        set.build_filter();
        if let Some(p) = self.prefixes.as_ref().filter(|p| !p.is_empty()) {
            set.prefixes = p.clone();
        }
        Ok(set)
    }

    /// (test rows equal to a training row, per sample file the sample rows equal to a test
    /// row).
    fn duplicates(&self) -> io::Result<(u64, Vec<u64>)> {
        let Some(done) = &self.done else {
            return Ok((0, Vec::new()));
        };
        if done.collect {
            let own: Vec<&Sorted> = done.collected.iter().collect();
            let train: Vec<&Sorted> = self.train.iter().collect();
            let mut groups: Vec<&[&Sorted]> = vec![&own, &train];
            let samples: Vec<Vec<&Sorted>> =
                self.sample.iter().map(|s| s.0.iter().collect()).collect();
            groups.extend(samples.iter().map(Vec::as_slice));
            let m = Membership::of(&groups)?;
            let sample_rows = (0..self.sample.len())
                .map(|k| m.rows_in(k + 2, &[0]))
                .collect();
            return Ok((m.rows_in(0, &[1]), sample_rows));
        }
        let sample_rows = done
            .samples
            .iter()
            .map(|s| s.values().filter(|e| e.1).map(|e| e.0).sum())
            .collect();
        Ok((done.train_hits, sample_rows))
    }
}

/// Identical feature rows between each test file and the training and sample files.
pub fn rows(tests: &[TestRows], is_test: impl Fn(&str) -> bool) -> io::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for t in tests.iter().filter(|t| is_test(&t.rel)) {
        let (train, samples) = t.duplicates()?;
        if train > 0 {
            out.push(
                Finding::new(
                    Code::LeakTrainTestDuplicates,
                    Severity::Warning,
                    train,
                    format!("{train} test rows have exactly the features of a training row"),
                )
                .file(&t.rel)
                .total(t.rows),
            );
        }
        for (n, (_, rows)) in samples.into_iter().zip(&t.sample) {
            if n > 0 {
                out.push(
                    Finding::new(
                        Code::SampleDuplicatesPrivateRows,
                        Severity::Warning,
                        n,
                        format!(
                            "{n} sample rows have exactly the features of a row of {}",
                            t.rel
                        ),
                    )
                    .file("sample/inputs/")
                    .total(*rows),
                );
            }
        }
    }
    Ok(out)
}
