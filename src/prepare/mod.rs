//! Preparing a challenge: the check an organiser runs before a challenge opens, the
//! pseudonymisation helper, and the data card.
//!
//! [`check`] streams over every file of a challenge's data folder once (bounded memory
//! whatever the size) and returns a [`Report`] of [`Finding`]s, each with a stable
//! [`Code`], a [`Severity`], the file, the column and a count:
//!
//! ```text
//!  data dir ─► layout (roles, sandbox permissions) ─► head (separators, column names)
//!            ─► scan, one pass per CSV, read and hashed on a second thread (prefetch)
//!                 ├─ targets: classes, split parts, label map  ─► integrity, split_check
//!                 ├─ idset: id and row hashes, external sort   ─► relate (one merge)
//!                 ├─ leakage: predictive columns, row/id order
//!                 ├─ pii, pii_numbers: validated detectors      ─► findings
//!                 └─ kanon: k-anonymity and ℓ-diversity
//!            ─► Report ─► card (Markdown + JSON, full and public)
//! ```
//!
//! - [`csv_stream`]: the streaming CSV reader (quotes, line breaks in quotes).
//! - `pipeline`: the order of the passes and what each file gets.
//! - [`pseudonymise`]: keyed HMAC-SHA-256 tokens and generalisation of a CSV tree.
//!
//! This module never talks to the server, the store or the network, and never puts a value
//! read from a data file into a report, a card, an error or a log: only counts, shares,
//! measures, file names and column names (a header cell that looks like data is shown by
//! position). The one exception is a class name that the public sample shows anyway.
//! The check is blocking file I/O: a server runs it on a blocking thread.

mod card;
mod columns;
pub mod csv_stream;
mod detectors;
mod findings;
mod generalise;
mod head;
mod idset;
mod integrity;
mod kanon;
mod layout;
mod leakage;
mod lookup;
mod measures;
mod parallel;
pub mod pii;
mod pii_numbers;
mod pipeline;
mod prefetch;
pub mod pseudonymise;
mod relate;
mod report;
mod rowhash;
mod scan;
mod split_check;
mod targets;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use card::{CardMeta, PublicCard, full_card_json, full_card_markdown, public_card};
pub use generalise::Generalisation;
pub use report::LocalGroups;
pub use report::{
    ClassCount, Code, ColumnKind, ColumnSummary, FileSummary, Finding, KanonSummary, LabelsSummary,
    PartSummary, REPORT_FORMAT, Report, Role, Severity, SplitSummary,
};

use crate::scoring::Metric;

/// The `[preparation]` table of a challenge file: what only the preparation check needs.
/// Serde-ready so the domain's challenge can carry it as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preparation {
    /// Columns that, combined, could single a person out (age, postcode, sex, …).
    pub quasi_identifiers: Vec<String>,
    /// The smallest group size allowed in the public sample (k-anonymity).
    pub min_k: u64,
    /// The fewest distinct targets a group should hold (ℓ-diversity); below is a warning.
    pub min_l: u64,
    /// Generalisations to try on the quasi-identifiers: `postcode = "2"` (prefix),
    /// `"month"`, `"year"`, `"bin:10"`. k is always computed on the data as it is; these give
    /// a second k, what `holdout prepare pseudonymise --generalise` would achieve.
    pub generalise: BTreeMap<String, Generalisation>,
    /// Also run the personal-data and k-anonymity checks on `inputs/` (slower; those files
    /// are never handed out, but they are still processed).
    pub scan_inputs: bool,
    /// The widest 95% interval half-width of the metric a split part may have before
    /// `split.part_too_small` warns.
    pub max_half_width: f64,
    /// The target column, for a challenge scored by its own scorer (built-in metrics name
    /// theirs in `[scoring.builtin]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_column: Option<String>,
}

impl Default for Preparation {
    fn default() -> Self {
        Self {
            quasi_identifiers: Vec::new(),
            min_k: 5,
            min_l: 2,
            generalise: BTreeMap::new(),
            scan_inputs: false,
            max_half_width: 0.05,
            target_column: None,
        }
    }
}

/// Everything a check needs to know about the challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// The id column of the labels, the test inputs and the predictions.
    pub id_column: String,
    /// The target column of the labels; `None` skips the target checks.
    pub target_column: Option<String>,
    /// The built-in metric; `None` for a custom scorer (targets are treated as classes).
    #[serde(with = "metric_name")]
    pub metric: Option<Metric>,
    /// Share of label rows in the public part.
    pub public_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
    /// The `[preparation]` settings.
    pub preparation: Preparation,
}

mod metric_name {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::scoring::Metric;

