//! `holdout run-local SOLUTION --challenge FILE --data DIR`: a participant's own SMOKE run on
//! their machine, with no server and no token. It reads the challenge file as `challenge
//! create` sends it, packs the solution as `submit` does, runs it through
//! `crate::run::local` (the server's own pipeline) with the server's default limits and
//! caps, shows the run's output live, and prints the result exactly as `holdout status`
//! prints what the server releases of a SMOKE run.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use super::output::Printer;
use crate::auth::Caller;
use crate::config::{Role, default_caps, default_limits};
use crate::domain::{Challenge, Isolation, now_millis};
use crate::run::local::{LocalEnd, LocalRun};
use crate::run::plan::HostSettings;
use crate::sandbox::output_fs::OutputMode;
use crate::sandbox::{Backend, LogStream};

/// Options of `holdout run-local`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunLocalArgs {
    /// The solution: a folder (packed as tar.gz, as `holdout submit` packs it) or a
    /// .tar.gz/.zip archive (used as is).
    pub solution: PathBuf,
    /// The challenge file (TOML, as for `holdout challenge create`).
    #[arg(long)]
    pub challenge: PathBuf,
    /// The challenge's data folder; only its public sample is used (`sample/inputs/`,
    /// `sample/labels.csv`).
    #[arg(long)]
    pub data: PathBuf,
    /// Runtime, instead of the challenge's (or the server's default, runc).
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,
    /// How `/output` is capped: a loop-mounted filesystem of the cap's size (as the
    /// server does; needs root) or a watched folder. Default: loop as root, else directory.
    #[arg(long, value_enum)]
    pub output_filesystem: Option<OutputArg>,
    /// Docker endpoint; empty = the local engine's default socket.
    #[arg(long, env = "HOLDOUT_DOCKER_HOST", default_value = "")]
    pub docker_host: String,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IsolationArg {
    /// Namespaces, cgroups and seccomp.
    Runc,
    /// gVisor (`runsc`).
    Gvisor,
}

/// `--output-filesystem`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputArg {
    /// A loop-mounted ext4 filesystem per run (root only).
    Loop,
    /// A plain folder measured while the run goes.
    Directory,
}

/// The challenge in `args.challenge`, as the server would store it, with its data folder
/// at `args.data`; and the host settings a server with the default config would plan with.
fn setting(args: &RunLocalArgs) -> Result<(Challenge, HostSettings)> {
    let wire = super::read_challenge_file(&args.challenge)?;
    let mut challenge = crate::api::challenge_from_pb(wire)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.challenge.display()))?;
    if challenge.release.score_decimals == 0 {
        challenge.release.score_decimals = crate::challenges::DEFAULT_SCORE_DECIMALS;
    }
    if let Some(i) = args.isolation {
        challenge.runtime.isolation = Some(match i {
            IsolationArg::Runc => Isolation::Runc,
            IsolationArg::Gvisor => Isolation::Gvisor,
        });
    }
    let data = std::fs::canonicalize(&args.data)
        .with_context(|| format!("cannot read the data folder {}", args.data.display()))?;
    let (Some(root), Some(name)) = (data.parent(), data.file_name()) else {
        bail!("{} cannot be a challenge's data folder", data.display());
    };
    challenge.data_dir = name.to_string_lossy().into_owned();
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let output = match args.output_filesystem {
        Some(OutputArg::Loop) => OutputMode::Loop,
        Some(OutputArg::Directory) => OutputMode::Directory,
        None if root_user => OutputMode::Loop,
        None => OutputMode::Directory,
    };
    let host = HostSettings {
        data_root: root.to_owned(),
        defaults: default_limits(),
        caps: default_caps(),
        default_isolation: Isolation::Runc,
        instance: format!("run-local-{}", std::process::id()),
        output,
    };
    let over = challenge.limits.over_caps(&host.caps);
    if !over.is_empty() {
        bail!(
            "the server would refuse this challenge: {}",
            over.join("; ")
        );
    }
    Ok((challenge, host))
}

