//! The data folder's layout: which files play which role, and whether the sandbox user can
//! read what will be mounted for it.
//!
//! Owns the walk (never following a symbolic link) and the permission rule: the sandbox
//! runs as uid 65534 (nobody, group 65534), so under `inputs/` and `sample/inputs/` every
//! folder needs read and execute and every file read, for its owner when nobody owns it,
//! for its group when nobody's group does, and for others otherwise.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::report::{Code, Finding, Role, Severity};

/// The sandbox user and group.
const SANDBOX_ID: u32 = 65534;
/// Permission findings named one by one before the rest are counted together.
const NAMED_PERMISSION_FINDINGS: usize = 10;

/// One file of the layout.
#[derive(Debug, Clone)]
pub struct LayoutFile {
    /// Path relative to the data folder, with `/`.
    pub rel: String,
    /// Full path.
    pub path: PathBuf,
    /// Its role.
    pub role: Role,
    /// Size in bytes.
    pub bytes: u64,
    /// A `.csv` or `.tsv` file, parsed; anything else is only hashed.
    pub csv: bool,
}

/// Whether the sandbox user has the permission bits `need` (4 read, 1 execute).
pub fn sandbox_can(meta: &fs::Metadata, need: u32) -> bool {
    let mode = meta.mode();
    let bits = if meta.uid() == SANDBOX_ID {
        mode >> 6
    } else if meta.gid() == SANDBOX_ID {
        mode >> 3
    } else {
        mode
    } & 7;
    bits & need == need
}

/// Walks `dir`, returning its files sorted by path; layout and permission problems go to
/// `findings`.
pub fn discover(dir: &Path, findings: &mut Vec<Finding>) -> io::Result<Vec<LayoutFile>> {
    let mut files = Vec::new();
    let mut unexpected = Vec::new();
    let labels = dir.join("labels.csv");
    if labels.is_file() {
        push_file(&mut files, &labels, "labels.csv", Role::Labels)?;
    } else {
        findings.push(Finding::new(
            Code::LayoutNoLabels,
            Severity::Error,
            1,
            "labels.csv is missing: there is nothing to score against",
        ));
    }
    let mut perms = Perms::default();
    let inputs = dir.join("inputs");
    let before = files.len();
    if inputs.is_dir() {
        perms.check_dir(&inputs, "inputs");
        walk(
            &inputs,
            "inputs",
            Role::Inputs,
            &mut files,
            &mut perms,
            findings,
        )?;
    }
    if files.len() == before {
        findings.push(Finding::new(
            Code::LayoutNoInputs,
            Severity::Error,
            1,
            "inputs/ is missing or empty: FULL runs would see no data",
        ));
    }
    let sample = dir.join("sample");
    let sample_labels = sample.join("labels.csv");
    let sample_inputs = sample.join("inputs");
    let mut missing = Vec::new();
    if sample_labels.is_file() {
        push_file(
            &mut files,
            &sample_labels,
            "sample/labels.csv",
            Role::SampleLabels,
        )?;
    } else {
        missing.push("sample/labels.csv");
    }
    if sample_inputs.is_dir() {
        perms.check_dir(&sample_inputs, "sample/inputs");
        walk(
            &sample_inputs,
            "sample/inputs",
            Role::SampleInputs,
            &mut files,
            &mut perms,
            findings,
        )?;
    } else {
        missing.push("sample/inputs/");
    }
    if !missing.is_empty() {
        findings.push(Finding::new(
            Code::LayoutNoSample,
            Severity::Warning,
            missing.len() as u64,
            format!(
                "{} missing: participants get no public sample to test their code on",
                missing.join(" and ")
            ),
        ));
    }
    for (folder, known) in [
        (dir, &["labels.csv", "inputs", "sample"][..]),
        (&sample, &["labels.csv", "inputs"][..]),
    ] {
        let Ok(entries) = fs::read_dir(folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&name.as_str()) {
                let prefix = if folder == dir { "" } else { "sample/" };
                unexpected.push(format!("{prefix}{name}"));
            }
        }
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        let n = unexpected.len();
        let shown: Vec<&str> = unexpected.iter().take(5).map(String::as_str).collect();
        findings.push(Finding::new(
            Code::LayoutUnexpectedFile,
            Severity::Info,
            n as u64,
            format!(
                "{n} entries outside the layout were not checked: {}{}",
                shown.join(", "),
                if n > 5 { ", …" } else { "" }
            ),
        ));
    }
    findings.extend(perms.findings());
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

fn push_file(files: &mut Vec<LayoutFile>, path: &Path, rel: &str, role: Role) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let lower = rel.to_ascii_lowercase();
    files.push(LayoutFile {
        rel: rel.to_owned(),
        path: path.to_owned(),
        role,
        bytes: meta.len(),
        csv: lower.ends_with(".csv") || lower.ends_with(".tsv"),
    });
    Ok(())
}

fn walk(
    dir: &Path,
    rel: &str,
    role: Role,
    files: &mut Vec<LayoutFile>,
    perms: &mut Perms,
    findings: &mut Vec<Finding>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let child = format!("{rel}/{}", e.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            findings.push(
                Finding::new(
                    Code::LayoutSymlink,
                    Severity::Warning,
                    1,
                    "a symbolic link under a mounted folder points elsewhere inside the sandbox; copy the file instead",
                )
                .file(&child),
            );
        } else if meta.is_dir() {
            perms.check_dir(&path, &child);
            walk(&path, &child, role, files, perms, findings)?;
        } else if meta.is_file() {
            if !sandbox_can(&meta, 4) {
                perms.bad.push(child.clone());
            }
            push_file(files, &path, &child, role)?;
        }
    }
    Ok(())
}

/// Paths the sandbox user cannot read.
#[derive(Default)]
struct Perms {
    bad: Vec<String>,
}

impl Perms {
    fn check_dir(&mut self, dir: &Path, rel: &str) {
        if let Ok(meta) = fs::metadata(dir)
            && !sandbox_can(&meta, 5)
        {
            self.bad.push(format!("{rel}/"));
        }
    }

    fn findings(&self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .bad
            .iter()
            .take(NAMED_PERMISSION_FINDINGS)
            .map(|p| {
                let what = if p.ends_with('/') {
                    "folder (needs o+rx)"
                } else {
                    "file (needs o+r)"
                };
                Finding::new(
                    Code::PermSandboxUnreadable,
                    Severity::Error,
                    1,
                    format!("the sandbox user (uid 65534) cannot read this {what}"),
                )
                .file(p)
            })
            .collect();
        let rest = self.bad.len().saturating_sub(NAMED_PERMISSION_FINDINGS);
        if rest > 0 {
            out.push(Finding::new(
                Code::PermSandboxUnreadable,
                Severity::Error,
                rest as u64,
                format!(
                    "{rest} more files or folders the sandbox user cannot read (chmod -R o+rX)"
                ),
            ));
        }
        out
    }
}
