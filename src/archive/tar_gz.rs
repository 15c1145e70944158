//! Reading a tar.gz: turns each tar header into a name and an
//! [`EntryKind`] for the shared rules, and bounds everything the rules
//! cannot see.
//!
//! The tar crate is used in raw mode, so GNU long-name and pax headers reach
//! us instead of being read whole into memory by the crate: we refuse any
//! larger than [`MAX_META_BYTES`]. The decompressed stream as a whole is
//! metered too, because some bytes never pass through the rules (headers,
//! padding, data the crate skips behind a folder entry). This file must never
//! read a header's data without a bound.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use flate2::read::GzDecoder;
use tar::{EntryType, PaxExtensions};

use super::ArchiveError;
use super::rules::{EntryKind, Rules, Separators};

/// Largest GNU long-name/long-link or pax header we read into memory. Real
/// ones are a few hundred bytes; names are capped at 4 KiB later anyway.
pub(super) const MAX_META_BYTES: u64 = 64 * 1024;
/// Extension headers allowed in a row before a real entry: GNU tar writes at
/// most a long name and a long link, pax writers one `x`, plus stray `g`s.
const MAX_META_IN_A_ROW: u32 = 8;
/// Stream bytes allowed per entry on top of file contents: its header,
/// padding and typical extension headers fit many times over.
const STREAM_OVERHEAD_PER_ENTRY: u64 = 8 * 1024;
/// Slack after the last entry for the end-of-archive blocks and the record
/// padding `tar` adds (usually up to 10 KiB).
const STREAM_TAIL_SLACK: u64 = 1024 * 1024;

/// Walks every entry of a tar.gz through `rules`, then reads to the end of
/// the gzip stream so a damaged or truncated trailer is caught too.
pub(super) fn walk(file: File, rules: &mut Rules<'_>) -> Result<(), ArchiveError> {
    let limits = rules.limits();
    let stream_cap = limits
        .max_extracted_bytes
        .saturating_add(
            limits
                .max_entries
                .saturating_add(1)
                .saturating_mul(STREAM_OVERHEAD_PER_ENTRY),
        )
        .saturating_add(STREAM_TAIL_SLACK);
    let size_cap = limits.max_extracted_bytes;
    let tripped = Rc::new(Cell::new(false));
    let metered = Metered {
        inner: GzDecoder::new(BufReader::new(file)),
        left: stream_cap,
        tripped: Rc::clone(&tripped),
    };
    // Any reader error is the stream cap if the meter tripped, else damage.
    let stream_error = |e: io::Error, path: &str| {
        if tripped.get() {
            ArchiveError::TooLarge {
                limit_bytes: size_cap,
            }
        } else if path.is_empty() {
            ArchiveError::Corrupt {
                detail: e.to_string(),
            }
        } else {
            ArchiveError::Corrupt {
                detail: format!("entry `{path}`: {e}"),
            }
        }
    };

    let mut archive = tar::Archive::new(metered);
    let entries = archive
        .entries()
        .map_err(|e| stream_error(e, ""))?
        .raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error(e, ""))?;
        let header = entry.header();
        let entry_type = header.entry_type();
        let header_size = header.entry_size().map_err(|e| stream_error(e, ""))?;
        match entry_type {
            EntryType::GNULongName
            | EntryType::GNULongLink
            | EntryType::XHeader
            | EntryType::XGlobalHeader => {
                pending.in_a_row += 1;
                if pending.in_a_row > MAX_META_IN_A_ROW {
                    return Err(ArchiveError::Corrupt {
                        detail: "too many extension headers in a row".into(),
                    });
                }
                let data = read_meta(&mut entry, header_size, &stream_error)?;
                match entry_type {
                    EntryType::GNULongName => pending.long_name = Some(trim_nuls(data)),
                    EntryType::XHeader => pending.apply_pax(&data)?,
                    // A link's target is irrelevant: links are refused.
                    // Global pax headers carry defaults we do not use.
                    _ => {}
                }
                continue;
            }
            _ => {}
        }

        // pax `path` wins over a GNU long name, which wins over the header.
        let name = match pending.pax_path.take().or(pending.long_name.take()) {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        if let Some(pax_size) = pending.pax_size.take() {
            // Raw mode positions the next header by the header's size; a pax
            // size that disagrees would make us read a different archive than
            // tar does, so it is refused rather than guessed at.
            if pax_size != header_size {
                return Err(ArchiveError::Corrupt {
                    detail: "a pax size record disagrees with its header".into(),
                });
            }
        }
        pending.in_a_row = 0;

        let kind = match entry_type {
            // Old (v7) archives mark folders only with a trailing slash.
            EntryType::Regular | EntryType::Continuous if name.ends_with(b"/") => EntryKind::Dir,
            // Only a file's mode matters (exec and setuid bits), so only a
            // file's mode field has to parse.
            EntryType::Regular | EntryType::Continuous => EntryKind::File {
                mode: entry.header().mode().map_err(|e| stream_error(e, ""))?,
            },
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink,
            EntryType::Link => EntryKind::HardLink,
            EntryType::Char => EntryKind::Special("character device"),
            EntryType::Block => EntryKind::Special("block device"),
            EntryType::Fifo => EntryKind::Special("FIFO (named pipe)"),
            // Sparse data expands holes the stream never carries; not worth
            // supporting for source code, and refusing it keeps counting honest.
            EntryType::GNUSparse => EntryKind::Special("sparse file"),
            _ => EntryKind::Special("tar entry of an unsupported type"),
        };
        let Some(admitted) = rules.admit(&name, kind, Separators::Slash)? else {
            continue;
        };
        if let EntryKind::File { mode } = kind {
            rules.write_file(
                &admitted,
                mode,
                Some(header_size),
                &mut entry,
                &stream_error,
            )?;
        }
    }
    if pending.long_name.is_some() || pending.pax_path.is_some() {
        return Err(ArchiveError::Corrupt {
            detail: "the archive ends with an extension header and no entry".into(),
        });
    }
    // Reading to the end checks the gzip CRC and length, so a truncated or
    // altered stream is refused even when the tar part looked whole.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| stream_error(e, ""))?;
    Ok(())
}

/// Extension-header state waiting for the entry it describes.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
    in_a_row: u32,
}

impl Pending {
    fn apply_pax(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        for record in PaxExtensions::new(data) {
            let record = record.map_err(|e| ArchiveError::Corrupt {
                detail: format!("malformed pax header: {e}"),
            })?;
            match record.key_bytes() {
                b"path" => self.pax_path = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let size = record
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| ArchiveError::Corrupt {
                            detail: "malformed pax size record".into(),
                        })?;
                    self.pax_size = Some(size);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads an extension header's data, refusing one over [`MAX_META_BYTES`]
/// before reading any of it.
fn read_meta(
    entry: &mut impl Read,
    size: u64,
    stream_error: &dyn Fn(io::Error, &str) -> ArchiveError,
) -> Result<Vec<u8>, ArchiveError> {
    if size > MAX_META_BYTES {
        return Err(ArchiveError::Corrupt {
            detail: format!(
                "an extension header is {size} bytes, over the {MAX_META_BYTES}-byte limit"
            ),
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| stream_error(e, ""))?;
    Ok(data)
}

/// GNU long names are NUL-terminated inside their data.
fn trim_nuls(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

/// Counts decompressed bytes and fails once more than the cap would be read,
/// flagging `tripped` so the error can be reported as a size problem.
struct Metered<R> {
    inner: R,
    left: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // Exactly at the cap is fine if the stream ends here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.tripped.set(true);
                    Err(io::Error::other("decompressed stream exceeds its cap"))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}
