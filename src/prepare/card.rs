//! The data card: what a challenge's data is, written from a check's [`Report`], in Markdown
//! and JSON.
//!
//! The full card is the report itself with a title: every file with its size and SHA-256,
//! rows, columns and their types, the class balance, the split, every finding, the declared
//! quasi-identifiers and k. It is for the challenge's admins.
//!
//! The public card is what a platform may show participants: the task, the public
//! sample's files in full (participants hold them anyway), the inputs' schema (file and
//! column names and types, which their code must know, but no size, hash, row count or
//! missing count), the public fraction (not the seed), the sample's k-anonymity, and the
//! findings about the sample that do not relate it to private data. It must never carry a
//! count computed from private files.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::{
    ClassCount, Code, ColumnKind, FileSummary, Finding, KanonSummary, Report, Role, Severity,
};

/// Who the card is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardMeta {
    /// The challenge id.
    pub challenge_id: Option<String>,
    /// Its title.
    pub title: Option<String>,
}

impl CardMeta {
    /// Reads `id` and `title` from a challenge file, ignoring everything else.
    pub fn from_challenge_toml(text: &str) -> CardMeta {
        let doc: toml::Table = toml::from_str(text).unwrap_or_default();
        let s = |k: &str| doc.get(k).and_then(toml::Value::as_str).map(str::to_owned);
        CardMeta {
            challenge_id: s("id"),
            title: s("title").filter(|t| !t.is_empty()),
        }
    }

    fn heading(&self, what: &str) -> String {
        match (&self.title, &self.challenge_id) {
            (Some(t), Some(id)) => format!("{what}: {t} (`{id}`)"),
            (Some(t), None) => format!("{what}: {t}"),
            (None, Some(id)) => format!("{what}: `{id}`"),
            (None, None) => what.to_owned(),
        }
    }
}

/// The full card as JSON: the report, with the challenge named.
pub fn full_card_json(report: &Report, meta: &CardMeta) -> Value {
    let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("card".into(), "full".into());
        m.insert("challenge_id".into(), meta.challenge_id.clone().into());
        m.insert("title".into(), meta.title.clone().into());
        m.insert("holdout_version".into(), env!("CARGO_PKG_VERSION").into());
    }
    v
}

/// One column as the public card shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicColumn {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ColumnKind,
}

/// One inputs file as the public card shows it: names and types only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicSchema {
    /// Path, relative to the data folder.
    pub path: String,
    /// Its columns.
    pub columns: Vec<PublicColumn>,
}

/// The task as participants see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTask {
    /// Id column.
    pub id_column: String,
    /// Target column.
    pub target_column: Option<String>,
    /// Metric name.
    pub metric: Option<String>,
    /// Share of the test rows behind the public leaderboard.
    pub public_fraction: f64,
}

/// What a platform may show participants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicCard {
    /// Always "public".
    pub card: String,
    /// The report format it was built from.
    pub format: u32,
    /// The challenge id.
    pub challenge_id: Option<String>,
    /// Its title.
    pub title: Option<String>,
    /// The task.
    pub task: PublicTask,
    /// Whether the check found no error.
    pub check_passed: bool,
    /// The sample's files, in full.
    pub sample_files: Vec<FileSummary>,
    /// The sample's class balance.
    pub sample_classes: Vec<ClassCount>,
    /// The inputs' schema.
    pub inputs: Vec<PublicSchema>,
    /// The declared quasi-identifiers.
    pub quasi_identifiers: Vec<String>,
    /// The k the sample must reach.
    pub min_k: u64,
    /// k-anonymity of the sample's files.
    pub sample_kanon: Vec<KanonSummary>,
    /// Findings about the sample alone.
    pub sample_findings: Vec<Finding>,
}

/// Codes that relate the sample to private data, so stay off the public card.
const PRIVATE_RELATIONS: &[Code] = &[
    Code::SampleOverlapsPrivate,
    Code::SampleDuplicatesPrivateRows,
    Code::SampleMissingClasses,
];

