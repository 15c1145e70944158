//! How a finished container's evidence becomes the end of a run, purely: what the run used
//! ([`usage`]) and, when the classifier says the code failed, the transition that records it
//! ([`failed_run`]). Shared by the server's state machine (`super::Runner`) and by local
//! test runs (`super::local`), so both give a run the same verdict, message and charge.

use crate::domain::IllegalTransition;
use crate::domain::{Quota, Submission, Transition, UnixMillis, Usage, Verdict};
use crate::sandbox::{RunLimits, RunOutcome};
use crate::verdict::{self, Classified};

/// What a run used, from the sandbox's evidence.
pub(crate) fn usage(outcome: &RunOutcome) -> Usage {
    Usage {
        wall_time: outcome.wall_time,
        peak_memory_bytes: outcome.peak_memory_bytes.unwrap_or(0),
        exit_code: outcome.exit_code,
        signal: outcome.exit_code.and_then(verdict::signal_of_exit_code),
        cpu_time: outcome.cpu_time.unwrap_or_default(),
    }
}

/// The transition of a running submission whose run the classifier did not send on to
/// scoring: CANCELLED, INTERNAL_ERROR (uncharged), or the verdict with the message its kind
/// of run may show (SMOKE the detail, FULL only the limits).
pub(crate) fn failed_run(
    s: &Submission,
    c: Classified,
    usage: Usage,
    limits: &RunLimits,
    quota: &Quota,
    now: UnixMillis,
) -> Result<Transition, IllegalTransition> {
    match c.verdict {
        Verdict::Cancelled => s.cancel(Some(usage), quota, now),
        Verdict::InternalError => s.fail_internal(c.message, now),
        v => s.fail(
            v,
            verdict::participant_message(v, &c.message, s.kind, limits),
            c.message,
            Some(usage),
            quota,
            now,
        ),
    }
}
