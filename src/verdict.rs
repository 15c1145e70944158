//! The one classifier that turns a run's evidence into a verdict and a participant-safe
//! message.
//!
//! Messages are built from the verdict and the run's limits only, never from what the run
//! printed or wrote, so they can be shown for FULL runs without leaking private data.
//! Order matters and follows the strength of the evidence: a cancel or our own timer explains
//! a kill better than its exit code does.

use crate::domain::Verdict;
use crate::sandbox::{RunLimits, RunOutcome};
use crate::units::{format_bytes, format_duration};

/// Exit code of a process killed by SIGXFSZ (128 + 25).
const SIGXFSZ_EXIT: i64 = 128 + 25;

/// A verdict with the message a participant may see.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The verdict.
    pub verdict: Verdict,
    /// Participant-safe explanation.
    pub message: String,
    /// Name of the fatal signal, when the exit code says one killed the process.
    pub signal: Option<String>,
}

/// Classifies a finished run. `None` means the code exited cleanly and its predictions
/// should be scored.
pub fn classify(outcome: &RunOutcome, limits: &RunLimits) -> Option<Classified> {
    let signal = outcome.exit_code.and_then(signal_of_exit_code);
    let c = |verdict, message: String| {
        Some(Classified {
            verdict,
            message,
            signal: signal.clone(),
        })
    };
    if outcome.cancelled {
        return c(
            Verdict::Cancelled,
            limit_message(Verdict::Cancelled, limits),
        );
    }
    if outcome.timed_out && (outcome.memory_at_limit_on_timeout || outcome.oom_killed) {
        // Held at its memory limit until the timer fired (gVisor reclaims instead of
        // killing), or a process of it was OOM-killed and the rest waited: the memory
        // limit, not the clock, is what stopped it.
        return c(
            Verdict::MemoryLimitExceeded,
            limit_message(Verdict::MemoryLimitExceeded, limits),
        );
    }
    if outcome.timed_out {
        return c(
            Verdict::TimeLimitExceeded,
            limit_message(Verdict::TimeLimitExceeded, limits),
        );
    }
    if outcome.oom_killed {
        return c(
            Verdict::MemoryLimitExceeded,
            limit_message(Verdict::MemoryLimitExceeded, limits),
        );
    }
    if outcome.output_exceeded {
        return c(
            Verdict::OutputLimitExceeded,
            format!(
                "the run wrote more than its output limit of {} under /output",
                format_bytes(limits.output_bytes)
            ),
        );
    }
    if outcome.log_exceeded {
        return c(
            Verdict::OutputLimitExceeded,
            format!(
                "the run printed more than its log limit of {}",
                format_bytes(limits.log_bytes)
            ),
        );
    }
    match outcome.exit_code {
        Some(0) => None,
        // Killed by SIGXFSZ: a file reached the output limit (the fsize ulimit).
        Some(SIGXFSZ_EXIT) => c(
            Verdict::OutputLimitExceeded,
            format!(
                "the run wrote a file larger than its output limit of {} (killed by SIGXFSZ)",
                format_bytes(limits.output_bytes)
            ),
        ),
        Some(code) => {
            let message = match &signal {
                Some(name) => format!("the run was killed by signal {name} (exit code {code})"),
                None => format!("the run exited with code {code}"),
            };
            c(Verdict::RuntimeError, message)
        }
        None => c(
            Verdict::InternalError,
            "the run ended without an exit code; this is the service's fault".into(),
        ),
    }
}

/// The name of the signal behind a shell-style exit code (128 + n), if it is one.
pub fn signal_of_exit_code(code: i64) -> Option<String> {
    let name = match code - 128 {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    };
    Some(name.to_owned())
}

/// The message a participant sees. SMOKE runs get the full explanation; FULL runs only what
/// the verdict and the limits say, because anything else (an exit code, a line number of
/// predictions.csv, an id) is chosen by code that saw private data and could encode it.
pub fn participant_message(
    verdict: Verdict,
    detailed: &str,
    kind: crate::domain::SubmissionKind,
    limits: &RunLimits,
) -> String {
    if kind == crate::domain::SubmissionKind::Smoke {
        return detailed.to_owned();
    }
    limit_message(verdict, limits)
}

