//! Safe handling of the archives participants submit (tar.gz or zip).
//!
//! This module owns everything between "a file of untrusted bytes on disk" and
//! "a tree of plain files and folders we created ourselves": detecting the
//! format from the bytes, checking every entry against the rules below,
//! counting decompressed bytes as they stream, and writing files without ever
//! following a link. It also packs a local folder for the CLI ([`pack_dir`]).
//!
//! The same rules run in two modes: [`validate`] is a dry run at submit time
//! (so a bad archive is rejected with `INVALID_ARGUMENT` before it is queued)
//! and [`extract`] writes the tree just before a run. Both stop at the first
//! broken rule, and both stop reading a bomb as soon as a cap is crossed.
//!
//! What it must never do:
//! - write outside the destination, follow a symlink, or create anything but
//!   regular files (0644, or 0755 when any exec bit was set) and folders (0755);
//! - apply setuid, setgid or sticky bits, or change ownership;
//! - trust a size written in a header: only bytes actually decompressed count;
//! - hold a whole entry, or a whole metadata header of unbounded size, in memory.
//!
//! Everything here is blocking file and decompression work: the server calls it
//! inside `tokio::task::spawn_blocking`, never on an async worker thread.

mod pack;
mod rules;
mod tar_gz;
#[cfg(test)]
mod tests;
mod zip_file;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use pack::pack_dir;

use rules::Rules;

/// One MiB, the unit participant-facing size limits are stated in.
const MIB: u64 = 1024 * 1024;

/// The archive formats a submission may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    /// A tar stream compressed with gzip (`.tar.gz`, `.tgz`).
    TarGz,
    /// A zip archive (stored or deflated entries).
    Zip,
}

impl ArchiveFormat {
    /// The short name participants know the format by.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Caps that bound the work and disk space one archive can cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Total bytes of file contents after decompression, counted as they stream.
    pub max_extracted_bytes: u64,
    /// Entries in the archive: files, folders and anything else it lists.
    pub max_entries: u64,
    /// Path components in one entry's path (`a/b/c.py` has three).
    pub max_depth: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_extracted_bytes: 1024 * MIB,
            max_entries: 10_000,
            max_depth: 32,
        }
    }
}

/// What an accepted archive held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveStats {
    /// The format detected from the archive's bytes.
    pub format: ArchiveFormat,
    /// Entries read, counting folders and the root (`./`) entry if present.
    pub entries: u64,
    /// Regular files among those entries.
    pub files: u64,
    /// Bytes of file contents after decompression.
    pub extracted_bytes: u64,
}

