//! How the CLI prints API messages: short readable lines, or JSON with `--json`.

use serde_json::{Value, json};

use crate::pb;

/// Prints in the chosen format.
pub struct Printer {
    /// JSON instead of text.
    pub json: bool,
}

/// The short name of a state.
pub fn state_name(s: i32) -> &'static str {
    pb::SubmissionState::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("SUBMISSION_STATE_")
}

/// The short name of a verdict.
pub fn verdict_name(v: i32) -> &'static str {
    pb::Verdict::try_from(v)
        .map(|v| v.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("VERDICT_")
}

fn kind_name(k: i32) -> &'static str {
    pb::SubmissionKind::try_from(k)
        .map(|k| k.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("SUBMISSION_KIND_")
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)
            .map(|d| Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

fn scores_text(scores: &std::collections::HashMap<String, f64>) -> String {
    let mut v: Vec<_> = scores.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.iter()
        .map(|(k, s)| format!("{k}={s}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A submission as JSON.
pub fn submission_json(s: &pb::Submission) -> Value {
    json!({
        "id": s.id,
        "challenge_id": s.challenge_id,
        "participant_id": s.participant_id,
        "kind": kind_name(s.kind),
        "state": state_name(s.state),
        "verdict": verdict_name(s.verdict),
        "message": s.message,
        "scores": s.scores,
        "public_scores_exact": s.public_scores_exact,
        "private_scores_exact": s.private_scores_exact,
        "archive_sha256": s.archive_sha256,
        "created_at": ts(&s.created_at),
        "started_at": ts(&s.started_at),
        "finished_at": ts(&s.finished_at),
        "usage": s.usage.as_ref().map(|u| json!({
            "wall_time_seconds": u.wall_time.as_ref().map(seconds),
            "cpu_time_seconds": u.cpu_time.as_ref().map(seconds),
            "peak_memory_bytes": u.peak_memory_bytes,
            "exit_code": u.exit_code,
            "signal": u.signal,
            "wall_time_limit_seconds": u.wall_time_limit.as_ref().map(seconds),
            "memory_limit_bytes": u.memory_limit_bytes,
            "cpu_millis_limit": u.cpu_millis_limit,
        })),
        "queue_position": s.queue_position,
        "selected": s.selected,
    })
}

/// Milliseconds of a protobuf timestamp.
fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// A span as its two largest units: "2 d 3 h", "3 h 5 min", "5 min 3 s", "12 s".
pub fn span_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {sec} s")
    } else {
        format!("{sec} s")
    }
}

/// A challenge's schedule as lines: when it opens and closes, and what is left, at `now`.
pub fn schedule_lines(c: &pb::Challenge, now: i64) -> Vec<String> {
    let closed = c.state == pb::ChallengeState::Closed as i32;
    let at = |t: &prost_types::Timestamp| crate::domain::rfc3339(millis(t));
    let mut lines = Vec::new();
    if let Some(o) = &c.opens_at {
        let left = millis(o) - now;
        let note = if left > 0 {
            format!("opens in {}", span_text(left))
        } else {
            "open since then".to_owned()
        };
        lines.push(format!("opens       {}  ({note})", at(o)));
    }
    match (&c.closes_at, &c.closed_at) {
        (_, Some(done)) if closed => lines.push(format!("closed      {}", at(done))),
        (Some(t), _) => {
            let left = millis(t) - now;
            let note = if left > 0 {
                format!("closes in {}", span_text(left))
            } else {
                "deadline passed".to_owned()
            };
            lines.push(format!("closes      {}  ({note})", at(t)));
        }
        _ => {}
    }
    lines
}

fn seconds(d: &prost_types::Duration) -> f64 {
    d.seconds as f64 + d.nanos as f64 / 1e9
}

/// A measured time: "1.2s", "85ms".
fn measured(d: &prost_types::Duration) -> String {
    let s = seconds(d);
    if s < 0.1 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.1}s")
    }
}

