//! One test (at least) per rule that refuses an archive, each asserting the
//! exact error variant and, where it matters, that nothing was left behind.

use super::super::rules::{EntryKind, Rules, Separators};
use super::*;

// ---- paths ------------------------------------------------------------------

#[test]
fn a_tar_entry_climbing_out_with_dot_dot_is_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "ok.py", 0o644, b"");
    file(&mut tar, "../evil", 0o644, b"pwned");
    let run = stage(&tar_gz(tar));

    let err = run.extract(&ArchiveLimits::default()).unwrap_err();

    assert!(
        matches!(&err, ArchiveError::ParentTraversal { path } if path == "../evil"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`../evil`"));
    assert!(!run.dest.parent().unwrap().join("evil").exists());
    assert!(run.dest_is_empty());
}

#[test]
fn a_zip_slip_entry_is_refused() {
    let mut bytes = zip_with(|zip| zip_file(zip, "a/../../evil", 0o644, b"pwned"));
    // Some zip writers normalise names; make sure the raw name is hostile.
    assert!(bytes.windows(12).any(|w| w == b"a/../../evil"));
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::ParentTraversal { path } if path == "a/../../evil"),
        "{err:?}"
    );

    // The same with Windows separators.
    bytes = zip_with(|zip| zip_file(zip, "..\\evil", 0o644, b"pwned"));
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::ParentTraversal { path } if path == "..\\\\evil"),
        "{err:?}"
    );
}

#[test]
fn an_absolute_path_is_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "/etc/cron.d/evil", 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::AbsolutePath { path } if path == "/etc/cron.d/evil"),
        "{err:?}"
    );

    for name in ["\\windows\\evil", "C:\\evil", "c:evil"] {
        let bytes = zip_with(|zip| zip_file(zip, name, 0o644, b""));
        let err = refused(&bytes, &ArchiveLimits::default());
        assert!(
            matches!(err, ArchiveError::AbsolutePath { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn a_pax_path_header_is_checked_like_any_other_name() {
    let mut tar = Vec::new();
    // A pax record starts with its own length in bytes.
    let record = "19 path=../../evil\n";
    assert_eq!(record.len(), 19);
    tar_entry(
        &mut tar,
        b"PaxHeader",
        EntryType::XHeader,
        0o644,
        record.as_bytes(),
    );
    file(&mut tar, "innocent.py", 0o644, b"");

    let err = refused(&tar_gz(tar), &ArchiveLimits::default());

    assert!(
        matches!(&err, ArchiveError::ParentTraversal { path } if path == "../../evil"),
        "{err:?}"
    );
}

#[test]
fn a_path_deeper_than_the_cap_is_refused_naming_the_cap() {
    let limits = ArchiveLimits {
        max_depth: 4,
        ..ArchiveLimits::default()
    };
    let mut tar = Vec::new();
    file(&mut tar, "a/b/c/d.py", 0o644, b"");
    file(&mut tar, "a/b/c/d/e.py", 0o644, b"");

    let err = refused(&tar_gz(tar), &limits);

    assert!(
        matches!(&err, ArchiveError::TooDeep { path, limit: 4 } if path == "a/b/c/d/e.py"),
        "{err:?}"
    );
    assert!(err.to_string().contains("4 levels"));
}

#[test]
fn a_name_that_is_not_utf8_is_refused() {
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"caf\xe9.py", EntryType::Regular, 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::NonUtf8Name { path } if path == "caf\u{fffd}.py"),
        "{err:?}"
    );
}

#[test]
fn a_nul_byte_in_a_zip_name_is_refused() {
    let mut bytes = zip_with(|zip| zip_file(zip, "aXb.py", 0o644, b""));
    for at in bytes
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"aXb.py")
        .map(|(i, _)| i)
        .collect::<Vec<_>>()
    {
        bytes[at + 1] = 0;
    }
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::NulInName { path } if path == "a\\0b.py"),
        "{err:?}"
    );
}

#[test]
fn a_path_listed_twice_is_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"1");
    file(&mut tar, "./a.py", 0o644, b"2");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::DuplicatePath { path } if path == "a.py"),
        "{err:?}"
    );

    let mut tar = Vec::new();
    dir(&mut tar, "a/");
    file(&mut tar, "a", 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::DuplicatePath { path } if path == "a"),
        "{err:?}"
    );
}

