//! Pseudonymisation of a challenge's CSV files: keyed tokens for direct identifiers and
//! generalisation of quasi-identifiers.
//!
//! A token is the first 128 bits of HMAC-SHA-256(key, value) in hex, so the same value
//! gets the same token in every file and every run under one key (joins keep working), and
//! without the key a token cannot be reversed or recomputed from a guessed value. Values
//! are trimmed first; an empty value stays empty.
//!
//! This is **pseudonymisation, not anonymisation**: under the GDPR (recital 26, art. 4(5))
//! pseudonymised data is still personal data, because whoever holds the key — or enough
//! other columns — can re-identify people. So the key must never be stored with the data
//! (a key file inside the input or output folder is refused), and the output should then
//! pass `holdout challenge check` with its quasi-identifiers declared (k-anonymity).
//!
//! Never prints, logs or returns a value it reads: the summary holds counts only.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::csv_stream::{CsvError, CsvReader, sniff_delimiter, strip_bom, write_field};
use super::generalise::Generalisation;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Why pseudonymisation could not run. Never quotes a data value.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymiseError {
    /// The key file is shorter than [`MIN_KEY_BYTES`].
    #[error(
        "the key file holds {0} bytes; at least {MIN_KEY_BYTES} are needed (holdout prepare key --out FILE makes one)"
    )]
    ShortKey(usize),
    /// The key file is inside the data.
    #[error(
        "the key file {0} is inside the input or output folder: keep the key apart from the data"
    )]
    KeyWithData(PathBuf),
    /// The output exists.
    #[error("{0} already exists; choose a new output path")]
    OutputExists(PathBuf),
    /// Input and output overlap.
    #[error("the output must be outside the input folder (and the other way round)")]
    Nested,
    /// A named column is in no file.
    #[error("column {0:?} is in no input file")]
    UnknownColumn(String),
    /// A column is both tokenised and generalised.
    #[error("column {0:?} is both tokenised and generalised")]
    BothRules(String),
    /// A CSV file cannot be parsed.
    #[error("{file}: {source}")]
    Csv {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: CsvError,
    },
    /// Reading or writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_at(file: &Path) -> impl FnOnce(io::Error) -> PseudonymiseError + '_ {
    move |source| PseudonymiseError::Io {
        file: file.display().to_string(),
        source,
    }
}

/// A pseudonymisation key. Its bytes never leave this type.
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(redacted)")
    }
}

/// An absolute path with links resolved as far as it exists.
fn resolve(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    if let Ok(c) = fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => std::path::absolute(p).unwrap_or_else(|_| p.to_owned()),
    }
}

/// The folder a path's data lives in: itself for a folder, its parent for a file.
fn data_root(p: &Path, is_dir: bool) -> PathBuf {
    if is_dir {
        resolve(p)
    } else {
        resolve(p.parent().unwrap_or(Path::new(".")))
    }
}

impl Key {
    /// Reads a key file (trailing whitespace dropped), refusing one shorter than
    /// [`MIN_KEY_BYTES`] or stored inside `input` or `output`.
    pub fn load(path: &Path, input: &Path, output: &Path) -> Result<Key, PseudonymiseError> {
        let key = resolve(path);
        let folder = input.is_dir();
        if key.starts_with(data_root(input, folder)) || key.starts_with(data_root(output, folder)) {
            return Err(PseudonymiseError::KeyWithData(path.to_owned()));
        }
        let mut bytes = fs::read(path).map_err(io_at(path))?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(PseudonymiseError::ShortKey(bytes.len()));
        }
        Ok(Key(bytes))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, PseudonymiseError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(PseudonymiseError::ShortKey(bytes.len()));
        }
        Ok(Key(bytes.to_vec()))
    }

    /// Writes a new random key (64 hex characters) to `path`, readable by its owner only,
    /// refusing to overwrite a file.
    pub fn generate(path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        writeln!(f, "{}", hex::encode(bytes))
    }

    /// The token of a value: 32 hex characters, empty for an empty value.
    pub fn token(&self, value: &[u8]) -> String {
        let value = value.trim_ascii();
        if value.is_empty() {
            return String::new();
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(value);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// What to change.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Columns replaced by tokens.
    pub tokenise: Vec<String>,
    /// Columns generalised.
    pub generalise: Vec<(String, Generalisation)>,
}

/// What was done to one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDone {
    /// Path relative to the input.
    pub path: String,
    /// Data rows.
    pub rows: u64,
    /// (column, values tokenised).
    pub tokenised: Vec<(String, u64)>,
    /// (column, values generalised, values blanked because the rule did not apply).
    pub generalised: Vec<(String, u64, u64)>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// CSV files rewritten.
    pub files: Vec<FileDone>,
    /// Other files copied unchanged (relative paths).
    pub copied: Vec<String>,
}

fn is_csv(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("tsv"))
}

fn list(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            list(dir, &r, out)?;
        } else if t.is_file() {
            out.push(r);
        }
    }
    Ok(())
}