/// Why an archive was refused, or why extraction failed on our side.
///
/// Every variant except [`ArchiveError::DestinationNotEmpty`] and
/// [`ArchiveError::Io`] describes the participant's archive; their messages are
/// written for the participant and name the offending entry (see
/// [`ArchiveError::is_invalid_archive`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The bytes are neither gzip (tar.gz) nor zip.
    #[error("the upload is not a tar.gz or zip archive")]
    UnsupportedFormat,
    /// The format the participant declared is not what the bytes are.
    #[error("the archive was declared as {declared} but its contents are {detected}")]
    FormatMismatch {
        /// The format the submission said it was.
        declared: ArchiveFormat,
        /// The format the bytes actually are.
        detected: ArchiveFormat,
    },
    /// The archive cannot be read to the end: truncated, or bytes damaged.
    #[error("the archive is corrupt or truncated: {detail}")]
    Corrupt {
        /// What the reader tripped on, naming the entry when one is known.
        detail: String,
    },
    /// The archive has no regular file at all.
    #[error("the archive contains no files")]
    Empty,
    /// An entry's path starts at the filesystem root or a drive letter.
    #[error(
        "archive entry `{path}` has an absolute path; paths must be relative to the submission root"
    )]
    AbsolutePath {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// An entry's path climbs out with a `..` component.
    #[error("archive entry `{path}` contains a `..` component, which is not allowed")]
    ParentTraversal {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// A symbolic link; links could point outside the submission.
    #[error(
        "archive entry `{path}` is a symbolic link; only regular files and folders are allowed"
    )]
    Symlink {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// A hard link; links could alias files outside the submission.
    #[error("archive entry `{path}` is a hard link; only regular files and folders are allowed")]
    HardLink {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// A device, FIFO, socket, sparse file or unknown entry type.
    #[error("archive entry `{path}` is a {kind}; only regular files and folders are allowed")]
    SpecialEntry {
        /// The entry's name as written in the archive.
        path: String,
        /// What kind of entry it is, in words.
        kind: &'static str,
    },
    /// A file with the setuid or setgid bit.
    #[error("archive entry `{path}` has the setuid or setgid bit set, which is not allowed")]
    SetuidBit {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// More entries than the cap.
    #[error("the archive has more than {limit} entries")]
    TooManyEntries {
        /// The cap that was crossed.
        limit: u64,
    },
    /// A path with more components than the cap.
    #[error("archive entry `{path}` is nested more than {limit} levels deep")]
    TooDeep {
        /// The entry's name as written in the archive.
        path: String,
        /// The cap that was crossed.
        limit: usize,
    },
    /// A path or one of its components longer than Linux allows.
    #[error("archive entry `{path}` has a name longer than {limit} bytes")]
    NameTooLong {
        /// The entry's name as written in the archive, shortened for display.
        path: String,
        /// The limit on the whole path or on one component.
        limit: usize,
    },
    /// File contents decompress to more than the cap.
    #[error("the archive expands to more than {} MiB", mib(*limit_bytes))]
    TooLarge {
        /// The cap that was crossed, in bytes (the message states it in MiB).
        limit_bytes: u64,
    },
    /// A password-protected zip entry.
    #[error("archive entry `{path}` is encrypted; encrypted zip entries are not supported")]
    Encrypted {
        /// The entry's name as written in the archive.
        path: String,
    },
    /// A zip entry compressed with something other than store or deflate.
    #[error("archive entry `{path}` uses the unsupported compression method {method}; use deflate")]
    UnsupportedCompression {
        /// The entry's name as written in the archive.
        path: String,
        /// The method's name.
        method: String,
    },
    /// A name that is not valid UTF-8.
    #[error("archive entry `{path}` has a name that is not valid UTF-8")]
    NonUtf8Name {
        /// The name with invalid bytes replaced.
        path: String,
    },
    /// A name with a NUL byte, which no file name can hold.
    #[error("archive entry `{path}` has a NUL byte in its name")]
    NulInName {
        /// The name with the NUL shown as `\0`.
        path: String,
    },
    /// The same path listed twice (other than a folder listed again).
    #[error("archive entry `{path}` appears more than once")]
    DuplicatePath {
        /// The path, normalised.
        path: String,
    },
    /// An entry below a path that the archive made a file.
    #[error(
        "archive entry `{path}` needs `{parent}` to be a folder, but the archive has a file there"
    )]
    NotADirectory {
        /// The entry's name as written in the archive.
        path: String,
        /// The path that is a file but would have to be a folder.
        parent: String,
    },
    /// The extraction destination is not an existing, empty, real folder.
    #[error("extraction destination {} is not an existing empty folder", path.display())]
    DestinationNotEmpty {
        /// The destination given to [`extract`].
        path: PathBuf,
    },
    /// A filesystem operation on our side failed (disk full, permissions).
    #[error("{action}")]
    Io {
        /// What we were doing, for the server log.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// True when the archive itself is at fault (`INVALID_ARGUMENT`), false
    /// when the failure is ours (`INTERNAL`) and the message is not for the
    /// participant.
    pub fn is_invalid_archive(&self) -> bool {
        !matches!(
            self,
            ArchiveError::DestinationNotEmpty { .. } | ArchiveError::Io { .. }
        )
    }

    fn io(action: impl Into<String>, source: io::Error) -> Self {
        ArchiveError::Io {
            action: action.into(),
            source,
        }
    }
}

/// Formats a byte cap in MiB, with one decimal when it is not a whole number.
fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        (bytes / MIB).to_string()
    } else {
        format!("{:.1}", bytes as f64 / MIB as f64)
    }
}

