//! The per-entry rules shared by both formats, and the one place where entry
//! data is counted and (when extracting) written.
//!
//! Format readers translate their headers into a raw name and an [`EntryKind`]
//! and hand them here; nothing in this file knows about tar or zip. It must
//! never write a byte past the size cap, never open a path it did not just
//! create itself, and never create anything but plain files and folders.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{ArchiveError, ArchiveFormat, ArchiveLimits, ArchiveStats};

/// Linux's limit on one path component (`NAME_MAX`).
const MAX_COMPONENT_BYTES: usize = 255;
/// Linux's limit on a whole path (`PATH_MAX`); also bounds the memory the
/// duplicate-path tree can use per entry.
const MAX_PATH_BYTES: usize = 4096;
/// Read size for entry data: big enough to be fast, small enough that the
/// chunk which crosses the cap is never written.
const CHUNK: usize = 64 * 1024;

/// What an entry is, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A regular file with its permission bits from the archive.
    File { mode: u32 },
    /// A folder.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link.
    HardLink,
    /// Anything else (device, FIFO, socket, sparse, unknown), described in words.
    Special(&'static str),
}

/// How a format separates path components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Separators {
    /// `/` only: a backslash is an ordinary file-name byte on Linux.
    Slash,
    /// `/` and `\`, and `C:` drive prefixes count as absolute: zips made on
    /// Windows use backslashes, and the checks must see through them.
    SlashOrBackslash,
}

/// An entry that passed the name and kind rules.
#[derive(Debug)]
pub(super) struct Admitted {
    /// Normalised relative path (`a/b/c.py`), safe to join onto the destination.
    pub path: String,
}

/// A node of the tree of paths seen so far, used to refuse duplicates and a
/// file standing where a folder is needed. Storing components in a tree keeps
/// memory proportional to the names' total length.
enum Node {
    File,
    Dir(HashMap<String, Node>),
}

/// Applies the rules to a stream of entries and tallies the stats.
pub(super) struct Rules<'a> {
    limits: &'a ArchiveLimits,
    /// `None` for a dry run.
    dest: Option<&'a Path>,
    root: HashMap<String, Node>,
    entries: u64,
    files: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl<'a> Rules<'a> {
    pub(super) fn new(limits: &'a ArchiveLimits, dest: Option<&'a Path>) -> Self {
        Self {
            limits,
            dest,
            root: HashMap::new(),
            entries: 0,
            files: 0,
            bytes: 0,
            buf: vec![0; CHUNK],
        }
    }

    pub(super) fn limits(&self) -> &ArchiveLimits {
        self.limits
    }

    /// Refuses up front an archive whose directory already lists too many
    /// entries (zip), instead of discovering it one entry at a time.
    pub(super) fn check_entry_count(&self, listed: u64) -> Result<(), ArchiveError> {
        if listed > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Counts one entry and applies every rule that needs no data: name,
    /// kind, mode, depth, duplicates. Creates the folders the entry needs
    /// when extracting. Returns `None` for the root entry (`./`), which has
    /// nothing to create.
    pub(super) fn admit(
        &mut self,
        raw_name: &[u8],
        kind: EntryKind,
        separators: Separators,
    ) -> Result<Option<Admitted>, ArchiveError> {
        self.entries += 1;
        self.check_entry_count(self.entries)?;

        let name = std::str::from_utf8(raw_name).map_err(|_| ArchiveError::NonUtf8Name {
            path: shown(&String::from_utf8_lossy(raw_name)),
        })?;
        if name.contains('\0') {
            return Err(ArchiveError::NulInName { path: shown(name) });
        }
        let parts = components(name, separators)?;

        match kind {
            EntryKind::Symlink => return Err(ArchiveError::Symlink { path: shown(name) }),
            EntryKind::HardLink => return Err(ArchiveError::HardLink { path: shown(name) }),
            EntryKind::Special(what) => {
                return Err(ArchiveError::SpecialEntry {
                    path: shown(name),
                    kind: what,
                });
            }
            // Setuid/setgid matter on files. On folders setgid is a common,
            // harmless group-inheritance setting of the participant's own disk;
            // refusing it would fail honest archives, and we never apply it.
            EntryKind::File { mode } if mode & 0o6000 != 0 => {
                return Err(ArchiveError::SetuidBit { path: shown(name) });
            }
            EntryKind::File { .. } | EntryKind::Dir => {}
        }

        if parts.is_empty() {
            return match kind {
                EntryKind::Dir => Ok(None),
                _ => Err(ArchiveError::Corrupt {
                    detail: format!("a file entry `{}` has an empty name", shown(name)),
                }),
            };
        }
        if parts.len() > self.limits.max_depth {
            return Err(ArchiveError::TooDeep {
                path: shown(name),
                limit: self.limits.max_depth,
            });
        }
        let path = parts.join("/");
        if path.len() > MAX_PATH_BYTES {
            return Err(ArchiveError::NameTooLong {
                path: shortened(name),
                limit: MAX_PATH_BYTES,
            });
        }
        if parts.iter().any(|p| p.len() > MAX_COMPONENT_BYTES) {
            return Err(ArchiveError::NameTooLong {
                path: shortened(name),
                limit: MAX_COMPONENT_BYTES,
            });
        }

        self.place(name, &parts, kind == EntryKind::Dir)?;
        Ok(Some(Admitted { path }))
    }

    /// Records the path in the tree, refusing duplicates and files where a
    /// folder is needed, and creates any folder that is new.
    fn place(&mut self, name: &str, parts: &[&str], is_dir: bool) -> Result<(), ArchiveError> {
        let (leaf, parents) = parts
            .split_last()
            .expect("admit checked parts is non-empty");
        let mut level = &mut self.root;
        for (depth, part) in parents.iter().enumerate() {
            let node = match level.entry((*part).to_owned()) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    make_dir(self.dest, &parts[..=depth].join("/"))?;
                    v.insert(Node::Dir(HashMap::new()))
                }
            };
            level = match node {
                Node::Dir(children) => children,
                Node::File => {
                    return Err(ArchiveError::NotADirectory {
                        path: shown(name),
                        parent: parts[..=depth].join("/"),
                    });
                }
            };
        }
        match level.entry((*leaf).to_owned()) {
            // A folder listed again (or listed after a file inside it) is
            // normal in tar and zip; anything else would overwrite.
            Entry::Occupied(o) if is_dir && matches!(o.get(), Node::Dir(_)) => Ok(()),
            Entry::Occupied(_) => Err(ArchiveError::DuplicatePath {
                path: parts.join("/"),
            }),
            Entry::Vacant(v) => {
                if is_dir {
                    make_dir(self.dest, &parts.join("/"))?;
                    v.insert(Node::Dir(HashMap::new()));
                } else {
                    v.insert(Node::File);
                }
                Ok(())
            }
        }
    }

    /// Streams one admitted file's data, counting every decompressed byte
    /// against the cap and writing it when extracting.
    ///
    /// `claimed` is a size the format guarantees the data has (tar): an entry
    /// claiming more than the remaining budget is refused before any read.
    /// Zip's declared sizes can lie, so zip passes `None`. `read_error` turns
    /// a reader's error into the right variant (a stream cap, or corruption).
    pub(super) fn write_file(
        &mut self,
        entry: &Admitted,
        mode: u32,
        claimed: Option<u64>,
        data: &mut dyn Read,
        read_error: &dyn Fn(io::Error, &str) -> ArchiveError,
    ) -> Result<(), ArchiveError> {
        let cap = self.limits.max_extracted_bytes;
        let too_large = ArchiveError::TooLarge { limit_bytes: cap };
        if claimed.is_some_and(|size| size > cap - self.bytes) {
            return Err(too_large);
        }
        self.files += 1;
        let mut out = match self.dest {
            Some(dest) => Some(create_file(dest, &entry.path, mode)?),
            None => None,
        };
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e, &entry.path)),
            };
            self.bytes += n as u64;
            // Checked before writing, so the chunk that crosses the cap never
            // reaches the disk.
            if self.bytes > cap {
                return Err(too_large);
            }
            if let Some(file) = out.as_mut() {
                file.write_all(&self.buf[..n])
                    .map_err(|e| ArchiveError::io(format!("write {}", entry.path), e))?;
            }
        }
        Ok(())
    }

    /// Ends the walk: an archive without a single file is refused.
    pub(super) fn finish(self, format: ArchiveFormat) -> Result<ArchiveStats, ArchiveError> {
        if self.files == 0 {
            return Err(ArchiveError::Empty);
        }
        Ok(ArchiveStats {
            format,
            entries: self.entries,
            files: self.files,
            extracted_bytes: self.bytes,
        })
    }
}

