//! Packing a local folder as tar.gz for `holdout submit PATH`.
//!
//! The output is what the server accepts and nothing else: relative paths,
//! folders and regular files only, modes reduced to 0755/0644, no owners, zero
//! mtimes, entries in byte order of their names, so packing the same tree
//! twice gives the same bytes. It must never follow a symlink or silently
//! drop one: a link is an error naming it, since the server would refuse it.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{Builder, EntryType, Header};

/// Packs the contents of `dir` (not `dir` itself) as a tar.gz into `out`.
///
/// Fails with `InvalidInput` naming the entry on a symlink, a special file or
/// a name that is not UTF-8, since the server would refuse the archive.
pub fn pack_dir(dir: &Path, out: &mut impl Write) -> io::Result<()> {
    if !fs::symlink_metadata(dir)?.file_type().is_dir() {
        return Err(invalid(format!("{} is not a folder", dir.display())));
    }
    let mut builder = Builder::new(GzEncoder::new(out, Compression::default()));
    pack_children(&mut builder, dir, "")?;
    builder.into_inner()?.finish()?;
    Ok(())
}

fn pack_children<W: Write>(builder: &mut Builder<W>, abs: &Path, rel: &str) -> io::Result<()> {
    let mut names = fs::read_dir(abs)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    for name in names {
        let child_abs = abs.join(&name);
        let Some(name) = name.to_str() else {
            return Err(invalid(format!(
                "{} has a name that is not valid UTF-8; the server would refuse it",
                child_abs.display()
            )));
        };
        let child_rel = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&child_abs)?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            return Err(invalid(format!(
                "`{child_rel}` is a symbolic link; the server refuses links, so replace it with a copy of its target"
            )));
        } else if file_type.is_dir() {
            let mut header = new_header(EntryType::Directory, 0o755, 0);
            builder.append_data(&mut header, format!("{child_rel}/"), io::empty())?;
            pack_children(builder, &child_abs, &child_rel)?;
        } else if file_type.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let len = meta.len();
            let mut header = new_header(EntryType::Regular, mode, len);
            // Exactly `len` bytes whatever happens to the file meanwhile: a
            // file that grew or shrank while packing would otherwise leave
            // the header and the data disagreeing, a corrupt archive.
            let data = File::open(&child_abs)?
                .take(len)
                .chain(io::repeat(0))
                .take(len);
            builder.append_data(&mut header, &child_rel, data)?;
        } else {
            return Err(invalid(format!(
                "`{child_rel}` is not a regular file or folder; the server would refuse it"
            )));
        }
    }
    Ok(())
}

/// A GNU header (so long names get a long-name entry) with no owner and a
/// zero mtime, for reproducible output.
fn new_header(entry_type: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
