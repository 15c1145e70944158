//! The order of a check: the layout, every header, the two labels files, then each inputs
//! file in one pass, then the checks that relate files to each other.
//!
//! Owns which analysis each file gets (by its role and header) and what is kept between
//! passes: only id and feature-row sets (bounded, see `idset`), the bounded label maps, and
//! findings. Each file's leakage sample and k-anonymity groups are turned into findings
//! right after its pass and dropped.

use std::collections::HashMap;
use std::path::Path;

use chrono::Datelike;

use super::idset::{Sorted, compare};
use super::integrity::{Classes, LabelsAcc, LabelsOutcome, labels_findings, split_findings};
use super::kanon::{KanonAcc, LocalGroups};
use super::layout::{self, LayoutFile};
use super::leakage::{LeakSample, TargetKind};
use super::report::{
    Code, FileSummary, Finding, KanonSummary, REPORT_FORMAT, Report, Role, Severity,
};
use super::scan::{self, Head, Labeller, Pass, Scanned};
use super::{CheckError, CheckSpec, Progress};

/// A labels file after its pass.
struct LabelsRun {
    rel: String,
    rows: u64,
    ids: Option<Sorted>,
    empty_ids: u64,
    outcome: LabelsOutcome,
    /// Both the id and the target column were found.
    complete: bool,
}

/// A test inputs file (id column, no target) and the feature-row sets compared with it.
struct TestSet {
    rel: String,
    /// Its feature columns (every column but the id).
    names: Vec<String>,
    /// Whether its ids turned out to be label ids.
    is_test: bool,
    rows: u64,
    hashes: Option<Sorted>,
    /// The same features in training files.
    train: Vec<Sorted>,
    /// The same features in sample files, with their row counts.
    sample: Vec<(Sorted, u64)>,
}

/// Whose row set a hashed column set is.
enum Owner {
    Own(usize),
    Train(usize),
    Sample(usize),
}

/// State of one check.
struct Run<'a> {
    spec: &'a CheckSpec,
    kind: TargetKind,
    max_birth_year: i32,
    findings: Vec<Finding>,
    summaries: Vec<FileSummary>,
    kanon: Vec<KanonSummary>,
    local: LocalGroups,
    found_qis: Vec<String>,
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
    move |source| CheckError::Io { what, source }
}

