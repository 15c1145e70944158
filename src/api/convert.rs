//! Conversion between wire messages and domain types. Wire input is checked here, once, and
//! turned into domain types; invalid input is INVALID_ARGUMENT naming the field.

use std::time::Duration;

use crate::challenges::ChallengeCard;
use crate::domain::{
    BuiltinMetric, Challenge, ChallengeId, ChallengeState, CustomScorer, DomainError,
    FailureDetail, Isolation, Job, JobKind, JobState, LeaderboardMode, Limits, Preparation,
    PreparationFacts, Quota, ReleasePolicy, ResolvedLimits, Runtime, ScoreChange, Scoring,
    SubmissionKind, SubmissionState, UnixMillis, Usage, Verdict,
};
use crate::leakage::LeakageEstimate;
use crate::pb;
use crate::prepare::Finding;
use crate::release::{ChallengeView, SubmissionView};
use crate::scoring::Metric;
use crate::units::{ByteSize, HumanDuration};

/// The built-in metric a wire enum value names.
fn metric_from_pb(m: i32) -> Result<Metric, DomainError> {
    Ok(match pb::Metric::try_from(m) {
        Ok(pb::Metric::Accuracy) => Metric::Accuracy,
        Ok(pb::Metric::BalancedAccuracy) => Metric::BalancedAccuracy,
        Ok(pb::Metric::F1Macro) => Metric::F1Macro,
        Ok(pb::Metric::RocAuc) => Metric::RocAuc,
        Ok(pb::Metric::LogLoss) => Metric::LogLoss,
        Ok(pb::Metric::Rmse) => Metric::Rmse,
        Ok(pb::Metric::Mae) => Metric::Mae,
        Ok(pb::Metric::R2) => Metric::R2,
        _ => {
            return Err(DomainError::invalid(
                "scoring.builtin.metric",
                "must name a metric",
            ));
        }
    })
}

/// The wire enum value of a built-in metric.
fn metric_to_pb(m: Metric) -> pb::Metric {
    match m {
        Metric::Accuracy => pb::Metric::Accuracy,
        Metric::BalancedAccuracy => pb::Metric::BalancedAccuracy,
        Metric::F1Macro => pb::Metric::F1Macro,
        Metric::RocAuc => pb::Metric::RocAuc,
        Metric::LogLoss => pb::Metric::LogLoss,
        Metric::Rmse => pb::Metric::Rmse,
        Metric::Mae => pb::Metric::Mae,
        Metric::R2 => pb::Metric::R2,
    }
}

fn duration_from_pb(
    d: Option<prost_types::Duration>,
    field: &str,
) -> Result<Duration, DomainError> {
    match d {
        None => Ok(Duration::ZERO),
        Some(d) => Duration::try_from(d)
            .map_err(|_| DomainError::invalid(field, "must be a non-negative duration")),
    }
}

