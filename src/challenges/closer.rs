//! The closer: the task that closes each challenge at its `closes_at`.
//!
//! It sleeps until the next deadline of an open challenge, closes what is due, and sleeps
//! again. A create or update on this process wakes it at once (the new deadline may be
//! sooner); a change made on another replica is seen at the latest after [`RECHECK`], and
//! that replica's own closer handles it on time anyway. Closing is a compare-and-set in the
//! store, so replicas racing for one deadline close it once and the rest change nothing;
//! and since admission checks the time itself, a submission is refused from the deadline on
//! even before any closer has run. It owns no state besides its timer: cancelled through
//! its token, it just returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Challenges;
use crate::domain::{error_chain, now_millis};

/// The longest the closer sleeps without looking at the store again.
pub const RECHECK: Duration = Duration::from_secs(30);

/// After a failed pass (the store unreachable), the wait before the next.
const RETRY: Duration = Duration::from_secs(2);

/// The closer of one process.
pub struct Closer {
    challenges: Challenges,
    wake: Arc<Notify>,
}

impl Closer {
    /// The closer of `challenges`, woken by its schedule changes.
    pub fn new(challenges: Challenges) -> Self {
        let wake = challenges.schedule_changes();
        Self { challenges, wake }
    }

    /// Closes what is due until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = now_millis();
            let sleep = match self.challenges.close_due(now).await {
                Ok(Some(next)) => Duration::from_millis((next - now).max(0) as u64).min(RECHECK),
                Ok(None) => RECHECK,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "closing challenges at their deadline failed");
                    RETRY
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}
