//! The digest of a challenge's data folder: what makes two hosts' copies "the same data".
//!
//! A challenge records the digest of its folder when it is created (or updated); an
//! execution worker on another host computes the digest of its own copy before it runs the
//! challenge's first submission, and refuses the challenge when they differ, so a stale or
//! partial copy never scores anyone against other labels.
//!
//! The digest covers every entry under the folder, in name order: its path relative to the
//! folder, its kind, and a file's bytes (SHA-256) or a link's target. Times, owners and
//! modes do not count: a copy made with `rsync` or `cp -r` digests the same.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of the folder `root` (see the module doc). Blocking: reads every byte.
pub fn digest(root: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    walk(root, root, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn walk(root: &Path, dir: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let kind = e.file_type()?;
        // Lengths first: no two different listings hash the same bytes.
        let name = rel.as_os_str().as_encoded_bytes();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        if kind.is_symlink() {
            let target = std::fs::read_link(&path)?;
            let t = target.as_os_str().as_encoded_bytes();
            h.update(b"l");
            h.update((t.len() as u64).to_le_bytes());
            h.update(t);
        } else if kind.is_dir() {
            h.update(b"d");
            walk(root, &path, h)?;
            h.update(b"D");
        } else if kind.is_file() {
            h.update(b"f");
            let mut file = std::fs::File::open(&path)?;
            let mut content = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut len = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                len += n as u64;
                content.update(&buf[..n]);
            }
            h.update(len.to_le_bytes());
            h.update(content.finalize());
        } else {
            h.update(b"o");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        dir
    }

    #[test]
    fn copies_digest_the_same_and_any_change_differs() {
        let base = [("labels.csv", "id,y\n1,0\n"), ("inputs/x.csv", "id\n1\n")];
        let a = digest(tree(&base).path()).unwrap();
        assert_eq!(a, digest(tree(&base).path()).unwrap());
        assert!(a.starts_with("sha256:"));
        for changed in [
            vec![("labels.csv", "id,y\n1,1\n"), ("inputs/x.csv", "id\n1\n")],
            vec![("labels.csv", "id,y\n1,0\n")],
            vec![("labels.csv", "id,y\n1,0\n"), ("inputs/y.csv", "id\n1\n")],
            vec![
                ("labels.csv", "id,y\n1,0\n"),
                ("inputs/x.csv", "id\n1\n"),
                ("extra", ""),
            ],
            // The same bytes split differently between names.
            vec![("labels.csv", "id,y\n1,0\nid\n1\n"), ("inputs/x.csv", "")],
        ] {
            assert_ne!(a, digest(tree(&changed).path()).unwrap(), "{changed:?}");
        }
    }
}
