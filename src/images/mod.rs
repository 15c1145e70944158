//! Derived runtime images, built offline (`holdout image extend`): an organiser's folder of
//! approved wheels installed into a runtime image with networking off, then verified by a
//! participant-like run of the new image that imports every top-level module the wheels
//! install.
//!
//! The build is the engine's (`crate::sandbox::build`): a generated Dockerfile `FROM` the
//! base, the wheels copied in and installed by [`INSTALLER`] (pip with `--no-index` when the
//! image has pip; otherwise each wheel unpacked into site-packages after its tags are
//! checked). The verification is a normal hardened run through the [`Backend`] (no network,
//! read-only root, uid 65534, the server's default limits): an image that fails it is
//! removed, so a tag `extend` leaves behind has passed. Nothing here ever reaches a network.

pub mod wheels;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use self::wheels::{Wheel, WheelError};
use crate::config::{default_caps, default_limits};
use crate::domain::{Isolation, SubmissionId};
use crate::run::plan::run_limits;
use crate::run::workdir::make_writable_for_sandbox;
use crate::sandbox::docker::DockerBackend;
use crate::sandbox::hardening::{DATA_PATH, SUBMISSION_PATH};
use crate::sandbox::{Backend, Mount, RunRole, RunSpec, SandboxError};
use crate::verdict;

/// Installs the wheels inside the build (see its docstring).
pub const INSTALLER: &str = include_str!("install.py");
/// Imports every module in the verifying run (see its docstring).
pub const IMPORT_CHECK: &str = include_str!("import_check.py");
/// Where the build context is copied inside the image, and removed from after install.
const STAGING: &str = "/tmp/holdout-install";
/// The `instance` label of verifying runs.
const INSTANCE: &str = "image-extend";

/// What to build.
#[derive(Debug, Clone)]
pub struct ExtendRequest {
    /// The runtime image to extend; present on the engine.
    pub base: String,
    /// The organiser's folder of approved `.whl` files.
    pub wheels_dir: PathBuf,
    /// Optional requirements file: what to install from the folder (pip resolves it; without
    /// pip only `name` or `name==version` lines).
    pub requirements: Option<PathBuf>,
    /// The new image's tag.
    pub tag: String,
    /// The runtime of the verifying run.
    pub isolation: Isolation,
}

/// A derived image, built and verified.
#[derive(Debug, Clone)]
pub struct Extended {
    /// Its tag.
    pub tag: String,
    /// The engine's id (`sha256:...`): what a challenge's `runtime.image_digest` pins.
    pub id: String,
    /// Registry digests (empty for an image built here and never pushed).
    pub repo_digests: Vec<String>,
    /// The base image's id.
    pub base_id: String,
    /// The wheels in the folder.
    pub wheels: Vec<Wheel>,
    /// Each module the verifying run imported, with where it was found.
    pub imported: Vec<String>,
}

