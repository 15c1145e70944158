//! Leaderboards: each participant's shown public score under the challenge's mode, and the
//! private ranking of the submissions that hold those public entries.
//!
//! Computed from the store's scored FULL submissions on demand; the ladder is a replay of a
//! participant's submissions in order, so the same history always gives the same board.
//!
//! Under final selection (`release.final_selections` N > 0) the private board ranks each
//! participant by the best private score among the submissions they selected, or, when
//! they selected none, among their N best by public score (ties: the earliest).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::auth::Caller;
use crate::domain::{
    Challenge, ChallengeId, DomainError, LeaderboardMode, Submission, SubmissionId, now_millis,
};
use crate::losses::LossStore;
use crate::release::round;
use crate::run::plan::HostSettings;
use crate::store::Store;

/// Each participant's final selection, by (platform, participant), in submission order.
pub type Finals = HashMap<(String, String), Vec<SubmissionId>>;

/// Which scores rank the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Public split, filtered by the mode.
    Public,
    /// Private split of the submissions that hold the public entries.
    Private,
}

/// One row: a participant of a platform. Two platforms' participants with the same id are
/// two rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1-based; equal scores share a rank.
    pub rank: u32,
    /// The platform (submitter token) the participant belongs to.
    pub platform: String,
    /// The participant.
    pub participant_id: String,
    /// As released.
    pub score: f64,
    /// The submission holding the entry.
    pub submission_id: String,
    /// FULL submissions scored.
    pub submissions: u32,
}

/// A whole board.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// Ranking metric.
    pub metric: String,
    /// Direction.
    pub greater_is_better: bool,
    /// Rows, best first.
    pub entries: Vec<Entry>,
}

/// A participant's shown entry after replaying their history.
#[derive(Debug, Clone)]
struct Shown {
    score: f64,
    holder_index: usize,
}

/// Per-row public losses of a scored FULL submission, when kept (parameter-free ladder).
pub type Losses<'a> = &'a dyn Fn(&Submission) -> Option<Arc<Vec<f32>>>;

/// The parameter-free ladder's test: does `new` beat `old` by more than one standard error
/// of the paired differences? Returns the step (s/√n) when it does.
pub fn paired_improvement(new: &[f32], old: &[f32]) -> Option<f64> {
    if new.len() != old.len() || new.len() < 2 {
        return None;
    }
    let n = new.len() as f64;
    let diffs = new.iter().zip(old).map(|(a, b)| *a as f64 - *b as f64);
    let mean = diffs.clone().sum::<f64>() / n;
    let var = diffs.map(|d| (d - mean) * (d - mean)).sum::<f64>() / (n - 1.0);
    let step = var.sqrt() / n.sqrt();
    (mean < -step).then_some(step)
}

/// A score inside its metric's released range (see `crate::leakage`).
fn clamped(challenge: &Challenge, v: f64) -> f64 {
    let metric = challenge.scoring.builtin.as_ref().map(|b| b.metric);
    crate::leakage::clamp(v, metric, challenge.facts.target_range())
}

/// The standard error of the mean of per-row losses (s/√n), the parameter-free ladder's
/// step for a participant's first score.
pub fn standard_error(losses: &[f32]) -> Option<f64> {
    if losses.len() < 2 {
        return None;
    }
    let n = losses.len() as f64;
    let mean = losses.iter().map(|l| *l as f64).sum::<f64>() / n;
    let var = losses
        .iter()
        .map(|l| (*l as f64 - mean) * (*l as f64 - mean))
        .sum::<f64>()
        / (n - 1.0);
    let se = var.sqrt() / n.sqrt();
    (se > 0.0 && se.is_finite()).then_some(se)
}

/// Rounds `x` to the nearest multiple of `step`, then to the release decimals.
fn on_step(x: f64, step: f64, decimals: u32) -> f64 {
    if !(step > 0.0 && step.is_finite()) {
        return round(x, decimals);
    }
    round((x / step).round() * step, decimals)
}

