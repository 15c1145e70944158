//! The preparation check as the server runs it on create and update, and the data card it
//! stores: the same check as `holdout challenge check` (`crate::prepare`), on the challenge's
//! data folder, with the challenge's scoring and `preparation` settings.
//!
//! An error refuses the challenge with the first error's code, file, column and count; the
//! warnings are kept on the challenge (admin-only facts) and the cards, full and public, are
//! stored aside as one small file named by the challenge and the card's own SHA-256, written
//! before the challenge that names it: whichever replica writes the challenge last, its body
//! points at the card of the check it ran. Nothing here ever quotes a value from the data:
//! findings carry counts and names only (see `crate::prepare::report`).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Challenges;
use super::validate::resolve_data_dir;
use crate::auth::Caller;
use crate::domain::{Challenge, ChallengeId, DomainError, PreparationFacts};
use crate::prepare::{
    self, CardMeta, CheckError, CheckSpec, Finding, NoProgress, Report, Severity,
};
use crate::store::BlobKind;

/// A challenge's data card as a caller may read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeCard {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// Whether this is the public card (submitters only ever get that one).
    pub public: bool,
    /// The card in Markdown.
    pub markdown: String,
    /// The card as a JSON document.
    pub json: String,
    /// Admins: the digest of the data folder the card describes; empty for submitters.
    pub data_digest: String,
}

/// The stored file: both cards, as `holdout challenge check --card-dir` writes them.
#[derive(Debug, Serialize, Deserialize)]
struct StoredCards {
    /// `card.md`.
    full_markdown: String,
    /// `card.json`.
    full_json: String,
    /// `card.public.md`.
    public_markdown: String,
    /// `card.public.json`.
    public_json: String,
}

impl StoredCards {
    fn of(report: &Report, meta: &CardMeta) -> Result<StoredCards, serde_json::Error> {
        let public = prepare::public_card(report, meta);
        Ok(StoredCards {
            full_markdown: prepare::full_card_markdown(report, meta),
            full_json: serde_json::to_string_pretty(&prepare::full_card_json(report, meta))? + "\n",
            public_markdown: public.markdown(),
            public_json: serde_json::to_string_pretty(&public)? + "\n",
        })
    }
}

/// Who a card is about.
fn card_meta(c: &Challenge) -> CardMeta {
    CardMeta {
        challenge_id: Some(c.id.to_string()),
        title: Some(c.title.clone()).filter(|t| !t.is_empty()),
    }
}

/// What the check needs to know of a challenge: its scoring and its `preparation`.
pub(super) fn check_spec(c: &Challenge) -> Result<CheckSpec, DomainError> {
    let builtin = c.scoring.builtin.as_ref();
    let target = builtin
        .map(|b| b.target_column.as_str())
        .or(c.preparation.target_column.as_deref());
    let mut spec = CheckSpec::new(
        &c.scoring.id_column,
        target,
        builtin.map(|b| b.metric),
        c.scoring.public_fraction,
        c.scoring.split_seed,
    );
    spec.preparation = c.preparation.clone();
    spec.validate()
        .map_err(|e| DomainError::invalid("preparation", e.to_string()))?;
    Ok(spec)
}

/// The refusal of a challenge whose check found errors: the first error by code, file,
/// column and count (never its message's wording beyond those, never a value), and how
/// many more there are.
fn refusal(first: &Finding, errors: usize) -> DomainError {
    let mut what = format!("{}", first.code);
    if let Some(file) = &first.file {
        what.push_str(&format!(" in {file}"));
    }
    if let Some(column) = &first.column {
        what.push_str(&format!(", column {column}"));
    }
    what.push_str(&format!(", count {}", first.count));
    if let Some(total) = first.total {
        what.push_str(&format!(" of {total}"));
    }
    let more = match errors.saturating_sub(1) {
        0 => String::new(),
        1 => " and 1 more error".to_owned(),
        n => format!(" and {n} more errors"),
    };
    DomainError::precondition(
        "data_dir",
        format!(
            "the preparation check refuses the data: {what}{more}; `holdout challenge check DATA_DIR --challenge FILE` prints the whole report"
        ),
    )
}