/// Pseudonymises `input` (a CSV file or a folder of them) into `output` (a new file or
/// folder). Non-CSV files of a folder are copied unchanged and listed in the summary.
pub fn pseudonymise(
    input: &Path,
    output: &Path,
    key: &Key,
    rules: &Rules,
) -> Result<Summary, PseudonymiseError> {
    for (c, _) in &rules.generalise {
        if rules.tokenise.contains(c) {
            return Err(PseudonymiseError::BothRules(c.clone()));
        }
    }
    if output.exists() {
        return Err(PseudonymiseError::OutputExists(output.to_owned()));
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (ai, ao) = (abs(input), abs(output));
    if ao.starts_with(&ai) || ai.starts_with(&ao) {
        return Err(PseudonymiseError::Nested);
    }
    let (base, rels) = if input.is_dir() {
        let mut rels = Vec::new();
        list(input, Path::new(""), &mut rels).map_err(io_at(input))?;
        (input.to_owned(), rels)
    } else {
        (
            input.parent().unwrap_or(Path::new("")).to_owned(),
            vec![PathBuf::from(input.file_name().unwrap_or_default())],
        )
    };
    let target = |rel: &Path| {
        if input.is_dir() {
            output.join(rel)
        } else {
            output.to_owned()
        }
    };
    let mut summary = Summary::default();
    let mut seen: Vec<String> = Vec::new();
    for rel in &rels {
        let (src, dst) = (base.join(rel), target(rel));
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        if !is_csv(rel) {
            fs::copy(&src, &dst).map_err(io_at(&src))?;
            summary.copied.push(rel.display().to_string());
            continue;
        }
        let done = rewrite(&src, &dst, rel, key, rules, &mut seen)?;
        summary.files.push(done);
    }
    for c in rules
        .tokenise
        .iter()
        .chain(rules.generalise.iter().map(|g| &g.0))
    {
        if !seen.contains(c) {
            let _ = if input.is_dir() {
                fs::remove_dir_all(output)
            } else {
                fs::remove_file(output)
            };
            return Err(PseudonymiseError::UnknownColumn(c.clone()));
        }
    }
    Ok(summary)
}

enum Action {
    Keep,
    Token,
    General(Generalisation),
}

fn rewrite(
    src: &Path,
    dst: &Path,
    rel: &Path,
    key: &Key,
    rules: &Rules,
    seen: &mut Vec<String>,
) -> Result<FileDone, PseudonymiseError> {
    let name = rel.display().to_string();
    let csv_err = |source| PseudonymiseError::Csv {
        file: name.clone(),
        source,
    };
    let first = {
        let mut buf = vec![0u8; 64 << 10];
        let n = io::Read::read(&mut fs::File::open(src).map_err(io_at(src))?, &mut buf)
            .map_err(io_at(src))?;
        buf.truncate(n);
        buf
    };
    let delimiter = if src
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
    {
        b'\t'
    } else {
        sniff_delimiter(first.split(|&b| b == b'\n').next().unwrap_or(&[]))
    };
    let mut r = CsvReader::new(fs::File::open(src).map_err(io_at(src))?, delimiter);
    let mut w = BufWriter::new(fs::File::create(dst).map_err(io_at(dst))?);
    let mut line = Vec::new();
    let mut actions = Vec::new();
    let mut done = FileDone {
        path: name.clone(),
        rows: 0,
        tokenised: Vec::new(),
        generalised: Vec::new(),
    };
    if let Some(h) = r.next_record().map_err(csv_err)? {
        for i in 0..h.len() {
            let raw = if i == 0 {
                strip_bom(h.raw(0))
            } else {
                h.raw(i)
            };
            let n = String::from_utf8_lossy(raw.trim_ascii()).into_owned();
            let action = if rules.tokenise.contains(&n) {
                done.tokenised.push((n.clone(), 0));
                Action::Token
            } else if let Some((_, g)) = rules.generalise.iter().find(|(c, _)| *c == n) {
                done.generalised.push((n.clone(), 0, 0));
                Action::General(*g)
            } else {
                Action::Keep
            };
            if !matches!(action, Action::Keep) && !seen.contains(&n) {
                seen.push(n);
            }
            actions.push(action);
            if i > 0 {
                line.push(delimiter);
            }
            write_field(&mut line, raw, delimiter);
        }
        line.push(b'\n');
        w.write_all(&line).map_err(io_at(dst))?;
    }
    while let Some(rec) = r.next_record().map_err(csv_err)? {
        line.clear();
        done.rows += 1;
        let (mut t, mut g) = (0, 0);
        for i in 0..rec.len() {
            if i > 0 {
                line.push(delimiter);
            }
            match actions.get(i).unwrap_or(&Action::Keep) {
                Action::Keep => write_field(&mut line, rec.raw(i), delimiter),
                Action::Token => {
                    let tok = key.token(rec.get(i));
                    done.tokenised[t].1 += u64::from(!tok.is_empty());
                    t += 1;
                    line.extend_from_slice(tok.as_bytes());
                }
                Action::General(rule) => {
                    let v = String::from_utf8_lossy(rec.get(i));
                    let entry = &mut done.generalised[g];
                    g += 1;
                    match rule.apply(&v) {
                        Some(out) => {
                            entry.1 += u64::from(!out.is_empty());
                            write_field(&mut line, out.as_bytes(), delimiter);
                        }
                        None => entry.2 += 1,
                    }
                }
            }
        }
        line.push(b'\n');
        w.write_all(&line).map_err(io_at(dst))?;
    }
    w.flush().map_err(io_at(dst))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_are_stable_keyed_and_trimmed() {
        let a = Key::from_bytes(&[7u8; 32]).unwrap();
        let b = Key::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(
            a.token(b"alice@example.org"),
            a.token(b" alice@example.org ")
        );
        assert_ne!(a.token(b"alice@example.org"), b.token(b"alice@example.org"));
        assert_eq!(a.token(b"alice@example.org").len(), 32);
        assert_eq!(a.token(b"  "), "");
        assert!(Key::from_bytes(&[1u8; 31]).is_err());
        assert_eq!(format!("{a:?}"), "Key(redacted)");
    }
}
