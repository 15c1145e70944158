//! The audit of releases: every value that leaves the host for a submitter token is
//! recorded (which submission or board, which values, to which token, when), so a data
//! owner can see exactly what was learned from their data, and by whom; and the leakage
//! ledger: per (platform, participant), how many bits the FULL results released to them
//! could carry at most (each result counted once, when it ends; see `crate::leakage`).

use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::domain::{ChallengeId, DomainError, now_millis};
use crate::leakage::LeakageEstimate;
use crate::release::SubmissionView;
use crate::run::plan::HostSettings;
use crate::store::{LeakageTotal, ReleaseRecord, Store};

/// Records a submission view given to a submitter, when it carries values.
pub async fn submission_released(
    store: &Store,
    caller: &Caller,
    view: &SubmissionView,
) -> Result<(), DomainError> {
    if caller.is_admin() || view.scores.is_empty() {
        return Ok(());
    }
    store
        .record_release(ReleaseRecord {
            at: now_millis(),
            token_name: caller.name.clone(),
            challenge_id: view.challenge_id.to_string(),
            submission_id: view.id.to_string(),
            what: "submission".into(),
            values: view.scores.clone(),
        })
        .await?;
    Ok(())
}

/// Records a leaderboard given to a submitter.
pub async fn leaderboard_released(
    store: &Store,
    caller: &Caller,
    challenge_id: &str,
    what: &str,
    values: BTreeMap<String, f64>,
) -> Result<(), DomainError> {
    if caller.is_admin() || values.is_empty() {
        return Ok(());
    }
    store
        .record_release(ReleaseRecord {
            at: now_millis(),
            token_name: caller.name.clone(),
            challenge_id: challenge_id.to_owned(),
            submission_id: String::new(),
            what: what.to_owned(),
            values,
        })
        .await?;
    Ok(())
}

/// The audit service: what was released, and the leakage ledger.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    host: HostSettings,
    lease_ttl: std::time::Duration,
}

/// An execution worker as admins see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    /// What its heartbeats say, and its leases.
    pub info: crate::store::WorkerInfo,
    /// Whether it beat within a lease's time to live.
    pub alive: bool,
}

/// A challenge's leakage ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    /// What one FULL submission can release under the challenge's current policy.
    pub estimate: LeakageEstimate,
    /// Per (platform, participant), what was released, most bits first.
    pub totals: Vec<LeakageTotal>,
}

impl Audit {
    /// The service over `store`; `host` resolves limits for the estimate.
    pub fn new(store: Store, host: HostSettings, lease_ttl: std::time::Duration) -> Self {
        Self {
            store,
            host,
            lease_ttl,
        }
    }

    /// ListWorkers (admin): the execution workers of a shared store.
    pub async fn workers(&self, caller: &Caller) -> Result<Vec<WorkerView>, DomainError> {
        caller.require_admin("ListWorkers")?;
        let now = crate::domain::now_millis();
        let ttl = self.lease_ttl.as_millis() as i64;
        Ok(self
            .store
            .workers()
            .await?
            .into_iter()
            .map(|info| WorkerView {
                alive: info.state != "stopped" && now - info.last_beat <= ttl,
                info,
            })
            .collect())
    }

    /// ListReleases (admin).
    pub async fn list(
        &self,
        caller: &Caller,
        challenge: Option<String>,
        token: Option<String>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ReleaseRecord>, String), DomainError> {
        list(&self.store, caller, challenge, token, page_size, page_token).await
    }

    /// GetLeakage (admin): the estimate and the ledger of a challenge.
    pub async fn leakage(&self, caller: &Caller, id: &ChallengeId) -> Result<Ledger, DomainError> {
        caller.require_admin("GetLeakage")?;
        let challenge = self
            .store
            .get_challenge(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))?;
        Ok(Ledger {
            estimate: crate::leakage::estimate(&challenge, &self.host.limits(&challenge)),
            totals: self.store.leakage_totals(id.clone()).await?,
        })
    }
}

/// ListReleases (admin): newest first, paged by an opaque position.
async fn list(
    store: &Store,
    caller: &Caller,
    challenge: Option<String>,
    token: Option<String>,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<ReleaseRecord>, String), DomainError> {
    caller.require_admin("ListReleases")?;
    let page = crate::paging::Page::parse(page_size, page_token, 100, 1000)?;
    let mut rows = store
        .list_releases(challenge, token, page.before, page.size + 1)
        .await?;
    let next = page.finish(&mut rows);
    Ok((rows.into_iter().map(|(_, r)| r).collect(), next))
}
