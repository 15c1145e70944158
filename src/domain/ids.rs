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

/// A fresh random id: `prefix` then 20 lowercase hex digits (80 random bits).
pub(super) fn random_id(prefix: &str) -> String {
    let bytes: [u8; 10] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Whether `raw` has the form of a [`random_id`] with `prefix`.
pub(super) fn is_random_id(raw: &str, prefix: &str) -> bool {
    raw.len() == prefix.len() + 20
        && raw.starts_with(prefix)
        && raw[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A submission id: `s-` followed by 20 lowercase hex digits, random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubmissionId(String);

impl SubmissionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(random_id("s-"))
    }

    /// Checks the id's form; anything else cannot name a submission.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if is_random_id(raw, "s-") {
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

/// The platform's id for a participant (person or team), in Unicode NFC: 1 to 128 bytes,
/// with no control, format, bidi or invisible characters, no whitespace but inner spaces.
///
/// Ids are compared byte for byte, so everything that would make two ids *look* the same
/// while differing (a zero-width joiner, a bidi override, a decomposed accent) is refused
/// or normalised here, at the edge: otherwise a fresh look-alike id per probe would buy a
/// fresh quota and a fresh ladder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParticipantId(String);

/// Longest participant id, in bytes (after NFC normalisation).
pub const MAX_PARTICIPANT_ID_BYTES: usize = 128;

/// Whether `c` is invisible or reorders text: Unicode's format characters (Cf, which
/// include the zero-width and bidi controls), and the other default-ignorable code points
/// that render as nothing (combining grapheme joiner, Hangul fillers, variation selectors).
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890..=0x0891
        | 0x08E2 | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0
        | 0xFFF0..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

impl ParticipantId {
    /// Checks and normalises an id from a caller.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        use unicode_normalization::UnicodeNormalization;
        let bad = |reason: &str| Err(DomainError::invalid("participant_id", reason.to_owned()));
        let id: String = raw.nfc().collect();
        if id.is_empty() {
            return bad("is empty");
        }
        if id.len() > MAX_PARTICIPANT_ID_BYTES {
            return bad(&format!(
                "is longer than {MAX_PARTICIPANT_ID_BYTES} bytes (in UTF-8, after NFC normalisation)"
            ));
        }
        if let Some(c) = id.chars().find(|c| c.is_control()) {
            return bad(&format!("holds a control character (U+{:04X})", c as u32));
        }
        if let Some(c) = id.chars().find(|c| is_invisible(*c)) {
            return bad(&format!(
                "holds an invisible, format or bidi character (U+{:04X}), which would let two different ids look the same",
                c as u32
            ));
        }
        if let Some(c) = id.chars().find(|c| c.is_whitespace() && *c != ' ') {
            return bad(&format!(
                "holds whitespace other than a plain space (U+{:04X})",
                c as u32
            ));
        }
        if id.starts_with(' ') || id.ends_with(' ') {
            return bad("starts or ends with a space");
        }
        Ok(Self(id))
    }

    /// An id read back from storage: stored by an earlier version whose rules may have been
    /// looser, so it is taken as it is (a stored row must always read back).
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
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
    fn participant_ids_are_nfc_and_refuse_invisible_and_reordering_characters() {
        // Decomposed "é" becomes the composed one: the same id either way.
        assert_eq!(
            ParticipantId::parse("jose\u{301}").unwrap(),
            ParticipantId::parse("jos\u{e9}").unwrap()
        );
        assert!(ParticipantId::parse("team a").is_ok());
        assert!(ParticipantId::parse("équipe-α").is_ok());
        for bad in [
            "",
            "alice\u{200b}",
            "\u{202e}ecila",
            "ali\u{2066}ce",
            "al\u{feff}ice",
            "ali\u{ad}ce",
            "alice\n",
            "ali\tce",
            " alice",
            "alice ",
            "a\u{3000}b",
            "a\u{fe0f}",
        ] {
            assert!(ParticipantId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ParticipantId::parse(&"a".repeat(128)).is_ok());
        assert!(ParticipantId::parse(&"a".repeat(129)).is_err());
        // 64 two-byte characters are 128 bytes; 65 are too many.
        assert!(ParticipantId::parse(&"é".repeat(64)).is_ok());
        assert!(ParticipantId::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn generated_submission_ids_parse_back() {
        let id = SubmissionId::generate();
        assert_eq!(SubmissionId::parse(id.as_str()).unwrap(), id);
        assert!(SubmissionId::parse("s-xyz").is_err());
    }
}
