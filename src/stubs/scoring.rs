//! TEMPORARY stub of the scoring API while it is written elsewhere.
#![allow(missing_docs, unused)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric { Accuracy, BalancedAccuracy, F1Macro, RocAuc, LogLoss, Rmse, Mae, R2 }
impl Metric {
    pub fn name(&self) -> &'static str { match self { Metric::Accuracy => "accuracy", Metric::BalancedAccuracy => "balanced_accuracy", Metric::F1Macro => "f1_macro", Metric::RocAuc => "roc_auc", Metric::LogLoss => "log_loss", Metric::Rmse => "rmse", Metric::Mae => "mae", Metric::R2 => "r2" } }
    pub fn from_name(s: &str) -> Option<Metric> { [Metric::Accuracy, Metric::BalancedAccuracy, Metric::F1Macro, Metric::RocAuc, Metric::LogLoss, Metric::Rmse, Metric::Mae, Metric::R2].into_iter().find(|m| m.name() == s) }
    pub fn greater_is_better(&self) -> bool { !matches!(self, Metric::LogLoss | Metric::Rmse | Metric::Mae) }
}
#[derive(Debug, Clone, Copy)]
pub struct Split { pub public_fraction: f64, pub seed: u64 }
#[derive(Debug, Clone)]
pub struct ScoringSpec { pub id_column: String, pub target_column: String, pub prediction_column: String, pub positive_label: Option<String>, pub metrics: Vec<Metric>, pub threshold: Option<f64>, pub split: Option<Split>, pub max_predictions_bytes: u64 }
pub struct LabelSet;
impl LabelSet { pub fn len(&self) -> usize { 0 } pub fn public_len(&self) -> usize { 0 } pub fn private_len(&self) -> usize { 0 } }
#[derive(Debug, thiserror::Error)]
pub enum LabelsError { #[error("x")] X }
#[derive(Debug, thiserror::Error)]
pub enum PredictionsError { #[error("x")] X }
#[derive(Debug, Clone, Default)]
pub struct ScoreReport { pub all: BTreeMap<String, f64>, pub public: BTreeMap<String, f64>, pub private: BTreeMap<String, f64>, pub rows: usize }
pub fn load_labels(path: &Path, spec: &ScoringSpec) -> Result<LabelSet, LabelsError> { unimplemented!() }
pub fn score_predictions(labels: &LabelSet, path: &Path, spec: &ScoringSpec) -> Result<ScoreReport, PredictionsError> { unimplemented!() }
#[derive(Default)]
pub struct LabelsCache;
impl LabelsCache { pub fn get_or_load(&self, path: &Path, spec: &ScoringSpec) -> Result<Arc<LabelSet>, LabelsError> { unimplemented!() } }
