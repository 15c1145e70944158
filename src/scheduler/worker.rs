//! The scheduler as one execution worker of a shared store (see [`super::shared`] for the
//! rules): claiming, checking its copy of a challenge's data, keeping its leases, handing
//! back the runs of dead workers, and its heartbeat.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::{Scheduler, Sharing, shared};
use crate::domain::{ChallengeId, Interruption, error_chain, now_millis};
use crate::run::StopReason;
use crate::store::{ClaimRequest, QueuedRow, StoreError, WorkerInfo};

/// Runs `step`, within `budget` when there is one.
pub(super) async fn bounded<T>(
    budget: Option<Duration>,
    step: impl std::future::Future<Output = T>,
) -> Option<T> {
    match budget {
        Some(b) => tokio::time::timeout(b, step).await.ok(),
        None => Some(step.await),
    }
}

/// A worker's standing on a shared store.
pub(super) struct Worker {
    pub(super) sharing: Sharing,
    pub(super) started_at: i64,
    /// When the leases were last renewed (this host's clock).
    pub(super) renewed: Instant,
    pub(super) data: shared::DataChecks,
    pub(super) draining: bool,
}

impl Scheduler {
    /// As a worker: claims runs until this worker's slots are full or nothing more may
    /// start anywhere.
    pub(super) async fn claim_what_fits(&mut self, queued: &[QueuedRow]) -> Result<(), StoreError> {
        let per_challenge = self.per_challenge_limits(queued).await?;
        while !self.queue.is_full() {
            let Some(w) = &self.worker else { break };
            if w.draining {
                break;
            }
            let policy = shared::Policy {
                host_id: w.sharing.host_id.clone(),
                global_concurrency: w.sharing.global_concurrency,
                per_challenge: per_challenge.clone(),
                refused: w.data.excluded(),
                partition: (self.pacing.time_partition, self.pacing.slice),
            };
            let req = ClaimRequest {
                worker_id: w.sharing.worker_id.clone(),
                host_id: w.sharing.host_id.clone(),
                lease_ttl_ms: shared::millis(w.sharing.lease_ttl),
            };
            let asked = Instant::now();
            let claimed = self
                .runner
                .store
                .claim(req, Box::new(move |view| shared::decide(view, &policy)))
                .await?;
            let Some(claim) = claimed else { break };
            self.runner.telemetry.claim_seconds.observe(asked.elapsed());
            self.runner.telemetry.claimed();
            if !self.data_matches(&claim.row.challenge_id).await {
                let worker_id = self.worker.as_ref().map(|w| w.sharing.worker_id.clone());
                self.runner
                    .store
                    .unreserve(&claim.row.id, worker_id.as_deref().unwrap_or_default())
                    .await?;
                continue;
            }
            debug!(submission_id = %claim.row.id, lease_until = claim.lease_until, "claimed");
            self.spawn_run(claim.row);
        }
        self.gauge_live();
        Ok(())
    }

    /// As a worker: whether this host's copy of the challenge's data is known to digest as
    /// the challenge recorded. Unknown, the digest is computed in the background (a large
    /// folder takes a while, and the loop must keep turning) and the challenge waits.
    async fn data_matches(&mut self, id: &ChallengeId) -> bool {
        let Ok(Some(c)) = self.runner.store.get_challenge(id).await else {
            return true; // the run itself reports a vanished challenge
        };
        let recorded = c.facts.data_digest.clone();
        if recorded.is_empty() {
            return true; // stored before digests were kept
        }
        let Some(w) = &mut self.worker else {
            return true;
        };
        if let Some(ok) = w.data.known(id, &recorded) {
            return ok;
        }
        if w.data.start_check(id.clone()) {
            let root = crate::run::plan::DataLayout::of(&self.runner.host.data_root, &c)
                .root()
                .to_owned();
            let id = id.clone();
            self.digests.spawn_blocking(move || {
                let local = crate::datadir::digest(&root).ok();
                (id, recorded, local)
            });
        }
        false
    }

    /// Records a finished digest of this host's copy of a challenge's data; a mismatch is
    /// logged, counted and shown in the registry.
    pub(super) async fn data_checked(
        &mut self,
        id: ChallengeId,
        recorded: String,
        local: Option<String>,
    ) {
        let ok = local.as_deref() == Some(recorded.as_str());
        if ok {
            info!(challenge_id = %id, "this host's copy of the challenge data matches");
        } else {
            error!(
                challenge_id = %id,
                recorded = %recorded,
                local = local.as_deref().unwrap_or("unreadable"),
                "refusing the challenge: this host's copy of its data differs from the data it was created with; other workers will run it"
            );
            self.runner.telemetry.data_refused();
        }
        if let Some(w) = &mut self.worker {
            w.data.record(id, recorded, ok);
        }
        if !ok {
            self.heartbeat().await;
        }
    }

