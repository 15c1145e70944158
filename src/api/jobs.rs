//! The Jobs service (an addition to the v1 contract): thin, like the others.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{caller, challenge_id, convert, to_status};
use crate::domain::JobId;
use crate::jobs::Jobs;
use crate::pb;

/// The Jobs service.
pub struct JobsApi {
    /// The domain service.
    pub jobs: Jobs,
    /// Ends watch streams when the server stops.
    pub shutdown: CancellationToken,
}

fn job_id(raw: &str) -> Result<JobId, Status> {
    JobId::parse(raw).map_err(to_status)
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

#[tonic::async_trait]
impl pb::jobs_server::Jobs for JobsApi {
    async fn rescore_challenge(
        &self,
        req: Request<pb::RescoreChallengeRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let metric = convert::rescore_metric_from_pb(r.metric)?;
        let job = self
            .jobs
            .rescore(&caller, &challenge_id(&r.challenge_id)?, metric)
            .await?;
        Ok(Response::new(convert::job_to_pb(&job)))
    }

    async fn rerun_submissions(
        &self,
        req: Request<pb::RerunSubmissionsRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let filter = convert::rerun_filter_from_pb(r.participant_ids, r.submission_ids)?;
        let job = self
            .jobs
            .rerun(&caller, &challenge_id(&r.challenge_id)?, filter)
            .await?;
        Ok(Response::new(convert::job_to_pb(&job)))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&req)?;
        let job = self.jobs.get(&caller, &job_id(&req.get_ref().id)?).await?;
        Ok(Response::new(convert::job_to_pb(&job)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let challenge = if r.challenge_id.is_empty() {
            None
        } else {
            Some(challenge_id(&r.challenge_id)?)
        };
        let (jobs, next) = self
            .jobs
            .list(&caller, challenge, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(convert::job_to_pb).collect(),
            next_page_token: next,
        }))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = caller(&req)?;
        let rx = self
            .jobs
            .watch(&caller, &job_id(&req.get_ref().id)?, self.shutdown.clone())
            .await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|j| convert::job_to_pb(&j)).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&req)?;
        let job = self
            .jobs
            .cancel(&caller, &job_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(convert::job_to_pb(&job)))
    }

    async fn list_job_changes(
        &self,
        req: Request<pb::ListJobChangesRequest>,
    ) -> Result<Response<pb::ListJobChangesResponse>, Status> {
        let caller = caller(&req)?;
        let changes = self
            .jobs
            .changes(&caller, &job_id(&req.get_ref().id)?)
            .await?;
        Ok(Response::new(pb::ListJobChangesResponse {
            changes: changes.iter().map(convert::score_change_to_pb).collect(),
        }))
    }
}
