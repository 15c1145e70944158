//! How execution workers share the queue: claims, leases, the sweep of expired leases,
//! fairness and partition state, and the worker registry. Times are the database's clock
//! (`holdout_now_ms()`), so hosts whose clocks differ still agree on when a lease expires.
//!
//! - A **claim** runs under one advisory lock, so two workers never decide on the same
//!   picture: it reads every run holding a slot on any worker, the queued runs nobody holds
//!   (`FOR UPDATE SKIP LOCKED`), when each participant last got a slot and the claiming
//!   host's partition phase; the caller's policy picks; the pick is reserved for the worker
//!   under a lease.
//! - A **lease** is renewed by its worker's heartbeat. A write by a worker to a run needs
//!   its lease alive ([`update`] with a worker), so a worker cut off from the database
//!   can never commit a run that was handed to another.
//! - A run whose lease expired is handed back by whoever sweeps first ([`update`] with
//!   `expired_only`, which needs the lease still expired).

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::raw_at;
use crate::domain::{SubmissionId, SubmissionKind, Transition};
use crate::store::codec::{self, RawSubmission, SUBMISSION_COLUMNS};
use crate::store::{
    Claim, ClaimRequest, ClaimView, Decide, ExpiredRun, LeaseRenewal, LiveRun, QueuedRow,
    StoreError, WorkerInfo, readable,
};

/// Advisory lock key serialising claims ("holdout" + 3).
const CLAIM_LOCK: i64 = 0x686f_6c64_6f75_7403;

/// A queued row from `seq, id, challenge_id, owner, participant_id, kind`.
pub(super) fn queued_row(r: &Row) -> Result<QueuedRow, StoreError> {
    codec::queued_row(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
    )
}

