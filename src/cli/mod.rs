//! The `holdout` command-line client: one subcommand per RPC, readable output or `--json`,
//! and one clear line plus a non-zero exit for any error the server returns.
//!
//! It is a plain gRPC client of the public API; it shares only the challenge file format
//! (the domain's serde shape) and the archive packer with the server.

pub mod demo;
pub mod image;
pub mod jobs;
mod output;
pub mod prepare;
pub mod run_local;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::pb;
use crate::pb::challenges_client::ChallengesClient;
use crate::pb::leaderboards_client::LeaderboardsClient;
use crate::pb::submissions_client::SubmissionsClient;

/// Where the server is and who we are.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "HOLDOUT_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// Bearer token.
    #[arg(long, env = "HOLDOUT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `holdout challenge ...`
#[derive(Debug, Subcommand)]
pub enum ChallengeCommand {
    /// Create a challenge from a TOML file that mirrors the Challenge message.
    Create {
        /// The challenge file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Show one challenge.
    Get {
        /// Challenge id.
        id: String,
    },
    /// List challenges.
    List,
    /// Replace some fields of a challenge from a TOML file.
    Update {
        /// The challenge file (its id names the challenge).
        #[arg(long)]
        file: PathBuf,
        /// Fields to replace: title, runtime, limits, release, quota, opens_at, closes_at,
        /// preparation (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
    },
    /// Close a challenge.
    Close {
        /// Challenge id.
        id: String,
    },
    /// Rescore every scored FULL submission from its kept predictions, against the labels
    /// as they are now, or with another built-in metric (admin; starts a job).
    Rescore {
        /// Challenge id.
        id: String,
        /// A built-in metric to rescore with (it becomes the challenge's metric).
        #[arg(long)]
        metric: Option<String>,
        /// Follow the job with a progress bar until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Run stored archives again (all scored or failed FULL submissions, or those of the
    /// given participants / ids) with the challenge's current data and image, then swap
    /// their results in all at once (admin; starts a job; never charged).
    Rerun {
        /// Challenge id.
        id: String,
        /// Only this participant's submissions (repeatable).
        #[arg(long = "participant")]
        participants: Vec<String>,
        /// Only this submission (repeatable).
        #[arg(long = "submission")]
        submissions: Vec<String>,
        /// Follow the job with a progress bar until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Print the data card the server's preparation check stored: admins the full card,
    /// submitters the public one (Markdown; the card's JSON document with --json).
    Card {
        /// Challenge id.
        id: String,
        /// The public card (what a platform may show participants), for an admin token.
        #[arg(long)]
        public: bool,
    },
    /// Check a challenge's data folder before it opens (local, no server): integrity,
    /// leakage of the target, personal data, k-anonymity; writes the data cards.
    Check(prepare::CheckArgs),
}

/// Client subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Manage challenges (admin).
    #[command(subcommand)]
    Challenge(ChallengeCommand),
    /// Submit a folder (packed as tar.gz) or an archive (sent as is).
    Submit {
        /// Folder or .tar.gz/.zip archive.
        path: PathBuf,
        /// Challenge id.
        #[arg(long)]
        challenge: String,
        /// Participant id.
        #[arg(long)]
        participant: String,
        /// A SMOKE run on the public sample.
        #[arg(long)]
        smoke: bool,
        /// Follow it until it ends.
        #[arg(long)]
        watch: bool,
        /// Idempotency key: the same key returns the first submission.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show a submission.
    Status {
        /// Submission id.
        id: String,
    },
    /// Follow a submission, a line per state, until it ends.
    Watch {
        /// Submission id.
        id: String,
    },
    /// Cancel a queued or running submission.
    Cancel {
        /// Submission id.
        id: String,
    },
    /// List submissions of a challenge.
    List {
        /// Challenge id.
        #[arg(long)]
        challenge: String,
        /// Only this participant's.
        #[arg(long)]
        participant: Option<String>,
    },
    /// Print a run's captured output (admins: any run; submitters: SMOKE runs).
    Logs {
        /// Submission id.
        id: String,
    },
    /// What was released to submitter tokens, and with --challenge its leakage ledger
    /// (admin).
    Audit {
        /// Only this challenge.
        #[arg(long)]
        challenge: Option<String>,
        /// Only this token name.
        #[arg(long)]
        token_name: Option<String>,
    },
    /// The execution workers of a PostgreSQL-backed deployment: health, runs, leases, and
    /// the challenges each refuses (admin).
    Workers,
    /// Maintenance jobs (admin): get, watch, cancel, changes.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Select submissions for the final ranking (replacing the participant's selection),
    /// or with no ids show the current selection.
    Select {
        /// Challenge id.
        challenge: String,
        /// Participant id.
        #[arg(long)]
        participant: String,
        /// Submission ids to select (at most the challenge's final_selections).
        ids: Vec<String>,
        /// Clear the selection (the default, the best by public score, then applies).
        #[arg(long, conflicts_with = "ids")]
        clear: bool,
    },
    /// Show a leaderboard.
    Leaderboard {
        /// Challenge id.
        id: String,
        /// The private leaderboard.
        #[arg(long)]
        private: bool,
    },
}

/// A connected client.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    /// Connects to `addr` (scheme optional).
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Client> {
        let addr = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(addr.clone())
            .with_context(|| format!("bad server address {addr:?}"))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the holdout server at {addr}"))?;
        let token = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .context("the token has characters that cannot be sent")?;
        Ok(Client { channel, token })
    }

    /// A request carrying the token.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        req
    }

    /// The Challenges client.
    pub fn challenges(&self) -> ChallengesClient<Channel> {
        ChallengesClient::new(self.channel.clone())
    }

    /// The Submissions client.
    pub fn submissions(&self) -> SubmissionsClient<Channel> {
        SubmissionsClient::new(self.channel.clone()).max_decoding_message_size(256 << 20)
    }

    /// The Leaderboards client.
    pub fn leaderboards(&self) -> LeaderboardsClient<Channel> {
        LeaderboardsClient::new(self.channel.clone())
    }

    /// The Audit client.
    pub fn audit(&self) -> pb::audit_client::AuditClient<Channel> {
        pb::audit_client::AuditClient::new(self.channel.clone())
    }

    /// Uploads an archive (bytes) as a submission.
    pub async fn submit(
        &self,
        meta: pb::SubmitMetadata,
        archive: Vec<u8>,
    ) -> Result<pb::Submission, Status> {
        let mut messages = vec![pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Metadata(meta)),
        }];
        for chunk in archive.chunks(1 << 20) {
            messages.push(pb::SubmitRequest {
                part: Some(pb::submit_request::Part::Chunk(chunk.to_vec())),
            });
        }
        let req = self.request(futures::stream::iter(messages));
        Ok(self.submissions().submit(req).await?.into_inner())
    }

    /// Follows a submission, calling `each` per update, until it ends; returns the last.
    pub async fn watch(
        &self,
        id: &str,
        mut each: impl FnMut(&pb::Submission),
    ) -> Result<pb::Submission, Status> {
        let mut stream = self
            .submissions()
            .watch_submission(self.request(pb::WatchSubmissionRequest { id: id.into() }))
            .await?
            .into_inner();
        let mut last = None;
        while let Some(s) = stream.message().await? {
            each(&s);
            last = Some(s);
        }
        last.ok_or_else(|| Status::unavailable("the watch ended without an update"))
    }
}