/// Whether `s` is an engine image id: `sha256:` and 64 lowercase hex digits.
fn is_image_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A wire challenge as a domain challenge (server-set fields are ignored).
pub fn challenge_from_pb(c: pb::Challenge) -> Result<Challenge, DomainError> {
    let id = ChallengeId::parse(&c.id)?;
    let runtime = c.runtime.unwrap_or_default();
    let isolation = match pb::Isolation::try_from(runtime.isolation) {
        Ok(pb::Isolation::Unspecified) => None,
        Ok(pb::Isolation::Runc) => Some(Isolation::Runc),
        Ok(pb::Isolation::Gvisor) => Some(Isolation::Gvisor),
        Err(_) => {
            return Err(DomainError::invalid(
                "runtime.isolation",
                "unknown isolation",
            ));
        }
    };
    if !runtime.image_digest.is_empty() && !is_image_id(&runtime.image_digest) {
        return Err(DomainError::invalid(
            "runtime.image_digest",
            "must be \"sha256:\" and 64 lowercase hex digits (the id `holdout image extend` prints)",
        ));
    }
    let scoring = c.scoring.unwrap_or_default();
    let (builtin, custom) = match scoring.scorer {
        Some(pb::scoring::Scorer::Builtin(b)) => (
            Some(BuiltinMetric {
                metric: metric_from_pb(b.metric)?,
                target_column: b.target_column,
                prediction_column: b.prediction_column,
                positive_label: b.positive_label,
            }),
            None,
        ),
        Some(pb::scoring::Scorer::Custom(s)) => (
            None,
            Some(CustomScorer {
                image: s.image,
                command: s.command,
                primary_metric: s.primary_metric,
                greater_is_better: s.greater_is_better,
                release_messages: s.release_messages,
            }),
        ),
        None => (None, None),
    };
    let l = c.limits.unwrap_or_default();
    let limits = Limits {
        wall_time: HumanDuration(duration_from_pb(l.wall_time, "limits.wall_time")?),
        memory_bytes: ByteSize(l.memory_bytes),
        cpu_millis: l.cpu_millis,
        pids: l.pids,
        output_bytes: ByteSize(l.output_bytes),
        scratch_bytes: ByteSize(l.scratch_bytes),
        gpus: l.gpus,
        archive_bytes: ByteSize(l.archive_bytes),
        extracted_bytes: ByteSize(l.extracted_bytes),
        log_bytes: ByteSize(l.log_bytes.into()),
        concurrency: l.concurrency,
    };
    let r = c.release.unwrap_or_default();
    let mode = match pb::LeaderboardMode::try_from(r.mode) {
        Ok(pb::LeaderboardMode::Unspecified | pb::LeaderboardMode::BestSoFar) => {
            LeaderboardMode::BestSoFar
        }
        Ok(pb::LeaderboardMode::Ladder) => LeaderboardMode::Ladder,
        Ok(pb::LeaderboardMode::LadderParameterFree) => LeaderboardMode::LadderParameterFree,
        Err(_) => {
            return Err(DomainError::invalid(
                "release.mode",
                "unknown leaderboard mode",
            ));
        }
    };
    let failure_detail = match pb::FailureDetail::try_from(r.failure_detail) {
        Ok(pb::FailureDetail::Unspecified | pb::FailureDetail::NotScored) => {
            FailureDetail::NotScored
        }
        Ok(pb::FailureDetail::Verdict) => FailureDetail::Verdict,
        Err(_) => {
            return Err(DomainError::invalid(
                "release.failure_detail",
                "unknown failure detail",
            ));
        }
    };
    let q = c.quota.unwrap_or_default();
    let opens_at = c
        .opens_at
        .map(|t| millis_from_pb(t, "opens_at"))
        .transpose()?;
    let closes_at = c
        .closes_at
        .map(|t| millis_from_pb(t, "closes_at"))
        .transpose()?;
    Ok(Challenge {
        id,
        title: c.title,
        state: ChallengeState::Open,
        runtime: Runtime {
            image: runtime.image,
            command: runtime.command,
            isolation,
            env: runtime.env.into_iter().collect(),
            image_digest: runtime.image_digest,
        },
        data_dir: c.data_dir,
        scoring: Scoring {
            builtin,
            custom,
            id_column: if scoring.id_column.is_empty() {
                "id".into()
            } else {
                scoring.id_column
            },
            public_fraction: scoring.public_fraction,
            split_seed: scoring.split_seed,
        },
        limits,
        release: ReleasePolicy {
            score_decimals: r.score_decimals,
            mode,
            ladder_step: r.ladder_step,
            constant_time_release: r.constant_time_release,
            failure_detail,
            scoring_budget: HumanDuration(duration_from_pb(
                r.scoring_budget,
                "release.scoring_budget",
            )?),
            final_selections: r.final_selections,
        },
        quota: Quota {
            full_per_day: q.full_per_day,
            smoke_per_day: q.smoke_per_day,
            // Unset means the safe default: failed runs count.
            count_failed: q.count_failed.unwrap_or(true),
            platform_full_per_day: q.platform_full_per_day,
        },
        created_at: 0,
        closed_at: None,
        opens_at,
        closes_at,
        facts: Default::default(),
        preparation: preparation_from_pb(c.preparation)?,
    })
}

