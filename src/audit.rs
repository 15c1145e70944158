//! The audit of releases: every value that leaves the host for a submitter token is
//! recorded (which submission or board, which values, to which token, when), so a data
//! owner can see exactly what was learned from their data, and by whom.

use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::domain::{DomainError, now_millis};
use crate::release::SubmissionView;
use crate::store::{ReleaseRecord, Store};

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

/// ListReleases (admin): newest first, paged by an opaque position.
pub async fn list(
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
