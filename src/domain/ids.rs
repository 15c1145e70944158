//! Identifiers parsed once at the edge, so the rest of the code never sees an unchecked id.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A challenge id: `[a-z0-9][a-z0-9-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChallengeId(String);

impl ChallengeId {
    /// Checks the id's form.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let bytes = raw.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 64
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::invalid(
                "id",
                format!("challenge id {raw:?} must match [a-z0-9][a-z0-9-]{{0,63}}"),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A submission id: `s-` followed by 20 lowercase hex digits, random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubmissionId(String);

impl SubmissionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let bytes: [u8; 10] = rand::random();
        Self(format!("s-{}", hex::encode(bytes)))
    }

    /// Checks the id's form; anything else cannot name a submission.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = raw.len() == 22
            && raw.starts_with("s-")
            && raw[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::NotFound(format!("submission {raw:?}")))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The platform's id for a participant (person or team): 1 to 128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParticipantId(String);

impl ParticipantId {
    /// Checks the id's form.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = !raw.is_empty() && raw.len() <= 128 && raw.chars().all(|c| !c.is_control());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::invalid(
                "participant_id",
                "must be 1 to 128 characters without control characters",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = DomainError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
string_newtype_impls!(ChallengeId, SubmissionId, ParticipantId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_ids_follow_the_contract_pattern() {
        assert!(ChallengeId::parse("digits-2026").is_ok());
        assert!(ChallengeId::parse("0abc").is_ok());
        assert!(ChallengeId::parse("-abc").is_err());
        assert!(ChallengeId::parse("Digits").is_err());
        assert!(ChallengeId::parse("").is_err());
        assert!(ChallengeId::parse(&"a".repeat(65)).is_err());
        assert!(ChallengeId::parse("a/../b").is_err());
    }

    #[test]
    fn generated_submission_ids_parse_back() {
        let id = SubmissionId::generate();
        assert_eq!(SubmissionId::parse(id.as_str()).unwrap(), id);
        assert!(SubmissionId::parse("s-xyz").is_err());
    }
}