/// A measured size in its largest unit: "110.8 MiB", "1 GiB".
fn measured_bytes(bytes: u64) -> String {
    for (name, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {name}", bytes / size)
            } else {
                format!("{:.1} {name}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A CPU limit in cores: "1 core", "0.5 core", "2 cores".
fn cores(cpu_millis: u32) -> String {
    let n = f64::from(cpu_millis) / 1000.0;
    let unit = if n > 1.0 { "cores" } else { "core" };
    if cpu_millis.is_multiple_of(1000) {
        format!("{} {unit}", cpu_millis / 1000)
    } else {
        format!("{n} {unit}")
    }
}

/// What a run used against its limits, in one line:
/// `wall 1.2s of 60s, cpu 0.9s (1 core), peak memory 210 MiB of 1 GiB, exit 0`.
pub fn usage_text(u: &pb::RunUsage) -> String {
    use crate::units::{format_bytes, format_duration};
    let of = |limit: Option<String>| limit.map(|l| format!(" of {l}")).unwrap_or_default();
    let wall = u.wall_time.as_ref().map_or("?".into(), measured);
    let wall_limit = u
        .wall_time_limit
        .as_ref()
        .and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(format_duration);
    let cpu = u.cpu_time.as_ref().map_or("unknown".into(), measured);
    let cpu_limit = if u.cpu_millis_limit > 0 {
        format!(" ({})", cores(u.cpu_millis_limit))
    } else {
        String::new()
    };
    let memory = if u.peak_memory_bytes > 0 {
        measured_bytes(u.peak_memory_bytes)
    } else {
        "unknown".into()
    };
    let memory_limit = (u.memory_limit_bytes > 0).then(|| format_bytes(u.memory_limit_bytes));
    let signal = if u.signal.is_empty() {
        String::new()
    } else {
        format!(" ({})", u.signal)
    };
    format!(
        "wall {wall}{}, cpu {cpu}{cpu_limit}, peak memory {memory}{}, exit {}{signal}",
        of(wall_limit),
        of(memory_limit),
        u.exit_code
    )
}

fn leakage_json(l: &pb::LeakageEstimate) -> Value {
    json!({
        "bits_per_submission": l.bits_per_submission,
        "score_values": l.score_values,
        "failure_values": l.failure_values,
        "time_values": l.time_values,
    })
}

fn leakage_text(l: &pb::LeakageEstimate) -> String {
    format!(
        "at most {:.1} bits per FULL submission: ({} scores + {} failures) x {} release moments",
        l.bits_per_submission, l.score_values, l.failure_values, l.time_values
    )
}

/// A challenge as JSON (through the domain's serde shape, as in challenge files).
pub fn challenge_json(c: &pb::Challenge) -> Value {
    match crate::api::challenge_from_pb(c.clone()) {
        Ok(mut d) => {
            d.state = if c.state == pb::ChallengeState::Closed as i32 {
                crate::domain::ChallengeState::Closed
            } else {
                crate::domain::ChallengeState::Open
            };
            let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
            v["created_at"] = ts(&c.created_at);
            v["closed_at"] = ts(&c.closed_at);
            if let Some(l) = &c.leakage {
                v["leakage"] = leakage_json(l);
            }
            if let Some(check) = c.preparation.as_ref().and_then(|p| p.check.as_ref()) {
                v["preparation_check"] = preparation_check_json(check);
            }
            v
        }
        Err(_) => json!({ "id": c.id, "title": c.title }),
    }
}

/// What the server's preparation check found (admins).
fn preparation_check_json(c: &pb::PreparationCheck) -> Value {
    json!({
        "errors": c.errors,
        "warnings": c.warnings,
        "infos": c.infos,
        "data_digest": c.data_digest,
        "findings": c.findings.iter().map(|f| json!({
            "code": f.code, "severity": f.severity, "file": f.file, "column": f.column,
            "count": f.count, "message": f.message,
        })).collect::<Vec<_>>(),
    })
}

/// One finding as `holdout challenge check` prints it.
fn finding_line(f: &pb::PreparationFinding) -> String {
    let mut s = format!("{} {}", f.severity, f.code);
    if !f.file.is_empty() {
        s.push(' ');
        s.push_str(&f.file);
    }
    if !f.column.is_empty() {
        s.push_str(&format!(" [{}]", f.column));
    }
    format!("{s}: {}", f.message)
}

impl Printer {
    fn print_json(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    /// One submission.
    pub fn submission(&self, s: &pb::Submission) {
        if self.json {
            return self.print_json(&submission_json(s));
        }
        println!("submission  {}", s.id);
        println!(
            "challenge   {}  participant {}  kind {}",
            s.challenge_id,
            s.participant_id,
            kind_name(s.kind)
        );
        let mut state = state_name(s.state).to_owned();
        if s.queue_position > 0 {
            state.push_str(&format!(" (position {})", s.queue_position));
        }
        println!("state       {state}");
        if s.verdict != 0 {
            println!("verdict     {}", verdict_name(s.verdict));
        }
        if !s.message.is_empty() {
            println!("message     {}", s.message);
        }
        if !s.scores.is_empty() {
            println!("scores      {}", scores_text(&s.scores));
        }
        if !s.public_scores_exact.is_empty() {
            println!("public      {}", scores_text(&s.public_scores_exact));
        }
        if !s.private_scores_exact.is_empty() {
            println!("private     {}", scores_text(&s.private_scores_exact));
        }
        if let Some(u) = &s.usage {
            println!("usage       {}", usage_text(u));
        }
        if s.selected {
            println!("selected    for the final ranking");
        }
    }

    /// Many submissions.
    pub fn submissions(&self, list: &[pb::Submission]) {
        if self.json {
            return self.print_json(&Value::Array(list.iter().map(submission_json).collect()));
        }
        for s in list {
            println!(
                "{}  {:<12} {:<10} {:<24} {:<22} {}",
                s.id,
                s.participant_id,
                state_name(s.state),
                verdict_name(s.verdict),
                kind_name(s.kind),
                scores_text(&s.scores) + if s.selected { "  [selected]" } else { "" }
            );
        }
    }

    /// A participant's final selection.
    pub fn selection(&self, r: &pb::SelectSubmissionsResponse) {
        if self.json {
            return self.print_json(&json!({
                "challenge_id": r.challenge_id,
                "participant_id": r.participant_id,
                "submission_ids": r.submission_ids,
                "final_selections": r.final_selections,
                "closes_at": ts(&r.closes_at),
            }));
        }
        println!(
            "challenge   {}  participant {}",
            r.challenge_id, r.participant_id
        );
        if r.submission_ids.is_empty() {
            println!(
                "selected    none: the {} best by public score count for the final ranking",
                r.final_selections
            );
        } else {
            println!(
                "selected    {} of at most {}",
                r.submission_ids.len(),
                r.final_selections
            );
            for id in &r.submission_ids {
                println!("            {id}");
            }
        }
        if let Some(t) = &r.closes_at {
            let left = millis(t) - crate::domain::now_millis();
            if left > 0 {
                println!(
                    "until       {}  (closes in {})",
                    crate::domain::rfc3339(millis(t)),
                    span_text(left)
                );
            }
        }
    }

    /// A live line per update.
    pub fn watch_line(&self, s: &pb::Submission) {
        if self.json {
            println!("{}", submission_json(s));
            return;
        }
        let now = chrono::Utc::now().format("%H:%M:%S");
        let mut line = format!("{now}  {}  {}", s.id, state_name(s.state));
        if s.queue_position > 0 {
            line.push_str(&format!(" (position {})", s.queue_position));
        }
        if s.verdict != 0 {
            line.push_str(&format!("  {}", verdict_name(s.verdict)));
        }
        if !s.scores.is_empty() {
            line.push_str(&format!("  {}", scores_text(&s.scores)));
        }
        if !s.message.is_empty() && s.verdict != pb::Verdict::Scored as i32 {
            line.push_str(&format!("  ({})", s.message));
        }
        println!("{line}");
    }

    /// One challenge.
    pub fn challenge(&self, c: &pb::Challenge) {
        let v = challenge_json(c);
        if self.json {
            return self.print_json(&v);
        }
        let state = pb::ChallengeState::try_from(c.state)
            .map(|s| s.as_str_name())
            .unwrap_or("?");
        println!(
            "challenge   {}  ({})",
            c.id,
            state.trim_start_matches("CHALLENGE_STATE_")
        );
        for line in schedule_lines(c, crate::domain::now_millis()) {
            println!("{line}");
        }
        if !c.title.is_empty() {
            println!("title       {}", c.title);
        }
        if let Some(r) = &c.runtime {
            println!("runtime     {} {}", r.image, r.command.join(" "));
        }
        println!("data_dir    {}", c.data_dir);
        if let Some(s) = v.get("scoring") {
            println!("scoring     {s}");
        }
        if let Some(l) = v.get("limits") {
            println!("limits      {l}");
        }
        if let Some(r) = v.get("release") {
            println!("release     {r}");
        }
        if let Some(q) = v.get("quota") {
            println!("quota       {q}");
        }
        if let Some(l) = &c.leakage {
            println!("leakage     {}", leakage_text(l));
        }
        if let Some(p) = v.get("preparation") {
            println!("preparation {p}");
        }
        if let Some(check) = c.preparation.as_ref().and_then(|p| p.check.as_ref()) {
            println!(
                "check       {} errors, {} warnings, {} notes",
                check.errors, check.warnings, check.infos
            );
            for f in &check.findings {
                println!("  {}", finding_line(f));
            }
        }
    }

    /// A challenge's data card: the Markdown, or with `--json` the card's JSON document.
    pub fn card(&self, card: &pb::ChallengeCard) {
        if self.json {
            print!("{}", card.json);
            if !card.json.ends_with('\n') {
                println!();
            }
        } else {
            print!("{}", card.markdown);
            if !card.markdown.ends_with('\n') {
                println!();
            }
        }
    }

    /// A challenge's leakage ledger.
    pub fn leakage(&self, l: &pb::Leakage) {
        if self.json {
            return self.print_json(&json!({
                "challenge_id": l.challenge_id,
                "estimate": l.estimate.as_ref().map(leakage_json),
                "total_bits": l.total_bits,
                "participants": l.participants.iter().map(|p| json!({
                    "platform": p.platform, "participant_id": p.participant_id,
                    "results": p.results, "bits": p.bits,
                })).collect::<Vec<_>>(),
            }));
        }
        println!("leakage ledger of {}", l.challenge_id);
        if let Some(e) = &l.estimate {
            println!("  policy now: {}", leakage_text(e));
        }
        for p in &l.participants {
            println!(
                "  {:<16} {:<24} {:>5} results  {:>9.1} bits",
                p.platform, p.participant_id, p.results, p.bits
            );
        }
        println!("  total: {:.1} bits", l.total_bits);
    }

    /// The execution workers.
    pub fn workers(&self, list: &[pb::Worker]) {
        let ts = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds).unwrap_or(0);
        if self.json {
            return self.print_json(&Value::Array(
                list.iter()
                    .map(|w| {
                        json!({
                            "id": w.id, "host_id": w.host_id, "slots": w.slots, "live": w.live,
                            "leases": w.leases, "state": w.state, "alive": w.alive,
                            "started_at": ts(&w.started_at), "last_heartbeat": ts(&w.last_heartbeat),
                            "refused_challenges": w.refused_challenges, "version": w.version,
                        })
                    })
                    .collect(),
            ));
        }
        if list.is_empty() {
            println!("no execution workers (a single server runs its submissions itself)");
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for w in list {
            println!(
                "{:<28} {:<5} {:<9} host {:<14} runs {}/{}  leases {}  last beat {}s ago{}",
                w.id,
                if w.alive { "alive" } else { "dead" },
                w.state,
                w.host_id.chars().take(14).collect::<String>(),
                w.live,
                w.slots,
                w.leases,
                (now - ts(&w.last_heartbeat)).max(0),
                if w.refused_challenges.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  refuses {} (data differs)",
                        w.refused_challenges.join(", ")
                    )
                }
            );
        }
    }

    /// Many challenges.
    pub fn challenges(&self, list: &[pb::Challenge]) {
        if self.json {
            return self.print_json(&Value::Array(list.iter().map(challenge_json).collect()));
        }
        for c in list {
            let state = pb::ChallengeState::try_from(c.state)
                .map(|s| s.as_str_name())
                .unwrap_or("?");
            println!(
                "{:<24} {:<8} {}",
                c.id,
                state.trim_start_matches("CHALLENGE_STATE_"),
                c.title
            );
        }
    }

    /// Logs: stdout then stderr.
    pub fn logs(&self, l: &pb::SubmissionLogs) {
        if self.json {
            return self.print_json(&json!({
                "stdout": String::from_utf8_lossy(&l.stdout),
                "stderr": String::from_utf8_lossy(&l.stderr),
                "truncated": l.truncated,
            }));
        }
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(&l.stdout);
        let _ = std::io::stderr().write_all(&l.stderr);
        if l.truncated {
            eprintln!("[output truncated at the challenge's log limit]");
        }
    }

    /// A leaderboard.
    pub fn leaderboard(&self, b: &pb::Leaderboard) {
        if self.json {
            return self.print_json(&json!({
                "challenge_id": b.challenge_id,
                "view": pb::LeaderboardView::try_from(b.view).map(|v| v.as_str_name()).unwrap_or("?").trim_start_matches("LEADERBOARD_VIEW_"),
                "metric": b.metric,
                "greater_is_better": b.greater_is_better,
                "entries": b.entries.iter().map(|e| json!({
                    "rank": e.rank, "participant_id": e.participant_id, "platform": e.platform, "score": e.score,
                    "submission_id": e.submission_id, "submissions": e.submissions,
                })).collect::<Vec<_>>(),
            }));
        }
        let view = pb::LeaderboardView::try_from(b.view)
            .map(|v| v.as_str_name())
            .unwrap_or("?");
        println!(
            "{} leaderboard of {} ({}, {} is better)",
            view.trim_start_matches("LEADERBOARD_VIEW_").to_lowercase(),
            b.challenge_id,
            b.metric,
            if b.greater_is_better {
                "higher"
            } else {
                "lower"
            }
        );
        if b.entries.is_empty() {
            println!("  (no scored submissions yet)");
        }
        for e in &b.entries {
            println!(
                "  {:>3}. {:<24} {:<16} {:<12} {}  ({} submissions)",
                e.rank, e.participant_id, e.platform, e.score, e.submission_id, e.submissions
            );
        }
    }

    /// Release audit rows.
    pub fn releases(&self, list: &[pb::Release]) {
        let rows: Vec<Value> = list
            .iter()
            .map(|r| {
                json!({
                    "at": ts(&r.at), "token_name": r.token_name, "challenge_id": r.challenge_id,
                    "submission_id": r.submission_id, "what": r.what, "values": r.values,
                })
            })
            .collect();
        if self.json {
            return self.print_json(&Value::Array(rows));
        }
        for (r, row) in list.iter().zip(&rows) {
            println!(
                "{}  {:<16} {:<16} {:<20} {:<22} {}",
                row["at"].as_str().unwrap_or("-"),
                r.token_name,
                r.challenge_id,
                r.what,
                r.submission_id,
                scores_text(&r.values)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(ms: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration {
            seconds: ms / 1000,
            nanos: (ms % 1000) as i32 * 1_000_000,
        })
    }

    #[test]
    fn usage_is_printed_against_its_limits() {
        let u = pb::RunUsage {
            wall_time: duration(1_234),
            peak_memory_bytes: 210 << 20,
            exit_code: 0,
            signal: String::new(),
            cpu_time: duration(912),
            wall_time_limit: duration(60_000),
            memory_limit_bytes: 1 << 30,
            cpu_millis_limit: 1000,
        };
        assert_eq!(
            usage_text(&u),
            "wall 1.2s of 60s, cpu 0.9s (1 core), peak memory 210 MiB of 1 GiB, exit 0"
        );
    }

    #[test]
    fn usage_without_limits_or_measures_says_so() {
        let u = pb::RunUsage {
            wall_time: duration(40),
            exit_code: 137,
            signal: "SIGKILL".into(),
            cpu_millis_limit: 2500,
            ..Default::default()
        };
        assert_eq!(
            usage_text(&u),
            "wall 40ms, cpu unknown (2.5 cores), peak memory unknown, exit 137 (SIGKILL)"
        );
        assert_eq!(cores(500), "0.5 core");
        assert_eq!(measured_bytes(113_416 << 10), "110.8 MiB");
        assert_eq!(measured_bytes(1 << 30), "1 GiB");
        assert_eq!(measured_bytes(512), "512 bytes");
        assert_eq!(cores(2000), "2 cores");
    }

    #[test]
    fn what_is_left_of_a_schedule_is_shown_in_its_two_largest_units() {
        assert_eq!(span_text(((2 * 24 + 3) * 3600 + 59) * 1000), "2 d 3 h");
        assert_eq!(span_text((3 * 3600 + 5 * 60) * 1000), "3 h 5 min");
        assert_eq!(span_text(303_000), "5 min 3 s");
        assert_eq!(span_text(12_400), "12 s");
        let at = |s: &str| prost_types::Timestamp {
            seconds: crate::domain::parse_rfc3339(s).unwrap() / 1000,
            nanos: 0,
        };
        let now = crate::domain::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        let c = pb::Challenge {
            state: pb::ChallengeState::Open as i32,
            opens_at: Some(at("2026-11-30T00:00:00Z")),
            closes_at: Some(at("2026-12-03T03:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            schedule_lines(&c, now),
            vec![
                "opens       2026-11-30T00:00:00Z  (open since then)".to_owned(),
                "closes      2026-12-03T03:00:00Z  (closes in 2 d 3 h)".to_owned(),
            ]
        );
        let closed = pb::Challenge {
            state: pb::ChallengeState::Closed as i32,
            closed_at: Some(at("2026-12-03T03:00:00Z")),
            ..c
        };
        assert_eq!(
            schedule_lines(&closed, now)[1],
            "closed      2026-12-03T03:00:00Z"
        );
    }
}
