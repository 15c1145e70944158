//! The `holdout` binary: parses the command line, sets up logging, and calls the library.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use holdout::cli::{ChallengeCommand, ClientArgs, ClientCommand};
use holdout::config::{Config, Overrides, Role};

/// Holdout: run data challenges on private data; participants submit code, only scores leave.
#[derive(Debug, Parser)]
#[command(name = "holdout", version, about)]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data root (overrides the config).
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// State folder (overrides the config).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Run an execution worker: claim submissions from the shared PostgreSQL store and run
    /// them on this host's Docker Engine (no API; metrics only).
    Worker {
        /// TOML config file (the server's, with `database_url = "postgres://..."`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data root (overrides the config).
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// State folder (overrides the config): the worker's own.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the digits challenge end to end on a temporary server (needs a Docker Engine).
    Demo(holdout::cli::demo::DemoArgs),
    /// Score a predictions file locally exactly as the server does.
    Score(holdout::scoring::cli::ScoreArgs),
    /// Back up a (running) server's state folder: database snapshot, archives, logs, losses.
    Backup(holdout::backup::BackupArgs),
    /// Restore a backup into a new state folder.
    Restore(holdout::backup::RestoreArgs),
    /// Run a solution on a challenge's public sample exactly as a SMOKE submission runs on
    /// the server (same image, hardening, limits, verdicts, messages and scoring), with its
    /// output shown live; needs a local Docker Engine, no server and no token.
    RunLocal(holdout::cli::run_local::RunLocalArgs),
    /// Runtime images (admin, on the server's host).
    #[command(subcommand)]
    Image(holdout::cli::image::ImageCommand),
    /// Prepare a challenge's data locally: pseudonymise files, make a key.
    #[command(subcommand)]
    Prepare(holdout::cli::prepare::PrepareCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a fresh random token and the [[tokens]] block to paste into the config.
    New {
        /// Who holds it.
        #[arg(long)]
        name: String,
        /// admin or submitter.
        #[arg(long)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Submitter,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDOUT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The demo prints its own progress; the server inside it logs only warnings.
fn init_tracing_quiet() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDOUT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Score(args) => {
            let code =
                holdout::scoring::cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
            ExitCode::from(code as u8)
        }
        Command::Backup(args) => match holdout::backup::backup(&args.state_dir, &args.to) {
            Ok(m) => {
                println!(
                    "backed up {} submissions, {} archives, {} files ({} bytes) to {}",
                    m.submissions,
                    m.archives,
                    m.files,
                    m.bytes,
                    args.to.display()
                );
                for sha in &m.missing_archives {
                    eprintln!("holdout backup: archive {sha} was already deleted by retention");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("holdout backup: {}", holdout::domain::error_chain(&e));
                ExitCode::FAILURE
            }
        },
        Command::Restore(args) => match holdout::backup::restore(&args.from, &args.state_dir) {
            Ok(m) => {
                println!(
                    "restored {} submissions and {} archives into {}; start the server with state_dir = {:?}",
                    m.submissions,
                    m.archives,
                    args.state_dir.display(),
                    args.state_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("holdout restore: {}", holdout::domain::error_chain(&e));
                ExitCode::FAILURE
            }
        },
        Command::RunLocal(args) => {
            init_tracing_quiet();
            let json = cli.client.json;
            runtime().block_on(async move {
                match holdout::cli::run_local::run(&args, json).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("holdout run-local: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Image(cmd) => {
            init_tracing_quiet();
            runtime().block_on(async move {
                match holdout::cli::image::run(&cmd).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("holdout image: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Demo(args) => {
            init_tracing_quiet();
            runtime().block_on(async move {
                match holdout::cli::demo::run(&args).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("holdout demo: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Token(TokenCommand::New { name, role }) => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Submitter => Role::Submitter,
            };
            let (token, sha256) = holdout::auth::new_token();
            println!("token: {token}");
            println!("(keep it secret; the server stores only its digest)\n");
            println!(
                "[[tokens]]\nname = {name:?}\nrole = \"{}\"\nsha256 = \"{sha256}\"",
                role.as_str()
            );
            ExitCode::SUCCESS
        }
        Command::Serve {
            config,
            listen,
            data_root,
            state_dir,
            log_format,
        } => {
            init_tracing(log_format);
            let env: HashMap<String, String> = std::env::vars().collect();
            let overrides = Overrides {
                listen,
                data_root,
                state_dir,
            };
            let config = match Config::load(config.as_deref(), &env, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("holdout: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime().block_on(async move {
                match holdout::app::Application::build(config).await {
                    Ok(app) => match app.run_until(holdout::app::shutdown_signal()).await {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("holdout: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    Err(e) => {
                        eprintln!("holdout: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Worker {
            config,
            data_root,
            state_dir,
            log_format,
        } => {
            init_tracing(log_format);
            let env: HashMap<String, String> = std::env::vars().collect();
            let overrides = Overrides {
                listen: None,
                data_root,
                state_dir,
            };
            let config = match Config::load(config.as_deref(), &env, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("holdout: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime().block_on(async move {
                match holdout::app::WorkerProcess::build(config).await {
                    Ok(worker) => {
                        worker.run_until(holdout::app::shutdown_signal()).await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("holdout worker: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Prepare(command) => ExitCode::from(holdout::cli::prepare::run_prepare(
            &command,
            cli.client.json,
        )),
        Command::Client(ClientCommand::Challenge(ChallengeCommand::Check(args))) => {
            ExitCode::from(holdout::cli::prepare::run_check(&args, cli.client.json))
        }
        Command::Client(command) => {
            let args = cli.client;
            runtime().block_on(async move {
                match holdout::cli::run(&args, command).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("holdout: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}