    pub fn serialize<S: Serializer>(m: &Option<Metric>, s: S) -> Result<S::Ok, S::Error> {
        m.map(Metric::name).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Metric>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A challenge file or spec that cannot be checked against.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Not TOML.
    #[error("the challenge file is not valid TOML: {0}")]
    Toml(String),
    /// A key with the wrong type.
    #[error("{key} must be {expected}")]
    Field {
        /// The dotted key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// An unknown metric name.
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    /// A bad `[preparation]` table.
    #[error("[preparation]: {0}")]
    Preparation(String),
    /// `public_fraction` outside (0, 1).
    #[error("public_fraction must be strictly between 0 and 1, got {0}")]
    BadPublicFraction(f64),
    /// An empty id column name.
    #[error("id_column must not be empty")]
    EmptyIdColumn,
    /// `min_k` of 0.
    #[error("min_k must be at least 1")]
    BadMinK,
    /// `max_half_width` not a positive number.
    #[error("max_half_width must be a positive number")]
    BadHalfWidth,
    /// A quasi-identifier named twice, or the id or target column.
    #[error("quasi-identifier {0:?} is repeated, or is the id or target column")]
    BadQuasiIdentifier(String),
}

impl CheckSpec {
    /// A spec with the default `[preparation]` settings.
    pub fn new(
        id_column: &str,
        target_column: Option<&str>,
        metric: Option<Metric>,
        public_fraction: f64,
        split_seed: u64,
    ) -> Self {
        Self {
            id_column: id_column.to_owned(),
            target_column: target_column.map(str::to_owned),
            metric,
            public_fraction,
            split_seed,
            preparation: Preparation::default(),
        }
    }

    /// Reads the keys the check needs from a challenge file, leniently: `scoring.id_column`
    /// (default "id"), `scoring.builtin.metric` and `.target_column`, `scoring.public_fraction`
    /// (default 0.5), `scoring.split_seed` (default 0) and the `[preparation]` table. Other
    /// keys are ignored, so it reads any version of the challenge format.
    pub fn from_challenge_toml(text: &str) -> Result<CheckSpec, SpecError> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| SpecError::Toml(e.message().to_owned()))?;
        let empty = toml::Table::new();
        let scoring = match doc.get("scoring") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(SpecError::Field {
                    key: "scoring",
                    expected: "a table",
                });
            }
            None => &empty,
        };
        let id_column = match scoring.get("id_column") {
            Some(v) => v
                .as_str()
                .ok_or(SpecError::Field {
                    key: "scoring.id_column",
                    expected: "a string",
                })?
                .to_owned(),
            None => "id".to_owned(),
        };
        let public_fraction = match scoring.get("public_fraction") {
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(_) => {
                return Err(SpecError::Field {
                    key: "scoring.public_fraction",
                    expected: "a number",
                });
            }
            None => 0.5,
        };
        let split_seed = match scoring.get("split_seed") {
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(_) => {
                return Err(SpecError::Field {
                    key: "scoring.split_seed",
                    expected: "a non-negative integer",
                });
            }
            None => 0,
        };
        let builtin = scoring.get("builtin").and_then(toml::Value::as_table);
        let metric = match builtin.and_then(|b| b.get("metric")) {
            Some(v) => {
                let name = v.as_str().ok_or(SpecError::Field {
                    key: "scoring.builtin.metric",
                    expected: "a string",
                })?;
                Some(
                    Metric::from_name(name)
                        .ok_or_else(|| SpecError::UnknownMetric(name.to_owned()))?,
                )
            }
            None => None,
        };
        let target = match builtin.and_then(|b| b.get("target_column")) {
            Some(v) => Some(
                v.as_str()
                    .ok_or(SpecError::Field {
                        key: "scoring.builtin.target_column",
                        expected: "a string",
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        let preparation: Preparation = match doc.get("preparation") {
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| SpecError::Preparation(e.message().to_owned()))?,
            None => Preparation::default(),
        };
        let spec = CheckSpec {
            id_column,
            target_column: target.or_else(|| preparation.target_column.clone()),
            metric,
            public_fraction,
            split_seed,
            preparation,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec on its own.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.public_fraction > 0.0 && self.public_fraction < 1.0) {
            return Err(SpecError::BadPublicFraction(self.public_fraction));
        }
        if self.id_column.trim().is_empty() {
            return Err(SpecError::EmptyIdColumn);
        }
        let p = &self.preparation;
        if p.min_k == 0 {
            return Err(SpecError::BadMinK);
        }
        if !(p.max_half_width.is_finite() && p.max_half_width > 0.0) {
            return Err(SpecError::BadHalfWidth);
        }
        for (i, q) in p.quasi_identifiers.iter().enumerate() {
            if p.quasi_identifiers[..i].contains(q)
                || *q == self.id_column
                || Some(q) == self.target_column.as_ref()
            {
                return Err(SpecError::BadQuasiIdentifier(q.clone()));
            }
        }
        Ok(())
    }

    /// The split under check.
    pub fn split(&self) -> crate::scoring::Split {
        crate::scoring::Split {
            public_fraction: self.public_fraction,
            seed: self.split_seed,
        }
    }
}

/// A check that could not run at all. Problems with the data are findings, not errors.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The data folder is not a folder.
    #[error("{0} is not a folder")]
    NotADirectory(PathBuf),
    /// The folder could not be walked, or temporary storage failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Hears about the check's progress through large files (for a terminal progress line).
pub trait Progress {
    /// A file of `bytes` bytes is starting.
    fn start(&mut self, _file: &str, _bytes: u64) {}
    /// `done` bytes of the current file have been read.
    fn advance(&mut self, _done: u64) {}
    /// The current file is finished.
    fn finish(&mut self) {}
}

/// Progress that goes nowhere (servers, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Checks the data folder `dir` against `spec`. Blocking; streams each file once; memory
/// is bounded whatever the file sizes (see the module docs of each check).
pub fn check(
    dir: &Path,
    spec: &CheckSpec,
    progress: &mut dyn Progress,
) -> Result<Report, CheckError> {
    spec.validate()?;
    if !dir.is_dir() {
        return Err(CheckError::NotADirectory(dir.to_owned()));
    }
    pipeline::run(dir, spec, progress)
}
