//! The container guard: a run's container is removed on every path out of the run, by an
//! explicit removal on return or, when the run's future is dropped (timeout, cancel,
//! shutdown) or unwinds, by a removal spawned from `Drop`. What this misses the scheduler's
//! orphan sweep finds.

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::RemoveContainerOptions;
use tracing::{Instrument, debug, warn};

/// Force-removes a container; missing, or already being removed, counts as done.
pub(super) async fn remove_container(docker: &Docker, target: &str) -> Result<(), BollardError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(target, Some(options)).await {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the container on every path out of `run`: explicitly on return, and from `Drop`
/// when the future is dropped (timeout, select, shutdown) or unwinds from a panic.
pub(super) struct ContainerGuard {
    /// Engine client.
    docker: Docker,
    /// Name before create returns, id after.
    pub(super) target: String,
    /// Cleared once removal has been done or handed off.
    armed: bool,
}

impl ContainerGuard {
    pub(super) fn new(docker: Docker, target: String) -> Self {
        Self {
            docker,
            target,
            armed: true,
        }
    }

    pub(super) async fn remove(&mut self) {
        self.armed = false;
        if let Err(e) = remove_container(&self.docker, &self.target).await {
            // The orphan sweep (list_owned) catches what this misses.
            warn!(container = %self.target, error = %e, "container removal failed");
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let target = std::mem::take(&mut self.target);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                debug!(container = %target, "run abandoned, removing its container in the background");
                let span = tracing::Span::current();
                handle.spawn(
                    async move {
                        if let Err(e) = remove_container(&docker, &target).await {
                            warn!(container = %target, error = %e, "container removal after drop failed");
                        }
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                warn!(container = %target, "no runtime to remove the container; the orphan sweep must")
            }
        }
    }
}
