//! Challenge management: create, read, list, update and close, for admins (reads for every
//! caller). A definition is validated against the host once, in [`validate`], for create
//! and update alike, and nothing is stored until everything passed. A challenge with a
//! `closes_at` is closed by the [`closer`] at that moment, exactly as CloseChallenge does.

pub mod closer;
mod preparation;
mod validate;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, ChallengeState, DomainError, UnixMillis, now_millis, validate_schedule,
};
use crate::release::{self, ChallengeView};
use crate::run::plan::HostSettings;
use crate::sandbox::Backend;
use crate::store::{CloseWhen, Store};

pub use preparation::ChallengeCard;
pub use validate::resolve_data_dir;

/// Most challenges a list returns at once.
const MAX_PAGE: usize = 500;

/// Decimals released when a challenge leaves `score_decimals` at 0.
pub const DEFAULT_SCORE_DECIMALS: u32 = 4;

/// Fields an UpdateChallenge may name.
const UPDATABLE: &str = "title, runtime, limits, release, quota, opens_at, closes_at, preparation";

/// The challenges service: what admins define, and what everyone reads.
#[derive(Clone)]
pub struct Challenges {
    store: Store,
    engine: Arc<dyn Backend>,
    host: HostSettings,
    /// Wakes this process's closer when a schedule may have changed.
    schedule_changed: Arc<Notify>,
}

impl Challenges {
    /// The service over `store`, checking images and runtimes on `engine` and data and
    /// limits against `host`.
    pub fn new(store: Store, engine: Arc<dyn Backend>, host: HostSettings) -> Self {
        Self {
            store,
            engine,
            host,
            schedule_changed: Arc::new(Notify::new()),
        }
    }

    /// What wakes the closer: notified after every create and update.
    pub fn schedule_changes(&self) -> Arc<Notify> {
        self.schedule_changed.clone()
    }

    /// Creates a challenge after validating all of it.
    pub async fn create(
        &self,
        caller: &Caller,
        mut c: Challenge,
    ) -> Result<ChallengeView, DomainError> {
        caller.require_admin("CreateChallenge")?;
        normalise(&mut c);
        validate_schedule(c.opens_at, c.closes_at, now_millis())?;
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
        self.schedule_changed.notify_one();
        Ok(self.view(&c, caller))
    }

    /// The caller's view; a challenge past its deadline shows CLOSED even in the moment
    /// before the closer has marked it so (it already refuses submissions).
    fn view(&self, c: &Challenge, caller: &Caller) -> ChallengeView {
        let now = now_millis();
        if c.is_due_at(now) {
            let mut shown = c.clone();
            shown.mark_closed(now);
            return release::challenge_view(&shown, caller, &self.host.limits(&shown));
        }
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
                format!("name at least one field: {UPDATABLE}"),
            ));
        }
        // The write is a compare-and-set on the state: a close (by an admin or the closer
        // of any replica) between the read and the write sends us round again, so an
        // update never reopens a closed challenge nor moves a deadline that has passed.
        for _ in 0..3 {
            let mut c = self.load(&patch.id).await?;
            let before = (c.opens_at, c.closes_at);
            let final_selections = c.release.final_selections;
            for path in mask {
                match path.as_str() {
                    "title" => c.title = patch.title.clone(),
                    "runtime" => c.runtime = patch.runtime.clone(),
                    "limits" => c.limits = patch.limits,
                    "release" => c.release = patch.release,
                    "quota" => c.quota = patch.quota,
                    "opens_at" => c.opens_at = patch.opens_at,
                    "closes_at" => c.closes_at = patch.closes_at,
                    "preparation" => c.preparation = patch.preparation.clone(),
                    other => {
                        return Err(DomainError::invalid(
                            "update_mask",
                            format!("{other:?} cannot be updated (allowed: {UPDATABLE})"),
                        ));
                    }
                }
            }
            let now = now_millis();
            if c.is_closed_at(now) && c.release.final_selections != final_selections {
                return Err(DomainError::precondition(
                    "release.final_selections",
                    format!(
                        "challenge {:?} is closed; its final ranking is fixed",
                        c.id.as_str()
                    ),
                ));
            }
            if (c.opens_at, c.closes_at) != before {
                if c.is_closed_at(now) && c.closes_at != before.1 {
                    return Err(DomainError::precondition(
                        "closes_at",
                        format!(
                            "challenge {:?} is closed; a closed challenge is not reopened",
                            c.id.as_str()
                        ),
                    ));
                }
                // A deadline already past is refused only when it is the one being set.
                let now_for_check = if c.closes_at != before.1 {
                    now
                } else {
                    i64::MIN
                };
                validate_schedule(c.opens_at, c.closes_at, now_for_check)?;
            }
            normalise(&mut c);
            let checked = std::mem::take(&mut c.facts.preparation);
            c.facts = self.validate(&c).await?;
            preparation::check_spec(&c)?;
            c.facts.data_digest = self.data_digest(&c).await?;
            // The check runs again when what it read changed: the data (its digest), or
            // the settings. A challenge it never ran on has an empty digest, so it runs. A
            // new title only rewrites the cards' heading.
            c.facts.preparation = if checked.data_digest != c.facts.data_digest
                || mask.iter().any(|p| p == "preparation")
            {
                self.prepare(&c, &c.facts.data_digest).await?
            } else if mask.iter().any(|p| p == "title") {
                self.retitle(&c, checked).await?
            } else {
                checked
            };
            if self.store.update_challenge(c.clone()).await? {
                tracing::info!(challenge_id = %c.id, fields = ?mask, "challenge updated");
                self.schedule_changed.notify_one();
                return Ok(self.view(&c, caller));
            }
        }
        Err(DomainError::internal(
            "the challenge kept changing state while it was being updated",
        ))
    }

    /// Closes a challenge: no new submissions; the private leaderboard opens to submitters.
    pub async fn close(
        &self,
        caller: &Caller,
        id: &ChallengeId,
    ) -> Result<ChallengeView, DomainError> {
        caller.require_admin("CloseChallenge")?;
        let (c, closed) = self
            .store
            .close_challenge(id, now_millis(), CloseWhen::Now)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))?;
        if closed {
            tracing::info!(challenge_id = %c.id, "challenge closed");
        }
        Ok(self.view(&c, caller))
    }

    /// Closes every open challenge whose `closes_at` is at or before `now` (each one a
    /// compare-and-set in the store, so any number of replicas may run this at once) and
    /// returns the next deadline still ahead, if any.
    pub async fn close_due(&self, now: UnixMillis) -> Result<Option<UnixMillis>, DomainError> {
        let mut next: Option<UnixMillis> = None;
        let mut after = String::new();
        loop {
            let page = self.store.list_challenges(after, MAX_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.to_string();
            for c in page.iter().filter(|c| c.state == ChallengeState::Open) {
                let Some(deadline) = c.closes_at else {
                    continue;
                };
                if !c.is_due_at(now) {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    continue;
                }
                if let Some((c, true)) = self
                    .store
                    .close_challenge(&c.id, now, CloseWhen::AtDeadline)
                    .await?
                {
                    tracing::info!(
                        challenge_id = %c.id,
                        closes_at = %crate::domain::rfc3339(deadline),
                        late_ms = now - deadline,
                        "challenge closed at its deadline"
                    );
                }
            }
            if page.len() < MAX_PAGE {
                break;
            }
        }
        Ok(next)
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
