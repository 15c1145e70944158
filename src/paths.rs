//! Where the service keeps its files under `state_dir`: the database, content-addressed
//! archives, run logs, per-run work folders, uploads in progress and per-row losses. Every
//! path the service writes is named here, so nothing else joins strings onto `state_dir`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::SubmissionId;

/// Where the service keeps its files under `state_dir`.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths under `state_dir`; [`Paths::create`] makes the folders.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.to_owned(),
        }
    }

    /// Creates every folder the service writes to.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [
            self.archives(),
            self.logs_dir(),
            self.work_dir(),
            self.uploads(),
            self.cards(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("holdout.db")
    }

    /// Content-addressed archives.
    pub fn archives(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// The stored archive with this SHA-256.
    pub fn archive(&self, sha256: &str) -> PathBuf {
        self.archives().join(format!("{sha256}.bin"))
    }

    /// Folder of run logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The logs of one submission's run.
    pub fn logs(&self, id: &SubmissionId) -> PathBuf {
        self.logs_dir().join(id.as_str())
    }

    /// Folder of per-run work folders.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The work folder of one run (extracted code, output).
    pub fn work(&self, id: &SubmissionId) -> PathBuf {
        self.work_dir().join(id.as_str())
    }

    /// Data cards of challenges, named by challenge and content (SQLite engine; PostgreSQL
    /// keeps them as rows).
    pub fn cards(&self) -> PathBuf {
        self.root.join("cards")
    }

    /// Per-row losses of scored submissions (parameter-free ladder).
    pub fn losses(&self) -> PathBuf {
        self.root.join("losses")
    }

    /// Kept predictions of FULL runs, gzipped (rescoring; admin-only, never released).
    pub fn predictions(&self) -> PathBuf {
        self.root.join("predictions")
    }

    /// Uploads in progress; anything here at start is debris of a crash.
    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// The label that marks this instance's containers on a shared engine: derived from the
    /// state folder, so a restart of the same instance finds (and removes) its leftovers and
    /// never touches another instance's.
    pub fn instance(&self) -> String {
        let dir = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        hex::encode(Sha256::digest(dir.to_string_lossy().as_bytes()))[..16].to_owned()
    }
}
