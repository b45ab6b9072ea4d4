//! The organization's background jobs, and the dead-letter list: jobs that ran
//! out of attempts or failed permanently, to retry or discard (owners and admins).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::{JobId, JobKind, JobState};
use steward_store::Job;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(discard_job))
}

#[derive(Serialize, ToSchema)]
pub struct JobDto {
    id: JobId,
    kind: JobKind,
    state: JobState,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    #[schema(value_type = Object)]
    payload: Value,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            kind: j.kind,
            state: j.state,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            last_error: j.last_error,
            payload: j.payload,
            run_at: j.run_at,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this state, e.g. `dead`.
    state: Option<JobState>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    jobs: Vec<JobDto>,
}

/// The organization's jobs, newest first; `?state=dead` is the dead-letter list.
#[utoipa::path(get, path = "/jobs", tag = "jobs", security(("bearer" = [])),
    params(JobsQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<SharedState>,
    auth: Auth,
    Query(query): Query<JobsQuery>,
) -> ApiResult<axum::Json<JobList>> {
    auth.require_admin()?;
    let limit = crate::routes::page_limit(query.limit)?;
    let jobs = state
        .store
        .list_jobs(&auth.0.scope(), query.state, limit)
        .await?;
    Ok(axum::Json(JobList {
        jobs: jobs.into_iter().map(Into::into).collect(),
    }))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<JobDto>> {
    auth.require_admin()?;
    Ok(axum::Json(
        state.store.job(&auth.0.scope(), id.into()).await?.into(),
    ))
}

/// Put a dead job back in the queue with fresh attempts.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = JobDto), (status = 403, body = ErrorBody), (status = 404, description = "no such dead job", body = ErrorBody)))]
async fn retry_job(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<JobDto>> {
    auth.require_admin()?;
    idempotency::answer_from(StatusCode::OK, |job: &Job| JobDto::from(job.clone()));
    Ok(axum::Json(
        state
            .store
            .retry_dead_job(&auth.0.scope(), id.into())
            .await?
            .into(),
    ))
}

/// Delete a dead job.
#[utoipa::path(post, path = "/jobs/{id}/discard", tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, description = "no such dead job", body = ErrorBody)))]
async fn discard_job(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    idempotency::answer_known::<()>(StatusCode::NO_CONTENT, None);
    state
        .store
        .discard_dead_job(&auth.0.scope(), id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
