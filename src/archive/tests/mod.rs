//! Archives are built in memory, byte by byte where the tar and zip crates
//! refuse to write something hostile, and each test names the rule it proves.
//! This file holds the builders and the archives that must be accepted;
//! `refusals` holds one test (at least) per rule that refuses an archive.

mod refusals;

use std::fs;
use std::io::{self, Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::*;

const KIB: u64 = 1024;

// ---- building archives ------------------------------------------------------

/// Appends one tar entry, writing `name` straight into the header's name field
/// so that `..`, absolute and other hostile names get through.
fn tar_entry(tar: &mut Vec<u8>, name: &[u8], entry_type: EntryType, mode: u32, data: &[u8]) {
    let mut header = Header::new_ustar();
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512), 0);
}

/// Appends an entry whose header claims `size` bytes of zeros.
fn tar_zeros(tar: &mut Vec<u8>, name: &str, entry_type: EntryType, size: usize) {
    tar_entry(tar, name.as_bytes(), entry_type, 0o644, &vec![0; size]);
}

fn file(tar: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    tar_entry(tar, name.as_bytes(), EntryType::Regular, mode, data);
}

fn dir(tar: &mut Vec<u8>, name: &str) {
    tar_entry(tar, name.as_bytes(), EntryType::Directory, 0o755, b"");
}

/// Ends a tar stream and gzips it.
fn tar_gz(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0; 1024]);
    gzip(&tar, Compression::default())
}

fn gzip(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), level);
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn zip_with(build: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut zip);
    zip.finish().unwrap().into_inner()
}

fn zip_file(zip: &mut ZipWriter<Cursor<Vec<u8>>>, name: &str, mode: u32, data: &[u8]) {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(mode);
    zip.start_file(name, options).unwrap();
    zip.write_all(data).unwrap();
}

/// Offsets of the local header and central-directory record of the first
/// zip entry, for patching fields the zip writer will not set.
fn zip_headers(zip: &[u8]) -> (usize, usize) {
    let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    (0, central)
}

fn patch_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn patch_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

// ---- running them -----------------------------------------------------------

struct Run {
    _tmp: TempDir,
    upload: PathBuf,
    dest: PathBuf,
}

fn stage(bytes: &[u8]) -> Run {
    let tmp = TempDir::new().unwrap();
    let upload = tmp.path().join("upload");
    let dest = tmp.path().join("out");
    fs::write(&upload, bytes).unwrap();
    fs::create_dir(&dest).unwrap();
    Run {
        _tmp: tmp,
        upload,
        dest,
    }
}

impl Run {
    fn extract(&self, limits: &ArchiveLimits) -> Result<ArchiveStats, ArchiveError> {
        extract(&self.upload, None, &self.dest, limits)
    }

    fn validate(&self, limits: &ArchiveLimits) -> Result<ArchiveStats, ArchiveError> {
        validate(&self.upload, None, limits)
    }