/// The wire preparation settings as the domain's; unset or zero fields take the defaults.
/// What the server found (`check`) is ignored on input.
fn preparation_from_pb(p: Option<pb::Preparation>) -> Result<Preparation, DomainError> {
    let mut out = Preparation::default();
    let Some(p) = p else {
        return Ok(out);
    };
    out.quasi_identifiers = p.quasi_identifiers;
    if p.min_k != 0 {
        out.min_k = p.min_k;
    }
    if p.min_l != 0 {
        out.min_l = p.min_l;
    }
    for (column, rule) in p.generalise {
        let g = rule
            .parse()
            .map_err(|e: String| DomainError::invalid("preparation.generalise", e))?;
        out.generalise.insert(column, g);
    }
    out.scan_inputs = p.scan_inputs;
    if p.max_half_width != 0.0 {
        out.max_half_width = p.max_half_width;
    }
    out.target_column = Some(p.target_column).filter(|t| !t.is_empty());
    Ok(out)
}

/// The preparation settings on the wire, with what the check found when `facts` has it
/// (admins: submitters' views carry no facts).
fn preparation_to_pb(p: &Preparation, facts: &PreparationFacts) -> pb::Preparation {
    let check = (!facts.data_digest.is_empty()).then(|| pb::PreparationCheck {
        errors: facts.errors.min(u32::MAX as u64) as u32,
        warnings: facts.warnings.min(u32::MAX as u64) as u32,
        infos: facts.infos.min(u32::MAX as u64) as u32,
        findings: facts.findings.iter().map(finding_to_pb).collect(),
        data_digest: facts.data_digest.clone(),
    });
    pb::Preparation {
        quasi_identifiers: p.quasi_identifiers.clone(),
        min_k: p.min_k,
        min_l: p.min_l,
        generalise: p
            .generalise
            .iter()
            .map(|(c, g)| (c.clone(), g.to_string()))
            .collect(),
        scan_inputs: p.scan_inputs,
        max_half_width: p.max_half_width,
        target_column: p.target_column.clone().unwrap_or_default(),
        check,
    }
}

/// One finding of the preparation check on the wire.
fn finding_to_pb(f: &Finding) -> pb::PreparationFinding {
    pb::PreparationFinding {
        code: f.code.as_str().to_owned(),
        severity: f.severity.as_str().to_owned(),
        file: f.file.clone().unwrap_or_default(),
        column: f.column.clone().unwrap_or_default(),
        count: f.count,
        message: f.message.clone(),
    }
}

/// A stored data card on the wire.
pub fn card_to_pb(card: &ChallengeCard) -> pb::ChallengeCard {
    pb::ChallengeCard {
        challenge_id: card.challenge_id.to_string(),
        public: card.public,
        markdown: card.markdown.clone(),
        json: card.json.clone(),
        data_digest: card.data_digest.clone(),
    }
}

/// A challenge as released to its caller, on the wire.
pub fn challenge_view_to_pb(v: &ChallengeView) -> pb::Challenge {
    pb::Challenge {
        leakage: v.leakage.as_ref().map(leakage_to_pb),
        ..challenge_to_pb(&v.challenge)
    }
}

/// A leakage estimate on the wire.
pub fn leakage_to_pb(e: &LeakageEstimate) -> pb::LeakageEstimate {
    pb::LeakageEstimate {
        bits_per_submission: e.bits_per_submission,
        score_values: e.score_values,
        failure_values: e.failure_values,
        time_values: e.time_values,
    }
}