impl Challenges {
    /// Runs the check on `c`'s data folder (whose digest is `data_digest`) on a blocking
    /// thread, refuses the challenge on any error, stores its cards and returns what to keep
    /// on the challenge.
    pub(super) async fn prepare(
        &self,
        c: &Challenge,
        data_digest: &str,
    ) -> Result<PreparationFacts, DomainError> {
        let spec = check_spec(c)?;
        let dir = resolve_data_dir(&self.host.data_root, &c.data_dir)?;
        let meta = card_meta(c);
        let started = Instant::now();
        let (report, cards) = tokio::task::spawn_blocking(move || {
            let report = prepare::check(&dir, &spec, &mut NoProgress)?;
            let cards = (!report.has_errors())
                .then(|| StoredCards::of(&report, &meta))
                .transpose()
                .map_err(|e| CheckError::Io {
                    what: "write the data card",
                    source: e.into(),
                })?;
            Ok::<_, CheckError>((report, cards))
        })
        .await
        .map_err(DomainError::internal)?
        .map_err(|e| match e {
            CheckError::Spec(e) => DomainError::invalid("preparation", e.to_string()),
            CheckError::NotADirectory(_) => {
                DomainError::precondition("data_dir", format!("{:?} is not a folder", c.data_dir))
            }
            CheckError::Io { what, source } => DomainError::precondition(
                "data_dir",
                format!("the preparation check cannot {what}: {source}"),
            ),
        })?;
        let (errors, warnings, infos) = report.counts();
        tracing::info!(
            challenge_id = %c.id,
            errors,
            warnings,
            infos,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "preparation check done"
        );
        if let Some(first) = report.first_error() {
            return Err(refusal(first, errors));
        }
        let cards = cards.expect("cards are written when there is no error");
        let name = self.store_cards(&c.id, &cards).await?;
        Ok(PreparationFacts {
            data_digest: data_digest.to_owned(),
            errors: errors as u64,
            warnings: warnings as u64,
            infos: infos as u64,
            findings: report
                .with_severity(Severity::Warning)
                .take(PreparationFacts::MAX_KEPT)
                .cloned()
                .collect(),
            card: name,
        })
    }

    /// Writes the last check's cards again for `c`'s title (the data did not change, so the
    /// report in the full card stands) and returns the facts naming them.
    pub(super) async fn retitle(
        &self,
        c: &Challenge,
        mut facts: PreparationFacts,
    ) -> Result<PreparationFacts, DomainError> {
        let Some(bytes) = self
            .store
            .get_blob(BlobKind::Card, facts.card.clone())
            .await?
        else {
            return Ok(facts);
        };
        let stored: StoredCards = serde_json::from_slice(&bytes).map_err(DomainError::internal)?;
        let report: Report =
            serde_json::from_str(&stored.full_json).map_err(DomainError::internal)?;
        let cards = StoredCards::of(&report, &card_meta(c)).map_err(DomainError::internal)?;
        facts.card = self.store_cards(&c.id, &cards).await?;
        Ok(facts)
    }

    /// Stores `cards` under a name of their own; returns it.
    async fn store_cards(
        &self,
        id: &ChallengeId,
        cards: &StoredCards,
    ) -> Result<String, DomainError> {
        let bytes = serde_json::to_vec(cards).map_err(DomainError::internal)?;
        let name = format!("{id}.{}.json", hex::encode(Sha256::digest(&bytes)));
        self.store
            .put_blob(BlobKind::Card, name.clone(), bytes)
            .await?;
        Ok(name)
    }

    /// The challenge's stored data card: admins the full one unless `public_only`,
    /// submitters always the public one.
    pub async fn card(
        &self,
        caller: &Caller,
        id: &ChallengeId,
        public_only: bool,
    ) -> Result<ChallengeCard, DomainError> {
        let c = self.load(id).await?;
        let facts = &c.facts.preparation;
        let not_found = || {
            DomainError::NotFound(format!(
                "a data card of challenge {:?} (it was stored before cards were kept; update its \"preparation\" to write one)",
                id.as_str()
            ))
        };
        if facts.card.is_empty() {
            return Err(not_found());
        }
        let bytes = self
            .store
            .get_blob(BlobKind::Card, facts.card.clone())
            .await?
            .ok_or_else(not_found)?;
        let cards: StoredCards = serde_json::from_slice(&bytes).map_err(DomainError::internal)?;
        let full = caller.is_admin() && !public_only;
        Ok(ChallengeCard {
            challenge_id: c.id.clone(),
            public: !full,
            markdown: if full {
                cards.full_markdown
            } else {
                cards.public_markdown
            },
            json: if full {
                cards.full_json
            } else {
                cards.public_json
            },
            data_digest: if caller.is_admin() {
                facts.data_digest.clone()
            } else {
                String::new()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::Code;

    #[test]
    fn a_refusal_names_the_first_error_by_code_file_column_and_count_and_counts_the_rest() {
        let f = Finding::new(
            Code::LabelsDuplicateId,
            Severity::Error,
            3,
            "3 rows repeat an id such as r0001",
        )
        .file("labels.csv")
        .column("id")
        .total(400);
        let text = refusal(&f, 4).to_string();
        assert_eq!(
            text,
            "data_dir: the preparation check refuses the data: labels.duplicate_id in labels.csv, column id, count 3 of 400 and 3 more errors; `holdout challenge check DATA_DIR --challenge FILE` prints the whole report"
        );
        assert!(!text.contains("r0001"), "the message is not quoted");
        let lone = refusal(
            &Finding::new(Code::LayoutNoLabels, Severity::Error, 1, "x"),
            1,
        );
        assert_eq!(
            lone.to_string(),
            "data_dir: the preparation check refuses the data: layout.no_labels, count 1; `holdout challenge check DATA_DIR --challenge FILE` prints the whole report"
        );
    }
}