/// Why an image could not be extended.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A name that cannot go into a Dockerfile or a tag.
    #[error("{what} {value:?} must be a non-empty image reference without spaces or quotes")]
    BadReference {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// The base image is not on the engine (nothing is pulled).
    #[error("the base image {0} is not present on the Docker engine (build or load it first)")]
    BaseMissing(String),
    /// The wheel folder cannot be used.
    #[error(transparent)]
    Wheels(#[from] WheelError),
    /// The requirements file cannot be read.
    #[error("cannot read the requirements file {}", .0.display())]
    Requirements(PathBuf, #[source] std::io::Error),
    /// The offline build failed (the installer's message is in it).
    #[error("the offline build of {tag} failed: {source}")]
    Build {
        /// The tag.
        tag: String,
        /// The engine's error and the end of the build's output.
        #[source]
        source: SandboxError,
    },
    /// A module of a wheel does not import in a locked-down run of the new image.
    #[error(
        "module {module} (from {wheel}) does not import in a locked-down run of {tag}: {error}; the image was removed"
    )]
    ImportFailed {
        /// The image.
        tag: String,
        /// The module (or the project, when it is not installed at the wheel's version).
        module: String,
        /// The wheel it comes from.
        wheel: String,
        /// What the import raised.
        error: String,
    },
    /// The verifying run did not end cleanly for another reason.
    #[error("the import check of {tag} ended {verdict}: {message}; the image was removed")]
    CheckFailed {
        /// The image.
        tag: String,
        /// The run's verdict.
        verdict: String,
        /// The verdict's message and the run's last output.
        message: String,
    },
    /// The engine failed.
    #[error("the container engine failed")]
    Engine(#[from] SandboxError),
    /// Host I/O failed.
    #[error("host i/o")]
    Io(#[from] std::io::Error),
}

fn check_reference(what: &'static str, value: &str) -> Result<(), ImageError> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '`' | '$'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::BadReference {
            what,
            value: value.to_owned(),
        })
    }
}

/// A Dockerfile that installs `wheels` into `base`, keeping its user.
pub fn dockerfile(
    base: &str,
    base_id: &str,
    base_user: &str,
    wheels: &[Wheel],
    with_requirements: bool,
) -> String {
    let mut run = vec![
        "python3".to_owned(),
        format!("{STAGING}/install.py"),
        format!("{STAGING}/wheels"),
    ];
    if with_requirements {
        run.push(format!("{STAGING}/requirements.txt"));
    }
    let names: Vec<&str> = wheels.iter().map(|w| w.file_name.as_str()).collect();
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    let user = if base_user.is_empty() {
        "0:0"
    } else {
        base_user
    };
    format!(
        "FROM {base}\n\
         USER 0:0\n\
         COPY . {STAGING}\n\
         RUN {}\n\
         RUN {}\n\
         USER {user}\n\
         LABEL io.holdout.base-image={} io.holdout.wheels={}\n",
        json(&run),
        json(&[
            "python3".into(),
            "-c".into(),
            format!("import shutil; shutil.rmtree({STAGING:?})"),
        ]),
        serde_json::to_string(base_id).unwrap_or_default(),
        serde_json::to_string(&names.join(" ")).unwrap_or_default(),
    )
}

/// The build context: the Dockerfile, the installer, the wheels and the requirements, as an
/// uncompressed tar. Blocking.
fn build_context(
    dockerfile: &str,
    wheels: &[Wheel],
    requirements: Option<&[u8]>,
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
    };
    add("Dockerfile", dockerfile.as_bytes())?;
    add("install.py", INSTALLER.as_bytes())?;
    if let Some(r) = requirements {
        add("requirements.txt", r)?;
    }
    for w in wheels {
        add(&format!("wheels/{}", w.file_name), &std::fs::read(&w.path)?)?;
    }
    tar.into_inner()
}

/// Builds `req.tag` from `req.base` and the wheels, offline, then verifies it; `progress`
/// gets each line of the build's output.
pub async fn extend(
    engine: &DockerBackend,
    req: &ExtendRequest,
    progress: impl FnMut(&str),
) -> Result<Extended, ImageError> {
    check_reference("--from", &req.base)?;
    check_reference("--tag", &req.tag)?;
    let base = match engine.image_facts(&req.base).await {
        Err(SandboxError::ImageMissing(_)) => {
            return Err(ImageError::BaseMissing(req.base.clone()));
        }
        other => other?,
    };
    let dir = req.wheels_dir.clone();
    let all = tokio::task::spawn_blocking(move || wheels::read_dir(&dir))
        .await
        .map_err(std::io::Error::other)??;
    let requirements = match &req.requirements {
        Some(p) => Some(std::fs::read(p).map_err(|e| ImageError::Requirements(p.clone(), e))?),
        None => None,
    };
    let required = requirements
        .as_deref()
        .map(|r| wheels::required_projects(&String::from_utf8_lossy(r)));

    let file = dockerfile(
        &req.base,
        &base.id,
        &base.user,
        &all,
        requirements.is_some(),
    );
    let context = {
        let all = all.clone();
        tokio::task::spawn_blocking(move || build_context(&file, &all, requirements.as_deref()))
            .await
            .map_err(std::io::Error::other)??
    };
    engine
        .build_image(context, &req.tag, progress)
        .await
        .map_err(|source| ImageError::Build {
            tag: req.tag.clone(),
            source,
        })?;
    let imported = match verify(engine, &req.tag, &all, required.as_deref(), req.isolation).await {
        Ok(imported) => imported,
        Err(e) => {
            engine.remove_image(&req.tag).await?;
            return Err(e);
        }
    };
    let facts = engine.image_facts(&req.tag).await?;
    Ok(Extended {
        tag: req.tag.clone(),
        id: facts.id,
        repo_digests: facts.repo_digests,
        base_id: base.id,
        wheels: all,
        imported,
    })
}

/// Runs `image` like a participant's code (no network, read-only root, uid 65534, the
/// server's default limits) importing every top-level module of `wheels`: those the
/// requirements name (all of them without requirements) must be installed at the wheel's
/// version; the others are checked when installed (pip's dependencies). Returns what was
/// imported, and from where.
pub async fn verify(
    engine: &dyn Backend,
    image: &str,
    wheels: &[Wheel],
    required: Option<&[String]>,
    isolation: Isolation,
) -> Result<Vec<String>, ImageError> {
    let scratch = tempfile::Builder::new()
        .prefix("holdout-image-check-")
        .tempdir()?;
    let (submission, data, output) = (
        scratch.path().join("submission"),
        scratch.path().join("data"),
        scratch.path().join("output"),
    );
    for d in [&submission, &data] {
        std::fs::create_dir(d)?;
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    std::fs::create_dir(&output)?;
    make_writable_for_sandbox(&output)?;

    let mut command = vec![
        "python3".to_owned(),
        "-c".to_owned(),
        IMPORT_CHECK.to_owned(),
    ];
    command.extend(wheels.iter().map(|w| {
        let need = required.is_none_or(|r| r.contains(&w.project));
        format!(
            "{}=={}:{}:{}",
            w.project,
            w.version,
            w.modules.join(","),
            if need { "required" } else { "optional" }
        )
    }));
    let defaults = default_limits();
    let spec = RunSpec {
        submission_id: SubmissionId::generate(),
        run_name: "image-check".into(),
        role: RunRole::Participant,
        instance: INSTANCE.into(),
        image: image.to_owned(),
        command,
        env: BTreeMap::new(),
        isolation,
        mounts: vec![
            Mount::read_only(&submission, SUBMISSION_PATH),
            Mount::read_only(&data, DATA_PATH),
        ],
        output_dir: output,
        limits: run_limits(&defaults.resolve(&defaults, &default_caps())),
    };
    let limits = spec.limits.clone();
    let outcome = engine.run(spec, CancellationToken::new()).await?;
    let stdout = String::from_utf8_lossy(&outcome.logs.stdout).into_owned();
    let imported: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("imported "))
        .map(str::to_owned)
        .collect();
    if let Some(failed) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("holdout-import-failed "))
    {
        let (module, error) = failed.split_once(' ').unwrap_or((failed, ""));
        let wheel = wheels
            .iter()
            .find(|w| w.modules.iter().any(|m| m == module) || w.project == module)
            .map(|w| w.file_name.clone())
            .unwrap_or_default();
        return Err(ImageError::ImportFailed {
            tag: image.to_owned(),
            module: module.to_owned(),
            wheel,
            error: error.to_owned(),
        });
    }
    let passed = stdout.lines().any(|l| l == "holdout-import-check-passed");
    match verdict::classify(&outcome, &limits) {
        None if passed => Ok(imported),
        c => {
            let stderr = String::from_utf8_lossy(&outcome.logs.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let (verdict, message) = match c {
                Some(c) => (c.verdict.as_str().to_uppercase(), c.message),
                None => ("SCORED".into(), "exited 0 without finishing".into()),
            };
            Err(ImageError::CheckFailed {
                tag: image.to_owned(),
                verdict,
                message: format!("{message}\n{}", tail.join("\n")),
            })
        }
    }
}

/// The lines to paste into the challenge file's `[runtime]` table.
pub fn runtime_snippet(e: &Extended) -> String {
    format!(
        "[runtime]\nimage = {}\nimage_digest = {}\n",
        toml_string(&e.tag),
        toml_string(&e.id)
    )
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(file: &str, modules: &[&str]) -> Wheel {
        let (project, version) = wheels::parse_file_name(file).unwrap();
        Wheel {
            path: PathBuf::from(file),
            file_name: file.into(),
            project,
            version,
            modules: modules.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn the_dockerfile_installs_as_root_cleans_up_and_keeps_the_base_user() {
        let w = [wheel("a_b-1.0-py3-none-any.whl", &["a_b"])];
        let f = dockerfile("holdout-python:1", "sha256:00", "65534:65534", &w, false);
        assert_eq!(
            f,
            "FROM holdout-python:1\n\
             USER 0:0\n\
             COPY . /tmp/holdout-install\n\
             RUN [\"python3\",\"/tmp/holdout-install/install.py\",\"/tmp/holdout-install/wheels\"]\n\
             RUN [\"python3\",\"-c\",\"import shutil; shutil.rmtree(\\\"/tmp/holdout-install\\\")\"]\n\
             USER 65534:65534\n\
             LABEL io.holdout.base-image=\"sha256:00\" io.holdout.wheels=\"a_b-1.0-py3-none-any.whl\"\n"
        );
        let f = dockerfile("base", "sha256:00", "", &w, true);
        assert!(
            f.contains("\"/tmp/holdout-install/requirements.txt\"]"),
            "{f}"
        );
        assert!(f.contains("\nUSER 0:0\nLABEL"), "{f}");
    }

    #[test]
    fn references_that_could_break_the_dockerfile_are_refused() {
        for ok in ["holdout-python:1", "registry.local:5000/team/py@sha256:ab"] {
            check_reference("--tag", ok).unwrap();
        }
        for bad in ["", "a b", "a\nRUN x", "a\"b", "-x", "$(x)"] {
            assert!(check_reference("--tag", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_snippet_is_valid_toml_for_the_runtime_table() {
        let e = Extended {
            tag: "py-extra:1".into(),
            id: format!("sha256:{}", "0".repeat(64)),
            repo_digests: vec![],
            base_id: String::new(),
            wheels: vec![],
            imported: vec![],
        };
        let parsed: toml::Table = toml::from_str(&runtime_snippet(&e)).unwrap();
        assert_eq!(parsed["runtime"]["image"].as_str(), Some("py-extra:1"));
        assert_eq!(
            parsed["runtime"]["image_digest"].as_str(),
            Some(e.id.as_str())
        );
    }
}
