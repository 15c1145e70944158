//! `holdout demo`: the whole product in one command. Builds whatever image is missing,
//! writes the digits challenge's data, starts a server on a temporary state folder, creates
//! the challenge, submits the good solution and the baseline, shows them live, prints their
//! scores and the leaderboard, and shuts everything down, leaving no container behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncBufReadExt;

use crate::app::Application;
use crate::auth;
use crate::cli::{Client, output::Printer, read_challenge_file};
use crate::config::{Config, Role, TokenConfig};
use crate::pb;

/// Options of `holdout demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The Holdout source tree (for the image build scripts and examples).
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    pub repo: PathBuf,
    /// Docker endpoint; empty = the local engine's default socket.
    #[arg(long, env = "HOLDOUT_DOCKER_HOST", default_value = "")]
    pub docker_host: String,
}

/// Runs the demo.
pub async fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let backend: std::sync::Arc<dyn crate::sandbox::Backend> =
        match crate::sandbox::docker::DockerBackend::connect(&args.docker_host).await {
            Ok(b) => std::sync::Arc::new(b),
            Err(e) => bail!("{e}; start one with `scripts/setup-docker.sh` (as root)"),
        };
    let repo = &args.repo;
    for needed in [
        "sandbox-images/python/build.sh",
        "examples/digits/challenge.toml",
        "examples/digits/make_data.sh",
    ] {
        if !repo.join(needed).exists() {
            bail!(
                "{} is missing; pass --repo with the Holdout source folder",
                repo.join(needed).display()
            );
        }
    }

    step("runtime image holdout-python:1 (built offline from Debian packages when missing)");
    if !backend.image_exists("holdout-python:1").await? {
        run_script(&repo.join("sandbox-images/python/build.sh"), &[]).await?;
    } else {
        println!("    present");
    }

    let tmp = tempfile::Builder::new().prefix("holdout-demo-").tempdir()?;
    let data_root = tmp.path().join("data");
    let state_dir = tmp.path().join("state");
    std::fs::create_dir_all(&data_root)?;
    step("digits data: train, test, private labels and a public sample");
    run_script(
        &repo.join("examples/digits/make_data.sh"),
        &[data_root.join("digits").as_os_str()],
    )
    .await?;
    open_for_sandbox(tmp.path())?;

    step("server on a temporary state folder");
    let (admin, admin_sha) = auth::new_token();
    let (platform, platform_sha) = auth::new_token();
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_root: data_root.clone(),
        state_dir,
        docker_host: args.docker_host.clone(),
        tokens: vec![
            TokenConfig {
                name: "demo-admin".into(),
                role: Role::Admin,
                sha256: admin_sha,
            },
            TokenConfig {
                name: "demo-platform".into(),
                role: Role::Submitter,
                sha256: platform_sha,
            },
        ],
        ..Config::default()
    };
    let app = Application::build_with_backend(config, backend.clone()).await?;
    let addr = format!("http://{}", app.local_addr());
    let instance = app.instance().to_owned();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until(std::future::pending()));
    println!("    listening on {addr}");

    let result = drive(&addr, &admin, &platform, repo).await;

    step("shutting down");
    stop.cancel();
    server.await.context("server task")??;
    let left: Vec<_> = backend
        .list_owned()
        .await?
        .into_iter()
        .filter(|c| c.instance == instance)
        .collect();
    if left.is_empty() {
        println!("    stopped; no container left behind");
    } else {
        println!("    warning: {} container(s) left behind", left.len());
    }
    result?;
    println!("\ndemo finished in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn drive(addr: &str, admin: &str, platform: &str, repo: &Path) -> Result<()> {
    let admin = Client::connect(addr, Some(admin)).await?;
    let platform = Client::connect(addr, Some(platform)).await?;
    let printer = Printer { json: false };

    step("creating the digits challenge (accuracy, public fraction 0.5)");
    let challenge = read_challenge_file(&repo.join("examples/digits/challenge.toml"))?;
    admin
        .challenges()
        .create_challenge(admin.request(pb::CreateChallengeRequest {
            challenge: Some(challenge),
        }))
        .await
        .map_err(super::server_error)?;

    step("submitting two participants' code: a scikit-learn model and a baseline");
    let mut ids = Vec::new();
    for (participant, solution) in [("alice", "good"), ("bob", "baseline")] {
        let bytes = super::archive_bytes(&repo.join("examples/digits/solutions").join(solution))?;
        let meta = pb::SubmitMetadata {
            challenge_id: "digits".into(),
            participant_id: participant.into(),
            kind: pb::SubmissionKind::Full as i32,
            ..Default::default()
        };
        let s = platform
            .submit(meta, bytes)
            .await
            .map_err(super::server_error)?;
        println!("    {participant:<6} {solution:<9} -> {}", s.id);
        ids.push(s.id);
    }

    step("live progress");
    let mut watches = Vec::new();
    for id in &ids {
        let client = platform.clone();
        let id = id.clone();
        watches.push(tokio::spawn(async move {
            client
                .watch(&id, |s| Printer { json: false }.watch_line(s))
                .await
        }));
    }
    let mut finals = Vec::new();
    for w in watches {
        finals.push(
            tokio::time::timeout(Duration::from_secs(180), w)
                .await
                .context("a run took too long")??
                .map_err(super::server_error)?,
        );
    }

    step("results (as the platform sees them: released public scores only)");
    for s in &finals {
        printer.submission(s);
        println!();
    }
    let board = platform
        .leaderboards()
        .get_leaderboard(platform.request(pb::GetLeaderboardRequest {
            challenge_id: "digits".into(),
            view: 0,
        }))
        .await
        .map_err(super::server_error)?
        .into_inner();
    printer.leaderboard(&board);
    let private = admin
        .leaderboards()
        .get_leaderboard(admin.request(pb::GetLeaderboardRequest {
            challenge_id: "digits".into(),
            view: pb::LeaderboardView::Private as i32,
        }))
        .await
        .map_err(super::server_error)?
        .into_inner();
    println!();
    printer.leaderboard(&private);
    Ok(())
}

fn step(what: &str) {
    println!("==> {what}");
}

/// Runs a script, echoing its output indented as progress.
async fn run_script(script: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let echo = |r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("    {line}");
            }
        })
    };
    let (a, b) = (echo(Box::new(out)), echo(Box::new(err)));
    let status = child.wait().await?;
    let _ = (a.await, b.await);
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

/// The sandbox user must be able to traverse the temporary folder and read the inputs.
fn open_for_sandbox(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(p: &Path) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_dir() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
            for e in std::fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        } else if meta.is_file() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    }
    walk(&root.join("data"))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
