//! A run's work folder on the host: the extracted archive (bound read-only at
//! `/submission`), the `/output` area the sandbox user may write (a filesystem of the cap's
//! size: `crate::sandbox::output_fs`), and the scratch a custom scorer's inputs are prepared
//! in. Made fresh for each attempt and removed on every path by [`WorkDir`]'s `Drop`: the
//! output filesystem is unmounted first, so nothing the run built is ever walked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::archive::{self, ArchiveError, ArchiveLimits};
use crate::sandbox::hardening::{SANDBOX_GID, SANDBOX_UID};
use crate::sandbox::output_fs::{OutputArea, OutputFsError, OutputMode};

/// The work folder could not be made: always the service's fault.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// Host I/O failed.
    #[error("cannot prepare the work folder")]
    Io(#[from] std::io::Error),
    /// The stored archive was accepted once but does not extract now.
    #[error("the stored archive no longer extracts")]
    Extract(#[source] ArchiveError),
    /// The blocking task that prepares it failed.
    #[error("the work folder task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The output filesystem could not be made.
    #[error("cannot make the output filesystem")]
    Output(#[from] OutputFsError),
}

/// A run's work folder, removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    root: PathBuf,
    /// The `/output` area; `None` only while being made.
    output: Option<OutputArea>,
    /// Output areas of custom scorer runs, removed with the folder.
    areas: std::sync::Mutex<Vec<OutputArea>>,
}

impl WorkDir {
    /// Makes a fresh folder at `root` with `archive` extracted under `submission/` and an
    /// empty `output/` area of `output_bytes` the sandbox user can write.
    pub async fn prepare(
        root: PathBuf,
        archive: PathBuf,
        limits: ArchiveLimits,
        mode: OutputMode,
        output_bytes: u64,
    ) -> Result<WorkDir, WorkDirError> {
        // Owned from here: an error below still removes what was made.
        let mut work = WorkDir {
            root,
            output: None,
            areas: Default::default(),
        };
        let root = work.root.clone();
        let made = tokio::task::spawn_blocking(move || -> Result<OutputArea, WorkDirError> {
            let _ = std::fs::remove_dir_all(&root);
            let submission = root.join("submission");
            std::fs::create_dir_all(&submission)?;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
            let area = OutputArea::create(mode, &root.join("output"), output_bytes)?;
            make_writable_for_sandbox(area.path())?;
            archive::extract(&archive, None, &submission, &limits)
                .map_err(WorkDirError::Extract)?;
            Ok(area)
        })
        .await?;
        work.output = Some(made?);
        Ok(work)
    }

    /// A further output area of `cap` bytes at `dir` (inside this folder), for a custom
    /// scorer's run; removed with the folder. Blocking.
    pub fn add_area(
        &self,
        mode: OutputMode,
        dir: &Path,
        cap: u64,
    ) -> Result<PathBuf, WorkDirError> {
        let area = OutputArea::create(mode, dir, cap)?;
        make_writable_for_sandbox(area.path())?;
        let path = area.path().to_owned();
        self.areas.lock().unwrap().push(area);
        Ok(path)
    }

    /// The extracted code.
    pub fn submission(&self) -> PathBuf {
        self.root.join("submission")
    }

    /// What the run wrote.
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    /// Where a custom scorer's inputs and outputs are prepared.
    pub fn scoring(&self) -> PathBuf {
        self.root.join("scoring")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.root);
        let output = self.output.take();
        let areas = std::mem::take(&mut *self.areas.lock().unwrap());
        let remove = move || {
            // Unmount first: under each area is then an empty mount point, never a tree
            // the run built.
            drop(areas);
            drop(output);
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "cannot remove work folder");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The sandbox user must be able to write `dir`: when we are root we hand the folder to that
/// user, otherwise we open it to everyone (it lives in our private work folder).
pub fn make_writable_for_sandbox(dir: &Path) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(dir, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
    }
}
