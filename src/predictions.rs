//! Kept predictions: the `predictions.csv` each scored FULL run wrote, gzipped, so an admin
//! can rescore the challenge later (after a labels fix, or under another built-in metric)
//! without running anyone's code again.
//!
//! They are computed from private data, so they never leave the host: no RPC returns them,
//! only rescoring jobs read them. They are the store's small files ([`BlobKind::Predictions`]:
//! `state_dir/predictions/<id>.csv.gz` with SQLite, a `blobs` row with PostgreSQL, so any
//! replica can rescore what any worker ran) and expire with the run's archive and logs.
//!
//! One file is kept only up to [`MAX_KEPT_BYTES`] compressed: a PostgreSQL `bytea` value
//! may hold 1 GiB, but each is read whole into memory, and rescoring reads them one at a
//! time. A larger one is not kept; `<id>.not-kept` records why, and a rescoring job audits
//! that submission as skipped with that reason.

use std::io::{Read, Write};
use std::path::PathBuf;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tracing::{info, warn};

use crate::domain::{SubmissionId, error_chain};
use crate::store::{BlobKind, Store, StoreError};

/// The most one run's kept predictions may take, compressed (64 MiB).
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// What is kept of one run.
#[derive(Debug)]
pub enum Kept {
    /// The predictions, gzipped.
    Gzip(Vec<u8>),
    /// They were not kept, and why ("too large: ...").
    NotKept(String),
    /// Nothing is kept (expired, or scored before predictions were kept).
    Missing,
}

impl Kept {
    /// A reader of the predictions as the run wrote them.
    pub fn reader(bytes: &[u8]) -> impl Read + '_ {
        GzDecoder::new(bytes)
    }
}

/// The kept predictions of the store's runs; cheap to clone.
#[derive(Clone)]
pub struct KeptPredictions {
    store: Store,
}

fn gz_name(id: &SubmissionId) -> String {
    format!("{}.csv.gz", id.as_str())
}

fn not_kept_name(id: &SubmissionId) -> String {
    format!("{}.not-kept", id.as_str())
}

/// Gzips at most `cap` bytes of `reader`; `Err(reason)` when the result is over `max`.
fn compress(mut reader: impl Read, max: usize) -> std::io::Result<Result<Vec<u8>, String>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n])?;
        if enc.get_ref().len() > max {
            return Ok(Err(format!(
                "too large: over {max} bytes compressed (the cap on kept predictions)"
            )));
        }
    }
    let out = enc.finish()?;
    if out.len() > max {
        return Ok(Err(format!(
            "too large: {} bytes compressed, over the cap of {max}",
            out.len()
        )));
    }
    Ok(Ok(out))
}

impl KeptPredictions {
    /// Predictions kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Keeps a scored FULL run's predictions file (read with the same safe open as scoring,
    /// at most `cap_bytes`). Never fails the run: a file too large is recorded as not kept,
    /// and a storage failure is logged (a later rescoring skips the run and says so).
    pub async fn keep(&self, id: &SubmissionId, path: PathBuf, cap_bytes: u64) {
        self.keep_capped(id, path, cap_bytes, MAX_KEPT_BYTES).await
    }

    async fn keep_capped(&self, id: &SubmissionId, path: PathBuf, cap_bytes: u64, max: usize) {
        let compressed = tokio::task::spawn_blocking(move || {
            let file = crate::scoring::open_predictions(&path, cap_bytes)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            compress(file.take(cap_bytes), max)
        })
        .await;
        let stored = match compressed {
            Ok(Ok(Ok(bytes))) => {
                let size = bytes.len();
                let r = self
                    .store
                    .put_blob(BlobKind::Predictions, gz_name(id), bytes)
                    .await;
                if r.is_ok() {
                    info!(submission_id = %id, bytes = size, "kept the run's predictions");
                }
                r
            }
            Ok(Ok(Err(reason))) => {
                warn!(submission_id = %id, reason = %reason, "predictions not kept");
                self.store
                    .put_blob(
                        BlobKind::Predictions,
                        not_kept_name(id),
                        reason.into_bytes(),
                    )
                    .await
            }
            Ok(Err(e)) => Err(StoreError::Io(e)),
            Err(e) => Err(StoreError::Io(std::io::Error::other(e))),
        };
        if let Err(e) = stored {
            warn!(submission_id = %id, error = %error_chain(&e), "cannot keep the run's predictions");
        }
    }

