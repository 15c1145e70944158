//! The gRPC layer: thin adapters from the generated services to the domain. Each method
//! takes the caller from the request (put there by [`authenticate`]), converts the request
//! into domain types, calls the domain, and converts back. No decision is made here.

mod convert;
mod jobs;
mod status;

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::Audit;
use crate::auth::{Caller, Tokens};
use crate::challenges::Challenges;
use crate::domain::{ChallengeId, DomainError, ParticipantId, SubmissionId};
use crate::leaderboard::{self, Leaderboards};
use crate::pb;
use crate::submissions::Submissions;

pub use convert::{challenge_from_pb, challenge_to_pb, challenge_view_to_pb, submission_to_pb};
pub use jobs::JobsApi;
pub use status::to_status;

/// The interceptor that authenticates every call and records the caller.
pub fn authenticate(
    tokens: Arc<Tokens>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = tokens.authenticate(header).map_err(to_status)?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| to_status(DomainError::Unauthenticated("missing credentials".into())))
}

fn challenge_id(raw: &str) -> Result<ChallengeId, Status> {
    ChallengeId::parse(raw)
        .map_err(|_| to_status(DomainError::NotFound(format!("challenge {raw:?}"))))
}

fn submission_id(raw: &str) -> Result<SubmissionId, Status> {
    SubmissionId::parse(raw).map_err(to_status)
}

/// The Challenges service.
pub struct ChallengesApi {
    /// The domain service.
    pub challenges: Challenges,
}

#[tonic::async_trait]
impl pb::challenges_server::Challenges for ChallengesApi {
    async fn create_challenge(
        &self,
        req: Request<pb::CreateChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let caller = caller(&req)?;
        caller.require_admin("CreateChallenge")?;
        let c = req
            .into_inner()
            .challenge
            .ok_or_else(|| DomainError::invalid("challenge", "is missing"))?;
        let c = self
            .challenges
            .create(&caller, challenge_from_pb(c)?)
            .await?;
        Ok(Response::new(challenge_view_to_pb(&c)))
    }

    async fn get_challenge(
        &self,
        req: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let caller = caller(&req)?;
        let c = self
            .challenges
            .get(&caller, &challenge_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(challenge_view_to_pb(&c)))
    }

