//! Validation of a challenge definition against the host, once, for create and update
//! alike: its runtime, limits (against the server's caps), release policy, scoring, data
//! folder (inside the data root, readable by the sandbox user, labels that load), image and
//! isolation on the engine. Each failure names the field; nothing is stored until all pass.

use std::path::{Component, Path, PathBuf};

use super::Challenges;
use crate::domain::{
    Challenge, DataFacts, DomainError, FailureDetail, Isolation, LeaderboardMode, SubmissionKind,
};
use crate::run::plan::{self, DataLayout};
use crate::scoring;

/// The first path under `root` (itself included) that the sandbox user could not read:
/// runs see the inputs as uid 65534, so folders need o+rx and files o+r. Links are not
/// followed. Looks at no more than 100,000 entries.
fn unreadable_by_sandbox(root: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_owned()];
    let mut seen = 0usize;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > 100_000 {
            return None;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            if mode & 0o005 != 0o005 {
                return Some(path);
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && mode & 0o004 == 0 {
            return Some(path);
        }
    }
    None
}

/// Resolves `data_dir` inside the data root, refusing anything that would escape it.
pub fn resolve_data_dir(data_root: &Path, data_dir: &str) -> Result<PathBuf, DomainError> {
    let rel = Path::new(data_dir);
    if data_dir.is_empty() {
        return Err(DomainError::invalid("data_dir", "is empty"));
    }
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(DomainError::invalid(
            "data_dir",
            format!("{data_dir:?} must be a relative path inside the data root, without '..'"),
        ));
    }
    let root = std::fs::canonicalize(data_root).map_err(|e| {
        DomainError::precondition(
            "data_dir",
            format!(
                "the server's data root {} is not usable: {e}",
                data_root.display()
            ),
        )
    })?;
    let dir = std::fs::canonicalize(root.join(rel)).map_err(|_| {
        DomainError::precondition(
            "data_dir",
            format!("{data_dir:?} does not exist under the data root"),
        )
    })?;
    if !dir.starts_with(&root) {
        return Err(DomainError::invalid(
            "data_dir",
            format!("{data_dir:?} resolves outside the data root"),
        ));
    }
    if !dir.is_dir() {
        return Err(DomainError::precondition(
            "data_dir",
            format!("{data_dir:?} is not a folder"),
        ));
    }
    Ok(dir)
}

impl Challenges {
    /// The digest of the challenge's data folder as it is now (see `crate::datadir`).
    pub(super) async fn data_digest(&self, c: &Challenge) -> Result<String, DomainError> {
        let root = DataLayout::of(&self.host.data_root, c).root().to_owned();
        tokio::task::spawn_blocking(move || crate::datadir::digest(&root))
            .await
            .map_err(DomainError::internal)?
            .map_err(|e| DomainError::precondition("data_dir", format!("cannot read it all: {e}")))
    }

