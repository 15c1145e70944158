//! A challenge's schedule: when it accepts submissions, and when it is closed.
//!
//! The window is decided from the stored challenge and a time, never from the state alone:
//! a challenge whose `closes_at` has passed refuses submissions (and opens its private
//! leaderboard) even in the moment before the server's closer has marked it CLOSED. This
//! module decides; it never reads the clock itself, so every rule is a pure function.

use serde::{Deserialize, Deserializer, Serializer};

use super::{Challenge, ChallengeState, DomainError, UnixMillis};

/// Where a moment falls in a challenge's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Before `opens_at`: submissions are refused until then.
    NotYetOpen {
        /// When it opens.
        opens_at: UnixMillis,
    },
    /// Accepting submissions.
    Open,
    /// Closed by an admin, or past `closes_at`.
    Closed {
        /// When it closed; `None` for a challenge closed before times were kept.
        closed_at: Option<UnixMillis>,
    },
}

impl Challenge {
    /// Where `now` falls in this challenge's schedule.
    pub fn window_at(&self, now: UnixMillis) -> Window {
        if self.state == ChallengeState::Closed {
            return Window::Closed {
                closed_at: self.closed_at.or(self.closes_at),
            };
        }
        match (self.opens_at, self.closes_at) {
            (_, Some(closes)) if now >= closes => Window::Closed {
                closed_at: Some(closes),
            },
            (Some(opens), _) if now < opens => Window::NotYetOpen { opens_at: opens },
            _ => Window::Open,
        }
    }

    /// Whether the challenge counts as closed at `now` (marked CLOSED, or past
    /// `closes_at`): no submissions, no selection changes, the private board is readable.
    pub fn is_closed_at(&self, now: UnixMillis) -> bool {
        matches!(self.window_at(now), Window::Closed { .. })
    }

    /// Whether the server's closer should mark it CLOSED at `now`.
    pub fn is_due_at(&self, now: UnixMillis) -> bool {
        self.state == ChallengeState::Open && self.closes_at.is_some_and(|c| now >= c)
    }

    /// Marks it CLOSED at `now`: `closed_at` is its deadline when that has passed (so every
    /// replica, and a server that was down at the deadline, records the same moment), else
    /// `now`. The one place a challenge's state changes.
    pub fn mark_closed(&mut self, now: UnixMillis) {
        if self.state == ChallengeState::Closed {
            return;
        }
        self.closed_at = Some(match self.closes_at {
            Some(deadline) if deadline <= now => deadline,
            _ => now,
        });
        self.state = ChallengeState::Closed;
    }

    /// The refusal a submission (or a selection change) gets at `now`, naming the times;
    /// `None` while the challenge is open.
    pub fn refusal_at(&self, now: UnixMillis) -> Option<DomainError> {
        let id = self.id.as_str();
        match self.window_at(now) {
            Window::Open => None,
            Window::NotYetOpen { opens_at } => Some(DomainError::precondition(
                "challenge_id",
                format!(
                    "challenge {id:?} is not open yet: it opens at {}",
                    rfc3339(opens_at)
                ),
            )),
            Window::Closed {
                closed_at: Some(at),
            } => Some(DomainError::precondition(
                "challenge_id",
                format!("challenge {id:?} is closed: it closed at {}", rfc3339(at)),
            )),
            Window::Closed { closed_at: None } => Some(DomainError::precondition(
                "challenge_id",
                format!("challenge {id:?} is closed"),
            )),
        }
    }
}

/// Checks a schedule as an admin set it: `closes_at` after `opens_at`, and in the future
/// (a deadline already past would close the challenge the moment it is stored).
pub fn validate_schedule(
    opens_at: Option<UnixMillis>,
    closes_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Result<(), DomainError> {
    if let (Some(opens), Some(closes)) = (opens_at, closes_at)
        && closes <= opens
    {
        return Err(DomainError::invalid(
            "closes_at",
            format!(
                "must be after opens_at ({}), not {}",
                rfc3339(opens),
                rfc3339(closes)
            ),
        ));
    }
    if let Some(closes) = closes_at
        && closes <= now
    {
        return Err(DomainError::invalid(
            "closes_at",
            format!(
                "{} is in the past (now is {})",
                rfc3339(closes),
                rfc3339(now)
            ),
        ));
    }
    Ok(())
}

/// A time as RFC 3339 in UTC, to the second when it has no milliseconds
/// (`2026-12-24T18:00:00Z`).
pub fn rfc3339(t: UnixMillis) -> String {
    match chrono::DateTime::from_timestamp_millis(t) {
        Some(d) if t.rem_euclid(1000) == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => t.to_string(),
    }
}

/// Parses an RFC 3339 time (any offset) into [`UnixMillis`].
pub fn parse_rfc3339(s: &str) -> Result<UnixMillis, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z: {e}"))
}

