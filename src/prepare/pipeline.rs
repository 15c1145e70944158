//! The order of a check: the layout, every header, the two labels files, then each inputs
//! file in one pass — training files first, then the sample, then test files, so a test
//! file's rows can be probed against the smaller sides — then the checks that relate files.
//!
//! Owns which analysis each file gets (by its role and header) and what is kept between
//! passes: only id and feature-row sets (bounded, see `idset`), the bounded label maps, and
//! findings. Each file's leakage sample and k-anonymity groups become findings right after
//! its pass and are dropped.

use std::collections::HashMap;
use std::path::Path;

use chrono::Datelike;

use super::findings::{file_findings, pii_findings};
use super::head::{Head, read_head};
use super::integrity::{class_names, labels_findings};
use super::kanon::KanonAcc;
use super::layout::{self, LayoutFile};
use super::leakage::{LeakSample, TargetKind};
use super::relate::{self, IdSet, TestRows};
use super::report::{
    Code, FileSummary, Finding, KanonSummary, LocalGroups, REPORT_FORMAT, Report, Role, Severity,
};
use super::scan::{self, Labeller, Pass, RowSet, Scanned};
use super::split_check::split_findings;
use super::targets::{LabelsAcc, LabelsOutcome};
use super::{CheckError, CheckSpec, Progress};

/// A labels file after its pass.
struct LabelsRun {
    ids: IdSet,
    outcome: LabelsOutcome,
    /// Both the id and the target column were found.
    complete: bool,
    has_id: bool,
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
    id_sets: Vec<IdSet>,
    tests: Vec<TestRows>,
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
    move |source| CheckError::Io { what, source }
}

