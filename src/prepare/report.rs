//! What a check finds, as data: the [`Report`], its [`Finding`]s with stable [`Code`]s, and
//! the summaries the data card is built from.
//!
//! Everything here is safe to store with the challenge and show to its admins: counts,
//! shares, file and column names, hashes of whole files. It must never hold a value read
//! from a data file — no id, no target, no cell, no quasi-identifier key. Class names are
//! the one exception, and only when the class also appears in the public sample (see
//! `integrity::class_names`).

use serde::{Deserialize, Serialize};

use super::CheckSpec;

/// The report format; bumped when a field changes meaning.
pub const REPORT_FORMAT: u32 = 1;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The challenge must not open.
    Error,
    /// An admin should look; the challenge may open.
    Warning,
    /// For the record and the data card.
    Info,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A stable finding code. The string form is the contract: tools match on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Code {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable string, e.g. `labels.duplicate_id`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }
        }
    };
}

codes! {
    /// `labels.csv` is missing.
    LayoutNoLabels = "layout.no_labels",
    /// `inputs/` is missing or holds no file.
    LayoutNoInputs = "layout.no_inputs",
    /// `sample/` is missing or incomplete.
    LayoutNoSample = "layout.no_sample",
    /// A file outside the layout, not checked.
    LayoutUnexpectedFile = "layout.unexpected_file",
    /// More files carry the id column than one comparison pass handles.
    LayoutTooManyFiles = "layout.too_many_files",
    /// A symbolic link where the sandbox will mount files.
    LayoutSymlink = "layout.symlink",
    /// A file or folder the sandbox user (uid 65534) cannot read.
    PermSandboxUnreadable = "perm.sandbox_unreadable",
    /// The check itself could not read a file.
    FileUnreadable = "file.unreadable",
    /// Not CSV the check can parse (an unclosed quote, a record over the cap).
    FileMalformed = "file.malformed",
    /// Rows whose number of fields differs from the header's.
    FileRaggedRows = "file.ragged_rows",
    /// No data row.
    FileEmpty = "file.empty",
    /// Two columns with the same name.
    FileDuplicateColumn = "file.duplicate_column",
    /// A header cell that looks like data (a number, personal data); shown as `#N`.
    FileHeaderLooksLikeData = "file.header_looks_like_data",
    /// Rows that are not valid UTF-8.
    FileNotUtf8 = "file.not_utf8",
    /// Records with a quoted line break (the scorer reads labels line by line).
    FileMultilineRecords = "file.multiline_records",
    /// A separator other than a comma.
    FileDelimiter = "file.delimiter",
    /// The id column is absent.
    LabelsNoIdColumn = "labels.no_id_column",
    /// The target column is absent.
    LabelsNoTargetColumn = "labels.no_target_column",
    /// Rows whose id appeared on an earlier row.
    LabelsDuplicateId = "labels.duplicate_id",
    /// Rows with an empty id.
    LabelsEmptyId = "labels.empty_id",
    /// Rows with an empty target.
    LabelsMissingTarget = "labels.missing_target",
    /// Targets that are not finite numbers under a regression metric.
    LabelsBadTarget = "labels.bad_target",
    /// Fewer than two classes under a class metric.
    LabelsSingleClass = "labels.single_class",
    /// Not exactly two classes under roc_auc or log_loss.
    LabelsNotBinary = "labels.not_binary",
    /// More classes than the check tracks.
    LabelsTooManyClasses = "labels.too_many_classes",
    /// The class balance, for the card.
    LabelsClassBalance = "labels.class_balance",
    /// No inputs file carries the labels' ids (a warning when no file has the id column at
    /// all: the ids cannot be matched).
    InputsNoTestRows = "inputs.no_test_rows",
    /// Rows of a test file whose id has no label.
    InputsRowsWithoutLabel = "inputs.rows_without_label",
    /// Labels whose id is in no test file.
    InputsLabelsWithoutRow = "inputs.labels_without_row",
    /// Rows of a test file whose id appeared on an earlier row.
    InputsDuplicateId = "inputs.duplicate_id",
    /// Rows of a test file with an empty id.
    InputsEmptyId = "inputs.empty_id",
    /// Sample ids that are also private label ids.
    SampleOverlapsPrivate = "sample.overlaps_private",
    /// Sample feature rows identical to private test rows.
    SampleDuplicatesPrivateRows = "sample.duplicates_private_rows",
    /// Classes of the labels absent from the sample's labels.
    SampleMissingClasses = "sample.missing_classes",
    /// The sizes of the public and private parts.
    SplitSizes = "split.sizes",
    /// A part with no row.
    SplitEmptyPart = "split.empty_part",
    /// A part too small for the metric to separate submissions.
    SplitPartTooSmall = "split.part_too_small",
    /// A class present in the labels but absent from a part.
    SplitClassAbsent = "split.class_absent",
    /// The target column in a file that carries private test ids.
    LeakTargetInInputs = "leak.target_in_inputs",
    /// One column predicts the label almost perfectly by its value ordering.
    LeakPredictiveColumn = "leak.predictive_column",
    /// One column's value determines the label exactly.
    LeakFunctionalDependency = "leak.functional_dependency",
    /// The row order of a test file correlates with the label.
    LeakRowOrder = "leak.row_order",
    /// The id order of a test file correlates with the label.
    LeakIdOrder = "leak.id_order",
    /// Test rows whose features equal a training row's.
    LeakTrainTestDuplicates = "leak.train_test_duplicates",
    /// E-mail addresses.
    PiiEmail = "pii.email",
    /// Phone numbers (French or E.164).
    PiiPhone = "pii.phone",
    /// IBANs with a valid mod-97 check.
    PiiIban = "pii.iban",
    /// Payment card numbers with a valid Luhn check.
    PiiCard = "pii.card",
    /// French social security numbers (NIR) with a valid key.
    PiiNir = "pii.nir",
    /// SIREN numbers with a valid Luhn check.
    PiiSiren = "pii.siren",
    /// SIRET numbers with a valid Luhn check.
    PiiSiret = "pii.siret",
    /// IPv4 addresses.
    PiiIpv4 = "pii.ipv4",
    /// IPv6 addresses.
    PiiIpv6 = "pii.ipv6",
    /// Dates that look like birth dates.
    PiiBirthDate = "pii.birth_date",
    /// A column whose name suggests a direct identifier.
    PiiIdentifierColumn = "pii.identifier_column",
    /// k-anonymity over the declared quasi-identifiers, for the card.
    KanonK = "kanon.k",
    /// k below `min_k`.
    KanonBelowMinK = "kanon.below_min_k",
    /// ℓ-diversity of the target below `min_l`.
    KanonLowDiversity = "kanon.low_diversity",
    /// Declared quasi-identifiers found in no checked file.
    KanonMissingColumns = "kanon.missing_columns",
    /// More distinct groups than the check tracks.
    KanonTooManyGroups = "kanon.too_many_groups",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub code: Code,
    /// How bad it is.
    pub severity: Severity,
    /// The file, relative to the data folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The column, as shown (see [`super::scan::display_column`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// How many rows, ids, values or files (the message says which).
    pub count: u64,
    /// Out of how many, when a share makes sense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// A measure (an AUC, an interval half-width, k), named in `measure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// What `value` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// One sentence for a person, built only from counts and names.
    pub message: String,
}