/// Detects the archive format from its first bytes, or `None` if it is
/// neither gzip nor zip. Two bytes suffice for gzip, four for zip.
pub fn detect_format(head: &[u8]) -> Option<ArchiveFormat> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveFormat::TarGz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        // PK\x05\x06 opens a zip with no entries: it is a zip, and it is
        // refused later as empty, which says more than "unsupported".
        Some(ArchiveFormat::Zip)
    } else {
        None
    }
}

/// Reads every entry of `archive` and applies every rule, writing nothing.
///
/// Used at submit time. Decompresses everything (so the byte cap and
/// corruption checks are real) but discards the data as it streams.
pub fn validate(
    archive: &Path,
    declared: Option<ArchiveFormat>,
    limits: &ArchiveLimits,
) -> Result<ArchiveStats, ArchiveError> {
    run(archive, declared, limits, None)
}

/// Extracts `archive` into `dest`, an existing empty folder, applying the same
/// rules as [`validate`].
///
/// On any error the contents created so far are removed, so `dest` is left
/// empty (best effort) and never holds a half-checked tree.
pub fn extract(
    archive: &Path,
    declared: Option<ArchiveFormat>,
    dest: &Path,
    limits: &ArchiveLimits,
) -> Result<ArchiveStats, ArchiveError> {
    ensure_empty_dir(dest)?;
    let result = run(archive, declared, limits, Some(dest));
    if result.is_err() {
        clear_dir(dest);
    }
    result
}

fn run(
    archive: &Path,
    declared: Option<ArchiveFormat>,
    limits: &ArchiveLimits,
    dest: Option<&Path>,
) -> Result<ArchiveStats, ArchiveError> {
    let mut file = File::open(archive)
        .map_err(|e| ArchiveError::io(format!("open archive {}", archive.display()), e))?;
    let format = sniff(&mut file)?;
    if let Some(declared) = declared
        && declared != format
    {
        return Err(ArchiveError::FormatMismatch {
            declared,
            detected: format,
        });
    }
    let mut rules = Rules::new(limits, dest);
    match format {
        ArchiveFormat::TarGz => tar_gz::walk(file, &mut rules)?,
        ArchiveFormat::Zip => zip_file::walk(file, archive, &mut rules)?,
    }
    rules.finish(format)
}

/// Reads the magic bytes and rewinds, so the format reader starts at byte 0.
fn sniff(file: &mut File) -> Result<ArchiveFormat, ArchiveError> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::io("read archive header", e)),
        }
    }
    let format = detect_format(&head[..filled]).ok_or(ArchiveError::UnsupportedFormat)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io("rewind archive", e))?;
    Ok(format)
}

/// Refuses a destination that is missing, a symlink, or already has contents:
/// the no-follow guarantee rests on every folder below it being ours.
fn ensure_empty_dir(dest: &Path) -> Result<(), ArchiveError> {
    let not_empty = || ArchiveError::DestinationNotEmpty {
        path: dest.to_path_buf(),
    };
    let meta = fs::symlink_metadata(dest).map_err(|_| not_empty())?;
    if !meta.file_type().is_dir() {
        return Err(not_empty());
    }
    let mut listing =
        fs::read_dir(dest).map_err(|e| ArchiveError::io(format!("list {}", dest.display()), e))?;
    if listing.next().is_some() {
        return Err(not_empty());
    }
    Ok(())
}

/// Best-effort removal of everything inside `dest`. `remove_dir_all` does not
/// follow symlinks, and we never create any anyway.
fn clear_dir(dest: &Path) {
    let Ok(listing) = fs::read_dir(dest) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "could not clear extraction destination");
        }
    }
}