/// The public card of a report.
pub fn public_card(report: &Report, meta: &CardMeta) -> PublicCard {
    let spec = &report.spec;
    let is_sample = |p: &str| p.starts_with("sample/");
    PublicCard {
        card: "public".into(),
        format: report.format,
        challenge_id: meta.challenge_id.clone(),
        title: meta.title.clone(),
        task: PublicTask {
            id_column: spec.id_column.clone(),
            target_column: spec.target_column.clone(),
            metric: spec.metric.map(|m| m.name().to_owned()),
            public_fraction: spec.public_fraction,
        },
        check_passed: !report.has_errors(),
        sample_files: report
            .files
            .iter()
            .filter(|f| f.role.is_public())
            .cloned()
            .collect(),
        sample_classes: report
            .sample_labels
            .as_ref()
            .map(|s| s.classes.clone())
            .unwrap_or_default(),
        inputs: report
            .files
            .iter()
            .filter(|f| f.role == Role::Inputs)
            .map(|f| PublicSchema {
                path: f.path.clone(),
                columns: f
                    .columns
                    .iter()
                    .map(|c| PublicColumn {
                        name: c.name.clone(),
                        kind: c.kind,
                    })
                    .collect(),
            })
            .collect(),
        quasi_identifiers: spec.preparation.quasi_identifiers.clone(),
        min_k: spec.preparation.min_k,
        sample_kanon: report
            .kanon
            .iter()
            .filter(|k| is_sample(&k.file))
            .cloned()
            .collect(),
        sample_findings: report
            .findings
            .iter()
            .filter(|f| {
                f.file.as_deref().is_some_and(is_sample) && !PRIVATE_RELATIONS.contains(&f.code)
            })
            .cloned()
            .collect(),
    }
}

fn kind_name(k: ColumnKind) -> &'static str {
    match k {
        ColumnKind::Empty => "empty",
        ColumnKind::Integer => "integer",
        ColumnKind::Number => "number",
        ColumnKind::Date => "date",
        ColumnKind::Text => "text",
    }
}

/// Escapes a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn files_table(out: &mut String, files: &[FileSummary]) {
    out.push_str("| file | bytes | rows | columns | SHA-256 |\n|---|---:|---:|---:|---|\n");
    for f in files {
        let rows = f.rows.map_or("—".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | `{}` |",
            cell(&f.path),
            f.bytes,
            rows,
            f.columns.len(),
            f.sha256
        );
    }
    out.push('\n');
}

