//! `holdout image extend`: an organiser builds a derived runtime image offline from a folder
//! of approved wheels (`crate::images`), and gets the lines that pin it in a challenge file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::domain::Isolation;
use crate::images::{ExtendRequest, runtime_snippet};

/// `holdout image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a runtime image offline from a folder of wheels, verify that every module they
    /// install imports in a locked-down run, and print its id for the challenge file.
    Extend(ExtendArgs),
}

/// Options of `holdout image extend`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtendArgs {
    /// The runtime image to extend (present on the engine; nothing is pulled).
    #[arg(long = "from")]
    pub base: String,
    /// A folder of approved wheels (pure-Python or manylinux, for the image's Python).
    #[arg(long)]
    pub wheels: PathBuf,
    /// What to install from the folder (default: every wheel in it).
    #[arg(long)]
    pub requirements: Option<PathBuf>,
    /// The new image's tag.
    #[arg(long)]
    pub tag: String,
    /// Runtime of the verifying run (use the challenge's).
    #[arg(long, value_enum, default_value = "runc")]
    pub isolation: super::run_local::IsolationArg,
    /// Docker endpoint; empty = the local engine's default socket.
    #[arg(long, env = "HOLDOUT_DOCKER_HOST", default_value = "")]
    pub docker_host: String,
}

/// Runs an image command.
pub async fn run(cmd: &ImageCommand) -> Result<()> {
    let ImageCommand::Extend(args) = cmd;
    let engine = crate::sandbox::docker::DockerBackend::connect(&args.docker_host)
        .await
        .context("a local Docker Engine is needed")?;
    let isolation = match args.isolation {
        super::run_local::IsolationArg::Runc => Isolation::Runc,
        super::run_local::IsolationArg::Gvisor => Isolation::Gvisor,
    };
    let req = ExtendRequest {
        base: args.base.clone(),
        wheels_dir: args.wheels.clone(),
        requirements: args.requirements.clone(),
        tag: args.tag.clone(),
        isolation,
    };
    eprintln!(
        "image extend: {} + {} -> {} (no network)",
        req.base,
        req.wheels_dir.display(),
        req.tag
    );
    let e = crate::images::extend(&engine, &req, |line| eprintln!("  | {line}"))
        .await
        .map_err(|e| anyhow::anyhow!("{}", crate::domain::error_chain(&e)))?;
    println!("built       {} from {} ({})", e.tag, req.base, e.base_id);
    for w in &e.wheels {
        println!("wheel       {} ({} {})", w.file_name, w.project, w.version);
    }
    for m in &e.imported {
        println!("imported    {m}");
    }
    println!(
        "verified    in a locked-down run ({}: no network, read-only root, uid 65534, default limits)",
        match isolation {
            Isolation::Runc => "runc",
            Isolation::Gvisor => "gvisor",
        }
    );
    println!("image id    {}", e.id);
    if e.repo_digests.is_empty() {
        println!(
            "repo digest none (built on this engine and never pushed: the image id names its content)"
        );
    } else {
        for d in &e.repo_digests {
            println!("repo digest {d}");
        }
    }
    println!("\nPin it in the challenge file (merge into its [runtime] table):\n");
    print!("{}", runtime_snippet(&e));
    Ok(())
}