#[test]
fn a_zip_listing_the_same_name_twice_is_refused() {
    // The zip crate would silently keep only the last copy.
    let mut bytes = zip_with(|zip| {
        zip_file(zip, "a.py", 0o644, b"1");
        zip_file(zip, "b.py", 0o644, b"2");
    });
    for at in bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"b.py")
        .map(|(i, _)| i)
        .collect::<Vec<_>>()
    {
        bytes[at] = b'a';
    }
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::DuplicatePath { path } if path == "a.py"),
        "{err:?}"
    );
}

#[test]
fn a_file_where_a_folder_is_needed_is_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "lib", 0o644, b"");
    file(&mut tar, "lib/x.py", 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::NotADirectory { path, parent } if path == "lib/x.py" && parent == "lib"),
        "{err:?}"
    );
}

// ---- entry kinds and modes --------------------------------------------------

#[test]
fn a_symlink_entry_is_refused() {
    let mut tar = Vec::new();
    let mut header = Header::new_ustar();
    header.set_path("data").unwrap();
    header.set_entry_type(EntryType::Symlink);
    header.set_link_name("/etc").unwrap();
    header.set_size(0);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    file(&mut tar, "data/passwd", 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::Symlink { path } if path == "data"),
        "{err:?}"
    );

    let bytes = zip_with(|zip| {
        zip.add_symlink("data", "/etc", SimpleFileOptions::default())
            .unwrap();
    });
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::Symlink { path } if path == "data"),
        "{err:?}"
    );
}

#[test]
fn a_hard_link_entry_is_refused() {
    let mut tar = Vec::new();
    let mut header = Header::new_ustar();
    header.set_path("shadow").unwrap();
    header.set_entry_type(EntryType::Link);
    header.set_link_name("/etc/shadow").unwrap();
    header.set_size(0);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::HardLink { path } if path == "shadow"),
        "{err:?}"
    );
}

#[test]
fn device_and_fifo_entries_are_refused() {
    for (entry_type, kind) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "FIFO (named pipe)"),
        (EntryType::GNUSparse, "sparse file"),
    ] {
        let mut tar = Vec::new();
        tar_entry(&mut tar, b"dev/thing", entry_type, 0o644, b"");
        let err = refused(&tar_gz(tar), &ArchiveLimits::default());
        assert!(
            matches!(&err, ArchiveError::SpecialEntry { path, kind: k } if path == "dev/thing" && *k == kind),
            "{err:?}"
        );
    }
}

#[test]
fn a_zip_entry_whose_mode_says_fifo_is_refused() {
    let mut bytes = zip_with(|zip| zip_file(zip, "pipe", 0o644, b""));
    let (_, central) = zip_headers(&bytes);
    // External attributes: the Unix mode sits in the high 16 bits.
    patch_u32(&mut bytes, central + 38, (0o010_644) << 16);
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::SpecialEntry { path, .. } if path == "pipe"),
        "{err:?}"
    );
}

#[test]
fn setuid_and_setgid_files_are_refused() {
    for mode in [0o4755, 0o2755] {
        let mut tar = Vec::new();
        file(&mut tar, "su", mode, b"\x7fELF");
        let err = refused(&tar_gz(tar), &ArchiveLimits::default());
        assert!(
            matches!(&err, ArchiveError::SetuidBit { path } if path == "su"),
            "{mode:o}: {err:?}"
        );
    }
}

#[test]
fn an_encrypted_zip_entry_is_refused() {
    let mut bytes = zip_with(|zip| zip_file(zip, "secret.py", 0o644, b"x"));
    let (local, central) = zip_headers(&bytes);
    // Bit 0 of the general-purpose flags marks encryption.
    bytes[local + 6] |= 1;
    bytes[central + 8] |= 1;
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::Encrypted { path } if path == "secret.py"),
        "{err:?}"
    );
}

#[test]
fn a_zip_entry_with_an_unsupported_compression_method_is_refused() {
    let mut bytes = zip_with(|zip| zip_file(zip, "a.py", 0o644, b"x"));
    let (local, central) = zip_headers(&bytes);
    // 12 is bzip2, which this build does not decode.
    patch_u16(&mut bytes, local + 8, 12);
    patch_u16(&mut bytes, central + 10, 12);
    let err = refused(&bytes, &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::UnsupportedCompression { path, .. } if path == "a.py"),
        "{err:?}"
    );
}

// ---- bombs and caps ---------------------------------------------------------

