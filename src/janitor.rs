//! Retention and disk accounting: deletes the archives, logs and kept predictions of
//! submissions that ended
//! longer ago than the configured retention (their rows, with the archive's hash, stay for
//! admins), and measures what the service keeps on disk, by area, for Prometheus.
//!
//! Owned by the application and stopped with it; it only ever removes files the service
//! wrote itself (archives, logs), never anything a run made.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::domain::{error_chain, now_millis};
use crate::paths::Paths;
use crate::run::logs::LogStore;
use crate::store::Store;
use crate::telemetry::{DiskArea, Telemetry};

/// How often the janitor looks.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Deletes what retention says and measures what is kept.
pub struct Janitor {
    store: Store,
    paths: Paths,
    logs: LogStore,
    /// Zero keeps everything.
    retention: Duration,
    telemetry: Arc<Telemetry>,
}

impl Janitor {
    /// A janitor over the service's files.
    pub fn new(
        store: Store,
        paths: Paths,
        logs: LogStore,
        retention: Duration,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            store,
            paths,
            logs,
            retention,
            telemetry,
        }
    }

    /// Sweeps now and then every minute, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                error!(error = %error_chain(&e), "retention sweep failed");
            }
        }
    }

    /// One sweep: expire what retention says, then measure the disk. Returns how many
    /// submissions expired.
    pub async fn sweep(&self) -> Result<usize, crate::store::StoreError> {
        let mut expired = 0;
        if !self.retention.is_zero() {
            let now = now_millis();
            let cutoff = now - self.retention.as_millis() as i64;
            let ids = self.store.expire_before(cutoff, now).await?;
            let kept = crate::predictions::KeptPredictions::new(self.store.clone());
            for id in &ids {
                self.logs.remove(id).await;
                kept.remove(id).await;
            }
            expired = ids.len();
            if expired > 0 {
                info!(
                    expired,
                    "retention removed archives and logs of ended submissions"
                );
            }
        }
        let paths = self.paths.clone();
        let sizes = tokio::task::spawn_blocking(move || {
            [
                (DiskArea::Archives, dir_bytes(&paths.archives())),
                (DiskArea::Logs, dir_bytes(&paths.logs_dir())),
                (DiskArea::Losses, dir_bytes(&paths.losses())),
                (DiskArea::Predictions, dir_bytes(&paths.predictions())),
                (DiskArea::Uploads, dir_bytes(&paths.uploads())),
            ]
        })
        .await;
        for (area, bytes) in sizes.into_iter().flatten() {
            self.telemetry.set_disk_bytes(area, bytes);
        }
        Ok(expired)
    }
}

/// Bytes of the regular files directly in `dir` (the service's own flat folders).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
