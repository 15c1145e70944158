//! Challenge management: validation of a definition against the host (data folder, labels,
//! image, runtime, caps), and its storage.
//!
//! Validation happens once, here, for create and update alike, and each failure names the
//! field. Nothing is stored until everything passed.

use std::path::{Component, Path, PathBuf};

use crate::auth::Caller;
use crate::core::Core;
use crate::domain::{
    Challenge, ChallengeId, ChallengeState, DomainError, LeaderboardMode, SubmissionKind,
    now_millis,
};
use crate::sandbox::Isolation;
use crate::scoring;

/// Most challenges a list returns at once.
const MAX_PAGE: usize = 500;

/// Decimals released when a challenge leaves `score_decimals` at 0.
pub const DEFAULT_SCORE_DECIMALS: u32 = 4;

/// Creates a challenge after validating all of it.
pub async fn create(
    core: &Core,
    caller: &Caller,
    mut c: Challenge,
) -> Result<Challenge, DomainError> {
    caller.require_admin("CreateChallenge")?;
    normalise(&mut c);
    validate(core, &c).await?;
    c.state = ChallengeState::Open;
    c.created_at = now_millis();
    c.closed_at = None;
    if !core.store.insert_challenge(c.clone()).await? {
        return Err(DomainError::AlreadyExists(format!(
            "challenge {:?}",
            c.id.as_str()
        )));
    }
    tracing::info!(challenge_id = %c.id, "challenge created");
    Ok(c)
}

/// One challenge; any authenticated caller may read it.
pub async fn get(core: &Core, id: &ChallengeId) -> Result<Challenge, DomainError> {
    core.store
        .get_challenge(id)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))
}

/// A page of challenges in id order; the page token is the last id returned.
pub async fn list(
    core: &Core,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<Challenge>, String), DomainError> {
    let size = if page_size <= 0 {
        50
    } else {
        (page_size as usize).min(MAX_PAGE)
    };
    let items = core
        .store
        .list_challenges(page_token.to_owned(), size + 1)
        .await?;
    let mut items = items;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|c| c.id.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((items, next))
}

/// Replaces the fields named in `mask`, validated as on create.
pub async fn update(
    core: &Core,
    caller: &Caller,
    patch: Challenge,
    mask: &[String],
) -> Result<Challenge, DomainError> {
    caller.require_admin("UpdateChallenge")?;
    if mask.is_empty() {
        return Err(DomainError::invalid(
            "update_mask",
            "name at least one field: title, runtime, limits, release, quota",
        ));
    }
    let mut c = get(core, &patch.id).await?;
    for path in mask {
        match path.as_str() {
            "title" => c.title = patch.title.clone(),
            "runtime" => c.runtime = patch.runtime.clone(),
            "limits" => c.limits = patch.limits,
            "release" => c.release = patch.release,
            "quota" => c.quota = patch.quota,
            other => {
                return Err(DomainError::invalid(
                    "update_mask",
                    format!(
                        "{other:?} cannot be updated (allowed: title, runtime, limits, release, quota)"
                    ),
                ));
            }
        }
    }
    normalise(&mut c);
    validate(core, &c).await?;
    core.store.update_challenge(c.clone()).await?;
    tracing::info!(challenge_id = %c.id, fields = ?mask, "challenge updated");
    Ok(c)
}

/// Closes a challenge: no new submissions; the private leaderboard opens to submitters.
pub async fn close(
    core: &Core,
    caller: &Caller,
    id: &ChallengeId,
) -> Result<Challenge, DomainError> {
    caller.require_admin("CloseChallenge")?;
    let mut c = get(core, id).await?;
    if c.state != ChallengeState::Closed {
        c.state = ChallengeState::Closed;
        c.closed_at = Some(now_millis());
        core.store.update_challenge(c.clone()).await?;
        tracing::info!(challenge_id = %c.id, "challenge closed");
    }
    Ok(c)
}

fn normalise(c: &mut Challenge) {
    if c.release.score_decimals == 0 {
        c.release.score_decimals = DEFAULT_SCORE_DECIMALS;
    }
    if let Some(b) = &mut c.scoring.builtin
        && b.prediction_column.is_empty()
    {
        b.prediction_column = b.target_column.clone();
    }
}

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