#[test]
fn a_gzip_bomb_stops_at_the_size_cap() {
    // 64 MiB of zeros in 1 MiB files, about 64 KiB compressed.
    let mut tar = Vec::new();
    for i in 0..64 {
        tar_zeros(
            &mut tar,
            &format!("zeros/{i}.bin"),
            EntryType::Regular,
            MIB as usize,
        );
    }
    let bytes = tar_gz(tar);
    assert!(
        bytes.len() < 512 * KIB as usize,
        "bomb is {} bytes",
        bytes.len()
    );
    let limits = small(8 * MIB + 1);

    let started = Instant::now();
    let err = refused(&bytes, &limits);

    assert!(
        matches!(err, ArchiveError::TooLarge { limit_bytes } if limit_bytes == 8 * MIB + 1),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(small(8 * MIB).max_extracted_bytes, 8 * MIB);
    assert!(
        ArchiveError::TooLarge {
            limit_bytes: 8 * MIB
        }
        .to_string()
        .contains("8 MiB")
    );
}

#[test]
fn a_zip_bomb_with_lying_declared_sizes_stops_at_the_size_cap() {
    let mut bytes = zip_with(|zip| zip_file(zip, "big.bin", 0o644, &vec![0; 16 * MIB as usize]));
    let (local, central) = zip_headers(&bytes);
    // Claim 10 bytes where 16 MiB inflate.
    patch_u32(&mut bytes, local + 22, 10);
    patch_u32(&mut bytes, central + 24, 10);

    let err = refused(&bytes, &small(4 * MIB));

    assert!(
        matches!(err, ArchiveError::TooLarge { limit_bytes } if limit_bytes == 4 * MIB),
        "{err:?}"
    );
}

#[test]
fn a_file_whose_data_never_ends_is_cut_at_the_cap_without_writing_past_it() {
    let tmp = TempDir::new().unwrap();
    let limits = small(MIB + 7);
    let mut rules = Rules::new(&limits, Some(tmp.path()));
    let admitted = rules
        .admit(
            b"endless.bin",
            EntryKind::File { mode: 0o644 },
            Separators::Slash,
        )
        .unwrap()
        .unwrap();
    let corrupt = |e: io::Error, _: &str| ArchiveError::Corrupt {
        detail: e.to_string(),
    };

    let err = rules
        .write_file(&admitted, 0o644, None, &mut io::repeat(0), &corrupt)
        .unwrap_err();

    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err:?}");
    let written = fs::metadata(tmp.path().join("endless.bin")).unwrap().len();
    assert!(
        written <= MIB + 7,
        "wrote {written} bytes past a {} cap",
        MIB + 7
    );
}

#[test]
fn a_folder_entry_hiding_data_is_bounded_by_the_stream_cap() {
    // The tar crate skips a folder's data without showing it to us; the
    // decompressed stream is metered as a whole so this cannot run forever.
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"");
    tar_zeros(&mut tar, "hidden/", EntryType::Directory, 16 * MIB as usize);
    let limits = ArchiveLimits {
        max_extracted_bytes: MIB,
        max_entries: 10,
        max_depth: 8,
    };
    let err = refused(&tar_gz(tar), &limits);
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err:?}");
}

#[test]
fn an_oversized_long_name_header_is_refused_without_being_read() {
    let mut tar = Vec::new();
    tar_zeros(
        &mut tar,
        "././@LongLink",
        EntryType::GNULongName,
        2 * MIB as usize,
    );
    file(&mut tar, "a.py", 0o644, b"");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(
        matches!(&err, ArchiveError::Corrupt { detail } if detail.contains("extension header")),
        "{err:?}"
    );
}

fn tiny_files_tar(count: usize) -> Vec<u8> {
    let mut tar = Vec::with_capacity(count * 512 + 1024);
    for i in 0..count {
        file(&mut tar, &format!("f/{i}"), 0o644, b"");
    }
    tar
}

