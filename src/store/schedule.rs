//! The store's types for a challenge's schedule and its participants' final selections:
//! what closing and selecting pass in and get back. Both engines decide these inside one
//! transaction each (see `sqlite::schedule`, `postgres::schedule`).

use crate::domain::{Challenge, ChallengeId, ParticipantId, SubmissionId, UnixMillis};

/// Which close [`super::Store::close_challenge`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhen {
    /// An admin's CloseChallenge: close an open challenge now.
    Now,
    /// The closer: close only a challenge whose `closes_at` has passed (so a replica with
    /// a stale deadline, after another moved it later, changes nothing).
    AtDeadline,
}

/// A participant's whole new selection, replacing the previous one.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// The platform (submitter token name) the participant belongs to.
    pub owner: String,
    /// The platform's participant.
    pub participant_id: ParticipantId,
    /// The submissions selected (distinct); empty clears the selection.
    pub submission_ids: Vec<SubmissionId>,
    /// When the selection is made: the challenge must still be open then.
    pub at: UnixMillis,
}

/// Outcome of [`super::Store::select_submissions`].
#[derive(Debug)]
pub enum SelectOutcome {
    /// Stored: the selection now, oldest submission first.
    Selected(Vec<SubmissionId>),
    /// No such challenge.
    NoChallenge,
    /// The challenge has `final_selections = 0`.
    NoSelection,
    /// The challenge is closed at the selection's time (the stored challenge, whose
    /// schedule names the times).
    Closed(Box<Challenge>),
    /// More submissions than the challenge's `final_selections`.
    TooMany {
        /// The challenge's N.
        limit: u32,
    },
    /// A submission that does not exist or belongs to another platform.
    Foreign(SubmissionId),
    /// The platform's submission, but not a scored FULL submission of this participant in
    /// this challenge.
    NotEligible(SubmissionId),
}

/// One selected submission of a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedRow {
    /// The platform.
    pub owner: String,
    /// The participant.
    pub participant_id: String,
    /// The submission selected.
    pub submission_id: SubmissionId,
}