pub(super) fn run(
    dir: &Path,
    spec: &CheckSpec,
    progress: &mut dyn Progress,
) -> Result<Report, CheckError> {
    let mut run = Run {
        spec,
        kind: if spec.metric.is_some_and(|m| m.is_regression()) {
            TargetKind::Values
        } else {
            TargetKind::Classes
        },
        max_birth_year: chrono::Utc::now().year() - 14,
        findings: Vec::new(),
        summaries: Vec::new(),
        kanon: Vec::new(),
        local: LocalGroups::default(),
        found_qis: Vec::new(),
    };
    let files = layout::discover(dir, &mut run.findings).map_err(io_err("walk the data folder"))?;
    let mut heads: HashMap<String, Head> = HashMap::new();
    for f in &files {
        let head = if f.csv {
            let forced = match f.role {
                Role::Labels | Role::SampleLabels => Some(b','),
                _ if f.rel.to_ascii_lowercase().ends_with(".tsv") => Some(b'\t'),
                _ => None,
            };
            match scan::read_head(&f.path, forced) {
                Ok(h) => Some(h),
                Err(e) => {
                    let s = Scanned::failed(e);
                    run.findings
                        .extend(scan::file_findings(&f.rel, &Head::default(), &s, false));
                    None
                }
            }
        } else {
            None
        };
        match head {
            Some(h) => {
                heads.insert(f.rel.clone(), h);
            }
            None => {
                progress.start(&f.rel, f.bytes);
                let sha = scan::sha256_file(&f.path, progress).unwrap_or_default();
                progress.finish();
                run.summaries.push(FileSummary {
                    path: f.rel.clone(),
                    role: f.role,
                    bytes: f.bytes,
                    sha256: sha,
                    rows: None,
                    columns: Vec::new(),
                });
            }
        }
    }

    let mut classes = Classes::default();
    let labels = run.labels_pass(&files, &heads, Role::Labels, &mut classes, progress)?;
    let sample_labels =
        run.labels_pass(&files, &heads, Role::SampleLabels, &mut classes, progress)?;
    let in_sample = sample_labels
        .as_ref()
        .map(|s| s.outcome.counts.clone())
        .unwrap_or_default();
    let names = classes.shown(&in_sample);
    let mut summaries = (None, None, None);
    if let Some(l) = &labels {
        let (sum, f) = labels_findings(
            &l.rel,
            l.rows,
            l.ids.as_ref(),
            l.empty_ids,
            &l.outcome,
            spec.metric,
            run.kind,
            classes.overflow,
            &names,
        )
        .map_err(io_err("read temporary files"))?;
        run.findings.extend(f);
        summaries.0 = Some(sum);
        if l.complete {
            let (split, f) = split_findings(
                &l.outcome,
                spec.metric,
                spec.preparation.max_half_width,
                &names,
            );
            run.findings.extend(f);
            summaries.2 = Some(split);
        }
    }
    if let Some(s) = &sample_labels {
        let (sum, f) = labels_findings(
            &s.rel,
            s.rows,
            s.ids.as_ref(),
            s.empty_ids,
            &s.outcome,
            spec.metric,
            run.kind,
            classes.overflow,
            &names,
        )
        .map_err(io_err("read temporary files"))?;
        run.findings
            .extend(f.into_iter().filter(|f| f.code != Code::LabelsClassBalance));
        summaries.1 = Some(sum);
        if let Some(l) = &labels {
            let missing = l
                .outcome
                .counts
                .iter()
                .enumerate()
                .filter(|&(c, &n)| n > 0 && in_sample.get(c).copied().unwrap_or(0) == 0)
                .count();
            if missing > 0 && run.kind == TargetKind::Classes {
                run.findings.push(
                    Finding::new(
                        Code::SampleMissingClasses,
                        Severity::Info,
                        missing as u64,
                        format!(
                            "{missing} classes of the labels have no row in the sample's labels"
                        ),
                    )
                    .file(&s.rel),
                );
            }
        }
    }

    let mut tests: Vec<TestSet> = files
        .iter()
        .filter(|f| f.role == Role::Inputs)
        .filter_map(|f| {
            let h = heads.get(&f.rel)?;
            let has_target = spec
                .target_column
                .as_ref()
                .is_some_and(|t| h.find(t).is_some());
            let id = h.find(&spec.id_column)?;
            let names: Vec<String> = h
                .names
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != id)
                .map(|(_, n)| n.clone())
                .collect();
            (!has_target && !names.is_empty()).then(|| TestSet {
                rel: f.rel.clone(),
                names,
                is_test: false,
                rows: 0,
                hashes: None,
                train: Vec::new(),
                sample: Vec::new(),
            })
        })
        .collect();
    let mut test_ids: Vec<(String, Sorted)> = Vec::new();
    let mut sample_test_ids: Vec<(String, Sorted)> = Vec::new();
    let mut sample_ids: Vec<Sorted> = Vec::new();
    for f in files
        .iter()
        .filter(|f| matches!(f.role, Role::Inputs | Role::SampleInputs))
    {
        let Some(head) = heads.get(&f.rel) else {
            continue;
        };
        let reference = if f.role == Role::Inputs {
            labels.as_ref()
        } else {
            sample_labels.as_ref()
        };
        let (s, is_test) = run.inputs_pass(f, head, reference, &mut tests, progress)?;
        if let Some(ids) = s.ids {
            match (f.role, is_test) {
                (Role::Inputs, true) => test_ids.push((f.rel.clone(), ids)),
                (Role::SampleInputs, true) => sample_test_ids.push((f.rel.clone(), ids)),
                (Role::SampleInputs, false) => sample_ids.push(ids),
                _ => {}
            }
        }
    }

    for (reference, tested, folder) in [
        (&labels, &test_ids, "inputs/"),
        (&sample_labels, &sample_test_ids, "sample/inputs/"),
    ] {
        let Some(l) = reference else { continue };
        let Some(lids) = l.ids.as_ref().filter(|i| !i.is_empty()) else {
            continue;
        };
        if tested.is_empty() {
            run.findings.push(
                Finding::new(
                    Code::InputsNoTestRows,
                    Severity::Error,
                    0,
                    format!("no file under {folder} has the id column with ids of {}: participants cannot predict its rows", l.rel),
                )
                .file(folder),
            );
            continue;
        }
        let sets: Vec<&Sorted> = tested.iter().map(|t| &t.1).collect();
        let o = compare(&[lids], &sets).map_err(io_err("read temporary files"))?;
        if o.only_left > 0 {
            let file = if tested.len() == 1 {
                tested[0].0.as_str()
            } else {
                folder
            };
            run.findings.push(
                Finding::new(
                    Code::InputsLabelsWithoutRow,
                    Severity::Error,
                    o.only_left,
                    format!("{} ids of {} have no row in the test inputs: no submission can predict them", o.only_left, l.rel),
                )
                .file(file)
                .total(o.only_left + o.both),
            );
        }
    }

    if let Some(lids) = labels.as_ref().and_then(|l| l.ids.as_ref()) {
        let mut public: Vec<&Sorted> = sample_ids.iter().collect();
        public.extend(sample_test_ids.iter().map(|t| &t.1));
        if let Some(s) = sample_labels.as_ref().and_then(|s| s.ids.as_ref()) {
            public.push(s);
        }
        if !public.is_empty() {
            let o = compare(&[lids], &public).map_err(io_err("read temporary files"))?;
            if o.both > 0 {
                run.findings.push(
                    Finding::new(
                        Code::SampleOverlapsPrivate,
                        Severity::Error,
                        o.both,
                        format!("{} ids of the public sample are private label ids: their labels would be handed out", o.both),
                    )
                    .file("sample/")
                    .total(o.both + o.only_right),
                );
            }
        }
    }

    for t in tests.iter().filter(|t| t.is_test) {
        let Some(h) = &t.hashes else { continue };
        if !t.train.is_empty() {
            let train: Vec<&Sorted> = t.train.iter().collect();
            let o = compare(&train, &[h]).map_err(io_err("read temporary files"))?;
            if o.right_rows_in_left > 0 {
                run.findings.push(
                    Finding::new(
                        Code::LeakTrainTestDuplicates,
                        Severity::Warning,
                        o.right_rows_in_left,
                        format!(
                            "{} test rows have exactly the features of a training row",
                            o.right_rows_in_left
                        ),
                    )
                    .file(&t.rel)
                    .total(t.rows),
                );
            }
        }
        for (sample, rows) in &t.sample {
            let o = compare(&[h], &[sample]).map_err(io_err("read temporary files"))?;
            if o.right_rows_in_left > 0 {
                run.findings.push(
                    Finding::new(
                        Code::SampleDuplicatesPrivateRows,
                        Severity::Warning,
                        o.right_rows_in_left,
                        format!(
                            "{} sample rows have exactly the features of a row of {}",
                            o.right_rows_in_left, t.rel
                        ),
                    )
                    .file("sample/inputs/")
                    .total(*rows),
                );
            }
        }
    }

    let missing: Vec<&String> = spec
        .preparation
        .quasi_identifiers
        .iter()
        .filter(|q| !run.found_qis.contains(q))
        .collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        run.findings.push(Finding::new(
            Code::KanonMissingColumns,
            Severity::Warning,
            missing.len() as u64,
            format!(
                "declared quasi-identifiers found in no checked file: {}",
                list.join(", ")
            ),
        ));
    }

    let mut findings = run.findings;
    findings.sort_by_key(|f| f.severity);
    let mut files_out = run.summaries;
    files_out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Report {
        format: REPORT_FORMAT,
        spec: spec.clone(),
        files: files_out,
        labels: summaries.0,
        sample_labels: summaries.1,
        split: summaries.2,
        kanon: run.kanon,
        findings,
        local: run.local,
    })
}