impl Finding {
    /// A finding with no file, column, total or measure yet.
    pub fn new(code: Code, severity: Severity, count: u64, message: impl Into<String>) -> Self {
        Self {
            code,
            severity,
            file: None,
            column: None,
            count,
            total: None,
            value: None,
            measure: None,
            message: message.into(),
        }
    }

    /// Sets the file.
    pub fn file(mut self, file: &str) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    /// Sets the column.
    pub fn column(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }

    /// Sets the total.
    pub fn total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// Sets a named measure.
    pub fn measure(mut self, name: &str, value: f64) -> Self {
        self.measure = Some(name.to_owned());
        self.value = Some(value);
        self
    }

    /// One line: `error labels.duplicate_id labels.csv [id]: message`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.severity.as_str(), self.code);
        if let Some(f) = &self.file {
            s.push(' ');
            s.push_str(f);
        }
        if let Some(c) = &self.column {
            s.push_str(&format!(" [{c}]"));
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}

/// What a file is in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `labels.csv`: private ground truth.
    Labels,
    /// Under `inputs/`: mounted for FULL runs.
    Inputs,
    /// `sample/labels.csv`: public.
    SampleLabels,
    /// Under `sample/inputs/`: public, mounted for SMOKE runs.
    SampleInputs,
}

impl Role {
    /// Whether participants receive the file.
    pub fn is_public(self) -> bool {
        matches!(self, Role::SampleLabels | Role::SampleInputs)
    }
}

