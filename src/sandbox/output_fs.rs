//! A run's `/output` as a filesystem of its own: a sparse image of the cap's size, formatted
//! ext4 and loop-mounted on the host folder that is bound into the container.
//!
//! A filesystem, not a watcher, is the limit: unlinked-but-open files, many files, deep
//! trees and sparse files all take its blocks and inodes, and a write past them fails with
//! ENOSPC inside the run, so the host disk can never fill. Its usage (`statvfs`) is the
//! evidence of OUTPUT_LIMIT_EXCEEDED, read without walking (or following) anything the run
//! made. Removal unmounts and deletes the image: whatever tree the run built goes with it,
//! however deep or unwritable, without a walk.
//!
//! Needs root and loop devices (`mount -o loop`); `output_filesystem = "directory"` in the
//! server config is the weaker fallback for hosts without them (a watcher walks the folder).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tracing::warn;

/// How a run's `/output` is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// A loop-mounted ext4 filesystem of the cap's size per run.
    Loop,
    /// A plain folder, measured by a walker while the run goes (the fallback).
    Directory,
}

/// An output folder for a run: a filesystem of its own (`Loop`), or the folder itself.
#[derive(Debug)]
pub enum OutputArea {
    /// A mounted filesystem, removed with this value.
    Fs(OutputFs),
    /// A plain folder (the `Directory` fallback).
    Dir(PathBuf),
}

impl OutputArea {
    /// Makes `dir` (which must not exist yet) an output area for `cap` bytes; the image of a
    /// `Loop` filesystem is kept beside it as `<dir>.img`. Blocking.
    pub fn create(mode: OutputMode, dir: &Path, cap: u64) -> Result<OutputArea, OutputFsError> {
        std::fs::create_dir_all(dir)?;
        match mode {
            OutputMode::Directory => Ok(OutputArea::Dir(dir.to_owned())),
            OutputMode::Loop => {
                OutputFs::create(&dir.with_extension("img"), dir, cap).map(OutputArea::Fs)
            }
        }
    }

    /// The folder bound at `/output`.
    pub fn path(&self) -> &Path {
        match self {
            OutputArea::Fs(fs) => fs.path(),
            OutputArea::Dir(d) => d,
        }
    }
}

/// How many files (inodes) a filesystem gets per byte of cap: one per 16 KiB, at least 128.
pub const BYTES_PER_INODE: u64 = 16 << 10;
/// Fewest inodes an output filesystem gets.
pub const MIN_INODES: u64 = 128;

/// Usage of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes still free.
    pub free_bytes: u64,
    /// Inodes still free.
    pub free_inodes: u64,
}

/// Reads a filesystem's usage through `statvfs` (no walk).
pub fn usage(dir: &Path) -> std::io::Result<FsUsage> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsUsage {
        used_bytes: (st.f_blocks as u64 - st.f_bfree as u64) * frsize,
        free_bytes: st.f_bavail as u64 * frsize,
        free_inodes: st.f_favail as u64,
    })
}

/// Whether `dir` is the root of a filesystem other than its parent's (a mount point).
pub fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (
        std::fs::symlink_metadata(dir),
        dir.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    d.dev() != p.dev()
}

/// A mounted output filesystem; unmounted and deleted when dropped.
#[derive(Debug)]
pub struct OutputFs {
    image: PathBuf,
    mount: PathBuf,
    /// Bytes in use right after formatting (the filesystem's own metadata), so that the
    /// run's usage is `used - baseline`.
    baseline: u64,
    cap: u64,
}

/// Why an output filesystem could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OutputFsError {
    /// Host I/O failed.
    #[error("output filesystem: {0}")]
    Io(#[from] std::io::Error),
    /// A tool (`mkfs.ext4`, `mount`) failed.
    #[error("output filesystem: {tool} failed: {stderr}")]
    Tool {
        /// The command.
        tool: &'static str,
        /// What it printed.
        stderr: String,
    },
}

fn run(tool: &'static str, cmd: &mut Command) -> Result<(), OutputFsError> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OutputFsError::Tool {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl OutputFs {
    /// Makes and mounts a filesystem at `mount` (an empty folder) whose free space is at
    /// least `cap` bytes, with its image at `image`. Blocking.
    pub fn create(image: &Path, mount: &Path, cap: u64) -> Result<OutputFs, OutputFsError> {
        let inodes = (cap / BYTES_PER_INODE).clamp(MIN_INODES, 1 << 22);
        // The cap, plus room for the inode tables, bitmaps and directories (ext4 without a
        // journal or reserved blocks), so the run can write the whole cap.
        let size = cap + inodes * 256 + cap / 32 + (4 << 20);
        let f = std::fs::File::create(image)?;
        f.set_len(size)?;
        drop(f);
        let fs = OutputFs {
            image: image.to_owned(),
            mount: mount.to_owned(),
            baseline: 0,
            cap,
        };
        run(
            "mkfs.ext4",
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-O", "^has_journal", "-N"])
                .arg(inodes.to_string())
                .args(["-E", "nodiscard,lazy_itable_init=1,root_owner=65534:65534"])
                .arg(image),
        )?;
        run(
            "mount",
            Command::new("mount")
                .args(["-o", "loop,nosuid,nodev,noatime"])
                .arg(image)
                .arg(mount),
        )?;
        let mut fs = fs;
        // The run gets an empty folder: no lost+found.
        let _ = std::fs::remove_dir(mount.join("lost+found"));
        fs.baseline = usage(mount)?.used_bytes;
        Ok(fs)
    }

    /// Bytes the run wrote (and still holds, open or not).
    pub fn used(&self) -> std::io::Result<u64> {
        Ok(usage(&self.mount)?.used_bytes.saturating_sub(self.baseline))
    }

    /// Whether the run went over its cap, or filled the filesystem's blocks or inodes.
    pub fn exceeded(&self) -> bool {
        match usage(&self.mount) {
            Ok(u) => {
                u.used_bytes.saturating_sub(self.baseline) > self.cap
                    || u.free_bytes < 4096
                    || u.free_inodes == 0
            }
            Err(_) => false,
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for OutputFs {
    fn drop(&mut self) {
        unmount(&self.mount);
        if let Err(e) = std::fs::remove_file(&self.image)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(image = %self.image.display(), error = %e, "cannot remove output image");
        }
    }
}

/// Unmounts `mount` (lazily, so a process still inside cannot keep it); a folder that is
/// not mounted is left alone.
pub fn unmount(mount: &Path) {
    if !is_mount_point(mount) {
        return;
    }
    if let Err(e) = run("umount", Command::new("umount").arg("-l").arg(mount)) {
        warn!(mount = %mount.display(), error = %e, "cannot unmount output filesystem");
    }
}

/// Unmounts every filesystem mounted under `root` (leftovers of a crash), deepest first.
pub fn unmount_all_under(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&root) && *p != root)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        unmount(&p);
    }
}
