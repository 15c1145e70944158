//! Per-row public losses of scored FULL submissions, kept on the host for the
//! parameter-free Ladder and never released. One little-endian f32 file per submission under
//! `state_dir/losses/`, with a small in-memory cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::domain::SubmissionId;

/// Most loss vectors kept in memory.
const CACHE_ENTRIES: usize = 256;

/// The store of per-row losses.
pub struct LossStore {
    dir: PathBuf,
    cache: Mutex<HashMap<SubmissionId, Arc<Vec<f32>>>>,
}

impl LossStore {
    /// Losses kept under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, id: &SubmissionId) -> PathBuf {
        self.dir.join(format!("{}.f32", id.as_str()))
    }

    /// Writes a submission's losses (blocking; call from a blocking task).
    pub fn put(&self, id: &SubmissionId, losses: &[f32]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut bytes = Vec::with_capacity(losses.len() * 4);
        for l in losses {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        let tmp = self.path(id).with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, self.path(id))
    }

    /// A submission's losses, if kept. Reads the file on a cache miss (small, and only for
    /// challenges in parameter-free ladder mode).
    pub fn get(&self, id: &SubmissionId) -> Option<Arc<Vec<f32>>> {
        if let Some(v) = self.cache.lock().unwrap().get(id) {
            return Some(v.clone());
        }
        let bytes = std::fs::read(self.path(id)).ok()?;
        let v: Arc<Vec<f32>> = Arc::new(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id.clone(), v.clone());
        Some(v)
    }
}
