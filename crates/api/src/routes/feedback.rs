//! A person's rating of a reply. Advisors rate nothing (they see no
//! conversations); an API key rates as the member who made it.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{FeedbackComment, MessageId, PersonId, Rating};
use steward_store::{Feedback, Rated, Sender};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(rate_reply, reply_feedback))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateReply {
    rating: Rating,
    /// Why, in 1 to 2,000 characters.
    #[schema(schema_with = crate::contract::feedback_comment)]
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackDto {
    message_id: MessageId,
    /// Who rated it (`GET /people/{id}`).
    person_id: PersonId,
    rating: Rating,
    comment: Option<String>,
    /// When this person first rated the reply.
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Feedback> for FeedbackDto {
    fn from(f: Feedback) -> Self {
        Self {
            message_id: f.message_id,
            person_id: f.person_id,
            rating: f.rating,
            comment: f.comment,
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

/// Rate a reply (`up` or `down`), with an optional comment. One rating per
/// person and reply: a second replaces the first (200; the first is 201).
#[utoipa::path(post, path = "/messages/{id}/feedback", tag = "feedback", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RateReply,
    responses((status = 201, body = FeedbackDto), (status = 200, body = FeedbackDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the message is a person's, not a reply (`not_a_reply`)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn rate_reply(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Json(body): Json<RateReply>,
) -> ApiResult<(StatusCode, axum::Json<FeedbackDto>)> {
    auth.require_conversations()?;
    let comment = body
        .comment
        .map(|c| FeedbackComment::parse("comment", c))
        .transpose()?;
    let Some(member) = auth.0.member() else {
        return Err(ApiError::Forbidden {
            code: "no_person",
            message: "a person rates replies: this API key was made by no member",
        });
    };
    let scope = auth.0.scope();
    let (feedback, rated) = state
        .store
        .rate_reply(
            &scope,
            id.into(),
            &Sender::member(member),
            body.rating,
            comment.map(FeedbackComment::into_inner),
        )
        .await?;
    let status = match rated {
        Rated::New => StatusCode::CREATED,
        Rated::Changed | Rated::Same => StatusCode::OK,
    };
    Ok((status, axum::Json(FeedbackDto::from(feedback))))
}

#[derive(Serialize, ToSchema)]
pub struct ReplyFeedback {
    /// Oldest first: one per person who rated the reply.
    feedback: Vec<FeedbackDto>,
}

/// Every rating of one reply, from the API, the console and channel reactions.
#[utoipa::path(get, path = "/messages/{id}/feedback", tag = "feedback", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ReplyFeedback), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn reply_feedback(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ReplyFeedback>> {
    auth.require_conversations()?;
    let found = state
        .store
        .reply_feedback(&auth.0.scope(), id.into())
        .await?;
    Ok(axum::Json(ReplyFeedback {
        feedback: found.into_iter().map(Into::into).collect(),
    }))
}