/// Replays one participant's scored FULL submissions (oldest first) under the challenge's
/// mode; returns the shown entry after each submission.
fn replay(
    challenge: &Challenge,
    history: &[&Submission],
    losses: Losses<'_>,
) -> Vec<Option<Shown>> {
    let (metric, greater) = challenge.primary_metric();
    let decimals = challenge.release.score_decimals;
    let better = |a: f64, b: f64| if greater { a > b } else { a < b };
    let mut shown: Option<Shown> = None;
    let mut out = Vec::with_capacity(history.len());
    for (i, s) in history.iter().enumerate() {
        if let Some(raw) = s.public_scores.get(&metric).map(|v| clamped(challenge, *v)) {
            let accept = |score: f64| {
                Some(Shown {
                    score,
                    holder_index: i,
                })
            };
            match challenge.release.mode {
                LeaderboardMode::BestSoFar => {
                    let r = round(raw, decimals);
                    if shown.as_ref().is_none_or(|sh| better(r, sh.score)) {
                        shown = accept(r);
                    }
                }
                LeaderboardMode::Ladder => {
                    let step = challenge.release.ladder_step;
                    let beats = match &shown {
                        None => true,
                        Some(sh) => {
                            if greater {
                                raw >= sh.score + step
                            } else {
                                raw <= sh.score - step
                            }
                        }
                    };
                    if beats {
                        shown = accept(on_step(raw, step, decimals));
                    }
                }
                LeaderboardMode::LadderParameterFree => match &shown {
                    // The first score is put on the grid of its own standard error, like
                    // every later one on the grid of its paired test's: never released at
                    // full precision.
                    None => {
                        let step = losses(s).and_then(|l| standard_error(&l));
                        shown = accept(match step {
                            Some(step) => on_step(raw, step, decimals),
                            None => round(raw, decimals),
                        })
                    }
                    Some(sh) => {
                        let old = losses(history[sh.holder_index]);
                        let new = losses(s);
                        if let (Some(old), Some(new)) = (old, new)
                            && let Some(step) = paired_improvement(&new, &old)
                        {
                            shown = accept(on_step(raw, step, decimals));
                        }
                    }
                },
            }
        }
        out.push(shown.clone());
    }
    out
}

/// What `Submission.scores` releases for a scored FULL run: under BEST_SO_FAR its rounded
/// public scores; under a ladder only the ladder's value after it, for the primary metric.
pub fn released_full_scores(
    challenge: &Challenge,
    history: &[Submission],
    s: &Submission,
    losses: Losses<'_>,
) -> BTreeMap<String, f64> {
    let decimals = challenge.release.score_decimals;
    match challenge.release.mode {
        // Only the ranking metric leaves: every other key a scorer wrote would be more bits.
        LeaderboardMode::BestSoFar => {
            let (metric, _) = challenge.primary_metric();
            s.public_scores
                .get(&metric)
                .map(|v| BTreeMap::from([(metric, round(clamped(challenge, *v), decimals))]))
                .unwrap_or_default()
        }
        LeaderboardMode::Ladder | LeaderboardMode::LadderParameterFree => {
            let mine: Vec<&Submission> = history
                .iter()
                .filter(|h| h.owner == s.owner && h.participant_id == s.participant_id)
                .collect();
            let shown = replay(challenge, &mine, losses);
            let (metric, _) = challenge.primary_metric();
            mine.iter()
                .position(|h| h.id == s.id)
                .and_then(|i| shown[i].as_ref())
                .map(|sh| BTreeMap::from([(metric, sh.score)]))
                .unwrap_or_default()
        }
    }
}

/// The leaderboards service: boards, and what one scored FULL run releases.
#[derive(Clone)]
pub struct Leaderboards {
    store: Store,
    losses: Arc<LossStore>,
    host: HostSettings,
}

