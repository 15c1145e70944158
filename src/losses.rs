//! Per-row public losses of scored FULL submissions, kept for the parameter-free Ladder and
//! never released: one little-endian f32 vector per submission, stored as the store's small
//! files ([`BlobKind::Losses`], `<id>.f32`: a file of `state_dir/losses` with SQLite, a row
//! with PostgreSQL, so every replica's board sees what any worker scored), with a small
//! in-memory cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::{Submission, SubmissionId};
use crate::store::{BlobKind, Store, StoreError};

/// Most loss vectors kept in memory.
const CACHE_ENTRIES: usize = 256;

/// The store of per-row losses.
pub struct LossStore {
    store: Store,
    cache: Mutex<HashMap<SubmissionId, Arc<Vec<f32>>>>,
}

fn name(id: &SubmissionId) -> String {
    format!("{}.f32", id.as_str())
}

impl LossStore {
    /// Losses kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Stores a submission's losses.
    pub async fn put(&self, id: &SubmissionId, losses: &[f32]) -> Result<(), StoreError> {
        let mut bytes = Vec::with_capacity(losses.len() * 4);
        for l in losses {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        self.store.put_blob(BlobKind::Losses, name(id), bytes).await
    }

    /// A submission's losses, if kept.
    pub async fn get(&self, id: &SubmissionId) -> Option<Arc<Vec<f32>>> {
        if let Some(v) = self.cache.lock().unwrap().get(id) {
            return Some(v.clone());
        }
        let bytes = self
            .store
            .get_blob(BlobKind::Losses, name(id))
            .await
            .ok()??;
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

    /// The losses of each of `history` that has them kept.
    pub async fn of(&self, history: &[Submission]) -> HashMap<SubmissionId, Arc<Vec<f32>>> {
        let mut out = HashMap::new();
        for s in history {
            if let Some(v) = self.get(&s.id).await {
                out.insert(s.id.clone(), v);
            }
        }
        out
    }
}
