//! Final selection, as Kaggle does it: each participant (a platform's participant id) picks
//! up to N of their scored FULL submissions for the private ranking, until the challenge
//! closes. Every request is checked here first, for errors that name the problem, then
//! again by the store in the one transaction that replaces the selection, so a selection
//! racing the close, a deadline or another selection is never half-applied.
//!
//! The default for a participant who selected nothing (their N best by public score) is the
//! leaderboard's to compute (`crate::leaderboard`); it is never shown here.

use std::collections::HashSet;

use super::Submissions;
use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, DomainError, ParticipantId, Submission, SubmissionId, SubmissionKind,
    SubmissionState, UnixMillis, now_millis,
};
use crate::store::{SelectOutcome, Selection};

/// A participant's selection as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionView {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// The participant (of the caller's platform).
    pub participant_id: ParticipantId,
    /// Selected submissions, oldest first; empty = the default applies.
    pub submission_ids: Vec<SubmissionId>,
    /// The most that may be selected.
    pub final_selections: u32,
    /// When selections stop, if the challenge has a deadline.
    pub closes_at: Option<UnixMillis>,
}

impl Submissions {
    /// SelectSubmissions: replaces the participant's whole selection with `ids`.
    pub async fn select(
        &self,
        caller: &Caller,
        challenge_id: &ChallengeId,
        participant: ParticipantId,
        ids: Vec<SubmissionId>,
    ) -> Result<SelectionView, DomainError> {
        let challenge = self.challenge(challenge_id).await?;
        let now = now_millis();
        selectable(&challenge, now)?;
        let mut seen = HashSet::new();
        if let Some(dup) = ids.iter().find(|id| !seen.insert(*id)) {
            return Err(DomainError::invalid(
                "submission_ids",
                format!("{:?} is listed twice", dup.as_str()),
            ));
        }
        let limit = challenge.release.final_selections;
        if ids.len() > limit as usize {
            return Err(too_many(ids.len(), limit));
        }
        for id in &ids {
            let s = self.load_visible(caller, id).await?;
            self.eligible(caller, &challenge, &participant, &s, now)?;
        }
        let outcome = self
            .store
            .select_submissions(Selection {
                challenge_id: challenge_id.clone(),
                owner: caller.name.clone(),
                participant_id: participant.clone(),
                submission_ids: ids.clone(),
                at: now,
            })
            .await?;
        let selected = match outcome {
            SelectOutcome::Selected(selected) => selected,
            SelectOutcome::NoChallenge => {
                return Err(DomainError::NotFound(format!(
                    "challenge {:?}",
                    challenge_id.as_str()
                )));
            }
            SelectOutcome::NoSelection => return Err(no_selection(&challenge)),
            SelectOutcome::Closed(c) => {
                return Err(c.refusal_at(now).unwrap_or_else(|| no_selection(&c)));
            }
            SelectOutcome::TooMany { limit } => return Err(too_many(ids.len(), limit)),
            SelectOutcome::Foreign(id) => {
                return Err(DomainError::NotFound(format!(
                    "submission {:?}",
                    id.as_str()
                )));
            }
            SelectOutcome::NotEligible(id) => {
                return Err(DomainError::invalid(
                    "submission_ids",
                    format!(
                        "{:?} is not a scored FULL submission of participant {:?} in challenge {:?}",
                        id.as_str(),
                        participant.as_str(),
                        challenge_id.as_str()
                    ),
                ));
            }
        };
        tracing::info!(
            challenge_id = %challenge_id,
            platform = %caller.name,
            selected = selected.len(),
            "final selection replaced"
        );
        Ok(SelectionView {
            challenge_id: challenge_id.clone(),
            participant_id: participant,
            submission_ids: selected,
            final_selections: limit,
            closes_at: challenge.closes_at,
        })
    }

    /// GetSelection: the participant's current selection.
    pub async fn selection(
        &self,
        caller: &Caller,
        challenge_id: &ChallengeId,
        participant: ParticipantId,
    ) -> Result<SelectionView, DomainError> {
        let challenge = self.challenge(challenge_id).await?;
        let rows = self
            .store
            .selections(
                challenge_id,
                Some((caller.name.clone(), participant.to_string())),
            )
            .await?;
        Ok(SelectionView {
            challenge_id: challenge_id.clone(),
            participant_id: participant,
            submission_ids: rows.into_iter().map(|r| r.submission_id).collect(),
            final_selections: challenge.release.final_selections,
            closes_at: challenge.closes_at,
        })
    }

    /// Whether `s` is among its participant's selection (only scored FULL runs of a
    /// challenge with final selection can be).
    pub(super) async fn is_selected(
        &self,
        challenge: &Challenge,
        s: &Submission,
    ) -> Result<bool, DomainError> {
        if challenge.release.final_selections == 0
            || s.kind != SubmissionKind::Full
            || s.state != SubmissionState::Succeeded
        {
            return Ok(false);
        }
        let rows = self
            .store
            .selections(
                &challenge.id,
                Some((s.owner.clone(), s.participant_id.to_string())),
            )
            .await?;
        Ok(rows.iter().any(|r| r.submission_id == s.id))
    }

    /// Refuses `s` unless it is `participant`'s scored FULL submission of `challenge` whose
    /// result the caller may see now (a result held by constant-time release is not
    /// selectable yet: accepting it would tell that it was scored).
    fn eligible(
        &self,
        caller: &Caller,
        challenge: &Challenge,
        participant: &ParticipantId,
        s: &Submission,
        now: UnixMillis,
    ) -> Result<(), DomainError> {
        let reason = if s.challenge_id != challenge.id {
            Some("belongs to another challenge")
        } else if s.participant_id != *participant {
            Some("is another participant's")
        } else if s.kind != SubmissionKind::Full {
            Some("is a SMOKE run; only FULL submissions count for the final ranking")
        } else if s.state != SubmissionState::Succeeded
            || (!caller.is_admin()
                && crate::release::is_held(
                    s,
                    challenge,
                    self.host.limits(challenge).wall_time.0,
                    now,
                ))
        {
            Some("is not scored")
        } else {
            None
        };
        match reason {
            Some(why) => Err(DomainError::invalid(
                "submission_ids",
                format!("submission {:?} {why}", s.id.as_str()),
            )),
            None => Ok(()),
        }
    }
}

/// Refuses a selection change on a challenge without final selection, or not open at `now`.
fn selectable(challenge: &Challenge, now: UnixMillis) -> Result<(), DomainError> {
    if challenge.release.final_selections == 0 {
        return Err(no_selection(challenge));
    }
    match challenge.refusal_at(now) {
        Some(refused) => Err(refused),
        None => Ok(()),
    }
}

fn no_selection(c: &Challenge) -> DomainError {
    DomainError::precondition(
        "challenge_id",
        format!(
            "challenge {:?} has no final selection (release.final_selections is 0)",
            c.id.as_str()
        ),
    )
}

fn too_many(n: usize, limit: u32) -> DomainError {
    DomainError::invalid(
        "submission_ids",
        format!("{n} submissions listed; at most {limit} may be selected"),
    )
}
