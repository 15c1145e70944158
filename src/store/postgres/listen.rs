//! This process's change feed from `NOTIFY`: one connection of its own `LISTEN`s, and each
//! notification (a committed change of a submission, made by any process) is published to
//! the feed as the row it carries, or, when the row did not fit, as the row read back.
//!
//! The connection is re-made after a failure, one second later. A change announced while
//! it was down is not replayed; every reader of the feed also re-reads on a timer (the
//! scheduler every two seconds, a watch every five), so a lost notification delays, never
//! loses, an update.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::domain::Submission;
use crate::store::codec::{RawSubmission, SUBMISSION_COLUMNS};

/// The notification channel the trigger of the schema speaks on.
const CHANNEL: &str = "holdout_submissions";

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// Listens until aborted (the store's handle owns this task).
pub(super) async fn run(
    config: tokio_postgres::Config,
    pool: Pool,
    feed: broadcast::Sender<Arc<Submission>>,
    listening: tokio::sync::watch::Sender<bool>,
) {
    loop {
        let ended = listen_once(&config, &pool, &feed, &listening).await;
        listening.send_replace(false);
        match ended {
            Ok(()) => tracing::warn!("change notifications ended, listening again"),
            Err(e) => {
                tracing::warn!(error = %e, "change notifications failed, listening again in 1s")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    pool: &Pool,
    feed: &broadcast::Sender<Arc<Submission>>,
    listening: &tokio::sync::watch::Sender<bool>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    listening.send_replace(true);
    while let Some(payload) = notes.recv().await {
        if let Some(s) = decode(&payload, pool).await {
            // No subscriber is not an error: nobody is watching.
            let _ = feed.send(Arc::new(s));
        }
    }
    drop(client);
    match driver.await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// The submission a notification announces.
async fn decode(payload: &str, pool: &Pool) -> Option<Submission> {
    if let Ok(raw) = serde_json::from_str::<RawSubmission>(payload) {
        return match raw.decode() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "skipping a change notification that cannot be read");
                None
            }
        };
    }
    let id = serde_json::from_str::<IdOnly>(payload).ok()?.id;
    let client = pool.get().await.ok()?;
    let row = client
        .query_opt(
            &format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = $1"),
            &[&id],
        )
        .await
        .ok()??;
    super::one(Some(row)).ok()?
}
