//! What a folder of wheels holds, read on the host before anything is built: each wheel's
//! project, version and tags (from its file name, PEP 427) and the top-level modules it
//! installs (its `*.dist-info/top_level.txt`, or else the entries of the zip), so the
//! derived image can be checked by importing every one of them.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One wheel of the organiser's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wheel {
    /// The file.
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// The project, canonical (lowercase, runs of `-_.` as one `-`).
    pub project: String,
    /// The version, as in the file name.
    pub version: String,
    /// The top-level modules it installs, sorted.
    pub modules: Vec<String>,
}

/// A wheel folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// The folder holds no `.whl` file.
    #[error("{} holds no .whl file", .0.display())]
    NoWheels(PathBuf),
    /// A file name is not `name-version[-build]-python-abi-platform.whl`.
    #[error("{0} is not a wheel file name (name-version[-build]-python-abi-platform.whl)")]
    BadName(String),
    /// A wheel is not a readable zip.
    #[error("{file} is not a readable wheel: {reason}")]
    Unreadable {
        /// The file name.
        file: String,
        /// Why.
        reason: String,
    },
    /// A wheel installs nothing that can be imported.
    #[error("{0} installs no importable top-level module")]
    NoModules(String),
    /// The folder could not be read.
    #[error("cannot read {}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
}

/// A project name as pip compares them: lowercase, every run of `-`, `_`, `.` one `-`.
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// Project and version from a wheel's file name.
pub fn parse_file_name(file_name: &str) -> Result<(String, String), WheelError> {
    let bad = || WheelError::BadName(file_name.to_owned());
    let stem = file_name.strip_suffix(".whl").ok_or_else(bad)?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !matches!(parts.len(), 5 | 6) || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    Ok((canonical(parts[0]), parts[1].to_owned()))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The top-level modules a wheel with these entries installs: `top_level.txt` when it has
/// one, otherwise the first path component of each entry outside `*.dist-info` (packages,
/// `*.py` modules, `*.so` extensions), `*.data/purelib|platlib` included.
pub fn top_level_modules(entries: &[String], top_level_txt: Option<&str>) -> Vec<String> {
    let mut modules: Vec<String> = match top_level_txt {
        Some(text) => text
            .lines()
            .map(|l| l.trim().replace('/', "."))
            .filter(|l| !l.is_empty() && l.split('.').all(is_identifier))
            .collect(),
        None => entries
            .iter()
            .filter_map(|e| {
                let mut parts: Vec<&str> = e.split('/').filter(|p| !p.is_empty()).collect();
                if parts.first()?.ends_with(".data") {
                    if !matches!(parts.get(1), Some(&"purelib") | Some(&"platlib")) {
                        return None;
                    }
                    parts.drain(..2);
                }
                let first = *parts.first()?;
                if first.ends_with(".dist-info") || first == "__pycache__" {
                    return None;
                }
                let name = if parts.len() > 1 || e.ends_with('/') {
                    first
                } else if let Some(stem) = first.strip_suffix(".py") {
                    stem
                } else if first.ends_with(".so") || first.contains(".so.") {
                    first.split('.').next()?
                } else {
                    return None; // .pth files and other data
                };
                is_identifier(name).then(|| name.to_owned())
            })
            .collect(),
    };
    modules.sort();
    modules.dedup();
    modules
}

/// Reads one wheel.
pub fn inspect(path: &Path) -> Result<Wheel, WheelError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (project, version) = parse_file_name(&file_name)?;
    let unreadable = |reason: String| WheelError::Unreadable {
        file: file_name.clone(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| unreadable(e.to_string()))?;
    let entries: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let top_level = entries
        .iter()
        .find(|e| {
            e.ends_with("/top_level.txt")
                && e.split('/').count() == 2
                && e.split('/')
                    .next()
                    .is_some_and(|d| d.ends_with(".dist-info"))
        })
        .cloned();
    let top_level_txt = match top_level {
        Some(name) => {
            let mut text = String::new();
            zip.by_name(&name)
                .map_err(|e| unreadable(e.to_string()))?
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| unreadable(e.to_string()))?;
            Some(text)
        }
        None => None,
    };
    let modules = top_level_modules(&entries, top_level_txt.as_deref());
    if modules.is_empty() {
        return Err(WheelError::NoModules(file_name));
    }
    Ok(Wheel {
        path: path.to_owned(),
        file_name,
        project,
        version,
        modules,
    })
}

/// Every `*.whl` in `dir`, by file name.
pub fn read_dir(dir: &Path) -> Result<Vec<Wheel>, WheelError> {
    let io = |e| WheelError::Io(dir.to_owned(), e);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl") && p.is_file())
        .collect();
    if paths.is_empty() {
        return Err(WheelError::NoWheels(dir.to_owned()));
    }
    paths.sort();
    paths.iter().map(|p| inspect(p)).collect()
}

/// The projects a requirements file names (canonical), ignoring comments, options and
/// version specifiers.
pub fn required_projects(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .filter_map(|l| {
            let end = l
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .unwrap_or(l.len());
            (end > 0).then(|| canonical(&l[..end]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn project_names_compare_as_pip_compares_them() {
        assert_eq!(canonical("Digits_Helpers"), "digits-helpers");
        assert_eq!(canonical("zope.interface"), "zope-interface");
        assert_eq!(canonical("a__-b"), "a-b");
    }

    #[test]
    fn a_wheel_file_name_gives_project_and_version() {
        assert_eq!(
            parse_file_name("digits_helpers-0.1.0-py3-none-any.whl").unwrap(),
            ("digits-helpers".into(), "0.1.0".into())
        );
        assert_eq!(
            parse_file_name("numpy-2.1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl").unwrap(),
            ("numpy".into(), "2.1.0".into())
        );
        for bad in [
            "x.whl",
            "a-1-py3-none.whl",
            "a-1-py3-none-any.zip",
            "a--py3-none-any.whl",
        ] {
            assert!(
                matches!(parse_file_name(bad), Err(WheelError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn top_level_txt_names_the_modules_when_present() {
        let e = entries(&["pkg/__init__.py", "x-1.dist-info/top_level.txt"]);
        assert_eq!(
            top_level_modules(&e, Some("pkg\n\nother\nns/sub\n")),
            ["ns.sub", "other", "pkg"]
        );
    }

    #[test]
    fn without_top_level_txt_the_entries_name_packages_modules_and_extensions() {
        let e = entries(&[
            "pkg/__init__.py",
            "pkg/sub/mod.py",
            "single.py",
            "_speedups.cpython-311-x86_64-linux-gnu.so",
            "x-1.dist-info/METADATA",
            "x-1.dist-info/RECORD",
            "x-1.data/purelib/extra/__init__.py",
            "x-1.data/scripts/tool",
            "x-1.data/data/share/doc.txt",
            "__pycache__/single.cpython-311.pyc",
            "hook.pth",
            "not-a-module/file.py",
        ]);
        assert_eq!(
            top_level_modules(&e, None),
            ["_speedups", "extra", "pkg", "single"]
        );
    }

    #[test]
    fn requirements_name_projects_whatever_their_specifiers() {
        let text = "# approved\nDigits_Helpers==0.1.0\nnumpy >= 1.26 ; python_version >= '3'\n\n-r other.txt\nscipy # pinned below\n";
        assert_eq!(
            required_projects(text),
            ["digits-helpers", "numpy", "scipy"]
        );
    }
}
