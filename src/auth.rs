//! Bearer-token authentication: who is calling, and with which role.
//!
//! Tokens are configured as SHA-256 digests; the token itself is never stored. Comparison is
//! by digest lookup, so timing reveals nothing about a token's characters.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::{Role, TokenConfig};
use crate::domain::DomainError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's configured name; submissions are owned by it.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// Whether this caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// PERMISSION_DENIED unless the caller is an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), DomainError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(DomainError::PermissionDenied(format!(
                "{what} needs an admin token"
            )))
        }
    }
}

/// The configured tokens, by digest.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<String, Caller>,
}

impl Tokens {
    /// Indexes the configured tokens.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let by_digest = tokens
            .iter()
            .map(|t| {
                (
                    t.sha256.to_ascii_lowercase(),
                    Caller {
                        name: t.name.clone(),
                        role: t.role,
                    },
                )
            })
            .collect();
        Self { by_digest }
    }

    /// Checks an `authorization` header value ("Bearer <token>").
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, DomainError> {
        let header = header.ok_or_else(|| {
            DomainError::Unauthenticated(
                "missing authorization metadata (expected \"Bearer <token>\")".into(),
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                DomainError::Unauthenticated("authorization must be \"Bearer <token>\"".into())
            })?
            .trim();
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(|| DomainError::Unauthenticated("unknown token".into()))
    }
}

/// Hex SHA-256 of a token, as configured.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (32 bytes, hex) and its digest.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("ho_{}", hex::encode(bytes));
    let d = digest(&token);
    (token, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (Tokens, String) {
        let (token, sha256) = new_token();
        (
            Tokens::new(&[TokenConfig {
                name: "platform".into(),
                role: Role::Submitter,
                sha256,
            }]),
            token,
        )
    }

    #[test]
    fn a_configured_token_authenticates_with_its_role() {
        let (t, token) = tokens();
        let caller = t.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(
            caller,
            Caller {
                name: "platform".into(),
                role: Role::Submitter
            }
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
        let (t, token) = tokens();
        for header in [None, Some(token.as_str()), Some("Bearer nope")] {
            assert!(
                matches!(t.authenticate(header), Err(DomainError::Unauthenticated(_))),
                "{header:?}"
            );
        }
    }
}
