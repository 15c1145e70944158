//! Image builds on the Docker Engine, for organisers' derived runtime images
//! (`holdout image extend`): a build from a tar context with networking off, so nothing can
//! be fetched while it runs, and what the engine says about the result.
//!
//! Only the real engine builds images: these are inherent methods of [`DockerBackend`], not
//! part of the [`super::Backend`] seam that runs submissions. Nothing here runs participants'
//! code; a built image is verified by a normal hardened run (`crate::images`).

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{BuildImageOptions, RemoveImageOptions};
use futures::StreamExt;

use super::SandboxError;
use super::docker::DockerBackend;

/// What the engine says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// `sha256:...`: the digest of its configuration, which names its content.
    pub id: String,
    /// `name@sha256:...` digests from a registry; empty for an image built on this engine.
    pub repo_digests: Vec<String>,
    /// The user its configuration runs as (empty: root).
    pub user: String,
}

impl DockerBackend {
    /// Builds `context` (an uncompressed tar holding a `Dockerfile`) as `tag` with no network
    /// (`RUN` steps get network mode `none`; the base must already be on the engine) and
    /// intermediate containers removed on every path. Each line of the builder's output goes
    /// to `progress`. Returns the new image's id.
    pub async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<String, SandboxError> {
        let options = BuildImageOptions {
            t: Some(tag.to_owned()),
            networkmode: Some("none".into()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream =
            self.client()
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut id = None;
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(build_failed(&log, &error));
                }
                Err(e) => return Err(self.engine("build", e)),
            };
            if let Some(text) = &info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    progress(line);
                }
                log.push_str(text);
            }
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(build_failed(&log, &detail));
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        match id {
            Some(id) => Ok(id),
            // Older engines report the id only as text; the tag names the result either way.
            None => Ok(self.image_facts(tag).await?.id),
        }
    }

    /// What the engine says about `image`; [`SandboxError::ImageMissing`] when absent.
    pub async fn image_facts(&self, image: &str) -> Result<ImageFacts, SandboxError> {
        match self.client().inspect_image(image).await {
            Ok(i) => Ok(ImageFacts {
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
                user: i.config.and_then(|c| c.user).unwrap_or_default(),
            }),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(SandboxError::ImageMissing(image.to_owned())),
            Err(e) => Err(self.engine("inspect image", e)),
        }
    }

    /// Removes the tag `image` (and the image when nothing else refers to it); a missing
    /// image is not an error.
    pub async fn remove_image(&self, image: &str) -> Result<(), SandboxError> {
        match self
            .client()
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_)
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.engine("remove image", e)),
        }
    }
}

/// A failed build, with the end of the builder's output (where the failing step printed).
fn build_failed(log: &str, error: &str) -> SandboxError {
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    SandboxError::Engine {
        op: "build",
        reason: format!("{}\n{}", error.trim(), tail.join("\n")),
    }
}