    /// Checks a whole definition against the host: every failure names its field.
    pub(super) async fn validate(&self, c: &Challenge) -> Result<DataFacts, DomainError> {
        if c.title.chars().count() > 200 {
            return Err(DomainError::invalid(
                "title",
                "is longer than 200 characters",
            ));
        }
        // Runtime.
        if c.runtime.image.trim().is_empty() {
            return Err(DomainError::invalid("runtime.image", "is empty"));
        }
        for key in c.runtime.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(DomainError::invalid(
                    "runtime.env",
                    format!("{key:?} is not a valid variable name"),
                ));
            }
            if key.starts_with("HOLDOUT_") {
                return Err(DomainError::invalid(
                    "runtime.env",
                    format!("{key:?}: HOLDOUT_ variables are set by the service"),
                ));
            }
        }
        if c.runtime.command.iter().any(|a| a.contains('\0')) {
            return Err(DomainError::invalid(
                "runtime.command",
                "contains a NUL byte",
            ));
        }
        // Limits.
        let over = c.limits.over_caps(&self.host.caps);
        if !over.is_empty() {
            return Err(DomainError::invalid("limits", over.join("; ")));
        }
        let resolved = c.limits.or_defaults(&self.host.defaults);
        let over = resolved.over_caps(&self.host.caps);
        if !over.is_empty() {
            return Err(DomainError::invalid(
                "limits",
                format!(
                    "the server's defaults fill in values over its caps: {}",
                    over.join("; ")
                ),
            ));
        }
        // Release.
        if c.release.score_decimals > 12 {
            return Err(DomainError::invalid(
                "release.score_decimals",
                "must be at most 12",
            ));
        }
        if c.release.mode == LeaderboardMode::Ladder
            && !(c.release.ladder_step > 0.0 && c.release.ladder_step.is_finite())
        {
            return Err(DomainError::invalid(
                "release.ladder_step",
                "LADDER needs a positive ladder_step",
            ));
        }
        // Scoring.
        let s = &c.scoring;
        if !(s.public_fraction > 0.0 && s.public_fraction < 1.0) {
            return Err(DomainError::invalid(
                "scoring.public_fraction",
                "must be strictly between 0 and 1",
            ));
        }
        if s.id_column.is_empty() {
            return Err(DomainError::invalid("scoring.id_column", "is empty"));
        }
        match (&s.builtin, &s.custom) {
            (Some(_), Some(_)) => {
                return Err(DomainError::invalid(
                    "scoring",
                    "set either builtin or custom, not both",
                ));
            }
            (None, None) => {
                return Err(DomainError::invalid(
                    "scoring",
                    "set a builtin metric or a custom scorer",
                ));
            }
            (Some(b), None) => {
                if b.target_column.is_empty() {
                    return Err(DomainError::invalid(
                        "scoring.builtin.target_column",
                        "is empty",
                    ));
                }
                if c.release.mode == LeaderboardMode::LadderParameterFree
                    && !b.metric.has_row_losses()
                {
                    return Err(DomainError::invalid(
                        "release.mode",
                        format!(
                            "LADDER_PARAMETER_FREE needs a metric with per-row losses (accuracy, log_loss, rmse, mae, r2), not {}",
                            b.metric.name()
                        ),
                    ));
                }
            }
            (None, Some(custom)) => {
                if custom.release_messages && c.release.failure_detail != FailureDetail::Verdict {
                    return Err(DomainError::invalid(
                        "scoring.custom.release_messages",
                        "releasing the scorer's messages needs release.failure_detail = VERDICT (NOT_SCORED hides every failure's detail)",
                    ));
                }
                if custom.primary_metric.trim().is_empty() {
                    return Err(DomainError::invalid(
                        "scoring.custom.primary_metric",
                        "is empty",
                    ));
                }
                if custom.image.trim().is_empty() {
                    return Err(DomainError::invalid("scoring.custom.image", "is empty"));
                }
                if c.release.mode == LeaderboardMode::LadderParameterFree {
                    return Err(DomainError::invalid(
                        "release.mode",
                        "LADDER_PARAMETER_FREE needs per-row losses, which only built-in metrics provide",
                    ));
                }
            }
        }
        // Data folder and labels (on the host; blocking work off the runtime).
        let dir = resolve_data_dir(&self.host.data_root, &c.data_dir)?;
        if !dir.join("inputs").is_dir() {
            return Err(DomainError::precondition(
                "data_dir",
                format!("{:?} has no inputs/ folder", c.data_dir),
            ));
        }
        let readable_roots = [dir.join("inputs"), dir.join("sample").join("inputs")];
        let data_name = c.data_dir.clone();
        tokio::task::spawn_blocking(move || {
        for root in readable_roots.iter().filter(|r| r.is_dir()) {
            if let Some(bad) = unreadable_by_sandbox(root) {
                let shown = bad.strip_prefix(root.parent().unwrap_or(root)).unwrap_or(&bad).display().to_string();
                return Err(DomainError::precondition(
                    "data_dir",
                    format!(
                        "{data_name:?}: {shown} is not readable by the sandbox user (uid 65534), so every run would fail; \
                         make the inputs world-readable (chmod -R o+rX)"
                    ),
                ));
            }
        }
        Ok(())
    })
    .await
    .map_err(DomainError::internal)??;
        let labels = dir.join("labels.csv");
        if !labels.is_file() {
            return Err(DomainError::precondition(
                "data_dir",
                format!("{:?} has no labels.csv", c.data_dir),
            ));
        }
        if let Some(custom) = &c.scoring.custom {
            let facts = validate_custom_labels(c, &labels).await?;
            self.require_image("scoring.custom.image", &custom.image)
                .await?;
            self.validate_engine(c).await?;
            return Ok(facts);
        }
        let output_bytes = self.host.limits(c).output_bytes.0;
        let spec_of = |kind| {
            plan::scoring_spec(c, kind, output_bytes)
                .and_then(|s| s.label_spec().map_err(plan::PlanError::Spec))
                .map_err(|e| DomainError::invalid("scoring", crate::domain::error_chain(&e)))
        };
        let spec = spec_of(SubmissionKind::Full)?;
        let smoke_spec = spec_of(SubmissionKind::Smoke)?;
        let layout = DataLayout::of(&self.host.data_root, c);
        let sample_labels = layout.labels(SubmissionKind::Smoke);
        let has_sample = layout.has_sample();
        let facts = tokio::task::spawn_blocking(move || -> Result<DataFacts, DomainError> {
            let set = scoring::load_labels(&labels, &spec)
                .map_err(|e| DomainError::precondition("data_dir", format!("labels.csv: {e}")))?;
            if has_sample {
                scoring::load_labels(&sample_labels, &smoke_spec).map_err(|e| {
                    DomainError::precondition("data_dir", format!("sample/labels.csv: {e}"))
                })?;
            }
            let range = set.target_range();
            Ok(DataFacts {
                public_rows: set.public_len() as u64,
                private_rows: set.private_len() as u64,
                target_min: range.map(|r| r.0),
                target_max: range.map(|r| r.1),
                ..DataFacts::default()
            })
        })
        .await
        .map_err(DomainError::internal)??;
        self.validate_engine(c).await?;
        Ok(facts)
    }
}

