//! Backup and restore of a server's state folder, online: `holdout backup --to DIR` copies a
//! consistent snapshot of a running server's database (SQLite's online backup API, which
//! reads alongside the server in WAL mode), then the files that snapshot refers to: the
//! archives of its unexpired submissions (content-addressed, never rewritten), and the logs,
//! per-row losses and kept predictions of its ended ones (written once, before their end was
//! committed).
//! Files a later change added are not part of the snapshot and are left out.
//! `holdout restore --from DIR --state-dir NEW` checks every archive against its hash and
//! lays the snapshot out as a fresh state folder; a server started on it re-queues the runs
//! that were in flight at backup time.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::SubmissionId;
use crate::paths::Paths;

/// The file that describes a backup.
pub const MANIFEST: &str = "holdout-backup.json";

/// `holdout backup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (a new or empty folder).
    #[arg(long)]
    pub to: PathBuf,
    /// The server's state folder.
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// `holdout restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// A folder written by `holdout backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// The new state folder (must not exist, or be empty).
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this manifest.
    pub format: u32,
    /// When the snapshot was taken (ms since the epoch).
    pub taken_at: i64,
    /// Submissions in the snapshot.
    pub submissions: u64,
    /// Archives copied.
    pub archives: u64,
    /// Log and loss files copied.
    pub files: u64,
    /// Bytes copied besides the database.
    pub bytes: u64,
    /// Archives the snapshot refers to that were already gone (retention ran between).
    pub missing_archives: Vec<String>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be copied or read.
    #[error("database")]
    Sqlite(#[from] rusqlite::Error),
    /// The target is in use.
    #[error("{} exists and is not empty; choose a new folder", .0.display())]
    NotEmpty(PathBuf),
    /// A folder is not a backup, or is damaged.
    #[error("{0}")]
    Invalid(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn require_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(BackupError::NotEmpty(dir.to_owned()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io("cannot create", dir))
        }
        Err(e) => Err(io("cannot read", dir)(e)),
    }
}

/// Copies `from` to `to` when it exists; returns its bytes (0 when missing).
fn copy_if_present(from: &Path, to: &Path) -> Result<u64, BackupError> {
    match std::fs::copy(from, to) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io("cannot copy", from)(e)),
    }
}

