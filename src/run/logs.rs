//! What runs printed, kept by the store: the run's streams, and a custom scorer's output
//! per split beside them. Written once per run (already capped by the
//! sandbox), read back for admins and, for SMOKE runs only, their submitter; who may read
//! what is decided by the caller (`crate::submissions`), never here.

use tracing::warn;

use super::plan::ScorerSplit;
use crate::domain::{SubmissionId, error_chain};
use crate::sandbox::CapturedLogs;
use crate::store::{BlobKind, Store};

/// A run's stored output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunLogs {
    /// Standard output, as kept.
    pub stdout: Vec<u8>,
    /// Standard error, as kept.
    pub stderr: Vec<u8>,
    /// Whether the run printed more than was kept.
    pub truncated: bool,
}

/// Where run logs are kept: the store's small files ([`BlobKind::Log`]), named
/// `<id>.stdout`, `<id>.stderr`, `<id>.truncated` and `<id>.scorer-<split>.<stream>` (files
/// of `state_dir/logs` with SQLite, rows with PostgreSQL, so every replica reads what any
/// worker ran).
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    /// Logs kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn put(&self, id: &SubmissionId, name: String, data: Vec<u8>) -> bool {
        match self.store.put_blob(BlobKind::Log, name, data).await {
            Ok(()) => true,
            Err(e) => {
                warn!(submission_id = %id, error = %error_chain(&e), "cannot store run logs");
                false
            }
        }
    }

    async fn get(&self, name: String) -> Vec<u8> {
        self.store
            .get_blob(BlobKind::Log, name)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Stores the participant's run output.
    pub async fn put_run(&self, id: &SubmissionId, logs: &CapturedLogs) {
        let id_s = id.as_str();
        let _ = self
            .put(id, format!("{id_s}.stdout"), logs.stdout.clone())
            .await
            && self
                .put(id, format!("{id_s}.stderr"), logs.stderr.clone())
                .await
            && (!logs.truncated || self.put(id, format!("{id_s}.truncated"), Vec::new()).await);
    }

    /// Stores a custom scorer's output for one split.
    pub async fn put_scorer(&self, id: &SubmissionId, split: ScorerSplit, logs: &CapturedLogs) {
        let name = |stream: &str| format!("{}.scorer-{}.{stream}", id.as_str(), split.as_str());
        let _ = self.put(id, name("stdout"), logs.stdout.clone()).await
            && self.put(id, name("stderr"), logs.stderr.clone()).await;
    }

    /// Deletes everything kept of a submission's runs (retention).
    pub async fn remove(&self, id: &SubmissionId) {
        let prefix = format!("{}.", id.as_str());
        if let Err(e) = self.store.delete_blobs(BlobKind::Log, prefix).await {
            warn!(submission_id = %id, error = %error_chain(&e), "cannot delete run logs");
        }
    }

    /// The participant's run output; empty when the run left none.
    pub async fn run(&self, id: &SubmissionId) -> RunLogs {
        let id_s = id.as_str();
        RunLogs {
            stdout: self.get(format!("{id_s}.stdout")).await,
            stderr: self.get(format!("{id_s}.stderr")).await,
            truncated: matches!(
                self.store
                    .get_blob(BlobKind::Log, format!("{id_s}.truncated"))
                    .await,
                Ok(Some(_))
            ),
        }
    }

    /// A custom scorer's output, every non-empty stream under a header naming its split,
    /// ready to append to the run's stderr; empty when no scorer ran or it printed nothing.
    pub async fn scorer(&self, id: &SubmissionId) -> Vec<u8> {
        let mut out = Vec::new();
        for split in ScorerSplit::ALL {
            for stream in ["stdout", "stderr"] {
                let text = self
                    .get(format!(
                        "{}.scorer-{}.{stream}",
                        id.as_str(),
                        split.as_str()
                    ))
                    .await;
                if text.is_empty() {
                    continue;
                }
                out.extend_from_slice(
                    format!(
                        "\n===== custom scorer, {} split, {stream} =====\n",
                        split.as_str()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&text);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_and_scorer_logs_round_trip_and_a_missing_run_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("holdout.db")).unwrap();
        let logs = LogStore::new(store);
        let id = SubmissionId::generate();
        assert_eq!(logs.run(&id).await, RunLogs::default());
        logs.put_run(
            &id,
            &CapturedLogs {
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
                truncated: true,
            },
        )
        .await;
        assert_eq!(
            logs.run(&id).await,
            RunLogs {
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
                truncated: true
            }
        );
        logs.put_scorer(
            &id,
            ScorerSplit::Private,
            &CapturedLogs {
                stdout: Vec::new(),
                stderr: b"boom".to_vec(),
                truncated: false,
            },
        )
        .await;
        assert_eq!(
            String::from_utf8(logs.scorer(&id).await).unwrap(),
            "\n===== custom scorer, private split, stderr =====\nboom"
        );
    }
}