/// The engine has what the run needs: the images and the runtime.
async fn check_engine(
    engine: &dyn Backend,
    challenge: &Challenge,
    host: &HostSettings,
) -> Result<()> {
    let mut images = vec![challenge.runtime.image.clone()];
    images.extend(challenge.scoring.custom.as_ref().map(|c| c.image.clone()));
    for image in images {
        if !engine.image_exists(&image).await? {
            bail!("image {image:?} is not present on the Docker engine (build or load it first)");
        }
    }
    // A pinned image (`holdout image extend`) built on another machine has another id even
    // from the same recipe: say so rather than refuse, the run is still the best local guess.
    let pinned = &challenge.runtime.image_digest;
    if !pinned.is_empty() {
        let here = engine.image_id(&challenge.runtime.image).await?;
        if &here != pinned {
            eprintln!(
                "run-local: warning: {} here is {here}, the challenge pins {pinned}; the server's image may behave differently",
                challenge.runtime.image
            );
        }
    }
    if host.isolation(challenge) == Isolation::Gvisor && !engine.supports(Isolation::Gvisor).await?
    {
        bail!("gVisor was asked for but the Docker engine has no \"runsc\" runtime registered");
    }
    Ok(())
}

/// Runs `holdout run-local`; `json` prints the result as `--json` does (the run's output
/// then all goes to stderr).
pub async fn run(args: &RunLocalArgs, json: bool) -> Result<()> {
    let (challenge, host) = setting(args)?;
    let engine: Arc<dyn Backend> = Arc::new(
        crate::sandbox::docker::DockerBackend::connect(&args.docker_host)
            .await
            .context("a local Docker Engine is needed")?,
    );
    check_engine(&*engine, &challenge, &host).await?;
    let scratch = tempfile::Builder::new()
        .prefix("holdout-run-local-")
        .tempdir()
        .context("cannot make a scratch folder")?;
    let archive = if args.solution.is_dir() {
        let packed = scratch.path().join("solution.tar.gz");
        std::fs::write(&packed, super::archive_bytes(&args.solution)?)?;
        packed
    } else {
        args.solution.clone()
    };

    let limits = host.limits(&challenge);
    eprintln!(
        "run-local: {} on the sample of {} in {} ({}), SMOKE, wall time {}, memory {}, {} cpu millis",
        args.solution.display(),
        args.data.display(),
        challenge.runtime.image,
        match host.isolation(&challenge) {
            Isolation::Runc => "runc",
            Isolation::Gvisor => "gvisor",
        },
        crate::units::format_duration(limits.wall_time.0),
        limits.memory_bytes,
        limits.cpu_millis,
    );
    eprintln!("----- the run's output, live -----");
    let (tee, mut rx) = tokio::sync::mpsc::unbounded_channel::<(LogStream, bytes::Bytes)>();
    let printer = tokio::spawn(async move {
        while let Some((stream, bytes)) = rx.recv().await {
            let _ = match (stream, json) {
                (LogStream::Stdout, false) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes).and_then(|_| out.flush())
                }
                _ => std::io::stderr().lock().write_all(&bytes),
            };
        }
    });
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nrun-local: interrupted, stopping the run");
            on_interrupt.cancel();
        }
    });
    let ended = LocalRun {
        engine,
        host,
        challenge: challenge.clone(),
        archive,
        scratch: scratch.path().to_owned(),
        tee: Some(tee),
        cancel,
    }
    .run()
    .await;
    interrupt.abort();
    let _ = printer.await;
    eprintln!("----- end of the run's output -----");
    let end = ended.map_err(|e| anyhow::anyhow!("{}", crate::domain::error_chain(&e)))?;
    print(&end, &challenge, json)
}

/// Prints what the server releases to a submitter of this SMOKE run, as `holdout status`.
fn print(end: &LocalEnd, challenge: &Challenge, json: bool) -> Result<()> {
    let caller = Caller {
        name: crate::run::local::LOCAL_PARTICIPANT.into(),
        role: Role::Submitter,
    };
    let ctx = crate::release::ViewContext {
        challenge,
        caller: &caller,
        now: now_millis(),
        wall_time: end.limits.wall_time.0,
        limits: end.limits,
        queue_position: None,
        released_full_scores: Default::default(),
        selected: false,
    };
    let view = crate::release::submission_view(&end.submission, &ctx);
    let wire = crate::api::submission_to_pb(&view);
    Printer { json }.submission(&wire);
    if end.logs.truncated {
        eprintln!("[output truncated at the challenge's log limit]");
    }
    let s = &end.submission;
    if !s.detail.is_empty() && s.detail != s.message {
        // What the server shows only to admins (an internal error's cause); this is the
        // participant's own machine.
        eprintln!("run-local: detail: {}", s.detail);
    }
    super::exit_for(&wire)
}