/// Takes a backup of the state folder `state` (a server may be running on it) into `to`.
pub fn backup(state: &Path, to: &Path) -> Result<Manifest, BackupError> {
    let live = Paths::new(state);
    if !live.database().is_file() {
        return Err(BackupError::Invalid(format!(
            "{} holds no database: is it a server's state folder?",
            state.display()
        )));
    }
    require_empty(to)?;
    let out = Paths::new(to);
    out.create().map_err(io("cannot create", to))?;
    std::fs::create_dir_all(out.losses()).map_err(io("cannot create", to))?;
    std::fs::create_dir_all(out.predictions()).map_err(io("cannot create", to))?;
    // 1. The database, as one consistent snapshot.
    let src = Connection::open_with_flags(
        live.database(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut dst = Connection::open(out.database())?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
        b.run_to_completion(256, std::time::Duration::from_millis(5), None)?;
    }
    let taken_at = crate::domain::now_millis();
    // 2. What the snapshot refers to.
    let rows: Vec<(String, String, bool)> = {
        let mut stmt = dst.prepare(
            "SELECT id, archive_sha256, state IN ('succeeded', 'failed', 'cancelled')
             FROM submissions WHERE expired_at IS NULL",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?
    };
    let submissions: u64 = dst.query_row("SELECT COUNT(*) FROM submissions", [], |r| r.get(0))?;
    drop(dst);
    let mut manifest = Manifest {
        format: 1,
        taken_at,
        submissions,
        archives: 0,
        files: 0,
        bytes: 0,
        missing_archives: Vec::new(),
    };
    let mut shas: Vec<&String> = rows.iter().map(|r| &r.1).collect();
    shas.sort();
    shas.dedup();
    for sha in shas {
        let from = live.archive(sha);
        if !from.exists() {
            manifest.missing_archives.push(sha.clone());
            continue;
        }
        manifest.bytes += copy_if_present(&from, &out.archive(sha))?;
        manifest.archives += 1;
    }
    // Logs and losses of ended runs only: a run in flight is re-run after a restore.
    for (id, _, _) in rows.iter().filter(|r| r.2) {
        let Ok(id) = SubmissionId::parse(id) else {
            continue;
        };
        let base = live.logs(&id);
        let stem = base.file_name().map(|n| n.to_owned()).unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(live.logs_dir()) {
            for e in rd.flatten() {
                let name = e.file_name();
                let n = name.to_string_lossy();
                if n.starts_with(&format!("{}.", stem.to_string_lossy())) {
                    manifest.bytes += copy_if_present(&e.path(), &out.logs_dir().join(&name))?;
                    manifest.files += 1;
                }
            }
        }
        let loss = format!("{}.f32", id.as_str());
        let n = copy_if_present(&live.losses().join(&loss), &out.losses().join(&loss))?;
        if n > 0 {
            manifest.bytes += n;
            manifest.files += 1;
        }
        // Kept predictions (rescoring), written before the run's end was committed.
        for kept in [
            format!("{}.csv.gz", id.as_str()),
            format!("{}.not-kept", id.as_str()),
        ] {
            let n = copy_if_present(
                &live.predictions().join(&kept),
                &out.predictions().join(&kept),
            )?;
            if n > 0 {
                manifest.bytes += n;
                manifest.files += 1;
            }
        }
    }
    // Data cards: a few small files, every one (older cards of a challenge included).
    if let Ok(rd) = std::fs::read_dir(live.cards()) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".json") {
                manifest.bytes += copy_if_present(&e.path(), &out.cards().join(e.file_name()))?;
                manifest.files += 1;
            }
        }
    }
    let text =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    std::fs::write(to.join(MANIFEST), text).map_err(io("cannot write", to))?;
    Ok(manifest)
}

/// Lays a backup out as a fresh state folder `state`, checking every archive against its
/// hash first.
pub fn restore(from: &Path, state: &Path) -> Result<Manifest, BackupError> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(from.join(MANIFEST)).map_err(io("cannot read", from))?,
    )
    .map_err(|e| BackupError::Invalid(format!("{}: {e}", from.join(MANIFEST).display())))?;
    if manifest.format != 1 {
        return Err(BackupError::Invalid(format!(
            "backup format {} is not one this version reads",
            manifest.format
        )));
    }
    let src = Paths::new(from);
    // Integrity first: a damaged backup is refused before anything is written.
    if let Ok(rd) = std::fs::read_dir(src.archives()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(sha) = name.strip_suffix(".bin") else {
                continue;
            };
            let bytes = std::fs::read(e.path()).map_err(io("cannot read", &e.path()))?;
            if hex::encode(Sha256::digest(&bytes)) != sha {
                return Err(BackupError::Invalid(format!(
                    "archive {name} does not match its hash: the backup is damaged"
                )));
            }
        }
    }
    require_empty(state)?;
    let dst = Paths::new(state);
    dst.create().map_err(io("cannot create", state))?;
    std::fs::create_dir_all(dst.losses()).map_err(io("cannot create", state))?;
    std::fs::create_dir_all(dst.predictions()).map_err(io("cannot create", state))?;
    std::fs::copy(src.database(), dst.database()).map_err(io("cannot copy", &src.database()))?;
    for (from_dir, to_dir) in [
        (src.archives(), dst.archives()),
        (src.logs_dir(), dst.logs_dir()),
        (src.losses(), dst.losses()),
        (src.predictions(), dst.predictions()),
        (src.cards(), dst.cards()),
    ] {
        if let Ok(rd) = std::fs::read_dir(&from_dir) {
            for e in rd.flatten() {
                std::fs::copy(e.path(), to_dir.join(e.file_name()))
                    .map_err(io("cannot copy", &e.path()))?;
            }
        }
    }
    // The snapshot's state must open with this version's migrations.
    crate::store::Store::open(&dst.database())
        .map_err(|e| BackupError::Invalid(format!("the restored database does not open: {e}")))?;
    Ok(manifest)
}