/// What a column holds, inferred from every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Only missing values.
    Empty,
    /// Whole numbers.
    Integer,
    /// Decimal numbers.
    Number,
    /// ISO or day-first dates.
    Date,
    /// Anything else.
    Text,
}

/// One column of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// Its name as shown.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// Rows where it is empty or a missing-value marker (NA, null, …).
    pub missing: u64,
}

/// One file of the layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Path relative to the data folder.
    pub path: String,
    /// Its role.
    pub role: Role,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Data rows (CSV only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Columns (CSV only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnSummary>,
}

/// The rows of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    /// The class as shown: its value when the public sample has it, else `class #N`.
    pub class: String,
    /// Rows.
    pub rows: u64,
}

/// A labels file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsSummary {
    /// The file.
    pub file: String,
    /// Data rows.
    pub rows: u64,
    /// Distinct non-empty ids.
    pub distinct_ids: u64,
    /// Rows per class, most frequent first (class targets only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassCount>,
}

/// One part of the split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartSummary {
    /// Label rows in the part.
    pub rows: u64,
    /// Rows per class, in the labels' class order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassCount>,
    /// The 95% interval half-width of the metric at this size (see `measure`).
    pub half_width: f64,
}

/// The public/private split of `labels.csv` under the challenge's seed and fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// What `half_width` measures.
    pub measure: String,
    /// The public part.
    pub public: PartSummary,
    /// The private part.
    pub private: PartSummary,
}

/// k-anonymity of one file over the declared quasi-identifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KanonSummary {
    /// The file.
    pub file: String,
    /// The quasi-identifiers found in it.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: u64,
    /// Distinct groups.
    pub groups: u64,
    /// The smallest group's size (None when too many groups were tracked).
    pub k: Option<u64>,
    /// The fewest distinct targets in a group (None without a target).
    pub l: Option<u64>,
    /// Groups smaller than `min_k`.
    pub groups_below_min_k: u64,
    /// Rows in those groups.
    pub rows_below_min_k: u64,
    /// Sizes of the smallest groups, ascending.
    pub smallest_groups: Vec<u64>,
    /// For each quasi-identifier, k with that column left out: which one to generalise.
    pub k_without: Vec<(String, u64)>,
    /// The declared generalisations that apply to these columns (`column:rule`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generalisations: Vec<String>,
    /// k if the declared generalisations were applied: what `holdout prepare pseudonymise
    /// --generalise` would achieve. Never used to pass the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_if_generalised: Option<u64>,
}

/// The keys of a public file's smallest groups, for the organiser's terminal. Never
/// serialised; its `Debug` shows no key.
#[derive(Clone, Default, PartialEq)]
pub struct LocalGroups {
    /// (file, key as `value | value | …`, rows), smallest first.
    pub groups: Vec<(String, String, u64)>,
}

impl std::fmt::Debug for LocalGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalGroups({} groups, keys redacted)",
            self.groups.len()
        )
    }
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// What was checked against.
    pub spec: CheckSpec,
    /// Every file, sorted by path.
    pub files: Vec<FileSummary>,
    /// `labels.csv`, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelsSummary>,
    /// `sample/labels.csv`, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_labels: Option<LabelsSummary>,
    /// The split of `labels.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSummary>,
    /// k-anonymity per file checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kanon: Vec<KanonSummary>,
    /// Every finding, errors first, then warnings, then infos.
    pub findings: Vec<Finding>,
    /// The generalised keys of the public sample's smallest groups, for the organiser's own
    /// terminal only: never serialised, and redacted from `Debug`.
    #[serde(skip)]
    pub local: LocalGroups,
}

impl Report {
    /// Whether any finding is an error: the challenge must not open.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The first error, which refuses the challenge.
    pub fn first_error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.severity == Severity::Error)
    }

    /// Findings of one severity.
    pub fn with_severity(&self, s: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == s)
    }

    /// Findings with a code.
    pub fn with_code(&self, code: Code) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.code == code)
    }

    /// Counts of errors, warnings and infos.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s| self.with_severity(s).count();
        (n(Severity::Error), n(Severity::Warning), n(Severity::Info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_dotted_snake_case_and_serialise_as_their_string() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            let (area, name) = s.split_once('.').expect("area.name");
            assert!(!area.is_empty() && !name.is_empty());
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase()
                    || b == b'_'
                    || b == b'.'
                    || b.is_ascii_digit())
            );
            assert_eq!(serde_json::to_string(c).unwrap(), format!("\"{s}\""));
        }
    }
}