async fn validate(core: &Core, c: &Challenge) -> Result<(), DomainError> {
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
    let over = c.limits.over_caps(&core.config.caps);
    if !over.is_empty() {
        return Err(DomainError::invalid("limits", over.join("; ")));
    }
    let resolved = c.limits.or_defaults(&core.config.defaults);
    let over = resolved.over_caps(&core.config.caps);
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
            if scoring::Metric::from_name(&b.metric).is_none() {
                return Err(DomainError::invalid(
                    "scoring.builtin.metric",
                    format!("unknown metric {:?}", b.metric),
                ));
            }
            if b.target_column.is_empty() {
                return Err(DomainError::invalid(
                    "scoring.builtin.target_column",
                    "is empty",
                ));
            }
            if c.release.mode == LeaderboardMode::LadderParameterFree
                && !scoring::Metric::from_name(&b.metric).is_some_and(|m| m.has_row_losses())
            {
                return Err(DomainError::invalid(
                    "release.mode",
                    format!(
                        "LADDER_PARAMETER_FREE needs a metric with per-row losses (accuracy, log_loss, rmse, mae, r2), not {}",
                        b.metric
                    ),
                ));
            }
        }
        (None, Some(custom)) => {
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
    let dir = resolve_data_dir(&core.config.data_root, &c.data_dir)?;
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
        validate_custom_labels(c, &labels).await?;
        if !core
            .backend
            .image_exists(&custom.image)
            .await
            .map_err(DomainError::internal)?
        {
            return Err(DomainError::precondition(
                "scoring.custom.image",
                format!(
                    "image {:?} is not present on the Docker engine",
                    custom.image
                ),
            ));
        }
        return validate_engine(core, c).await;
    }
    let limits = crate::runner::run_limits(core, c);
    let spec = crate::runner::scoring_spec(c, SubmissionKind::Full, &limits)
        .map_err(|e| DomainError::invalid("scoring", e))?;
    let sample_labels = dir.join("sample").join("labels.csv");
    let smoke_spec = crate::runner::scoring_spec(c, SubmissionKind::Smoke, &limits)
        .map_err(|e| DomainError::invalid("scoring", e))?;
    let has_sample = dir.join("sample").join("inputs").is_dir() && sample_labels.is_file();
    let spec = spec
        .label_spec()
        .map_err(|e| DomainError::invalid("scoring", e.to_string()))?;
    let smoke_spec = smoke_spec
        .label_spec()
        .map_err(|e| DomainError::invalid("scoring", e.to_string()))?;
    tokio::task::spawn_blocking(move || -> Result<(), DomainError> {
        scoring::load_labels(&labels, &spec)
            .map_err(|e| DomainError::precondition("data_dir", format!("labels.csv: {e}")))?;
        if has_sample {
            scoring::load_labels(&sample_labels, &smoke_spec).map_err(|e| {
                DomainError::precondition("data_dir", format!("sample/labels.csv: {e}"))
            })?;
        }
        Ok(())
    })
    .await
    .map_err(DomainError::internal)??;
    validate_engine(core, c).await
}

/// For a custom scorer: labels.csv has the id column and both splits are non-empty.
async fn validate_custom_labels(c: &Challenge, labels: &Path) -> Result<(), DomainError> {
    let labels = labels.to_owned();
    let id_column = c.scoring.id_column.clone();
    let split = scoring::Split {
        public_fraction: c.scoring.public_fraction,
        seed: c.scoring.split_seed,
    };
    tokio::task::spawn_blocking(move || -> Result<(), DomainError> {
        let tmp = tempfile::tempdir().map_err(DomainError::internal)?;
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
        }
        Ok(())
    })
    .await
    .map_err(DomainError::internal)?
}

/// The engine has the image and the isolation the challenge asks for.
async fn validate_engine(core: &Core, c: &Challenge) -> Result<(), DomainError> {
    if !core
        .backend
        .image_exists(&c.runtime.image)
        .await
        .map_err(DomainError::internal)?
    {
        return Err(DomainError::precondition(
            "runtime.image",
            format!(
                "image {:?} is not present on the Docker engine (build or load it on the host first)",
                c.runtime.image
            ),
        ));
    }
    if c.runtime.isolation.unwrap_or(core.config.default_isolation) == Isolation::Gvisor
        && !core
            .backend
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_cannot_escape_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("ok")).unwrap();
        assert!(resolve_data_dir(root.path(), "ok").is_ok());
        assert!(matches!(
            resolve_data_dir(root.path(), "../etc"),
            Err(DomainError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_data_dir(root.path(), "/etc"),
            Err(DomainError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_data_dir(root.path(), "missing"),
            Err(DomainError::Precondition { .. })
        ));
        std::os::unix::fs::symlink("/etc", root.path().join("link")).unwrap();
        assert!(matches!(
            resolve_data_dir(root.path(), "link"),
            Err(DomainError::Invalid { .. })
        ));
    }
}
