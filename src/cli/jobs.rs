//! `holdout challenge rescore|rerun` and `holdout job ...`: admins' maintenance jobs, with a
//! progress bar on a terminal (one line per change otherwise, so logs stay readable).

use std::io::{IsTerminal, Write};

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::{Client, server_error};
use crate::pb;
use crate::pb::jobs_client::JobsClient;

/// `holdout job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, newest first.
    List {
        /// Only this challenge's.
        #[arg(long)]
        challenge: Option<String>,
    },
    /// Show a job.
    Get {
        /// Job id.
        id: String,
    },
    /// Follow a job with a progress bar until it ends.
    Watch {
        /// Job id.
        id: String,
    },
    /// Cancel a running job: nothing it computed is written.
    Cancel {
        /// Job id.
        id: String,
    },
    /// What a finished job did to each submission: old and new exact scores.
    Changes {
        /// Job id.
        id: String,
    },
}

impl Client {
    /// The Jobs client.
    pub fn jobs(&self) -> JobsClient<tonic::transport::Channel> {
        JobsClient::new(self.channel.clone())
    }
}

fn state_name(s: i32) -> &'static str {
    pb::JobState::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("JOB_STATE_")
}

fn job_json(j: &pb::Job) -> Value {
    json!({
        "id": j.id,
        "challenge_id": j.challenge_id,
        "kind": pb::JobKind::try_from(j.kind).map(|k| k.as_str_name()).unwrap_or("UNKNOWN").trim_start_matches("JOB_KIND_"),
        "state": state_name(j.state),
        "done": j.done,
        "total": j.total,
        "created_by": j.created_by,
        "message": j.message,
    })
}

fn print_job(json: bool, j: &pb::Job) {
    if json {
        println!("{}", job_json(j));
    } else {
        println!(
            "job {} {} on {}: {} ({}/{}){}",
            j.id,
            pb::JobKind::try_from(j.kind)
                .map(|k| k.as_str_name())
                .unwrap_or("UNKNOWN")
                .trim_start_matches("JOB_KIND_")
                .to_ascii_lowercase(),
            j.challenge_id,
            state_name(j.state),
            j.done,
            j.total,
            if j.message.is_empty() {
                String::new()
            } else {
                format!(" - {}", j.message)
            }
        );
    }
}

/// The progress bar: `[#####.....] 12/40 RUNNING`, redrawn in place.
pub fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        (done.min(total) as usize * width) / total as usize
    };
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

/// Follows a job until it ends; a bar on a terminal, a line per update otherwise. Returns
/// the last state; a job that did not finish makes the command fail.
async fn watch(client: &Client, id: &str, json: bool) -> Result<()> {
    let mut stream = client
        .jobs()
        .watch_job(client.request(pb::WatchJobRequest { id: id.into() }))
        .await
        .map_err(server_error)?
        .into_inner();
    let terminal = !json && std::io::stderr().is_terminal();
    let mut last = None;
    while let Some(j) = stream.message().await.map_err(server_error)? {
        if terminal {
            eprint!(
                "\r\x1b[2K{} {}",
                bar(j.done, j.total, 30),
                state_name(j.state)
            );
            let _ = std::io::stderr().flush();
        } else if !json {
            println!("{} {}/{}", state_name(j.state), j.done, j.total);
        }
        last = Some(j);
    }
    if terminal {
        eprintln!();
    }
    let Some(last) = last else {
        bail!("the watch ended without an update");
    };
    print_job(json, &last);
    if last.state != pb::JobState::Finished as i32 {
        bail!("job {} ended {}", last.id, state_name(last.state));
    }
    Ok(())
}

/// `holdout challenge rescore ID [--metric M] [--wait]`.
pub async fn rescore(
    client: &Client,
    json: bool,
    challenge_id: String,
    metric: Option<String>,
    wait: bool,
) -> Result<()> {
    let metric = match metric {
        None => pb::Metric::Unspecified,
        Some(name) => {
            let m: crate::scoring::Metric = name.parse().map_err(anyhow::Error::msg)?;
            pb::Metric::from_str_name(&format!("METRIC_{}", m.name().to_ascii_uppercase()))
                .unwrap_or(pb::Metric::Unspecified)
        }
    };
    let job = client
        .jobs()
        .rescore_challenge(client.request(pb::RescoreChallengeRequest {
            challenge_id,
            metric: metric as i32,
        }))
        .await
        .map_err(server_error)?
        .into_inner();
    started(client, json, &job, wait).await
}

/// A job just started: followed to its end with `--wait`, else printed as it is.
async fn started(client: &Client, json: bool, job: &pb::Job, wait: bool) -> Result<()> {
    if wait {
        watch(client, &job.id, json).await
    } else {
        print_job(json, job);
        Ok(())
    }
}

/// `holdout challenge rerun ID [--participant P]... [--submission S]... [--wait]`.
pub async fn rerun(
    client: &Client,
    json: bool,
    req: pb::RerunSubmissionsRequest,
    wait: bool,
) -> Result<()> {
    let job = client
        .jobs()
        .rerun_submissions(client.request(req))
        .await
        .map_err(server_error)?
        .into_inner();
    started(client, json, &job, wait).await
}

/// `holdout job ...`.
pub async fn run(client: &Client, json: bool, cmd: JobCommand) -> Result<()> {
    match cmd {
        JobCommand::List { challenge } => {
            let mut token = String::new();
            loop {
                let r = client
                    .jobs()
                    .list_jobs(client.request(pb::ListJobsRequest {
                        challenge_id: challenge.clone().unwrap_or_default(),
                        page_size: 500,
                        page_token: token,
                    }))
                    .await
                    .map_err(server_error)?
                    .into_inner();
                for j in &r.jobs {
                    print_job(json, j);
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
        }
        JobCommand::Get { id } => {
            let j = client
                .jobs()
                .get_job(client.request(pb::GetJobRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            print_job(json, &j);
        }
        JobCommand::Watch { id } => watch(client, &id, json).await?,
        JobCommand::Cancel { id } => {
            let j = client
                .jobs()
                .cancel_job(client.request(pb::CancelJobRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            print_job(json, &j);
        }
        JobCommand::Changes { id } => {
            let r = client
                .jobs()
                .list_job_changes(client.request(pb::ListJobChangesRequest { id }))
                .await
                .map_err(server_error)?
                .into_inner();
            for c in &r.changes {
                let sorted = |m: &std::collections::HashMap<String, f64>| {
                    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                    v
                };
                if json {
                    println!(
                        "{}",
                        json!({
                            "submission_id": c.submission_id,
                            "platform": c.platform,
                            "participant_id": c.participant_id,
                            "outcome": c.outcome,
                            "old_public": c.old_public,
                            "old_private": c.old_private,
                            "new_public": c.new_public,
                            "new_private": c.new_private,
                        })
                    );
                } else {
                    println!(
                        "{} {}/{} {}: public {:?} -> {:?}, private {:?} -> {:?}",
                        c.submission_id,
                        c.platform,
                        c.participant_id,
                        c.outcome,
                        sorted(&c.old_public),
                        sorted(&c.new_public),
                        sorted(&c.old_private),
                        sorted(&c.new_private),
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 0, 4), "[....] 0/0");
        assert_eq!(bar(1, 4, 4), "[#...] 1/4");
        assert_eq!(bar(4, 4, 4), "[####] 4/4");
        assert_eq!(bar(9, 4, 4), "[####] 9/4");
    }
}