impl Leaderboards {
    /// Boards computed from `store`'s scored runs (and `losses` under the parameter-free
    /// ladder), with holds timed by the limits `host` resolves.
    pub fn new(store: Store, losses: Arc<LossStore>, host: HostSettings) -> Self {
        Self {
            store,
            losses,
            host,
        }
    }

    /// The board of a challenge as `caller` may read it.
    pub async fn get(
        &self,
        caller: &Caller,
        id: &ChallengeId,
        view: View,
    ) -> Result<Board, DomainError> {
        let challenge = self
            .store
            .get_challenge(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("challenge {:?}", id.as_str())))?;
        if view == View::Private && !caller.is_admin() && !challenge.is_closed_at(now_millis()) {
            return Err(DomainError::PermissionDenied(
                "the private leaderboard is readable by submitters only once the challenge is closed"
                    .into(),
            ));
        }
        let mut history = self.store.scored_full(id.clone()).await?;
        if !caller.is_admin() && challenge.release.constant_time_release {
            // A held result must not show up on the board before its state may be announced.
            let wall = self.host.limits(&challenge).wall_time.0;
            let now = now_millis();
            history.retain(|s| !crate::release::is_held(s, &challenge, wall, now));
        }
        let losses = self.losses_of(&challenge, &history).await;
        let mut finals = Finals::new();
        if view == View::Private && challenge.release.final_selections > 0 {
            for r in self.store.selections(id, None).await? {
                finals
                    .entry((r.owner, r.participant_id))
                    .or_default()
                    .push(r.submission_id);
            }
        }
        let board = build(
            &challenge,
            &history,
            view,
            &|s| losses.get(&s.id).cloned(),
            &finals,
        );
        let what = match view {
            View::Public => "leaderboard:public",
            View::Private => "leaderboard:private",
        };
        let values = board
            .entries
            .iter()
            .map(|e| (format!("{}/{}", e.platform, e.participant_id), e.score))
            .collect();
        crate::audit::leaderboard_released(&self.store, caller, id.as_str(), what, values).await?;
        Ok(board)
    }

    /// What `Submission.scores` releases for scored FULL run `s` of `challenge` (see
    /// [`released_full_scores`]); reads the challenge's history only under a ladder.
    pub async fn released_for(
        &self,
        challenge: &Challenge,
        s: &Submission,
    ) -> Result<BTreeMap<String, f64>, DomainError> {
        let history = if challenge.release.mode == LeaderboardMode::BestSoFar {
            Vec::new()
        } else {
            self.store.scored_full(s.challenge_id.clone()).await?
        };
        let losses = self.losses_of(challenge, &history).await;
        Ok(released_full_scores(challenge, &history, s, &|h| {
            losses.get(&h.id).cloned()
        }))
    }

    /// The per-row losses a board of `challenge` reads: only the parameter-free ladder
    /// reads any.
    async fn losses_of(
        &self,
        challenge: &Challenge,
        history: &[Submission],
    ) -> HashMap<crate::domain::SubmissionId, Arc<Vec<f32>>> {
        if challenge.release.mode == LeaderboardMode::LadderParameterFree {
            self.losses.of(history).await
        } else {
            HashMap::new()
        }
    }
}

