//! Telemetry: Prometheus counters, gauges and histograms (queue depth, live runs, runs by
//! verdict, run and queue-wait durations, engine errors), served as text on the configured
//! address.
//!
//! Everything is a plain atomic that its owner updates (the scheduler sets the gauges, the
//! run counts verdicts); the exposition is rendered on scrape, so this module depends on
//! nothing but the verdict names. The HTTP side is a minimal HTTP/1.1 responder: one GET
//! path, no keep-alive.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::Verdict;

const VERDICTS: [Verdict; 8] = [
    Verdict::Scored,
    Verdict::TimeLimitExceeded,
    Verdict::MemoryLimitExceeded,
    Verdict::OutputLimitExceeded,
    Verdict::RuntimeError,
    Verdict::InvalidPredictions,
    Verdict::Cancelled,
    Verdict::InternalError,
];

/// The areas of the state folder whose size is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskArea {
    /// Stored archives.
    Archives,
    /// Run logs.
    Logs,
    /// Per-row losses.
    Losses,
    /// Uploads in progress.
    Uploads,
    /// Kept predictions of FULL runs (rescoring).
    Predictions,
}

impl DiskArea {
    const ALL: [DiskArea; 5] = [
        DiskArea::Archives,
        DiskArea::Logs,
        DiskArea::Losses,
        DiskArea::Uploads,
        DiskArea::Predictions,
    ];

    fn name(self) -> &'static str {
        match self {
            DiskArea::Archives => "archives",
            DiskArea::Logs => "logs",
            DiskArea::Losses => "losses",
            DiskArea::Uploads => "uploads",
            DiskArea::Predictions => "predictions",
        }
    }
}

/// Bucket upper bounds, in seconds, for both histograms.
const BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        header(out, name, "histogram", help);
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The service's metrics.
#[derive(Default)]
pub struct Telemetry {
    /// Submissions waiting in QUEUED, as the scheduler last read the queue.
    pub queue_depth: AtomicU64,
    /// Runs in progress.
    pub runs_live: AtomicU64,
    runs_by_verdict: [AtomicU64; VERDICTS.len()],
    /// Run durations (container start to exit).
    pub run_seconds: Histogram,
    /// Queue waits (accepted to started).
    pub queue_wait_seconds: Histogram,
    engine_errors: AtomicU64,
    scoring_failures: AtomicU64,
    submissions_accepted: AtomicU64,
    disk_bytes: [AtomicU64; 5],
    /// Execution worker: claim transactions, from the call to the reservation.
    pub claim_seconds: Histogram,
    claims: AtomicU64,
    lease_losses: AtomicU64,
    data_refusals: AtomicU64,
    leases_expired_swept: AtomicU64,
    /// Execution worker: its name and Docker host, as labels of `holdout_worker_info`.
    worker: std::sync::OnceLock<(String, String)>,
}