    /// What is kept of a run.
    pub async fn get(&self, id: &SubmissionId) -> Result<Kept, StoreError> {
        if let Some(bytes) = self
            .store
            .get_blob(BlobKind::Predictions, gz_name(id))
            .await?
        {
            return Ok(Kept::Gzip(bytes));
        }
        Ok(
            match self
                .store
                .get_blob(BlobKind::Predictions, not_kept_name(id))
                .await?
            {
                Some(reason) => Kept::NotKept(String::from_utf8_lossy(&reason).into_owned()),
                None => Kept::Missing,
            },
        )
    }

    /// Makes what is kept of run `from` what is kept of run `to` (a re-run's result swapped
    /// into its original): the predictions, or the record that they were not kept, or
    /// nothing.
    pub async fn copy(&self, from: &SubmissionId, to: &SubmissionId) -> Result<(), StoreError> {
        let kept = self.get(from).await?;
        self.store
            .delete_blobs(BlobKind::Predictions, format!("{}.", to.as_str()))
            .await?;
        match kept {
            Kept::Gzip(bytes) => {
                self.store
                    .put_blob(BlobKind::Predictions, gz_name(to), bytes)
                    .await
            }
            Kept::NotKept(why) => {
                self.store
                    .put_blob(BlobKind::Predictions, not_kept_name(to), why.into_bytes())
                    .await
            }
            Kept::Missing => Ok(()),
        }
    }

    /// Deletes what is kept of a run (retention).
    pub async fn remove(&self, id: &SubmissionId) {
        let prefix = format!("{}.", id.as_str());
        if let Err(e) = self.store.delete_blobs(BlobKind::Predictions, prefix).await {
            warn!(submission_id = %id, error = %error_chain(&e), "cannot delete kept predictions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("holdout.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn kept_predictions_read_back_as_the_run_wrote_them_and_expire() {
        let (dir, store) = store().await;
        let kept = KeptPredictions::new(store);
        let id = SubmissionId::generate();
        let csv = dir.path().join("predictions.csv");
        let body = "id,label\n".to_owned() + &"r1,even\n".repeat(1000);
        std::fs::write(&csv, &body).unwrap();
        kept.keep(&id, csv, 1 << 20).await;
        let Kept::Gzip(bytes) = kept.get(&id).await.unwrap() else {
            panic!("not kept")
        };
        assert!(bytes.len() < body.len() / 10, "compressed: {}", bytes.len());
        let mut back = String::new();
        Kept::reader(&bytes).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
        let other = SubmissionId::generate();
        kept.copy(&id, &other).await.unwrap();
        assert!(matches!(kept.get(&other).await.unwrap(), Kept::Gzip(b) if b == bytes));
        kept.remove(&id).await;
        assert!(matches!(kept.get(&id).await.unwrap(), Kept::Missing));
        kept.copy(&id, &other).await.unwrap();
        assert!(
            matches!(kept.get(&other).await.unwrap(), Kept::Missing),
            "copying nothing leaves nothing"
        );
    }

    #[tokio::test]
    async fn predictions_over_the_cap_are_recorded_as_not_kept_with_the_reason() {
        let (dir, store) = store().await;
        let kept = KeptPredictions::new(store);
        let id = SubmissionId::generate();
        let csv = dir.path().join("predictions.csv");
        // Random hex does not compress below the 1 KiB cap.
        let body: String = (0..2_000)
            .map(|_| hex::encode(rand::random::<[u8; 8]>()))
            .collect();
        std::fs::write(&csv, body).unwrap();
        kept.keep_capped(&id, csv, 1 << 20, 1024).await;
        match kept.get(&id).await.unwrap() {
            Kept::NotKept(reason) => assert!(reason.starts_with("too large"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
