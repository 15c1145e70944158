//! A scripted [`Backend`] for scheduler and pipeline unit tests. It runs nothing: each call
//! to `run` asks the script what happened and writes the scripted predictions. It proves
//! nothing about the sandbox; the Docker tests do that.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, Isolation, OwnedContainer, RunOutcome, RunSpec, SandboxError};

/// What one scripted run does.
#[derive(Debug, Clone, Default)]
pub struct FakeRun {
    /// Returned as the run's evidence (wall time is filled in).
    pub outcome: RunOutcome,
    /// Written to `<output_dir>/predictions.csv` when present.
    pub predictions: Option<Vec<u8>>,
    /// How long the run takes; cancellation cuts it short.
    pub delay: Duration,
}

type Script = Box<dyn FnMut(&RunSpec) -> FakeRun + Send>;

/// A backend whose runs follow a script.
pub struct FakeBackend {
    script: Mutex<Script>,
    started: Mutex<Vec<RunSpec>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Whether the fake engine has gVisor's runtime registered (true unless turned off).
    gvisor: bool,
}

impl FakeBackend {
    /// A backend that answers every run with `script(spec)`.
    pub fn new(script: impl FnMut(&RunSpec) -> FakeRun + Send + 'static) -> Self {
        Self {
            script: Mutex::new(Box::new(script)),
            started: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            gvisor: true,
        }
    }

    /// The same backend on an engine without `runsc`: `supports(Gvisor)` answers false, so
    /// challenge validation can be tested against an engine that cannot run gVisor.
    pub fn without_gvisor(mut self) -> Self {
        self.gvisor = false;
        self
    }

    /// Submission ids in the order their runs started.
    pub fn started(&self) -> Vec<String> {
        self.started
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.submission_id.to_string())
            .collect()
    }

    /// The most runs that were ever active at once.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    async fn run(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, SandboxError> {
        let run = (self.script.lock().unwrap_or_else(|p| p.into_inner()))(&spec);
        self.started.lock().unwrap().push(spec.clone());
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(run.delay) => false,
            _ = cancel.cancelled() => true,
        };
        self.active.fetch_sub(1, Ordering::SeqCst);
        let mut outcome = run.outcome;
        outcome.wall_time = started.elapsed();
        if cancelled {
            outcome.cancelled = true;
            outcome.exit_code = Some(137);
            return Ok(outcome);
        }
        if let Some(bytes) = run.predictions {
            std::fs::write(spec.output_dir.join("predictions.csv"), bytes)?;
        }
        Ok(outcome)
    }

    async fn image_exists(&self, _image: &str) -> Result<bool, SandboxError> {
        Ok(true)
    }

    /// Every image is present, with an id derived from its name (stable, distinct per name).
    async fn image_id(&self, image: &str) -> Result<String, SandboxError> {
        use sha2::Digest;
        Ok(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(image.as_bytes()))
        ))
    }

    async fn supports(&self, isolation: Isolation) -> Result<bool, SandboxError> {
        Ok(match isolation {
            Isolation::Runc => true,
            Isolation::Gvisor => self.gvisor,
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, SandboxError> {
        Ok(Vec::new())
    }

    async fn remove(&self, _container_id: &str) -> Result<(), SandboxError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), SandboxError> {
        Ok(())
    }
}