fn columns_section(out: &mut String, path: &str, cols: &[(String, ColumnKind, Option<u64>)]) {
    let _ = writeln!(
        out,
        "**`{}`**: {}\n",
        cell(path),
        cols.iter()
            .map(|(n, k, m)| match m {
                Some(m) if *m > 0 => format!("`{}` {} ({m} missing)", cell(n), kind_name(*k)),
                _ => format!("`{}` {}", cell(n), kind_name(*k)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn classes_line(classes: &[ClassCount]) -> String {
    let total: u64 = classes.iter().map(|c| c.rows).sum();
    classes
        .iter()
        .map(|c| {
            format!(
                "{}: {} ({:.1}%)",
                cell(&c.class),
                c.rows,
                100.0 * c.rows as f64 / total.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn kanon_section(out: &mut String, qis: &[String], min_k: u64, kanon: &[KanonSummary]) {
    out.push_str("## Re-identification risk\n\n");
    if qis.is_empty() {
        out.push_str("No quasi-identifiers declared.\n\n");
        return;
    }
    let _ = writeln!(
        out,
        "Declared quasi-identifiers: {} (min_k = {min_k}).\n",
        qis.iter()
            .map(|q| format!("`{q}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for k in kanon {
        let kk = k.k.map_or("not computed".to_owned(), |k| k.to_string());
        let l = k.l.map_or("—".to_owned(), |l| l.to_string());
        let what_if = match k.k_if_generalised {
            Some(g) => format!(" (k = {g} with {})", k.generalisations.join(", ")),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "- `{}` over {}: k = {kk}{what_if}, ℓ = {l}, {} groups of {} rows, {} groups below min_k",
            k.file,
            k.columns.join(", "),
            k.groups,
            k.rows,
            k.groups_below_min_k
        );
    }
    out.push('\n');
}

fn findings_table(out: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        out.push_str("None.\n");
        return;
    }
    out.push_str(
        "| severity | code | file | column | count | message |\n|---|---|---|---|---:|---|\n",
    );
    for f in findings {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            f.severity.as_str(),
            f.code,
            f.file
                .as_deref()
                .map(|s| format!("`{}`", cell(s)))
                .unwrap_or_default(),
            f.column
                .as_deref()
                .map(|s| format!("`{}`", cell(s)))
                .unwrap_or_default(),
            f.count,
            cell(&f.message)
        );
    }
}

/// The full card in Markdown.
pub fn full_card_markdown(report: &Report, meta: &CardMeta) -> String {
    let mut out = String::new();
    let spec = &report.spec;
    let (e, w, i) = report.counts();
    let _ = writeln!(out, "# {}\n", meta.heading("Data card"));
    let _ = writeln!(
        out,
        "Generated by `holdout challenge check` (report format {}). Admins only: it holds counts computed from private files.\n",
        report.format
    );
    let verdict = if e == 0 { "**passed**" } else { "**failed**" };
    let _ = writeln!(
        out,
        "Check {verdict}: {e} errors, {w} warnings, {i} notes.\n"
    );
    out.push_str("## Task\n\n");
    let _ = writeln!(
        out,
        "- id column `{}`, target column {}, metric {}\n- split: public fraction {}, seed {}\n",
        spec.id_column,
        spec.target_column
            .as_deref()
            .map_or("—".to_owned(), |t| format!("`{t}`")),
        spec.metric.map_or("custom scorer", |m| m.name()),
        spec.public_fraction,
        spec.split_seed
    );
    out.push_str("## Files\n\n");
    files_table(&mut out, &report.files);
    out.push_str("## Columns\n\n");
    for f in report.files.iter().filter(|f| !f.columns.is_empty()) {
        let cols: Vec<_> = f
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.kind, Some(c.missing)))
            .collect();
        columns_section(&mut out, &f.path, &cols);
    }
    out.push_str("## Labels and split\n\n");
    for l in [&report.labels, &report.sample_labels]
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "- `{}`: {} rows, {} distinct ids{}",
            l.file,
            l.rows,
            l.distinct_ids,
            if l.classes.is_empty() {
                String::new()
            } else {
                format!("; {}", classes_line(&l.classes))
            }
        );
    }
    if let Some(s) = &report.split {
        for (name, p) in [("public", &s.public), ("private", &s.private)] {
            let _ = writeln!(
                out,
                "- {name} part: {} rows, ±{:.4} ({}){}",
                p.rows,
                p.half_width,
                s.measure,
                if p.classes.is_empty() {
                    String::new()
                } else {
                    format!("; {}", classes_line(&p.classes))
                }
            );
        }
    }
    out.push('\n');
    kanon_section(
        &mut out,
        &spec.preparation.quasi_identifiers,
        spec.preparation.min_k,
        &report.kanon,
    );
    out.push_str("## Findings\n\n");
    findings_table(&mut out, &report.findings);
    out
}

impl PublicCard {
    /// The public card in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let meta = CardMeta {
            challenge_id: self.challenge_id.clone(),
            title: self.title.clone(),
        };
        let _ = writeln!(out, "# {}\n", meta.heading("Data card"));
        out.push_str("Generated by `holdout challenge check`: the public part, safe to show participants.\n\n");
        out.push_str("## Task\n\n");
        let _ = writeln!(
            out,
            "Predict {} for each `{}` of the test inputs, scored by {}. A share of {} of the test rows ranks the public leaderboard; the rest, the private one.\n",
            self.task
                .target_column
                .as_deref()
                .map_or("the target".to_owned(), |t| format!("`{t}`")),
            self.task.id_column,
            self.task
                .metric
                .as_deref()
                .unwrap_or("the organiser's scorer"),
            self.task.public_fraction
        );
        let _ = writeln!(
            out,
            "Preparation check: {}.\n",
            if self.check_passed {
                "passed"
            } else {
                "**failed**"
            }
        );
        out.push_str("## Inputs (mounted at `/data` for full runs)\n\n");
        for s in &self.inputs {
            let cols: Vec<_> = s
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.kind, None))
                .collect();
            columns_section(&mut out, &s.path, &cols);
        }
        out.push_str("## Public sample\n\n");
        files_table(&mut out, &self.sample_files);
        if !self.sample_classes.is_empty() {
            let _ = writeln!(
                out,
                "Sample class balance: {}.\n",
                classes_line(&self.sample_classes)
            );
        }
        kanon_section(
            &mut out,
            &self.quasi_identifiers,
            self.min_k,
            &self.sample_kanon,
        );
        out.push_str("## Findings about the sample\n\n");
        let shown: Vec<Finding> = self
            .sample_findings
            .iter()
            .filter(|f| f.severity != Severity::Info || f.code == Code::KanonK)
            .cloned()
            .collect();
        findings_table(&mut out, &shown);
        out
    }
}
