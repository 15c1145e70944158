//! Scoring: everything about predictions and metrics.
//!
//! Owns, one concern a file (modules lower in the list never use those above them):
//! - [`cli`]: the core of the `holdout score` command;
//! - [`custom`]: the helpers for an organiser's custom scorer;
//! - [`predictions`]: the predictions contract, the safe open, and scoring a file in one pass
//!   or two halves; `pass` is the row loop that joins predictions with labels, `plan` what a
//!   pass computes, `unknown_classes` the bounded tally of predicted classes the labels lack,
//!   `report` the scores made from the totals;
//! - `labels_cache` and [`labels`]: loading and caching the ground truth, with its row parser
//!   in `label_rows`, its id index in `index` and the memory hints of `memory`;
//! - `spec`: the scoring configuration ([`ScoringSpec`]) and how labels are read for it
//!   ([`LabelSpec`]); `errors`: every refusal ([`LabelsError`] for the organiser,
//!   [`PredictionsError`] for the participant);
//! - [`metrics`]: the metric math; [`split`]: the public/private split; `csv`: streaming CSV.
//!
//! ```text
//!  labels.csv ──load_labels──▶ LabelSet (ids interned + hash index, targets, split bits)
//!                                  │            cached by LabelsCache as Arc<LabelSet>
//!  predictions.csv ──open_predictions (O_NOFOLLOW, fstat, size cap)
//!        └──score_predictions: a pass over each half of the file, on two threads
//!              (on any problem: one pass from the start, for the exact first error)
//!              ─▶ per-part totals (+ public row losses) ─▶ ScoreReport {all, public, private}
//! ```
//!
//! This module never talks to containers, the store or the network, never logs, and never
//! puts a label value or an id's split membership into a message a participant can see.

pub mod cli;
pub mod contract;
mod csv;
pub mod custom;
mod errors;
mod index;
mod label_rows;
pub mod labels;
mod labels_cache;
mod memory;
pub mod metrics;
mod pass;
mod plan;
pub mod predictions;
mod report;
mod spec;
pub mod split;
mod unknown_classes;

#[cfg(test)]
mod tests;

pub use contract::{ContractError, check_contract};
pub use custom::{ScorerOutput, ScorerOutputError, parse_scores_json, write_split_labels};
pub use errors::{LabelsError, PredictionsError};
pub use labels::{LabelSet, load_labels};
pub use labels_cache::LabelsCache;
pub use metrics::Metric;
pub use predictions::{open_predictions, score_predictions, score_reader};
pub use report::ScoreReport;
pub use spec::{LabelSpec, ScoringSpec, SpecError, TargetKind};
pub use split::Split;