/// The submission that ranks a participant on the private board under final selection,
/// with its released private score: the best private score among `selected` (of `mine`),
/// or, when nothing is selected, among the N best of `mine` by exact public score (ties:
/// the earliest). Equal private scores go to the earliest.
fn final_pick<'a>(
    challenge: &Challenge,
    mine: &[&'a Submission],
    selected: Option<&Vec<SubmissionId>>,
) -> Option<(f64, &'a Submission)> {
    let (metric, greater) = challenge.primary_metric();
    let better = |a: f64, b: f64| if greater { a > b } else { a < b };
    let pool: Vec<&Submission> = match selected.filter(|ids| !ids.is_empty()) {
        Some(ids) => mine
            .iter()
            .copied()
            .filter(|s| ids.contains(&s.id))
            .collect(),
        None => {
            let mut ranked: Vec<(usize, &Submission, f64)> = mine
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let v = s.public_scores.get(&metric)?;
                    Some((i, *s, clamped(challenge, *v)))
                })
                .collect();
            ranked.sort_by(|a, b| {
                let by_score = if greater {
                    b.2.total_cmp(&a.2)
                } else {
                    a.2.total_cmp(&b.2)
                };
                by_score.then(a.0.cmp(&b.0))
            });
            let mut pool: Vec<(usize, &Submission)> = ranked
                .into_iter()
                .take(challenge.release.final_selections as usize)
                .map(|(i, s, _)| (i, s))
                .collect();
            pool.sort_by_key(|(i, _)| *i);
            pool.into_iter().map(|(_, s)| s).collect()
        }
    };
    let mut best: Option<(f64, &Submission)> = None;
    for s in pool {
        if let Some(v) = s.private_scores.get(&metric) {
            let r = round(clamped(challenge, *v), challenge.release.score_decimals);
            if best.is_none_or(|(b, _)| better(r, b)) {
                best = Some((r, s));
            }
        }
    }
    best
}

/// Builds a board from the scored FULL history (oldest first); `finals` is read by the
/// private board of a challenge with final selection.
pub fn build(
    challenge: &Challenge,
    history: &[Submission],
    view: View,
    losses: Losses<'_>,
    finals: &Finals,
) -> Board {
    let (metric, greater) = challenge.primary_metric();
    // Identity is (platform, participant): the same id on two platforms is two people.
    let mut by_participant: HashMap<(&str, &str), Vec<&Submission>> = HashMap::new();
    let mut order: Vec<(&str, &str)> = Vec::new();
    for s in history {
        let key = (s.owner.as_str(), s.participant_id.as_str());
        let list = by_participant.entry(key).or_default();
        if list.is_empty() {
            order.push(key);
        }
        list.push(s);
    }
    let mut rows: Vec<(Entry, usize)> = Vec::new();
    for p in order {
        let mine = &by_participant[&p];
        let Some(Some(shown)) = replay(challenge, mine, losses).pop() else {
            continue;
        };
        let holder = mine[shown.holder_index];
        let (score, holder) = match view {
            View::Public => (shown.score, holder),
            View::Private if challenge.release.final_selections > 0 => {
                let selected = finals.get(&(p.0.to_owned(), p.1.to_owned()));
                match final_pick(challenge, mine, selected) {
                    Some(pick) => pick,
                    None => continue,
                }
            }
            View::Private => match holder.private_scores.get(&metric) {
                Some(&v) => (
                    round(clamped(challenge, v), challenge.release.score_decimals),
                    holder,
                ),
                None => continue,
            },
        };
        let seq = history
            .iter()
            .position(|h| h.id == holder.id)
            .unwrap_or(usize::MAX);
        rows.push((
            Entry {
                rank: 0,
                platform: p.0.to_owned(),
                participant_id: p.1.to_owned(),
                score,
                submission_id: holder.id.to_string(),
                submissions: mine.len() as u32,
            },
            seq,
        ));
    }
    rows.sort_by(|(a, sa), (b, sb)| {
        let by_score = if greater {
            b.score.total_cmp(&a.score)
        } else {
            a.score.total_cmp(&b.score)
        };
        by_score.then(sa.cmp(sb))
    });
    let mut entries: Vec<Entry> = rows.into_iter().map(|(e, _)| e).collect();
    for i in 0..entries.len() {
        entries[i].rank = if i > 0 && entries[i].score == entries[i - 1].score {
            entries[i - 1].rank
        } else {
            i as u32 + 1
        };
    }
    Board {
        metric,
        greater_is_better: greater,
        entries,
    }
}

#[cfg(test)]
#[path = "leaderboard_tests.rs"]
mod tests;