#[test]
fn a_tar_of_100000_tiny_files_fails_fast_at_the_entry_cap() {
    let tar = tiny_files_tar(100_000);
    let bytes = {
        let mut t = tar;
        t.extend_from_slice(&[0; 1024]);
        gzip(&t, Compression::fast())
    };

    let started = Instant::now();
    let err = refused(&bytes, &ArchiveLimits::default());

    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 10_000 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("10000"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_entry_cap_stops_reading_before_the_rest_of_the_archive() {
    // Past the cap the bytes are garbage: had the reader gone on, it would
    // have reported corruption instead of the cap.
    let mut tar = tiny_files_tar(10_001);
    tar.extend(std::iter::repeat_n(0xAA, 512 * 10_000));
    let err = refused(&gzip(&tar, Compression::fast()), &ArchiveLimits::default());
    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 10_000 }),
        "{err:?}"
    );
}

#[test]
fn a_zip_of_100000_tiny_files_is_refused_before_anything_is_written() {
    let bytes = zip_with(|zip| {
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for i in 0..100_000 {
            zip.start_file(format!("f/{i}"), options).unwrap();
        }
    });

    let started = Instant::now();
    let err = refused(&bytes, &ArchiveLimits::default());

    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 10_000 }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

// ---- damaged, empty and mislabelled archives --------------------------------

#[test]
fn corrupt_and_truncated_archives_are_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, &[7; 4096]);
    let good = tar_gz(tar);

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xFF;
    flipped[middle + 1] ^= 0xFF;
    let err = refused(&flipped, &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");

    // Cut inside the gzip trailer: the tar part is whole, the CRC is not.
    let err = refused(&good[..good.len() - 4], &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");

    let zip = zip_with(|zip| zip_file(zip, "a.py", 0o644, &[7; 4096]));
    let err = refused(&zip[..zip.len() / 2], &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");

    let mut zip = zip;
    let at = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap() - 8;
    zip[at] ^= 0xFF;
    let err = refused(&zip, &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");
}

#[test]
fn an_archive_without_files_is_refused_as_empty() {
    let mut tar = Vec::new();
    dir(&mut tar, "./");
    dir(&mut tar, "src/");
    let err = refused(&tar_gz(tar), &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Empty), "{err:?}");

    let err = refused(&zip_with(|_| {}), &ArchiveLimits::default());
    assert!(matches!(err, ArchiveError::Empty), "{err:?}");

    let err = refused(
        &gzip(b"", Compression::default()),
        &ArchiveLimits::default(),
    );
    assert!(matches!(err, ArchiveError::Empty), "{err:?}");
}

#[test]
fn a_declared_format_that_disagrees_with_the_bytes_is_refused_naming_both() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"");
    let run = stage(&tar_gz(tar));

    let err = validate(
        &run.upload,
        Some(ArchiveFormat::Zip),
        &ArchiveLimits::default(),
    )
    .unwrap_err();

    assert!(
        matches!(
            err,
            ArchiveError::FormatMismatch {
                declared: ArchiveFormat::Zip,
                detected: ArchiveFormat::TarGz
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the archive was declared as zip but its contents are tar.gz"
    );
}

#[test]
fn bytes_that_are_neither_gzip_nor_zip_are_unsupported() {
    let mut plain_tar = Vec::new();
    file(&mut plain_tar, "a.py", 0o644, b"");
    for bytes in [&b""[..], b"print('hi')", b"\x1f", &plain_tar] {
        let err = refused(bytes, &ArchiveLimits::default());
        assert!(matches!(err, ArchiveError::UnsupportedFormat), "{err:?}");
    }
}

#[test]
fn formats_are_detected_from_magic_bytes() {
    assert_eq!(
        detect_format(&[0x1f, 0x8b, 8, 0]),
        Some(ArchiveFormat::TarGz)
    );
    assert_eq!(detect_format(b"PK\x03\x04"), Some(ArchiveFormat::Zip));
    assert_eq!(detect_format(b"PK\x05\x06"), Some(ArchiveFormat::Zip));
    assert_eq!(detect_format(b"PK\x07\x08"), None);
    assert_eq!(detect_format(b"ustar"), None);
    assert_eq!(detect_format(b""), None);
}

#[test]
fn extraction_into_a_folder_that_is_not_empty_is_refused() {
    let mut tar = Vec::new();
    file(&mut tar, "a.py", 0o644, b"");
    let run = stage(&tar_gz(tar));
    fs::write(run.dest.join("already.txt"), b"").unwrap();

    let err = run.extract(&ArchiveLimits::default()).unwrap_err();

    assert!(
        matches!(err, ArchiveError::DestinationNotEmpty { .. }),
        "{err:?}"
    );
    assert!(!err.is_invalid_archive());
    assert!(run.dest.join("already.txt").exists());
}