    async fn list_challenges(
        &self,
        req: Request<pb::ListChallengesRequest>,
    ) -> Result<Response<pb::ListChallengesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (items, next) = self
            .challenges
            .list(&caller, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListChallengesResponse {
            challenges: items.iter().map(challenge_view_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_challenge(
        &self,
        req: Request<pb::UpdateChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let caller = caller(&req)?;
        caller.require_admin("UpdateChallenge")?;
        let r = req.into_inner();
        let c = r
            .challenge
            .ok_or_else(|| DomainError::invalid("challenge", "is missing"))?;
        let c = self
            .challenges
            .update(&caller, challenge_from_pb(c)?, &r.update_mask)
            .await?;
        Ok(Response::new(challenge_view_to_pb(&c)))
    }

    async fn close_challenge(
        &self,
        req: Request<pb::CloseChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let caller = caller(&req)?;
        let c = self
            .challenges
            .close(&caller, &challenge_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(challenge_view_to_pb(&c)))
    }

    async fn get_challenge_card(
        &self,
        req: Request<pb::GetChallengeCardRequest>,
    ) -> Result<Response<pb::ChallengeCard>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let card = self
            .challenges
            .card(&caller, &challenge_id(&r.id)?, r.public_only)
            .await?;
        Ok(Response::new(convert::card_to_pb(&card)))
    }
}

/// The Submissions service.
pub struct SubmissionsApi {
    /// The domain service.
    pub submissions: Submissions,
    /// Ends watch streams when the server stops.
    pub shutdown: CancellationToken,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Submission, Status>> + Send>>;

#[tonic::async_trait]
impl pb::submissions_server::Submissions for SubmissionsApi {
    async fn submit(
        &self,
        req: Request<Streaming<pb::SubmitRequest>>,
    ) -> Result<Response<pb::Submission>, Status> {
        let caller = caller(&req)?;
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            DomainError::invalid("metadata", "the stream ended before the metadata")
        })?;
        let meta = match first.part {
            Some(pb::submit_request::Part::Metadata(m)) => convert::submit_meta_from_pb(m)?,
            _ => {
                return Err(DomainError::invalid(
                    "metadata",
                    "the first message must carry the metadata",
                )
                .into());
            }
        };
        let chunks = stream.map(|m| match m {
            Ok(pb::SubmitRequest {
                part: Some(pb::submit_request::Part::Chunk(bytes)),
            }) => Ok(bytes::Bytes::from(bytes)),
            Ok(_) => Err(DomainError::invalid(
                "chunk",
                "only the first message may carry metadata",
            )),
            Err(status) => Err(DomainError::Cancelled(format!(
                "upload interrupted: {}",
                status.message()
            ))),
        });
        let s = self
            .submissions
            .submit(&caller, meta, Box::pin(chunks))
            .await?;
        Ok(Response::new(submission_to_pb(&s)))
    }

    async fn get_submission(
        &self,
        req: Request<pb::GetSubmissionRequest>,
    ) -> Result<Response<pb::Submission>, Status> {
        let caller = caller(&req)?;
        let s = self
            .submissions
            .get(&caller, &submission_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(submission_to_pb(&s)))
    }

    type WatchSubmissionStream = WatchStream;

    async fn watch_submission(
        &self,
        req: Request<pb::WatchSubmissionRequest>,
    ) -> Result<Response<Self::WatchSubmissionStream>, Status> {
        let caller = caller(&req)?;
        let id = submission_id(&req.get_ref().id)?;
        let rx = self
            .submissions
            .watch(&caller, &id, self.shutdown.clone())
            .await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|v| submission_to_pb(&v)).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_submission(
        &self,
        req: Request<pb::CancelSubmissionRequest>,
    ) -> Result<Response<pb::Submission>, Status> {
        let caller = caller(&req)?;
        let s = self
            .submissions
            .cancel(&caller, &submission_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(submission_to_pb(&s)))
    }

    async fn list_submissions(
        &self,
        req: Request<pb::ListSubmissionsRequest>,
    ) -> Result<Response<pb::ListSubmissionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let participant = if r.participant_id.is_empty() {
            None
        } else {
            Some(ParticipantId::parse(&r.participant_id)?)
        };
        let (items, next) = self
            .submissions
            .list(
                &caller,
                &challenge_id(&r.challenge_id)?,
                participant,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListSubmissionsResponse {
            submissions: items.iter().map(submission_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_submission_logs(
        &self,
        req: Request<pb::GetSubmissionLogsRequest>,
    ) -> Result<Response<pb::SubmissionLogs>, Status> {
        let caller = caller(&req)?;
        let logs = self
            .submissions
            .logs(&caller, &submission_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(pb::SubmissionLogs {
            stdout: logs.stdout,
            stderr: logs.stderr,
            truncated: logs.truncated,
        }))
    }

    async fn select_submissions(
        &self,
        req: Request<pb::SelectSubmissionsRequest>,
    ) -> Result<Response<pb::SelectSubmissionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let ids = r
            .submission_ids
            .iter()
            .map(|id| submission_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let v = self
            .submissions
            .select(
                &caller,
                &challenge_id(&r.challenge_id)?,
                ParticipantId::parse(&r.participant_id)?,
                ids,
            )
            .await?;
        Ok(Response::new(convert::selection_to_pb(&v)))
    }

    async fn get_selection(
        &self,
        req: Request<pb::GetSelectionRequest>,
    ) -> Result<Response<pb::SelectSubmissionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let v = self
            .submissions
            .selection(
                &caller,
                &challenge_id(&r.challenge_id)?,
                ParticipantId::parse(&r.participant_id)?,
            )
            .await?;
        Ok(Response::new(convert::selection_to_pb(&v)))
    }
}

/// The Leaderboards service.
pub struct LeaderboardsApi {
    /// The domain service.
    pub leaderboards: Leaderboards,
}

#[tonic::async_trait]
impl pb::leaderboards_server::Leaderboards for LeaderboardsApi {
    async fn get_leaderboard(
        &self,
        req: Request<pb::GetLeaderboardRequest>,
    ) -> Result<Response<pb::Leaderboard>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let view = match pb::LeaderboardView::try_from(r.view) {
            Ok(pb::LeaderboardView::Private) => leaderboard::View::Private,
            Ok(_) => leaderboard::View::Public,
            Err(_) => return Err(DomainError::invalid("view", "unknown leaderboard view").into()),
        };
        let board = self
            .leaderboards
            .get(&caller, &challenge_id(&r.challenge_id)?, view)
            .await?;
        Ok(Response::new(pb::Leaderboard {
            challenge_id: r.challenge_id,
            view: match view {
                leaderboard::View::Public => pb::LeaderboardView::Public,
                leaderboard::View::Private => pb::LeaderboardView::Private,
            } as i32,
            metric: board.metric,
            greater_is_better: board.greater_is_better,
            entries: board
                .entries
                .into_iter()
                .map(|e| pb::LeaderboardEntry {
                    rank: e.rank,
                    platform: e.platform,
                    participant_id: e.participant_id,
                    score: e.score,
                    submission_id: e.submission_id,
                    submissions: e.submissions,
                })
                .collect(),
        }))
    }
}

/// The Audit service (an addition to the v1 contract).
pub struct AuditApi {
    /// The domain service.
    pub audit: Audit,
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditApi {
    async fn list_releases(
        &self,
        req: Request<pb::ListReleasesRequest>,
    ) -> Result<Response<pb::ListReleasesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let challenge = (!r.challenge_id.is_empty()).then_some(r.challenge_id);
        let token = (!r.token_name.is_empty()).then_some(r.token_name);
        let (items, next) = self
            .audit
            .list(&caller, challenge, token, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListReleasesResponse {
            releases: items
                .into_iter()
                .map(|r| pb::Release {
                    at: Some(convert::timestamp(r.at)),
                    token_name: r.token_name,
                    challenge_id: r.challenge_id,
                    submission_id: r.submission_id,
                    what: r.what,
                    values: r.values.into_iter().collect(),
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn get_leakage(
        &self,
        req: Request<pb::GetLeakageRequest>,
    ) -> Result<Response<pb::Leakage>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let ledger = self
            .audit
            .leakage(&caller, &challenge_id(&r.challenge_id)?)
            .await?;
        Ok(Response::new(convert::leakage_to_pb_ledger(
            &r.challenge_id,
            &ledger,
        )))
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let caller = caller(&req)?;
        let workers = self.audit.workers(&caller).await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers.iter().map(convert::worker_to_pb).collect(),
        }))
    }
}