impl Run<'_> {
    fn labels_pass(
        &mut self,
        files: &[LayoutFile],
        heads: &HashMap<String, Head>,
        role: Role,
        classes: &mut Classes,
        progress: &mut dyn Progress,
    ) -> Result<Option<LabelsRun>, CheckError> {
        let Some(f) = files.iter().find(|f| f.role == role) else {
            return Ok(None);
        };
        let Some(head) = heads.get(&f.rel) else {
            return Ok(None);
        };
        let id = head.find(&self.spec.id_column);
        if id.is_none() {
            self.findings.push(
                Finding::new(
                    Code::LabelsNoIdColumn,
                    Severity::Error,
                    1,
                    format!("no column named {:?}", self.spec.id_column),
                )
                .file(&f.rel),
            );
        }
        let target = self.spec.target_column.as_ref().and_then(|t| head.find(t));
        if let (Some(t), None) = (&self.spec.target_column, target) {
            self.findings.push(
                Finding::new(
                    Code::LabelsNoTargetColumn,
                    Severity::Error,
                    1,
                    format!("no column named {t:?}"),
                )
                .file(&f.rel),
            );
        }
        let split = (role == Role::Labels).then(|| self.spec.split());
        let mut hook = LabelsAcc::new(target, self.kind, classes, split);
        let public = role.is_public();
        let pass = Pass {
            id,
            want_ids: true,
            hook: Some(&mut hook),
            labeller: Labeller::None,
            row_sets: Vec::new(),
            pii: public,
            max_birth_year: self.max_birth_year,
            kanon: None,
            leak: None,
        };
        progress.start(&f.rel, f.bytes);
        let s = scan::scan(f, head, pass, progress).map_err(io_err("write temporary files"))?;
        progress.finish();
        let outcome = hook.finish();
        self.file_done(f, head, &s, true);
        Ok(Some(LabelsRun {
            rel: f.rel.clone(),
            rows: s.rows,
            ids: s.ids,
            empty_ids: s.empty_ids,
            outcome,
            complete: id.is_some() && target.is_some(),
        }))
    }

    /// Records a file's summary and its own findings.
    fn file_done(&mut self, f: &LayoutFile, head: &Head, s: &Scanned, labels_file: bool) {
        self.findings
            .extend(scan::file_findings(&f.rel, head, s, labels_file));
        if s.pii.len() == head.names.len() && !head.names.is_empty() {
            self.findings
                .extend(scan::pii_findings(&f.rel, f.role.is_public(), head, s));
        }
        self.summaries.push(FileSummary {
            path: f.rel.clone(),
            role: f.role,
            bytes: f.bytes,
            sha256: s.sha256.clone(),
            rows: Some(s.rows),
            columns: s.columns.clone(),
        });
    }

    /// One inputs or sample inputs file; returns its pass and whether it is a test file.
    fn inputs_pass(
        &mut self,
        f: &LayoutFile,
        head: &Head,
        reference: Option<&LabelsRun>,
        tests: &mut [TestSet],
        progress: &mut dyn Progress,
    ) -> Result<(Scanned, bool), CheckError> {
        let spec = self.spec;
        let public = f.role == Role::SampleInputs;
        let id = head.find(&spec.id_column);
        let target = spec.target_column.as_ref().and_then(|t| head.find(t));
        let labeller = match (spec.target_column.is_some(), target, id, reference) {
            (false, ..) => Labeller::None,
            (true, Some(c), ..) => Labeller::Own(c, self.kind),
            (true, None, Some(_), Some(r)) => Labeller::Join(&r.outcome.map),
            _ => Labeller::None,
        };
        let with_targets = match &labeller {
            Labeller::None => false,
            Labeller::Own(..) => true,
            Labeller::Join(m) => m.is_complete(),
        };
        let leak = (!matches!(labeller, Labeller::None)).then(|| {
            LeakSample::new(
                (0..head.names.len())
                    .filter(|&c| Some(c) != id && Some(c) != target)
                    .map(|c| (c, head.shown[c].clone()))
                    .collect(),
            )
        });
        let mut row_sets = Vec::new();
        let mut owners = Vec::new();
        for (t, ts) in tests.iter().enumerate() {
            let cols: Option<Vec<usize>> = ts.names.iter().map(|n| head.find(n)).collect();
            let Some(cols) = cols else { continue };
            let owner = if ts.rel == f.rel {
                Owner::Own(t)
            } else if public {
                Owner::Sample(t)
            } else if target.is_some() {
                Owner::Train(t)
            } else {
                continue;
            };
            row_sets.push(cols);
            owners.push(owner);
        }
        let scope = public || spec.preparation.scan_inputs;
        let qis: Vec<_> = spec
            .preparation
            .quasi_identifiers
            .iter()
            .filter_map(|q| {
                head.find(q)
                    .map(|c| (c, q.clone(), spec.preparation.generalise.get(q).copied()))
            })
            .collect();
        if scope {
            self.found_qis.extend(qis.iter().map(|q| q.1.clone()));
        }
        let kanon = (scope && !qis.is_empty()).then(|| KanonAcc::new(qis, public));
        let pass = Pass {
            id,
            want_ids: id.is_some(),
            hook: None,
            labeller,
            row_sets,
            pii: scope,
            max_birth_year: self.max_birth_year,
            kanon,
            leak,
        };
        progress.start(&f.rel, f.bytes);
        let mut s = scan::scan(f, head, pass, progress).map_err(io_err("write temporary files"))?;
        progress.finish();
        self.file_done(f, head, &s, false);

        let mut is_test = false;
        let lids = reference.and_then(|r| r.ids.as_ref());
        if let (Some(ids), Some(lids)) = (&s.ids, lids) {
            let o = compare(&[lids], &[ids]).map_err(io_err("read temporary files"))?;
            if target.is_some() && o.both > 0 && !public {
                self.findings.push(
                    Finding::new(
                        Code::LeakTargetInInputs,
                        Severity::Error,
                        o.both,
                        format!("{} rows carry a private test id and the target column: their labels are given away", o.both),
                    )
                    .file(&f.rel)
                    .column(&head.shown[target.unwrap_or_default()])
                    .total(s.rows),
                );
            } else if target.is_none() && o.both > 0 {
                is_test = true;
                if o.only_right > 0 {
                    self.findings.push(
                        Finding::new(
                            Code::InputsRowsWithoutLabel,
                            Severity::Error,
                            o.only_right,
                            format!("{} ids of this test file have no label: predictions for them cannot be scored", o.only_right),
                        )
                        .file(&f.rel)
                        .total(o.only_right + o.both),
                    );
                }
                let dup = ids.len() - o.only_right - o.both;
                if dup > 0 {
                    self.findings.push(
                        Finding::new(
                            Code::InputsDuplicateId,
                            Severity::Error,
                            dup,
                            format!("{dup} rows repeat an id of an earlier row"),
                        )
                        .file(&f.rel)
                        .total(s.rows),
                    );
                }
                if s.empty_ids > 0 {
                    let n = s.empty_ids;
                    self.findings.push(
                        Finding::new(
                            Code::InputsEmptyId,
                            Severity::Error,
                            n,
                            format!("{n} rows have an empty id"),
                        )
                        .file(&f.rel)
                        .total(s.rows),
                    );
                }
            }
        } else if let (Some(t), None, false) = (target, id, public) {
            self.findings.push(
                Finding::new(
                    Code::LeakTargetInInputs,
                    Severity::Warning,
                    s.rows,
                    "this file carries the target column and no id column: if it holds test rows, it gives their labels away",
                )
                .file(&f.rel)
                .column(&head.shown[t]),
            );
        }
        if let Some(leak) = s.leak.take() {
            self.findings.extend(leak.findings(
                self.kind,
                &f.rel,
                f.role == Role::Inputs && is_test,
            ));
        }
        if let Some(k) = s.kanon.take() {
            let p = &spec.preparation;
            let (summary, found, local) = k.finish(&f.rel, public, p.min_k, p.min_l, with_targets);
            self.kanon.push(summary);
            self.findings.extend(found);
            self.local.groups.extend(local.groups);
        }
        for (sorted, owner) in std::mem::take(&mut s.row_sets).into_iter().zip(owners) {
            match owner {
                Owner::Own(t) => {
                    tests[t].hashes = Some(sorted);
                    tests[t].rows = s.rows;
                    tests[t].is_test = is_test;
                }
                Owner::Train(t) => tests[t].train.push(sorted),
                Owner::Sample(t) => tests[t].sample.push((sorted, s.rows)),
            }
        }
        Ok((s, is_test))
    }
}
