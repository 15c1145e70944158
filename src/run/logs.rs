//! What runs printed, kept on the host: one folder of files per submission's run, and a
//! custom scorer's output per split beside it. Written once per run (already capped by the
//! sandbox), read back for admins and, for SMOKE runs only, their submitter; who may read
//! what is decided by the caller (`crate::submissions`), never here.

use std::path::PathBuf;

use tracing::warn;

use super::plan::ScorerSplit;
use crate::domain::SubmissionId;
use crate::sandbox::CapturedLogs;

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

/// The folder of run logs under `state_dir`.
#[derive(Debug, Clone)]
pub struct LogStore {
    dir: PathBuf,
}

impl LogStore {
    /// Logs kept under `dir` (see `crate::paths::Paths::logs_dir`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn base(&self, id: &SubmissionId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// Stores the participant's run output.
    pub async fn put_run(&self, id: &SubmissionId, logs: &CapturedLogs) {
        let base = self.base(id);
        let logs = logs.clone();
        let stored = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::write(base.with_extension("stdout"), &logs.stdout)?;
            std::fs::write(base.with_extension("stderr"), &logs.stderr)?;
            if logs.truncated {
                std::fs::write(base.with_extension("truncated"), b"")?;
            }
            Ok(())
        })
        .await;
        if !matches!(stored, Ok(Ok(()))) {
            warn!(submission_id = %id, "cannot store run logs");
        }
    }

    /// Stores a custom scorer's output for one split.
    pub async fn put_scorer(&self, id: &SubmissionId, split: ScorerSplit, logs: &CapturedLogs) {
        let base = self.base(id);
        let logs = logs.clone();
        let stored = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let name =
                |stream: &str| base.with_extension(format!("scorer-{}.{stream}", split.as_str()));
            std::fs::write(name("stdout"), &logs.stdout)?;
            std::fs::write(name("stderr"), &logs.stderr)
        })
        .await;
        if !matches!(stored, Ok(Ok(()))) {
            warn!(submission_id = %id, split = split.as_str(), "cannot store scorer logs");
        }
    }

    /// Deletes everything kept of a submission's runs (retention).
    pub async fn remove(&self, id: &SubmissionId) {
        let base = self.base(id);
        let _ = tokio::task::spawn_blocking(move || {
            let Some(dir) = base.parent() else { return };
            let Some(stem) = base.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                return;
            };
            let prefix = format!("{stem}.");
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        })
        .await;
    }

    /// The participant's run output; empty when the run left none.
    pub async fn run(&self, id: &SubmissionId) -> RunLogs {
        let base = self.base(id);
        tokio::task::spawn_blocking(move || RunLogs {
            stdout: std::fs::read(base.with_extension("stdout")).unwrap_or_default(),
            stderr: std::fs::read(base.with_extension("stderr")).unwrap_or_default(),
            truncated: base.with_extension("truncated").exists(),
        })
        .await
        .unwrap_or_default()
    }

    /// A custom scorer's output, every non-empty stream under a header naming its split,
    /// ready to append to the run's stderr; empty when no scorer ran or it printed nothing.
    pub async fn scorer(&self, id: &SubmissionId) -> Vec<u8> {
        let base = self.base(id);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for split in ScorerSplit::ALL {
                for stream in ["stdout", "stderr"] {
                    let text = std::fs::read(
                        base.with_extension(format!("scorer-{}.{stream}", split.as_str())),
                    )
                    .unwrap_or_default();
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
        })
        .await
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_and_scorer_logs_round_trip_and_a_missing_run_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::new(dir.path().to_owned());
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