    /// Runs a step that talks to the store, bounded for a worker by half a lease: a worker
    /// whose network to the database went silent (no error, no answer) must keep its loop
    /// turning, to stop its runs before their leases expire. Alone, nothing is bounded.
    pub(super) async fn bounded<T>(&self, step: impl std::future::Future<Output = T>) -> Option<T> {
        bounded(self.step_budget(), step).await
    }

    pub(super) fn step_budget(&self) -> Option<Duration> {
        self.worker.as_ref().map(|w| w.sharing.lease_ttl / 2)
    }

    pub(super) fn lease_interval(&self) -> tokio::time::Interval {
        let every = self
            .worker
            .as_ref()
            .map(|w| w.sharing.lease_ttl / 3)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(100));
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    }

    /// As a worker: renews the leases of its running runs, stops those it lost (or all, if
    /// it could not renew for a whole lease), stops those a caller cancelled, beats, and
    /// hands back the runs of workers whose leases expired.
    pub(super) async fn keep_leases(&mut self) {
        let Some(w) = &self.worker else { return };
        let (worker_id, ttl) = (w.sharing.worker_id.clone(), w.sharing.lease_ttl);
        let running = self.queue.running();
        let renewed = self
            .bounded(self.runner.store.renew_leases(
                worker_id,
                running.clone(),
                shared::millis(ttl),
            ))
            .await
            .unwrap_or(Err(StoreError::Pool(
                "no answer within half a lease".into(),
            )));
        match renewed {
            Ok(renewal) => {
                if let Some(w) = &mut self.worker {
                    w.renewed = Instant::now();
                }
                for id in &renewal.lost {
                    warn!(submission_id = %id, "lost the lease on a run, stopping it");
                    self.runner.telemetry.lease_lost();
                    self.queue.stop(id, StopReason::LeaseLost);
                }
                for id in &renewal.cancel {
                    info!(submission_id = %id, "cancel requested on another replica, stopping the run");
                    self.queue.stop(id, StopReason::Cancelled);
                }
            }
            Err(e) => {
                let renewed = self.worker.as_ref().map(|w| w.renewed);
                if renewed.is_some_and(|r| shared::lease_surely_expired(r, ttl))
                    && !running.is_empty()
                {
                    error!(error = %error_chain(&e), live = running.len(), "cannot renew leases for a whole lease: stopping every run (another worker may have them)");
                    for id in &running {
                        self.runner.telemetry.lease_lost();
                        self.queue.stop(id, StopReason::LeaseLost);
                    }
                } else {
                    warn!(error = %error_chain(&e), "cannot renew leases");
                }
                return;
            }
        }
        self.heartbeat().await;
        match self.bounded(self.sweep_expired_leases()).await {
            Some(Err(e)) => warn!(error = %error_chain(&e), "cannot sweep expired leases"),
            None => warn!("cannot sweep expired leases: no answer within half a lease"),
            Some(Ok(())) => {}
        }
    }

    /// Hands back (or, when a caller asked, cancels) every run whose worker's lease
    /// expired; only while it is still expired, so a late renewal and a sweep never both
    /// win.
    pub(super) async fn sweep_expired_leases(&self) -> Result<(), StoreError> {
        let r = &self.runner;
        for e in r.store.expired_runs().await? {
            let s = e.submission;
            let now = now_millis();
            let t = if e.cancel_requested {
                let Some(c) = r.store.get_challenge(&s.challenge_id).await? else {
                    continue;
                };
                s.cancel(None, &c.quota, now)
            } else {
                s.requeue(Interruption::Restart, r.max_attempts, now)
            };
            let Ok(t) = t else { continue };
            let next = t.next().state;
            if r.store.commit_expired(t).await?.is_some() {
                r.telemetry.expired_lease_swept();
                warn!(submission_id = %s.id, attempts = s.attempts, next = next.as_str(), "its worker's lease expired: handed back");
            }
        }
        Ok(())
    }

    /// As a worker: records this worker in the registry (best effort).
    pub(super) async fn heartbeat(&self) {
        let Some(w) = &self.worker else { return };
        let state = if w.draining {
            if self.tasks.is_empty() {
                "stopped"
            } else {
                "draining"
            }
        } else {
            "running"
        };
        let info = WorkerInfo {
            id: w.sharing.worker_id.clone(),
            host_id: w.sharing.host_id.clone(),
            slots: self.slots,
            live: self.queue.live_count() as u32,
            started_at: w.started_at,
            last_beat: 0,
            state: state.into(),
            refused: w
                .data
                .refused()
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            version: env!("CARGO_PKG_VERSION").into(),
            leases: 0,
        };
        if let Some(Err(e)) = self.bounded(self.runner.store.heartbeat(info)).await {
            debug!(error = %error_chain(&e), "cannot record the heartbeat");
        }
    }
}