/// Writes a transition if the row is still in its expected state and attempt; with
/// `worker`, only while that worker's lease on it is alive; with `expired_only`, only while
/// its lease is expired. A run handed back to the queue loses its worker and lease; an
/// ended one keeps the worker that ran it (for admins) and loses its lease.
pub(super) async fn update(
    client: &Object,
    t: &Transition,
    worker: Option<&str>,
    expired_only: bool,
) -> Result<bool, StoreError> {
    let r = RawSubmission::encode(t.next())?;
    let n = client
        .execute(
            "UPDATE submissions SET state = $2, verdict = $3, message = $4, detail = $5,
                public_scores = $6, private_scores = $7, started_at = $8, finished_at = $9,
                usage = $10, attempts = $11, charged = $12,
                worker_id = CASE WHEN $2 = 'queued' THEN NULL ELSE worker_id END,
                host_id = CASE WHEN $2 = 'queued' THEN NULL ELSE host_id END,
                lease_until = CASE WHEN $2 IN ('running', 'scoring') THEN lease_until ELSE NULL END,
                cancel_requested = CASE WHEN $2 = 'queued' THEN FALSE ELSE cancel_requested END
             WHERE id = $1 AND state = $13 AND attempts = $14
               AND ($15::text IS NULL OR (worker_id = $15 AND lease_until > holdout_now_ms()))
               AND (NOT $16 OR lease_until IS NULL OR lease_until <= holdout_now_ms())",
            &[
                &r.id,
                &r.state,
                &r.verdict,
                &r.message,
                &r.detail,
                &r.public_scores,
                &r.private_scores,
                &r.started_at,
                &r.finished_at,
                &r.usage,
                &r.attempts,
                &r.charged,
                &t.expected_state().as_str(),
                &i64::from(t.expected_attempts()),
                &worker,
                &expired_only,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Reads the shared picture, lets `decide` pick, reserves the pick (see the module doc).
pub(super) async fn claim(
    client: &mut Object,
    req: &ClaimRequest,
    decide: Decide,
) -> Result<Option<Claim>, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await?;
    let now: i64 = tx.query_one("SELECT holdout_now_ms()", &[]).await?.get(0);
    let live = tx
        .query(
            "SELECT id, challenge_id, kind, COALESCE(host_id, '') FROM submissions
             WHERE state IN ('running', 'scoring')
                OR (state = 'queued' AND lease_until > $1)
                OR slot_until > $1",
            &[&now],
        )
        .await?;
    let live = readable(
        live.iter()
            .map(|r| -> Result<LiveRun, StoreError> {
                let kind: &str = r.try_get(2)?;
                Ok(LiveRun {
                    id: codec::submission_id(r.try_get(0)?)?,
                    challenge_id: crate::domain::ChallengeId::parse(r.try_get(1)?)
                        .map_err(|_| StoreError::Corrupt("challenge id".into()))?,
                    kind: SubmissionKind::parse_name(kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
                    host_id: r.try_get(3)?,
                })
            })
            .collect(),
    );
    let queued = tx
        .query(
            "SELECT seq, id, challenge_id, owner, participant_id, kind FROM submissions
             WHERE state = 'queued' AND (lease_until IS NULL OR lease_until <= $1)
             ORDER BY seq FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .await?;
    let queued = readable(queued.iter().map(queued_row).collect());
    let last_start = tx
        .query(
            "SELECT p.owner, p.participant_id, p.last_start FROM parties p
             WHERE EXISTS (SELECT 1 FROM submissions s WHERE s.state = 'queued'
                           AND s.owner = p.owner AND s.participant_id = p.participant_id)",
            &[],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64))
        .collect();
    let phase = tx
        .query_opt(
            "SELECT kind, began FROM host_phases WHERE host_id = $1",
            &[&req.host_id],
        )
        .await?
        .and_then(|r| Some((SubmissionKind::parse_name(r.get(0))?, r.get::<_, i64>(1))));
    let view = ClaimView {
        now,
        queued,
        live,
        last_start,
        phase,
    };
    let decision = decide(&view);
    if decision.phase != view.phase {
        match decision.phase {
            Some((kind, began)) => {
                tx.execute(
                    "INSERT INTO host_phases (host_id, kind, began) VALUES ($1, $2, $3)
                     ON CONFLICT (host_id) DO UPDATE SET kind = EXCLUDED.kind, began = EXCLUDED.began",
                    &[&req.host_id, &kind.as_str(), &began],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM host_phases WHERE host_id = $1",
                    &[&req.host_id],
                )
                .await?;
            }
        }
    }
    let Some(row) = decision
        .pick
        .and_then(|id| view.queued.iter().find(|r| r.id == id).cloned())
    else {
        tx.commit().await?;
        return Ok(None);
    };
    let lease_until = now + req.lease_ttl_ms;
    tx.execute(
        "UPDATE submissions SET worker_id = $2, host_id = $3, lease_until = $4, cancel_requested = FALSE
         WHERE id = $1",
        &[&row.id.as_str(), &req.worker_id, &req.host_id, &lease_until],
    )
    .await?;
    tx.execute(
        "INSERT INTO parties (owner, participant_id, last_start) VALUES ($1, $2, nextval('party_ticks'))
         ON CONFLICT (owner, participant_id) DO UPDATE SET last_start = EXCLUDED.last_start",
        &[&row.owner, &row.participant_id.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Claim { row, lease_until }))
}

/// Expires every lease `worker` holds.
pub(super) async fn release_leases(client: &Object, worker: &str) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE submissions SET lease_until = 0 WHERE worker_id = $1 AND lease_until IS NOT NULL",
            &[&worker],
        )
        .await?;
    Ok(())
}

/// Gives back a reservation that never started.
pub(super) async fn unreserve(
    client: &Object,
    id: &SubmissionId,
    worker: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE submissions SET worker_id = NULL, host_id = NULL, lease_until = NULL
             WHERE id = $1 AND worker_id = $2 AND state = 'queued'",
            &[&id.as_str(), &worker],
        )
        .await?;
    Ok(())
}