/// What a verdict means, in words built from the limits alone: safe for any run.
fn limit_message(verdict: Verdict, limits: &RunLimits) -> String {
    match verdict {
        Verdict::Scored => "scored".into(),
        Verdict::TimeLimitExceeded => format!(
            "the run took longer than its wall-time limit of {}",
            format_duration(limits.wall_time)
        ),
        Verdict::MemoryLimitExceeded => format!(
            "the run used more than its memory limit of {}",
            format_bytes(limits.memory_bytes)
        ),
        Verdict::OutputLimitExceeded => format!(
            "the run went over its output limits ({} under /output, {} of logs)",
            format_bytes(limits.output_bytes),
            format_bytes(limits.log_bytes)
        ),
        Verdict::RuntimeError => {
            "the run failed with a non-zero exit code or a fatal signal; a SMOKE submission shows the details".into()
        }
        Verdict::InvalidPredictions => {
            "predictions.csv is missing or invalid; a SMOKE submission shows the exact problem".into()
        }
        Verdict::Cancelled => crate::domain::CANCELLED_MESSAGE.into(),
        Verdict::InternalError => crate::domain::INTERNAL_ERROR_MESSAGE.into(),
        Verdict::NotScored => crate::domain::NOT_SCORED_MESSAGE.into(),
        Verdict::Unspecified => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> RunLimits {
        RunLimits {
            wall_time: Duration::from_secs(60),
            memory_bytes: 512 << 20,
            cpu_millis: 1000,
            pids: 64,
            output_bytes: 16 << 20,
            scratch_bytes: 64 << 20,
            gpus: 0,
            log_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_clean_exit_goes_on_to_scoring() {
        let o = RunOutcome {
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(classify(&o, &limits()), None);
    }

    #[test]
    fn an_oom_kill_names_the_memory_limit() {
        let o = RunOutcome {
            exit_code: Some(137),
            oom_killed: true,
            ..Default::default()
        };
        let c = classify(&o, &limits()).unwrap();
        assert_eq!(c.verdict, Verdict::MemoryLimitExceeded);
        assert_eq!(
            c.message,
            "the run used more than its memory limit of 512 MiB"
        );
    }

    #[test]
    fn our_timer_explains_a_kill_better_than_the_exit_code() {
        let o = RunOutcome {
            exit_code: Some(137),
            timed_out: true,
            ..Default::default()
        };
        assert_eq!(
            classify(&o, &limits()).unwrap().verdict,
            Verdict::TimeLimitExceeded
        );
    }

    #[test]
    fn a_signal_is_named() {
        let o = RunOutcome {
            exit_code: Some(139),
            ..Default::default()
        };
        let c = classify(&o, &limits()).unwrap();
        assert_eq!(c.verdict, Verdict::RuntimeError);
        assert_eq!(c.signal.as_deref(), Some("SIGSEGV"));
        assert!(c.message.contains("SIGSEGV"));
    }

    #[test]
    fn a_file_size_signal_is_an_output_limit() {
        let o = RunOutcome {
            exit_code: Some(153),
            ..Default::default()
        };
        let c = classify(&o, &limits()).unwrap();
        assert_eq!(c.verdict, Verdict::OutputLimitExceeded);
        assert!(c.message.contains("SIGXFSZ"), "{}", c.message);
    }

    #[test]
    fn a_timeout_with_memory_at_its_limit_is_a_memory_limit() {
        let mut o = RunOutcome {
            exit_code: Some(137),
            timed_out: true,
            memory_at_limit_on_timeout: true,
            ..Default::default()
        };
        assert_eq!(
            classify(&o, &limits()).unwrap().verdict,
            Verdict::MemoryLimitExceeded
        );
        o.memory_at_limit_on_timeout = false;
        assert_eq!(
            classify(&o, &limits()).unwrap().verdict,
            Verdict::TimeLimitExceeded
        );
        // A process of the run OOM-killed before the timer fired: the memory limit too.
        o.oom_killed = true;
        assert_eq!(
            classify(&o, &limits()).unwrap().verdict,
            Verdict::MemoryLimitExceeded
        );
    }

    #[test]
    fn a_flood_of_logs_is_an_output_limit() {
        let o = RunOutcome {
            exit_code: Some(137),
            log_exceeded: true,
            ..Default::default()
        };
        let c = classify(&o, &limits()).unwrap();
        assert_eq!(c.verdict, Verdict::OutputLimitExceeded);
        assert!(c.message.contains("1 MiB"));
    }
}