/// Serde for an optional time written as an RFC 3339 string, in challenge files and stored
/// bodies alike.
pub mod rfc3339_opt {
    use super::*;

    /// Writes `Some(t)` as an RFC 3339 string (callers skip `None`).
    pub fn serialize<S: Serializer>(t: &Option<UnixMillis>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    /// Reads an RFC 3339 string (or null).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UnixMillis>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> UnixMillis {
        parse_rfc3339(s).unwrap()
    }

    fn scheduled(opens: Option<&str>, closes: Option<&str>) -> Challenge {
        let mut c: Challenge = toml::from_str(
            r#"
id = "c"
data_dir = "d"
[runtime]
image = "img"
[scoring]
"#,
        )
        .unwrap();
        c.opens_at = opens.map(at);
        c.closes_at = closes.map(at);
        c
    }

    #[test]
    fn a_moment_falls_before_inside_or_after_the_window() {
        let c = scheduled(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z"));
        assert_eq!(
            c.window_at(at("2025-12-31T23:59:59Z")),
            Window::NotYetOpen {
                opens_at: at("2026-01-01T00:00:00Z")
            }
        );
        assert_eq!(c.window_at(at("2026-01-01T00:00:00Z")), Window::Open);
        assert_eq!(
            c.window_at(at("2026-01-02T00:00:00Z")),
            Window::Closed {
                closed_at: Some(at("2026-01-02T00:00:00Z"))
            }
        );
        assert!(c.is_due_at(at("2026-01-02T00:00:00Z")));
        assert!(!c.is_due_at(at("2026-01-01T23:59:59Z")));
    }

    #[test]
    fn refusals_name_the_times_in_utc() {
        let c = scheduled(
            Some("2026-01-01T01:00:00+01:00"),
            Some("2026-01-02T00:00:00Z"),
        );
        let early = c
            .refusal_at(at("2025-01-01T00:00:00Z"))
            .unwrap()
            .to_string();
        assert!(early.contains("opens at 2026-01-01T00:00:00Z"), "{early}");
        let late = c
            .refusal_at(at("2027-01-01T00:00:00Z"))
            .unwrap()
            .to_string();
        assert!(late.contains("closed at 2026-01-02T00:00:00Z"), "{late}");
        assert!(c.refusal_at(at("2026-01-01T12:00:00Z")).is_none());
    }

    #[test]
    fn a_schedule_must_close_after_it_opens_and_in_the_future() {
        let now = at("2026-01-01T00:00:00Z");
        assert!(validate_schedule(None, None, now).is_ok());
        assert!(validate_schedule(Some(now), Some(now + 1), now).is_ok());
        let e = validate_schedule(Some(now + 10), Some(now + 5), now).unwrap_err();
        assert!(e.to_string().contains("must be after opens_at"), "{e}");
        let e = validate_schedule(None, Some(now - 1), now).unwrap_err();
        assert!(e.to_string().contains("in the past"), "{e}");
    }

    #[test]
    fn times_round_trip_through_files_as_rfc3339() {
        let c = scheduled(None, Some("2026-12-24T18:00:00Z"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains(r#""closes_at":"2026-12-24T18:00:00Z""#),
            "{json}"
        );
        assert!(!json.contains("opens_at"), "{json}");
        let back: Challenge = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let bad: Result<Challenge, _> = toml::from_str(
            "id = \"c\"\ndata_dir = \"d\"\ncloses_at = \"tomorrow\"\n[runtime]\nimage = \"i\"\n[scoring]\n",
        );
        assert!(bad.unwrap_err().to_string().contains("RFC 3339"));
    }
}