impl Telemetry {
    /// Counts a finished run.
    pub fn run_finished(&self, verdict: Verdict) {
        if let Some(i) = VERDICTS.iter().position(|v| *v == verdict) {
            self.runs_by_verdict[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an engine failure.
    pub fn engine_error(&self) {
        self.engine_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a scoring that failed inside the service (a custom scorer failing on valid
    /// predictions, a read error): each is INTERNAL_ERROR and wants an admin's look.
    pub fn scoring_failed(&self) {
        self.scoring_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the bytes kept in one area of the state folder.
    pub fn set_disk_bytes(&self, area: DiskArea, bytes: u64) {
        self.disk_bytes[area as usize].store(bytes, Ordering::Relaxed);
    }

    /// Names this process as execution worker `id` on Docker host `host` (its metrics are
    /// then the worker's).
    pub fn set_worker(&self, id: &str, host: &str) {
        let _ = self.worker.set((id.to_owned(), host.to_owned()));
    }

    /// Counts a run claimed from the shared queue.
    pub fn claimed(&self) {
        self.claims.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a run this worker stopped because its lease was lost.
    pub fn lease_lost(&self) {
        self.lease_losses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a claimed run refused because this host's copy of its data differs.
    pub fn data_refused(&self) {
        self.data_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a run handed back because its worker's lease expired.
    pub fn expired_lease_swept(&self) {
        self.leases_expired_swept.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted submission.
    pub fn accepted(&self) {
        self.submissions_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        single(
            &mut out,
            "holdout_queue_depth",
            "gauge",
            "Submissions waiting in QUEUED.",
            load(&self.queue_depth),
        );
        single(
            &mut out,
            "holdout_runs_live",
            "gauge",
            "Runs in progress.",
            load(&self.runs_live),
        );
        header(
            &mut out,
            "holdout_runs_total",
            "counter",
            "Finished runs by verdict.",
        );
        for (i, v) in VERDICTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "holdout_runs_total{{verdict=\"{}\"}} {}",
                v.as_str(),
                load(&self.runs_by_verdict[i])
            );
        }
        single(
            &mut out,
            "holdout_engine_errors_total",
            "counter",
            "Docker engine failures.",
            load(&self.engine_errors),
        );
        single(
            &mut out,
            "holdout_scoring_failures_total",
            "counter",
            "Scorings that failed inside the service (INTERNAL_ERROR); each wants an admin's look.",
            load(&self.scoring_failures),
        );
        single(
            &mut out,
            "holdout_submissions_accepted_total",
            "counter",
            "Submissions accepted.",
            load(&self.submissions_accepted),
        );
        header(
            &mut out,
            "holdout_disk_bytes",
            "gauge",
            "Bytes the service keeps on disk, by area (retention deletes archives and logs).",
        );
        for area in DiskArea::ALL {
            let _ = writeln!(
                out,
                "holdout_disk_bytes{{area=\"{}\"}} {}",
                area.name(),
                load(&self.disk_bytes[area as usize])
            );
        }
        if let Some((id, host)) = self.worker.get() {
            header(
                &mut out,
                "holdout_worker_info",
                "gauge",
                "This process is an execution worker: its name and Docker host.",
            );
            let _ = writeln!(
                out,
                "holdout_worker_info{{worker=\"{}\",host=\"{}\"}} 1",
                label(id),
                label(host)
            );
        }
        single(
            &mut out,
            "holdout_claims_total",
            "counter",
            "Runs this worker claimed from the shared queue.",
            load(&self.claims),
        );
        single(
            &mut out,
            "holdout_lease_losses_total",
            "counter",
            "Runs this worker stopped because it lost their lease (cut off from the database, or handed back).",
            load(&self.lease_losses),
        );
        single(
            &mut out,
            "holdout_data_refusals_total",
            "counter",
            "Claimed runs refused because this host's copy of the challenge data differs from the one it was created with.",
            load(&self.data_refusals),
        );
        single(
            &mut out,
            "holdout_expired_leases_total",
            "counter",
            "Runs handed back by this process because their worker's lease expired.",
            load(&self.leases_expired_swept),
        );
        self.claim_seconds.render(
            "holdout_claim_seconds",
            "Claim transactions of this worker, from the call to the reservation.",
            &mut out,
        );
        self.run_seconds.render(
            "holdout_run_duration_seconds",
            "Run wall time, container start to exit.",
            &mut out,
        );
        self.queue_wait_seconds.render(
            "holdout_queue_wait_seconds",
            "Time from acceptance to run start.",
            &mut out,
        );
        out
    }
}

/// A label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the HELP and TYPE lines of a metric.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a metric with one unlabelled value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Binds the metrics address; the returned future serves until `shutdown`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until `shutdown` fires. Each connection is handled inline: a
/// scrape is small and rare, and this keeps every task owned by this loop.
pub async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>, shutdown: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let mut buf = [0u8; 2048];
        let n = match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => continue,
        };
        let request = String::from_utf8_lossy(&buf[..n]);
        let response = if request.starts_with("GET /metrics") || request.starts_with("GET / ") {
            let body = telemetry.render();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            stream.write_all(response.as_bytes()),
        )
        .await;
    }
}
