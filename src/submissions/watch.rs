//! WatchSubmission: the caller's current view, then each change the store publishes,
//! ending after a terminal state the caller may see.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Submissions;
use crate::auth::Caller;
use crate::domain::{DomainError, SubmissionId, SubmissionState};
use crate::release::SubmissionView;

impl Submissions {
    /// Streams the caller's view of a submission: now, then after every committed change
    /// (as snapshots, so a quick RUNNING → SCORING → SUCCEEDED is three updates, never
    /// coalesced), until a terminal view. The feeding task ends when the client goes away,
    /// the view is terminal, or `shutdown` fires.
    pub async fn watch(
        &self,
        caller: &Caller,
        id: &SubmissionId,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Result<SubmissionView, DomainError>>, DomainError> {
        // Subscribe before reading, so no change between the read and the first event is
        // missed.
        let mut changes = self.store.subscribe();
        let mut current = self.load_visible(caller, id).await?;
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        let caller = caller.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut last: Option<SubmissionView> = None;
            let mut dirty = true;
            loop {
                if dirty {
                    let v = match this.view(&caller, &current).await {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let terminal = v.is_terminal();
                    if last.as_ref() != Some(&v) {
                        if tx.send(Ok(v.clone())).await.is_err() {
                            return;
                        }
                        last = Some(v);
                    }
                    if terminal {
                        return;
                    }
                    dirty = false;
                }
                // A held terminal state (constant-time release) ends on a timer, not an
                // event; a queued one's position moves with everyone else's changes.
                let held = current.state.is_terminal();
                let queued = current.state == SubmissionState::Queued;
                let tick = std::time::Duration::from_millis(if held { 100 } else { 5_000 });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(tick) => dirty = true,
                    change = changes.recv() => match change {
                        Ok(snapshot) if snapshot.id == id => {
                            current = (*snapshot).clone();
                            dirty = true;
                            continue;
                        }
                        Ok(_) if !queued => continue,
                        Ok(_) => dirty = true,
                        Err(RecvError::Lagged(_)) => dirty = true,
                        Err(RecvError::Closed) => return,
                    },
                }
                // A timer tick, a lag or a queue move: read the latest committed state.
                match this.load_visible(&caller, &id).await {
                    Ok(s) => current = s,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}