/// For a custom scorer: labels.csv has the id column and both splits are non-empty.
async fn validate_custom_labels(c: &Challenge, labels: &Path) -> Result<DataFacts, DomainError> {
    let labels = labels.to_owned();
    let id_column = c.scoring.id_column.clone();
    let split = scoring::Split {
        public_fraction: c.scoring.public_fraction,
        seed: c.scoring.split_seed,
    };
    tokio::task::spawn_blocking(move || -> Result<DataFacts, DomainError> {
        let tmp = tempfile::tempdir().map_err(DomainError::internal)?;
        let mut facts = DataFacts::default();
        let (public, private) = scoring::write_split_labels(&labels, &id_column, &split, tmp.path())
            .map_err(|e| DomainError::precondition("data_dir", format!("labels.csv: {e}")))?;
        for (name, path) in [("public", public), ("private", private)] {
            let rows = std::fs::read(&path).map_err(DomainError::internal)?.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
            if rows < 2 {
                return Err(DomainError::precondition(
                    "scoring.public_fraction",
                    format!("the {name} split of labels.csv would be empty; change public_fraction or split_seed"),
                ));
            }
            // Data rows: every line but the header.
            let rows = rows as u64 - 1;
            if name == "public" {
                facts.public_rows = rows;
            } else {
                facts.private_rows = rows;
            }
        }
        Ok(facts)
    })
    .await
    .map_err(DomainError::internal)?
}

impl Challenges {
    /// The engine has `image` (named by `field`), or FAILED_PRECONDITION.
    async fn require_image(&self, field: &str, image: &str) -> Result<(), DomainError> {
        if self
            .engine
            .image_exists(image)
            .await
            .map_err(DomainError::internal)?
        {
            return Ok(());
        }
        Err(DomainError::precondition(
            field,
            format!(
                "image {image:?} is not present on the Docker engine (build or load it on the host first)"
            ),
        ))
    }

    /// The engine has the image and the isolation the challenge asks for.
    async fn validate_engine(&self, c: &Challenge) -> Result<(), DomainError> {
        self.require_image("runtime.image", &c.runtime.image)
            .await?;
        // A pinned image must be exactly the one the challenge was made with.
        if !c.runtime.image_digest.is_empty() {
            let id = self
                .engine
                .image_id(&c.runtime.image)
                .await
                .map_err(DomainError::internal)?;
            if id != c.runtime.image_digest {
                return Err(DomainError::precondition(
                    "runtime.image_digest",
                    format!(
                        "image {:?} on the engine is {id}, not the pinned {}",
                        c.runtime.image, c.runtime.image_digest
                    ),
                ));
            }
        }
        if self.host.isolation(c) == Isolation::Gvisor
            && !self
                .engine
                .supports(Isolation::Gvisor)
                .await
                .map_err(DomainError::internal)?
        {
            return Err(DomainError::precondition(
                "runtime.isolation",
                "gVisor was asked for but the Docker engine has no \"runsc\" runtime registered",
            ));
        }
        Ok(())
    }
}