/// Reads a challenge TOML file into the wire message.
pub fn read_challenge_file(path: &Path) -> Result<pb::Challenge> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let c: crate::domain::Challenge = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    Ok(crate::api::challenge_to_pb(&c))
}

/// Packs `path` into archive bytes: a folder as tar.gz, a file as is.
pub fn archive_bytes(path: &Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut out = Vec::new();
        crate::archive::pack_dir(path, &mut out)
            .with_context(|| format!("cannot pack {}", path.display()))?;
        Ok(out)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Runs one client command; errors are returned for `main` to print as one line.
pub async fn run(args: &ClientArgs, cmd: ClientCommand) -> Result<()> {
    let client = Client::connect(&args.addr, args.token.as_deref()).await?;
    let out = output::Printer { json: args.json };
    match cmd {
        ClientCommand::Challenge(c) => match c {
            ChallengeCommand::Create { file } => {
                let challenge = read_challenge_file(&file)?;
                let c = client
                    .challenges()
                    .create_challenge(client.request(pb::CreateChallengeRequest {
                        challenge: Some(challenge),
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.challenge(&c);
            }
            ChallengeCommand::Get { id } => {
                let c = client
                    .challenges()
                    .get_challenge(client.request(pb::GetChallengeRequest { id }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.challenge(&c);
            }
            ChallengeCommand::List => {
                let mut token = String::new();
                let mut all = Vec::new();
                loop {
                    let r = client
                        .challenges()
                        .list_challenges(client.request(pb::ListChallengesRequest {
                            page_size: 200,
                            page_token: token,
                        }))
                        .await
                        .map_err(server_error)?
                        .into_inner();
                    all.extend(r.challenges);
                    if r.next_page_token.is_empty() {
                        break;
                    }
                    token = r.next_page_token;
                }
                out.challenges(&all);
            }
            ChallengeCommand::Update { file, fields } => {
                let challenge = read_challenge_file(&file)?;
                let c = client
                    .challenges()
                    .update_challenge(client.request(pb::UpdateChallengeRequest {
                        challenge: Some(challenge),
                        update_mask: fields,
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.challenge(&c);
            }
            ChallengeCommand::Card { id, public } => {
                let card = client
                    .challenges()
                    .get_challenge_card(client.request(pb::GetChallengeCardRequest {
                        id,
                        public_only: public,
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.card(&card);
            }
            ChallengeCommand::Close { id } => {
                let c = client
                    .challenges()
                    .close_challenge(client.request(pb::CloseChallengeRequest { id }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.challenge(&c);
            }
            ChallengeCommand::Rescore { id, metric, wait } => {
                jobs::rescore(&client, out.json, id, metric, wait).await?;
            }
            ChallengeCommand::Rerun {
                id,
                participants,
                submissions,
                wait,
            } => {
                let req = pb::RerunSubmissionsRequest {
                    challenge_id: id,
                    participant_ids: participants,
                    submission_ids: submissions,
                };
                jobs::rerun(&client, out.json, req, wait).await?;
            }
            ChallengeCommand::Check(_) => {
                bail!("`holdout challenge check` runs locally, not through a server")
            }
        },
        ClientCommand::Submit {
            path,
            challenge,
            participant,
            smoke,
            watch,
            idempotency_key,
        } => {
            let bytes = archive_bytes(&path)?;
            let meta = pb::SubmitMetadata {
                challenge_id: challenge,
                participant_id: participant,
                kind: if smoke {
                    pb::SubmissionKind::Smoke
                } else {
                    pb::SubmissionKind::Full
                } as i32,
                format: pb::ArchiveFormat::Unspecified as i32,
                idempotency_key: idempotency_key.unwrap_or_default(),
                sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            };
            let s = client.submit(meta, bytes).await.map_err(server_error)?;
            if watch {
                let last = client
                    .watch(&s.id, |s| out.watch_line(s))
                    .await
                    .map_err(server_error)?;
                out.submission(&last);
                exit_for(&last)?;
            } else {
                out.submission(&s);
            }
        }
        ClientCommand::Status { id } => {
            let s = client
                .submissions()
                .get_submission(client.request(pb::GetSubmissionRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            out.submission(&s);
        }
        ClientCommand::Watch { id } => {
            let last = client
                .watch(&id, |s| out.watch_line(s))
                .await
                .map_err(server_error)?;
            if out.json {
                out.submission(&last);
            }
            exit_for(&last)?;
        }
        ClientCommand::Cancel { id } => {
            let s = client
                .submissions()
                .cancel_submission(client.request(pb::CancelSubmissionRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            out.submission(&s);
        }
        ClientCommand::List {
            challenge,
            participant,
        } => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let r = client
                    .submissions()
                    .list_submissions(client.request(pb::ListSubmissionsRequest {
                        challenge_id: challenge.clone(),
                        participant_id: participant.clone().unwrap_or_default(),
                        page_size: 200,
                        page_token: token,
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                all.extend(r.submissions);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            out.submissions(&all);
        }
        ClientCommand::Logs { id } => {
            let logs = client
                .submissions()
                .get_submission_logs(client.request(pb::GetSubmissionLogsRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            out.logs(&logs);
        }
        ClientCommand::Audit {
            challenge,
            token_name,
        } => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let r = client
                    .audit()
                    .list_releases(client.request(pb::ListReleasesRequest {
                        challenge_id: challenge.clone().unwrap_or_default(),
                        token_name: token_name.clone().unwrap_or_default(),
                        page_size: 500,
                        page_token: token,
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                all.extend(r.releases);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            out.releases(&all);
            if let Some(challenge_id) = challenge {
                let l = client
                    .audit()
                    .get_leakage(client.request(pb::GetLeakageRequest { challenge_id }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                out.leakage(&l);
            }
        }
        ClientCommand::Workers => {
            let r = client
                .audit()
                .list_workers(client.request(pb::ListWorkersRequest {}))
                .await
                .map_err(server_error)?
                .into_inner();
            out.workers(&r.workers);
        }
        ClientCommand::Job(cmd) => jobs::run(&client, out.json, cmd).await?,
        ClientCommand::Select {
            challenge,
            participant,
            ids,
            clear,
        } => {
            let r = if ids.is_empty() && !clear {
                client
                    .submissions()
                    .get_selection(client.request(pb::GetSelectionRequest {
                        challenge_id: challenge,
                        participant_id: participant,
                    }))
                    .await
            } else {
                client
                    .submissions()
                    .select_submissions(client.request(pb::SelectSubmissionsRequest {
                        challenge_id: challenge,
                        participant_id: participant,
                        submission_ids: ids,
                    }))
                    .await
            }
            .map_err(server_error)?
            .into_inner();
            out.selection(&r);
        }
        ClientCommand::Leaderboard { id, private } => {
            let view = if private {
                pb::LeaderboardView::Private
            } else {
                pb::LeaderboardView::Public
            };
            let b = client
                .leaderboards()
                .get_leaderboard(client.request(pb::GetLeaderboardRequest {
                    challenge_id: id,
                    view: view as i32,
                }))
                .await
                .map_err(server_error)?
                .into_inner();
            out.leaderboard(&b);
        }
    }
    Ok(())
}

/// A server error as one line: the code and the server's message.
pub fn server_error(s: Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", code_name(s.code()), s.message())
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .fold(String::new(), |mut acc, c| {
            if c.is_uppercase() && !acc.is_empty() {
                acc.push('_');
            }
            acc.push(c.to_ascii_uppercase());
            acc
        })
}

/// A watched submission that did not succeed makes the command exit non-zero.
fn exit_for(s: &pb::Submission) -> Result<()> {
    if s.state == pb::SubmissionState::Succeeded as i32 {
        Ok(())
    } else {
        bail!(
            "submission {} ended {}",
            s.id,
            output::verdict_name(s.verdict)
        )
    }
}
