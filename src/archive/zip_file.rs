//! Reading a zip: turns each central-directory record into a name and an
//! [`EntryKind`] for the shared rules, and checks what is zip-specific
//! (encryption, compression method, names listed twice).
//!
//! Zip headers declare sizes that can lie, so nothing here trusts them: data
//! is counted by the rules as it decompresses. This file must never call the
//! zip crate's own `extract`, which makes its own choices about paths.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::ArchiveError;
use super::rules::{EntryKind, Rules, Separators};

/// File-type bits of a Unix mode, as zips made on Unix store them.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// Walks every entry of a zip through `rules`.
pub(super) fn walk(file: File, path: &Path, rules: &mut Rules<'_>) -> Result<(), ArchiveError> {
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(corrupt)?;
    // The whole central directory is parsed up front, so the count is known
    // before any data is read.
    rules.check_entry_count(zip.len() as u64)?;
    check_names_listed_once(path, zip.central_directory_start(), zip.len())?;

    for index in 0..zip.len() {
        // Metadata only: nothing is decompressed until every rule has passed.
        let (name, kind, encrypted, method) = {
            let raw = zip.by_index_raw(index).map_err(corrupt)?;
            let name = raw.name_raw().to_vec();
            let kind = kind_of(&name, raw.unix_mode());
            (name, kind, raw.encrypted(), raw.compression())
        };
        let Some(admitted) = rules.admit(&name, kind, Separators::SlashOrBackslash)? else {
            continue;
        };
        let EntryKind::File { mode } = kind else {
            continue;
        };
        if encrypted {
            return Err(ArchiveError::Encrypted {
                path: admitted.path,
            });
        }
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(ArchiveError::UnsupportedCompression {
                path: admitted.path,
                method: method.to_string(),
            });
        }
        let mut data = zip.by_index(index).map_err(corrupt)?;
        let read_error = |e: io::Error, path: &str| ArchiveError::Corrupt {
            detail: format!("entry `{path}`: {e}"),
        };
        rules.write_file(&admitted, mode, None, &mut data, &read_error)?;
    }
    Ok(())
}

/// Classifies an entry from its name and the Unix mode, if the zip has one.
/// A mode's file type decides first, because a link can have any name.
fn kind_of(name: &[u8], unix_mode: Option<u32>) -> EntryKind {
    let mode = unix_mode.unwrap_or(0);
    let named_as_dir = name.ends_with(b"/") || name.ends_with(b"\\");
    match mode & S_IFMT {
        S_IFLNK => EntryKind::Symlink,
        S_IFCHR => EntryKind::Special("character device"),
        S_IFBLK => EntryKind::Special("block device"),
        S_IFIFO => EntryKind::Special("FIFO (named pipe)"),
        S_IFSOCK => EntryKind::Special("socket"),
        S_IFDIR => EntryKind::Dir,
        _ if named_as_dir => EntryKind::Dir,
        0 | S_IFREG => EntryKind::File { mode },
        _ => EntryKind::Special("zip entry of an unknown file type"),
    }
}

/// The zip crate indexes entries by name and silently keeps only the last of
/// two with the same name, so duplicates are found by walking the central
/// directory ourselves. Reads only the fixed part of each record and its name.
fn check_names_listed_once(path: &Path, start: u64, indexed: usize) -> Result<(), ArchiveError> {
    const RECORD: usize = 46;
    let file = File::open(path).map_err(|e| ArchiveError::io("reopen zip", e))?;
    let mut reader = BufReader::new(file);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| ArchiveError::io("seek zip central directory", e))?;
    let mut seen = HashSet::with_capacity(indexed);
    let mut fixed = [0u8; RECORD];
    // The crate read exactly `indexed` unique names; one more record than
    // that is all it takes to show a difference.
    for _ in 0..=indexed {
        if reader.read_exact(&mut fixed).is_err() || &fixed[..4] != b"PK\x01\x02" {
            break;
        }
        let u16_at = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]) as usize;
        let (name_len, extra_len, comment_len) = (u16_at(28), u16_at(30), u16_at(32));
        let mut name = vec![0u8; name_len];
        reader.read_exact(&mut name).map_err(corrupt_io)?;
        reader
            .seek_relative((extra_len + comment_len) as i64)
            .map_err(corrupt_io)?;
        if seen.contains(&name) {
            return Err(ArchiveError::DuplicatePath {
                path: String::from_utf8_lossy(&name).escape_debug().to_string(),
            });
        }
        seen.insert(name);
    }
    if seen.len() != indexed {
        return Err(ArchiveError::Corrupt {
            detail: "the central directory lists a different number of entries than the zip reader found".into(),
        });
    }
    Ok(())
}

fn corrupt(e: ZipError) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}

fn corrupt_io(e: io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}