/// Extends the live leases of `live` runs; reports the lost and the cancel requests.
pub(super) async fn renew_leases(
    client: &Object,
    worker: &str,
    live: &[SubmissionId],
    ttl_ms: i64,
) -> Result<LeaseRenewal, StoreError> {
    let ids: Vec<&str> = live.iter().map(|i| i.as_str()).collect();
    let rows = client
        .query(
            "UPDATE submissions SET lease_until = holdout_now_ms() + $3
             WHERE worker_id = $1 AND id = ANY($2) AND state IN ('queued', 'running', 'scoring')
               AND lease_until > holdout_now_ms()
             RETURNING id, cancel_requested",
            &[&worker, &ids, &ttl_ms],
        )
        .await?;
    let mut renewed = std::collections::HashSet::new();
    let mut cancel = Vec::new();
    for r in &rows {
        let id: &str = r.get(0);
        renewed.insert(id.to_owned());
        if r.get::<_, bool>(1) {
            cancel.push(codec::submission_id(id)?);
        }
    }
    let lost = live
        .iter()
        .filter(|id| !renewed.contains(id.as_str()))
        .cloned()
        .collect();
    Ok(LeaseRenewal { lost, cancel })
}

/// Runs whose worker's lease expired.
pub(super) async fn expired_runs(client: &Object) -> Result<Vec<ExpiredRun>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {SUBMISSION_COLUMNS}, cancel_requested FROM submissions
                 WHERE state IN ('running', 'scoring')
                   AND (lease_until IS NULL OR lease_until <= holdout_now_ms())
                 ORDER BY seq"
            ),
            &[],
        )
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let cancel_requested: bool = r.try_get(19)?;
        out.push(
            raw_at(r, 0)
                .map_err(StoreError::from)
                .and_then(RawSubmission::decode)
                .map(|submission| ExpiredRun {
                    submission,
                    cancel_requested,
                }),
        );
    }
    Ok(readable(out))
}

/// When each (platform, participant) last got a slot.
pub(super) async fn party_starts(
    client: &Object,
) -> Result<HashMap<(String, String), u64>, StoreError> {
    Ok(client
        .query("SELECT owner, participant_id, last_start FROM parties", &[])
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64))
        .collect())
}

/// Records a worker's heartbeat (the database's clock).
pub(super) async fn heartbeat(client: &Object, w: &WorkerInfo) -> Result<(), StoreError> {
    let refused =
        serde_json::to_string(&w.refused).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    client
        .execute(
            "INSERT INTO workers (id, host_id, slots, live, started_at, last_beat, state, refused, version)
             VALUES ($1, $2, $3, $4, $5, holdout_now_ms(), $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET host_id = EXCLUDED.host_id, slots = EXCLUDED.slots,
                live = EXCLUDED.live, started_at = EXCLUDED.started_at, last_beat = EXCLUDED.last_beat,
                state = EXCLUDED.state, refused = EXCLUDED.refused, version = EXCLUDED.version",
            &[
                &w.id,
                &w.host_id,
                &(w.slots as i32),
                &(w.live as i32),
                &w.started_at,
                &w.state,
                &refused,
                &w.version,
            ],
        )
        .await?;
    Ok(())
}

/// Every worker that ever beat, most recent first, with the leases it holds now.
pub(super) async fn workers(client: &Object) -> Result<Vec<WorkerInfo>, StoreError> {
    let rows = client
        .query(
            "SELECT w.id, w.host_id, w.slots, w.live, w.started_at, w.last_beat, w.state, w.refused,
                    w.version,
                    (SELECT count(*) FROM submissions s
                      WHERE s.worker_id = w.id AND s.lease_until > holdout_now_ms())
             FROM workers w ORDER BY w.last_beat DESC, w.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let refused: String = r.try_get(7)?;
            Ok(WorkerInfo {
                id: r.try_get(0)?,
                host_id: r.try_get(1)?,
                slots: r.try_get::<_, i32>(2)? as u32,
                live: r.try_get::<_, i32>(3)? as u32,
                started_at: r.try_get(4)?,
                last_beat: r.try_get(5)?,
                state: r.try_get(6)?,
                refused: serde_json::from_str(&refused).unwrap_or_default(),
                version: r.try_get(8)?,
                leases: r.try_get::<_, i64>(9)? as u32,
            })
        })
        .collect()
}