/// Splits a name into its meaningful components, refusing absolute paths and
/// `..`. Empty and `.` components are dropped (`./src//a.py` is `src/a.py`).
fn components(name: &str, separators: Separators) -> Result<Vec<&str>, ArchiveError> {
    let windows = separators == Separators::SlashOrBackslash;
    let is_sep = |c: char| c == '/' || (windows && c == '\\');
    if name.starts_with(is_sep) {
        return Err(ArchiveError::AbsolutePath { path: shown(name) });
    }
    let mut parts = Vec::new();
    for (index, part) in name.split(is_sep).enumerate() {
        match part {
            "" | "." => {}
            ".." => return Err(ArchiveError::ParentTraversal { path: shown(name) }),
            _ if windows && index == 0 && is_drive(part) => {
                return Err(ArchiveError::AbsolutePath { path: shown(name) });
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// `C:` or `C:foo`: a Windows drive prefix.
fn is_drive(part: &str) -> bool {
    let b = part.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// A name made safe to put in a message: control characters escaped, so a
/// crafted name cannot forge lines in a log or a terminal.
fn shown(name: &str) -> String {
    name.escape_debug().to_string()
}

/// Like [`shown`], cut to a readable length for names that are too long.
fn shortened(name: &str) -> String {
    let cut: String = name.chars().take(80).collect();
    if cut.len() < name.len() {
        format!("{}...", shown(&cut))
    } else {
        shown(name)
    }
}

/// Creates one folder (its parent already exists, created by us) with 0755,
/// whatever the umask: the run user in the container must be able to read it.
fn make_dir(dest: Option<&Path>, rel: &str) -> Result<(), ArchiveError> {
    let Some(dest) = dest else { return Ok(()) };
    let path = dest.join(rel);
    // `create` fails if anything already exists there, so this never adopts a
    // folder (or link) we did not make.
    DirBuilder::new()
        .mode(0o755)
        .create(&path)
        .and_then(|()| fs::set_permissions(&path, Permissions::from_mode(0o755)))
        .map_err(|e| ArchiveError::io(format!("create folder {rel}"), e))
}

/// Creates a new file (never opening an existing one, never following a link)
/// with 0644, or 0755 if the archive gave it any exec bit.
fn create_file(dest: &Path, rel: &str, mode: u32) -> Result<File, ArchiveError> {
    let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest.join(rel))
        .map_err(|e| ArchiveError::io(format!("create file {rel}"), e))?;
    // fchmod on the open descriptor: the umask must not take read bits away.
    file.set_permissions(Permissions::from_mode(perm))
        .map_err(|e| ArchiveError::io(format!("set mode of {rel}"), e))?;
    Ok(file)
}