/// A challenge's leakage ledger on the wire.
pub fn leakage_to_pb_ledger(challenge_id: &str, l: &crate::audit::Ledger) -> pb::Leakage {
    pb::Leakage {
        challenge_id: challenge_id.to_owned(),
        estimate: Some(leakage_to_pb(&l.estimate)),
        participants: l
            .totals
            .iter()
            .map(|t| pb::ParticipantLeakage {
                platform: t.owner.clone(),
                participant_id: t.participant_id.clone(),
                results: t.results,
                bits: t.bits,
            })
            .collect(),
        total_bits: l.totals.iter().map(|t| t.bits).sum(),
    }
}

/// A domain challenge on the wire (no leakage estimate: see [`challenge_view_to_pb`]).
pub fn challenge_to_pb(c: &Challenge) -> pb::Challenge {
    let scorer = if let Some(b) = &c.scoring.builtin {
        Some(pb::scoring::Scorer::Builtin(pb::BuiltinMetric {
            metric: metric_to_pb(b.metric) as i32,
            target_column: b.target_column.clone(),
            prediction_column: b.prediction_column.clone(),
            positive_label: b.positive_label.clone(),
        }))
    } else {
        c.scoring.custom.as_ref().map(|s| {
            pb::scoring::Scorer::Custom(pb::CustomScorer {
                image: s.image.clone(),
                command: s.command.clone(),
                primary_metric: s.primary_metric.clone(),
                greater_is_better: s.greater_is_better,
                release_messages: s.release_messages,
            })
        })
    };
    let l = &c.limits;
    pb::Challenge {
        id: c.id.to_string(),
        title: c.title.clone(),
        state: match c.state {
            ChallengeState::Open => pb::ChallengeState::Open,
            ChallengeState::Closed => pb::ChallengeState::Closed,
        } as i32,
        runtime: Some(pb::Runtime {
            image: c.runtime.image.clone(),
            command: c.runtime.command.clone(),
            isolation: match c.runtime.isolation {
                None => pb::Isolation::Unspecified,
                Some(Isolation::Runc) => pb::Isolation::Runc,
                Some(Isolation::Gvisor) => pb::Isolation::Gvisor,
            } as i32,
            env: c.runtime.env.clone().into_iter().collect(),
            image_digest: c.runtime.image_digest.clone(),
        }),
        data_dir: c.data_dir.clone(),
        scoring: Some(pb::Scoring {
            scorer,
            id_column: c.scoring.id_column.clone(),
            public_fraction: c.scoring.public_fraction,
            split_seed: c.scoring.split_seed,
        }),
        limits: Some(pb::Limits {
            wall_time: if l.wall_time.0.is_zero() {
                None
            } else {
                prost_types::Duration::try_from(l.wall_time.0).ok()
            },
            memory_bytes: l.memory_bytes.0,
            cpu_millis: l.cpu_millis,
            pids: l.pids,
            output_bytes: l.output_bytes.0,
            scratch_bytes: l.scratch_bytes.0,
            gpus: l.gpus,
            archive_bytes: l.archive_bytes.0,
            extracted_bytes: l.extracted_bytes.0,
            log_bytes: l.log_bytes.0.min(u32::MAX as u64) as u32,
            concurrency: l.concurrency,
        }),
        release: Some(pb::ReleasePolicy {
            score_decimals: c.release.score_decimals,
            mode: match c.release.mode {
                LeaderboardMode::BestSoFar => pb::LeaderboardMode::BestSoFar,
                LeaderboardMode::Ladder => pb::LeaderboardMode::Ladder,
                LeaderboardMode::LadderParameterFree => pb::LeaderboardMode::LadderParameterFree,
            } as i32,
            ladder_step: c.release.ladder_step,
            constant_time_release: c.release.constant_time_release,
            failure_detail: match c.release.failure_detail {
                FailureDetail::Verdict => pb::FailureDetail::Verdict,
                FailureDetail::NotScored => pb::FailureDetail::NotScored,
            } as i32,
            scoring_budget: prost_types::Duration::try_from(c.release.scoring_budget()).ok(),
            final_selections: c.release.final_selections,
        }),
        quota: Some(pb::Quota {
            full_per_day: c.quota.full_per_day,
            smoke_per_day: c.quota.smoke_per_day,
            count_failed: Some(c.quota.count_failed),
            platform_full_per_day: c.quota.platform_full_per_day,
        }),
        created_at: Some(timestamp(c.created_at)),
        closed_at: c.closed_at.map(timestamp),
        leakage: None,
        preparation: Some(preparation_to_pb(&c.preparation, &c.facts.preparation)),
        opens_at: c.opens_at.map(timestamp),
        closes_at: c.closes_at.map(timestamp),
    }
}

