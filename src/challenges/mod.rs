//! Challenge management: create, read, list, update and close, for admins (reads for every
//! caller). A definition is validated against the host once, in [`validate`], for create
//! and update alike, and nothing is stored until everything passed.

mod preparation;
mod validate;

use std::sync::Arc;

use crate::auth::Caller;
use crate::domain::{Challenge, ChallengeId, ChallengeState, DomainError, now_millis};
use crate::release::{self, ChallengeView};
use crate::run::plan::HostSettings;
use crate::sandbox::Backend;
use crate::store::Store;

pub use preparation::ChallengeCard;
pub use validate::resolve_data_dir;

/// Most challenges a list returns at once.
const MAX_PAGE: usize = 500;

/// Decimals released when a challenge leaves `score_decimals` at 0.
pub const DEFAULT_SCORE_DECIMALS: u32 = 4;

/// The challenges service: what admins define, and what everyone reads.
#[derive(Clone)]
pub struct Challenges {
    store: Store,
    engine: Arc<dyn Backend>,
    host: HostSettings,
}

impl Challenges {
    /// The service over `store`, checking images and runtimes on `engine` and data and
    /// limits against `host`.
    pub fn new(store: Store, engine: Arc<dyn Backend>, host: HostSettings) -> Self {
        Self {
            store,
            engine,
            host,
        }
    }

    /// Creates a challenge after validating all of it.
    pub async fn create(
        &self,
        caller: &Caller,
        mut c: Challenge,
    ) -> Result<ChallengeView, DomainError> {
        caller.require_admin("CreateChallenge")?;
        normalise(&mut c);
        c.facts = self.validate(&c).await?;
        preparation::check_spec(&c)?;
        c.facts.data_digest = self.data_digest(&c).await?;
        // Last, once everything else passed: the check reads every file.
        c.facts.preparation = self.prepare(&c, &c.facts.data_digest).await?;
        c.state = ChallengeState::Open;
        c.created_at = now_millis();
        c.closed_at = None;
        if !self.store.insert_challenge(c.clone()).await? {
            return Err(DomainError::AlreadyExists(format!(
                "challenge {:?}",
                c.id.as_str()
            )));
        }
        tracing::info!(challenge_id = %c.id, "challenge created");
        Ok(self.view(&c, caller))
    }

    fn view(&self, c: &Challenge, caller: &Caller) -> ChallengeView {
        release::challenge_view(c, caller, &self.host.limits(c))
    }

    async fn load(&self, id: &ChallengeId) -> Result<Challenge, DomainError> {
        self.store
            .get_challenge(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))
    }

    /// One challenge, as the caller may see it; any authenticated caller may read it.
    pub async fn get(
        &self,
        caller: &Caller,
        id: &ChallengeId,
    ) -> Result<ChallengeView, DomainError> {
        Ok(self.view(&self.load(id).await?, caller))
    }

    /// A page of challenges in id order; the page token is the last id returned.
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ChallengeView>, String), DomainError> {
        let size = if page_size <= 0 {
            50
        } else {
            (page_size as usize).min(MAX_PAGE)
        };
        let items = self
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
        Ok((items.iter().map(|c| self.view(c, caller)).collect(), next))
    }

    /// Replaces the fields named in `mask`, validated as on create.
    pub async fn update(
        &self,
        caller: &Caller,
        patch: Challenge,
        mask: &[String],
    ) -> Result<ChallengeView, DomainError> {
        caller.require_admin("UpdateChallenge")?;
        if mask.is_empty() {
            return Err(DomainError::invalid(
                "update_mask",
                "name at least one field: title, runtime, limits, release, quota, preparation",
            ));
        }
        let mut c = self.load(&patch.id).await?;
        for path in mask {
            match path.as_str() {
                "title" => c.title = patch.title.clone(),
                "runtime" => c.runtime = patch.runtime.clone(),
                "limits" => c.limits = patch.limits,
                "release" => c.release = patch.release,
                "quota" => c.quota = patch.quota,
                "preparation" => c.preparation = patch.preparation.clone(),
                other => {
                    return Err(DomainError::invalid(
                        "update_mask",
                        format!(
                            "{other:?} cannot be updated (allowed: title, runtime, limits, release, quota, preparation)"
                        ),
                    ));
                }
            }
        }
        normalise(&mut c);
        let checked = std::mem::take(&mut c.facts.preparation);
        c.facts = self.validate(&c).await?;
        preparation::check_spec(&c)?;
        c.facts.data_digest = self.data_digest(&c).await?;
        // The check runs again when what it read changed: the data (its digest), or the
        // settings. A challenge it never ran on has an empty digest, so it runs. A new
        // title only rewrites the cards' heading.
        c.facts.preparation = if checked.data_digest != c.facts.data_digest
            || mask.iter().any(|p| p == "preparation")
        {
            self.prepare(&c, &c.facts.data_digest).await?
        } else if mask.iter().any(|p| p == "title") {
            self.retitle(&c, checked).await?
        } else {
            checked
        };
        self.store.update_challenge(c.clone()).await?;
        tracing::info!(challenge_id = %c.id, fields = ?mask, "challenge updated");
        Ok(self.view(&c, caller))
    }

    /// Closes a challenge: no new submissions; the private leaderboard opens to submitters.
    pub async fn close(
        &self,
        caller: &Caller,
        id: &ChallengeId,
    ) -> Result<ChallengeView, DomainError> {
        caller.require_admin("CloseChallenge")?;
        let mut c = self.load(id).await?;
        if c.state != ChallengeState::Closed {
            c.state = ChallengeState::Closed;
            c.closed_at = Some(now_millis());
            self.store.update_challenge(c.clone()).await?;
            tracing::info!(challenge_id = %c.id, "challenge closed");
        }
        Ok(self.view(&c, caller))
    }
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