    fn dest_is_empty(&self) -> bool {
        fs::read_dir(&self.dest).unwrap().next().is_none()
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::symlink_metadata(self.dest.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }
}

/// Runs both `validate` and `extract` and insists they agree on refusing it,
/// leaving nothing behind; returns the error for the caller to match.
fn refused(bytes: &[u8], limits: &ArchiveLimits) -> ArchiveError {
    let run = stage(bytes);
    let dry = run
        .validate(limits)
        .expect_err("validate accepted a bad archive");
    let real = run
        .extract(limits)
        .expect_err("extract accepted a bad archive");
    assert_eq!(
        format!("{dry:?}"),
        format!("{real:?}"),
        "validate and extract disagree"
    );
    assert!(
        run.dest_is_empty(),
        "a refused extraction left files behind"
    );
    assert!(real.is_invalid_archive());
    real
}

fn small(bytes: u64) -> ArchiveLimits {
    ArchiveLimits {
        max_extracted_bytes: bytes,
        ..ArchiveLimits::default()
    }
}

// ---- accepted archives ------------------------------------------------------

#[test]
fn a_normal_tar_gz_extracts_with_plain_modes() {
    let mut tar = Vec::new();
    dir(&mut tar, "./");
    dir(&mut tar, "./src/");
    file(&mut tar, "./src/main.py", 0o664, b"print('hi')\n");
    file(&mut tar, "./run.sh", 0o700, b"#!/bin/sh\n");
    // Parents that are never listed are created, and a folder may be listed
    // after a file inside it.
    file(&mut tar, "data/x/y.csv", 0o600, b"a,b\n");
    dir(&mut tar, "data/");
    let run = stage(&tar_gz(tar));

    let stats = run.extract(&ArchiveLimits::default()).unwrap();

    assert_eq!(
        stats,
        ArchiveStats {
            format: ArchiveFormat::TarGz,
            entries: 6,
            files: 3,
            extracted_bytes: 12 + 10 + 4,
        }
    );
    assert_eq!(
        fs::read(run.dest.join("src/main.py")).unwrap(),
        b"print('hi')\n"
    );
    assert_eq!(fs::read(run.dest.join("data/x/y.csv")).unwrap(), b"a,b\n");
    assert_eq!(run.mode("src"), 0o755);
    assert_eq!(run.mode("data/x"), 0o755);
    assert_eq!(run.mode("src/main.py"), 0o644);
    assert_eq!(run.mode("run.sh"), 0o755);
    assert_eq!(run.mode("data/x/y.csv"), 0o644);
}

#[test]
fn a_normal_zip_extracts_with_plain_modes() {
    let bytes = zip_with(|zip| {
        zip.add_directory("pkg/", SimpleFileOptions::default())
            .unwrap();
        zip_file(zip, "pkg/model.py", 0o600, b"x = 1\n");
        zip_file(zip, "train", 0o751, b"#!/usr/bin/env python\n");
        // Written on Windows: backslash separators are folders too.
        zip_file(zip, "lib\\util.py", 0o644, b"");
    });
    let run = stage(&bytes);

    let stats = run.extract(&ArchiveLimits::default()).unwrap();

    assert_eq!(stats.format, ArchiveFormat::Zip);
    assert_eq!(
        (stats.entries, stats.files, stats.extracted_bytes),
        (4, 3, 6 + 22)
    );
    assert_eq!(fs::read(run.dest.join("pkg/model.py")).unwrap(), b"x = 1\n");
    assert!(run.dest.join("lib/util.py").is_file());
    assert_eq!(run.mode("pkg"), 0o755);
    assert_eq!(run.mode("lib"), 0o755);
    assert_eq!(run.mode("pkg/model.py"), 0o644);
    assert_eq!(run.mode("train"), 0o755);
}

#[test]
fn validate_writes_nothing_and_agrees_with_extract() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"1");
    file(&mut tar, "b/c.py", 0o644, b"22");
    let run = stage(&tar_gz(tar));

    let dry = run.validate(&ArchiveLimits::default()).unwrap();
    assert!(run.dest_is_empty());
    let real = run.extract(&ArchiveLimits::default()).unwrap();

    assert_eq!(dry, real);
}

#[test]
fn a_setgid_folder_is_accepted_but_the_bit_is_not_applied() {
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"shared/", EntryType::Directory, 0o2775, b"");
    file(&mut tar, "shared/a.py", 0o644, b"");
    let run = stage(&tar_gz(tar));

    run.extract(&ArchiveLimits::default()).unwrap();

    assert_eq!(run.mode("shared"), 0o755);
}

#[test]
fn a_declared_format_that_matches_is_accepted() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"1");
    let run = stage(&tar_gz(tar));

    let stats = validate(
        &run.upload,
        Some(ArchiveFormat::TarGz),
        &ArchiveLimits::default(),
    );

    assert_eq!(stats.unwrap().format, ArchiveFormat::TarGz);
}

// ---- pack_dir ---------------------------------------------------------------

fn write_tree(root: &Path) {
    let long = "l".repeat(120);
    fs::create_dir_all(root.join("src/deep").join(&long)).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::write(root.join("src/main.py"), b"print(1)\n").unwrap();
    fs::write(root.join("src/deep").join(&long).join("x.txt"), b"long").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_packed_folder_extracts_to_the_same_tree() {
    let src = TempDir::new().unwrap();
    write_tree(src.path());
    let mut packed = Vec::new();
    pack_dir(src.path(), &mut packed).unwrap();
    let run = stage(&packed);

    let stats = run.extract(&ArchiveLimits::default()).unwrap();

    assert_eq!(stats.files, 3);
    let long = "l".repeat(120);
    assert_eq!(
        fs::read(run.dest.join("src/main.py")).unwrap(),
        b"print(1)\n"
    );
    assert_eq!(
        fs::read(run.dest.join("src/deep").join(&long).join("x.txt")).unwrap(),
        b"long"
    );
    assert!(run.dest.join("empty").is_dir());
    assert_eq!(run.mode("run.sh"), 0o755);
    assert_eq!(run.mode("src/main.py"), 0o644);
}

#[test]
fn packing_the_same_folder_twice_gives_the_same_bytes() {
    let src = TempDir::new().unwrap();
    write_tree(src.path());
    let (mut first, mut second) = (Vec::new(), Vec::new());
    pack_dir(src.path(), &mut first).unwrap();
    pack_dir(src.path(), &mut second).unwrap();
    assert_eq!(first, second);
}

#[test]
fn packing_a_folder_with_a_symlink_fails_naming_it() {
    let src = TempDir::new().unwrap();
    write_tree(src.path());
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("src/link")).unwrap();

    let err = pack_dir(src.path(), &mut Vec::new()).unwrap_err();

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("`src/link`"), "{err}");
}