/// The metadata of an upload, checked.
pub fn submit_meta_from_pb(
    m: pb::SubmitMetadata,
) -> Result<crate::submissions::SubmitMeta, DomainError> {
    use crate::archive::ArchiveFormat;
    use crate::domain::{ParticipantId, SubmissionKind};
    let kind = match pb::SubmissionKind::try_from(m.kind) {
        Ok(pb::SubmissionKind::Unspecified | pb::SubmissionKind::Full) => SubmissionKind::Full,
        Ok(pb::SubmissionKind::Smoke) => SubmissionKind::Smoke,
        Err(_) => return Err(DomainError::invalid("kind", "unknown submission kind")),
    };
    let format = match pb::ArchiveFormat::try_from(m.format) {
        Ok(pb::ArchiveFormat::Unspecified) => None,
        Ok(pb::ArchiveFormat::TarGz) => Some(ArchiveFormat::TarGz),
        Ok(pb::ArchiveFormat::Zip) => Some(ArchiveFormat::Zip),
        Err(_) => return Err(DomainError::invalid("format", "unknown archive format")),
    };
    if m.idempotency_key.len() > 128 {
        return Err(DomainError::invalid(
            "idempotency_key",
            "is longer than 128 bytes",
        ));
    }
    let sha256 = if m.sha256.is_empty() {
        None
    } else if m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(m.sha256.to_ascii_lowercase())
    } else {
        return Err(DomainError::invalid("sha256", "must be 64 hex digits"));
    };
    Ok(crate::submissions::SubmitMeta {
        challenge_id: ChallengeId::parse(&m.challenge_id).map_err(|_| {
            DomainError::invalid(
                "challenge_id",
                format!("{:?} is not a challenge id", m.challenge_id),
            )
        })?,
        participant_id: ParticipantId::parse(&m.participant_id)?,
        kind,
        format,
        idempotency_key: (!m.idempotency_key.is_empty()).then_some(m.idempotency_key),
        sha256,
    })
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ms: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A job on the wire.
pub fn job_to_pb(j: &Job) -> pb::Job {
    pb::Job {
        id: j.id.to_string(),
        challenge_id: j.challenge_id.to_string(),
        kind: match j.kind {
            JobKind::Rescore => pb::JobKind::Rescore,
            JobKind::Rerun => pb::JobKind::Rerun,
        } as i32,
        state: match j.state {
            JobState::Running => pb::JobState::Running,
            JobState::Finished => pb::JobState::Finished,
            JobState::Cancelled => pb::JobState::Cancelled,
            JobState::Failed => pb::JobState::Failed,
        } as i32,
        done: j.done,
        total: j.total,
        created_by: j.created_by.clone(),
        created_at: Some(timestamp(j.created_at)),
        finished_at: j.finished_at.map(timestamp),
        message: j.message.clone(),
    }
}

/// A job's audit entry on the wire.
pub fn score_change_to_pb(c: &ScoreChange) -> pb::ScoreChange {
    let map = |m: &std::collections::BTreeMap<String, f64>| m.clone().into_iter().collect();
    pb::ScoreChange {
        submission_id: c.submission_id.clone(),
        platform: c.owner.clone(),
        participant_id: c.participant_id.clone(),
        outcome: c.outcome.clone(),
        old_public: map(&c.old_public),
        old_private: map(&c.old_private),
        new_public: map(&c.new_public),
        new_private: map(&c.new_private),
        at: Some(timestamp(c.at)),
    }
}

