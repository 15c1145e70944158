//! Loaded label sets kept between scoring runs, so a large labels file is parsed once.
//!
//! Owns [`LabelsCache`]: which loaded sets are kept, under what key (the file's path, length
//! and modification time, and the [`LabelSpec`]), and which is dropped first. It must never
//! hand out a set loaded from an older version of the file or under another spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::scoring::errors::LabelsError;
use crate::scoring::labels::{LabelSet, load_labels};
use crate::scoring::spec::LabelSpec;

/// What identifies a loaded labels file: a changed file (length or mtime) or spec loads anew.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    /// The labels file.
    path: PathBuf,
    /// Its length when loaded.
    len: u64,
    /// Its modification time when loaded.
    modified: Option<SystemTime>,
    /// The spec it was loaded under.
    spec: LabelSpec,
}

/// Loaded label sets shared between scoring runs, so a large labels file is parsed once.
#[derive(Debug)]
pub struct LabelsCache {
    /// Entries with the order in which they were inserted, for eviction.
    entries: Mutex<HashMap<CacheKey, (u64, Arc<LabelSet>)>>,
    /// Most entries kept.
    capacity: usize,
}

impl LabelsCache {
    /// A cache keeping at most `capacity` label sets (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Number of label sets held.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label set of `path` under `spec`, loading it if the file changed or was never
    /// loaded. Blocking: call it off the async runtime.
    pub fn get_or_load(&self, path: &Path, spec: &LabelSpec) -> Result<Arc<LabelSet>, LabelsError> {
        let meta = std::fs::metadata(path).map_err(|e| LabelsError::file(path, e))?;
        let key = CacheKey {
            path: path.to_owned(),
            len: meta.len(),
            modified: meta.modified().ok(),
            spec: spec.clone(),
        };
        if let Some((_, set)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(set));
        }
        // Loaded without the lock so one slow file does not stall other challenges; two
        // concurrent first loads of one file both parse it, and one result is kept.
        let set = Arc::new(load_labels(path, spec)?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // A newer version of the same file makes the older entries garbage.
        entries
            .retain(|k, _| k.path != key.path || (k.len == key.len && k.modified == key.modified));
        while entries.len() >= self.capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (seq, _))| *seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
        let seq = entries.values().map(|(seq, _)| seq + 1).max().unwrap_or(0);
        let set = Arc::clone(&entries.entry(key).or_insert((seq, set)).1);
        Ok(set)
    }
}