pub(super) fn run(
    dir: &Path,
    spec: &CheckSpec,
    progress: &mut dyn Progress,
) -> Result<Report, CheckError> {
    let regression = spec.metric.is_some_and(|m| m.is_regression());
    let mut run = Run {
        spec,
        kind: if regression {
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
        id_sets: Vec::new(),
        tests: Vec::new(),
    };
    let files = layout::discover(dir, &mut run.findings).map_err(io_err("walk the data folder"))?;
    let heads = run.heads(&files, progress);
    let labels = run.labels_pass(&files, &heads, Role::Labels, progress)?;
    let sample_labels = run.labels_pass(&files, &heads, Role::SampleLabels, progress)?;

    let has_target = |h: &Head| {
        spec.target_column
            .as_ref()
            .is_some_and(|t| h.find(t).is_some())
    };
    for f in files.iter().filter(|f| f.role == Role::Inputs) {
        let Some(h) = heads.get(&f.rel) else { continue };
        let Some(id) = h.find(&spec.id_column) else {
            continue;
        };
        let names: Vec<String> = h
            .names
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != id)
            .map(|(_, n)| n.clone())
            .collect();
        if !has_target(h) && !names.is_empty() {
            run.tests.push(TestRows {
                rel: f.rel.clone(),
                names,
                train: Vec::new(),
                sample: Vec::new(),
                done: None,
                rows: 0,
                prefixes: Some(Vec::new()),
            });
        }
    }
    // Training files, then the sample, then the rest: the test files' rows are probed
    // against what the first two collected.
    let rank = |f: &LayoutFile| match (f.role, heads.get(&f.rel).is_some_and(has_target)) {
        (Role::Inputs, true) => 0,
        (Role::SampleInputs, _) => 1,
        _ => 2,
    };
    let mut order: Vec<&LayoutFile> = files
        .iter()
        .filter(|f| matches!(f.role, Role::Inputs | Role::SampleInputs))
        .collect();
    order.sort_by_key(|f| rank(f));
    for f in order {
        let Some(head) = heads.get(&f.rel) else {
            continue;
        };
        let reference = if f.role == Role::Inputs {
            labels.as_ref()
        } else {
            sample_labels.as_ref()
        };
        run.inputs_pass(
            f,
            head,
            reference.filter(|r| r.has_id).map(|r| &r.outcome),
            progress,
        )?;
    }

    let relations = relate::ids(
        labels.as_ref().filter(|l| l.has_id).map(|l| &l.ids),
        sample_labels.as_ref().filter(|l| l.has_id).map(|l| &l.ids),
        &run.id_sets,
    )
    .map_err(io_err("read temporary files"))?;
    run.findings.extend(relations.findings);
    let sample_outcome = sample_labels.as_ref().map(|s| &s.outcome);
    let mut summaries = (None, None, None);
    for (k, l) in [&labels, &sample_labels].into_iter().enumerate() {
        let Some(l) = l else { continue };
        let names = class_names(&l.outcome.classes, sample_outcome);
        let ids =
            relations.labels_distinct[k].map(|d| (l.ids.ids.iter().map(|s| s.len()).sum(), d));
        let (sum, f) = labels_findings(
            &l.ids.rel,
            l.ids.rows,
            ids,
            l.ids.empty_ids,
            &l.outcome,
            spec.metric,
            run.kind,
            &names,
        );
        if k == 0 {
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
        } else {
            run.findings
                .extend(f.into_iter().filter(|f| f.code != Code::LabelsClassBalance));
            summaries.1 = Some(sum);
        }
    }
    if let (Some(l), Some(s)) = (&labels, &sample_labels) {
        let in_sample = |v: &Vec<u8>| {
            s.outcome
                .classes
                .find(v)
                .is_some_and(|c| s.outcome.counts.get(c).is_some_and(|&n| n > 0))
        };
        let missing = l
            .outcome
            .classes
            .values()
            .iter()
            .zip(&l.outcome.counts)
            .filter(|&(v, &n)| n > 0 && !in_sample(v))
            .count();
        if missing > 0 && run.kind == TargetKind::Classes {
            run.findings.push(
                Finding::new(
                    Code::SampleMissingClasses,
                    Severity::Info,
                    missing as u64,
                    format!("{missing} classes of the labels have no row in the sample's labels"),
                )
                .file(&s.ids.rel),
            );
        }
    }
    let dups = relate::rows(&run.tests, |rel| relations.tests.iter().any(|t| t == rel))
        .map_err(io_err("read temporary files"))?;
    run.findings.extend(dups);
    let missing: Vec<&str> = spec
        .preparation
        .quasi_identifiers
        .iter()
        .filter(|q| !run.found_qis.contains(q))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        run.findings.push(Finding::new(
            Code::KanonMissingColumns,
            Severity::Warning,
            missing.len() as u64,
            format!(
                "declared quasi-identifiers found in no checked file: {}",
                missing.join(", ")
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
    /// Reads every CSV header; other files (and CSVs whose header cannot be read) are only
    /// hashed.
    fn heads(
        &mut self,
        files: &[LayoutFile],
        progress: &mut dyn Progress,
    ) -> HashMap<String, Head> {
        let mut heads = HashMap::new();
        for f in files {
            if f.csv {
                let forced = match f.role {
                    Role::Labels | Role::SampleLabels => Some(b','),
                    _ if f.rel.to_ascii_lowercase().ends_with(".tsv") => Some(b'\t'),
                    _ => None,
                };
                match read_head(&f.path, forced) {
                    Ok(h) => {
                        heads.insert(f.rel.clone(), h);
                        continue;
                    }
                    Err(e) => self.findings.extend(file_findings(
                        &f.rel,
                        &Head::default(),
                        &Scanned::failed(e),
                        false,
                    )),
                }
            }
            progress.start(&f.rel, f.bytes);
            let sha = scan::sha256_file(&f.path, progress).unwrap_or_default();
            progress.finish();
            self.summaries.push(FileSummary {
                path: f.rel.clone(),
                role: f.role,
                bytes: f.bytes,
                sha256: sha,
                rows: None,
                columns: Vec::new(),
            });
        }
        heads
    }

    fn labels_pass(
        &mut self,
        files: &[LayoutFile],
        heads: &HashMap<String, Head>,
        role: Role,
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
        let pass = Pass {
            id,
            want_ids: true,
            labels: Some(LabelsAcc::new(target, self.kind, split)),
            labeller: Labeller::None,
            row_sets: Vec::new(),
            pii: role.is_public(),
            max_birth_year: self.max_birth_year,
            kanon: None,
            leak: None,
        };
        progress.start(&f.rel, f.bytes);
        let mut s = scan::scan(f, head, pass, progress).map_err(io_err("write temporary files"))?;
        progress.finish();
        let outcome = s
            .labels
            .take()
            .expect("a labels pass returns its targets")
            .finish();
        self.file_done(f, head, &s, true);
        Ok(Some(LabelsRun {
            ids: IdSet {
                rel: f.rel.clone(),
                role,
                target: None,
                ids: std::mem::take(&mut s.ids),
                rows: s.rows,
                empty_ids: s.empty_ids,
            },
            outcome,
            complete: id.is_some() && target.is_some(),
            has_id: id.is_some(),
        }))
    }

    /// Records a file's summary and its own findings.
    fn file_done(&mut self, f: &LayoutFile, head: &Head, s: &Scanned, labels_file: bool) {
        self.findings
            .extend(file_findings(&f.rel, head, s, labels_file));
        if s.pii.len() == head.names.len() && !head.names.is_empty() {
            self.findings
                .extend(pii_findings(&f.rel, f.role.is_public(), head, s));
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

    /// The feature-row sets a file feeds, and whose they are.
    fn row_sets(
        &self,
        f: &LayoutFile,
        head: &Head,
        has_target: bool,
    ) -> Result<(Vec<RowSet>, Vec<Owner>), CheckError> {
        let (mut sets, mut owners) = (Vec::new(), Vec::new());
        for (t, test) in self.tests.iter().enumerate() {
            let Some(cols) = test
                .names
                .iter()
                .map(|n| head.find(n))
                .collect::<Option<Vec<usize>>>()
            else {
                continue;
            };
            let (set, owner) = if test.rel == f.rel {
                if test.train.is_empty() && test.sample.is_empty() {
                    continue;
                }
                (
                    test.row_set(cols).map_err(io_err("read temporary files"))?,
                    Owner::Own(t),
                )
            } else if f.role == Role::SampleInputs {
                (
                    RowSet {
                        cols,
                        collect: true,
                        ..RowSet::default()
                    },
                    Owner::Sample(t),
                )
            } else if has_target {
                (
                    RowSet {
                        cols,
                        collect: true,
                        ..RowSet::default()
                    },
                    Owner::Train(t),
                )
            } else {
                continue;
            };
            sets.push(set);
            owners.push(owner);
        }
        Ok((sets, owners))
    }

    /// One inputs or sample inputs file; `labels` is the outcome of the labels file its ids
    /// refer to.
    fn inputs_pass(
        &mut self,
        f: &LayoutFile,
        head: &Head,
        labels: Option<&LabelsOutcome>,
        progress: &mut dyn Progress,
    ) -> Result<(), CheckError> {
        let spec = self.spec;
        let public = f.role == Role::SampleInputs;
        let id = head.find(&spec.id_column);
        let target = spec.target_column.as_ref().and_then(|t| head.find(t));
        let labeller = match (spec.target_column.is_some(), target, id, labels) {
            (true, Some(c), ..) => Labeller::Own(c, self.kind),
            (true, None, Some(_), Some(l)) => Labeller::Join(&l.map),
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
        let (row_sets, owners) = self.row_sets(f, head, target.is_some())?;
        let scope = public || spec.preparation.scan_inputs;
        let p = &spec.preparation;
        let qis: Vec<_> = p
            .quasi_identifiers
            .iter()
            .filter_map(|q| {
                head.find(q)
                    .map(|c| (c, q.clone(), p.generalise.get(q).copied()))
            })
            .collect();
        if scope {
            self.found_qis.extend(qis.iter().map(|q| q.1.clone()));
        }
        let kanon = (scope && !qis.is_empty()).then(|| KanonAcc::new(qis, public));
        let pass = Pass {
            id,
            want_ids: id.is_some(),
            labels: None,
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

        if let (Some(t), None, false) = (target, id, public) {
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
            let order = f.role == Role::Inputs && target.is_none() && s.labelled > 0;
            self.findings
                .extend(leak.findings(self.kind, &f.rel, order, &s.chunk_offsets));
        }
        if let Some(k) = s.kanon.take() {
            let (summary, found, local) = k.finish(&f.rel, public, p.min_k, p.min_l, with_targets);
            self.kanon.push(summary);
            self.findings.extend(found);
            self.local.groups.extend(local.groups);
        }
        for (mut set, owner) in std::mem::take(&mut s.row_sets).into_iter().zip(owners) {
            match owner {
                Owner::Own(t) => {
                    self.tests[t].rows = s.rows;
                    self.tests[t].done = Some(set);
                }
                Owner::Train(t) => {
                    self.tests[t].add_prefixes(&set.prefixes);
                    self.tests[t].train.append(&mut set.collected);
                }
                Owner::Sample(t) => {
                    self.tests[t].add_prefixes(&set.prefixes);
                    self.tests[t]
                        .sample
                        .push((std::mem::take(&mut set.collected), s.rows));
                }
            }
        }
        if id.is_some() {
            let ids = std::mem::take(&mut s.ids);
            self.id_sets.push(IdSet {
                rel: f.rel.clone(),
                role: f.role,
                target: target.map(|t| head.shown[t].clone()),
                ids,
                rows: s.rows,
                empty_ids: s.empty_ids,
            });
        }
        Ok(())
    }
}