/// A rescoring request's metric: UNSPECIFIED keeps the challenge's.
pub fn rescore_metric_from_pb(m: i32) -> Result<Option<Metric>, DomainError> {
    if m == pb::Metric::Unspecified as i32 {
        return Ok(None);
    }
    metric_from_pb(m)
        .map(Some)
        .map_err(|_| DomainError::invalid("metric", "must name a built-in metric"))
}

/// A re-run request's filters, checked.
pub fn rerun_filter_from_pb(
    participant_ids: Vec<String>,
    submission_ids: Vec<String>,
) -> Result<crate::jobs::RerunFilter, DomainError> {
    let participants = participant_ids
        .iter()
        .map(|p| {
            crate::domain::ParticipantId::parse(p)
                .map(|p| p.as_str().to_owned())
                .map_err(|_| {
                    DomainError::invalid(
                        "participant_ids",
                        format!("{p:?} is not a participant id"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let submissions = submission_ids
        .iter()
        .map(|s| {
            crate::domain::SubmissionId::parse(s).map_err(|_| {
                DomainError::invalid("submission_ids", format!("{s:?} is not a submission id"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(crate::jobs::RerunFilter {
        participants,
        submissions,
    })
}

/// A protobuf timestamp as milliseconds since the epoch; INVALID_ARGUMENT naming `field`
/// when it is out of range.
fn millis_from_pb(t: prost_types::Timestamp, field: &str) -> Result<UnixMillis, DomainError> {
    if !(0..1_000_000_000).contains(&t.nanos) || !(0..253_402_300_800).contains(&t.seconds) {
        return Err(DomainError::invalid(
            field,
            "must be a time between 1970 and 9999",
        ));
    }
    Ok(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// A participant's selection on the wire.
pub fn selection_to_pb(s: &crate::submissions::SelectionView) -> pb::SelectSubmissionsResponse {
    pb::SelectSubmissionsResponse {
        challenge_id: s.challenge_id.to_string(),
        participant_id: s.participant_id.to_string(),
        submission_ids: s.submission_ids.iter().map(|i| i.to_string()).collect(),
        final_selections: s.final_selections,
        closes_at: s.closes_at.map(timestamp),
    }
}

/// A released view of a submission on the wire: exactly the view's fields.
pub fn submission_to_pb(v: &SubmissionView) -> pb::Submission {
    pb::Submission {
        id: v.id.to_string(),
        challenge_id: v.challenge_id.to_string(),
        participant_id: v.participant_id.to_string(),
        kind: kind_to_pb(v.kind) as i32,
        state: state_to_pb(v.state) as i32,
        verdict: verdict_to_pb(v.verdict) as i32,
        message: v.message.clone(),
        scores: v.scores.clone().into_iter().collect(),
        public_scores_exact: v.public_scores_exact.clone().into_iter().collect(),
        private_scores_exact: v.private_scores_exact.clone().into_iter().collect(),
        archive_sha256: v.archive_sha256.clone(),
        created_at: Some(timestamp(v.created_at)),
        started_at: v.started_at.map(timestamp),
        finished_at: v.finished_at.map(timestamp),
        usage: v.usage.as_ref().map(|u| usage_to_pb(u, v.limits.as_ref())),
        queue_position: v.queue_position,
        selected: v.selected,
    }
}

/// What a run used, with the limits it is measured against when the view carries them.
fn usage_to_pb(u: &Usage, limits: Option<&ResolvedLimits>) -> pb::RunUsage {
    pb::RunUsage {
        wall_time: prost_types::Duration::try_from(u.wall_time).ok(),
        peak_memory_bytes: u.peak_memory_bytes,
        exit_code: u.exit_code.unwrap_or(0) as i32,
        signal: u.signal.clone().unwrap_or_default(),
        // Zero is "not measured" (a row written before CPU time was recorded).
        cpu_time: (!u.cpu_time.is_zero())
            .then(|| prost_types::Duration::try_from(u.cpu_time).ok())
            .flatten(),
        wall_time_limit: limits.and_then(|l| prost_types::Duration::try_from(l.wall_time.0).ok()),
        memory_limit_bytes: limits.map_or(0, |l| l.memory_bytes.0),
        cpu_millis_limit: limits.map_or(0, |l| l.cpu_millis),
    }
}

fn kind_to_pb(k: SubmissionKind) -> pb::SubmissionKind {
    match k {
        SubmissionKind::Full => pb::SubmissionKind::Full,
        SubmissionKind::Smoke => pb::SubmissionKind::Smoke,
    }
}

fn state_to_pb(s: SubmissionState) -> pb::SubmissionState {
    match s {
        SubmissionState::Queued => pb::SubmissionState::Queued,
        SubmissionState::Running => pb::SubmissionState::Running,
        SubmissionState::Scoring => pb::SubmissionState::Scoring,
        SubmissionState::Succeeded => pb::SubmissionState::Succeeded,
        SubmissionState::Failed => pb::SubmissionState::Failed,
        SubmissionState::Cancelled => pb::SubmissionState::Cancelled,
    }
}

fn verdict_to_pb(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Unspecified => pb::Verdict::Unspecified,
        Verdict::Scored => pb::Verdict::Scored,
        Verdict::TimeLimitExceeded => pb::Verdict::TimeLimitExceeded,
        Verdict::MemoryLimitExceeded => pb::Verdict::MemoryLimitExceeded,
        Verdict::OutputLimitExceeded => pb::Verdict::OutputLimitExceeded,
        Verdict::RuntimeError => pb::Verdict::RuntimeError,
        Verdict::InvalidPredictions => pb::Verdict::InvalidPredictions,
        Verdict::Cancelled => pb::Verdict::Cancelled,
        Verdict::InternalError => pb::Verdict::InternalError,
        Verdict::NotScored => pb::Verdict::NotScored,
    }
}

/// An execution worker on the wire.
pub fn worker_to_pb(w: &crate::audit::WorkerView) -> pb::Worker {
    let i = &w.info;
    pb::Worker {
        id: i.id.clone(),
        host_id: i.host_id.clone(),
        slots: i.slots,
        live: i.live,
        leases: i.leases,
        started_at: Some(timestamp(i.started_at)),
        last_heartbeat: Some(timestamp(i.last_beat)),
        state: i.state.clone(),
        alive: w.alive,
        refused_challenges: i.refused.clone(),
        version: i.version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_digest_must_be_an_engine_image_id() {
        let id = format!("sha256:{}", "ab12".repeat(16));
        assert!(is_image_id(&id));
        for bad in [
            "ab12".repeat(16),
            format!("sha256:{}", "AB12".repeat(16)),
            format!("sha256:{}", "ab12".repeat(15)),
            format!("sha512:{}", "ab12".repeat(16)),
        ] {
            assert!(!is_image_id(&bad), "{bad}");
        }
        let wire = |digest: &str| pb::Challenge {
            id: "c".into(),
            runtime: Some(pb::Runtime {
                image: "img:1".into(),
                image_digest: digest.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = challenge_from_pb(wire(&id)).unwrap();
        assert_eq!(c.runtime.image_digest, id);
        assert_eq!(challenge_to_pb(&c).runtime.unwrap().image_digest, id);
        let unpinned = challenge_from_pb(wire("")).unwrap();
        assert_eq!(unpinned.runtime.image_digest, "");
        let e = challenge_from_pb(wire("latest")).unwrap_err();
        assert!(e.to_string().contains("runtime.image_digest"), "{e}");
    }

    #[test]
    fn every_metric_round_trips_through_the_wire_enum() {
        for m in Metric::ALL {
            assert_eq!(metric_from_pb(metric_to_pb(m) as i32).unwrap(), m);
        }
        assert!(metric_from_pb(pb::Metric::Unspecified as i32).is_err());
    }
}
