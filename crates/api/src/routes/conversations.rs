//! Conversation history and chat intake. Advisors see neither.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_auth::Signer;
use steward_domain::jobs::RespondArgs;
use steward_domain::{ChatbotId, ConversationId, MessageId, MessageRole, MessageText, PersonId};
use steward_store::{
    ConversationChoice, ConversationQuery, ConversationSummary, HistoryPosition, HistoryQuery,
    NewJob, NewMessage, Sender, StoreError,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Auth;
use crate::dto::MessageDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(history))
        .routes(routes!(message_thread))
        .routes(routes!(post_message))
        .routes(routes!(release))
        .routes(routes!(list_conversations))
        .routes(routes!(conversation_messages))
}

/// Messages either side of one in its thread view.
const THREAD_CONTEXT: u32 = 10;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (empty: the first page).
    #[param(pattern = r"^([A-Za-z0-9_-]{75})?$")]
    cursor: Option<String>,
    /// RFC 3339; messages at or after it.
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; messages before it.
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    messages: Vec<MessageDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

fn parse_time(field: &str, raw: Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field} must be an RFC 3339 time like 2026-11-01T00:00:00Z"),
                )
            })
    })
    .transpose()
}

/// A cursor names the chatbot it belongs to and the last message shown, sealed
/// so it cannot be forged or used for another chatbot.
fn seal_cursor(signer: &Signer, chatbot: ChatbotId, position: HistoryPosition) -> String {
    let mut payload = Vec::with_capacity(40);
    payload.extend_from_slice(chatbot.as_uuid().as_bytes());
    payload.extend_from_slice(&position.created_at.timestamp_micros().to_be_bytes());
    payload.extend_from_slice(position.id.as_uuid().as_bytes());
    signer.seal(&payload)
}

/// The length of a sealed cursor: 40 bytes of position and a 16-byte tag, in
/// unpadded base64url.
const CURSOR_CHARS: usize = 75;

fn open_cursor(signer: &Signer, chatbot: ChatbotId, cursor: &str) -> ApiResult<HistoryPosition> {
    let shaped = cursor.len() == CURSOR_CHARS
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !shaped {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "cursor must be a next_cursor as history returns it",
        ));
    }
    // Well formed, and not this chatbot's: like an id that names nothing here.
    let invalid = || ApiError::Conflict {
        code: "unknown_cursor",
        message: "cursor is not one this chatbot's history returned".into(),
    };
    let payload = signer
        .open(cursor)
        .filter(|p| p.len() == 40)
        .ok_or_else(invalid)?;
    let (bot, rest) = payload.split_at(16);
    let (micros, id) = rest.split_at(8);
    if Uuid::from_slice(bot).map_err(|_| invalid())? != chatbot.as_uuid() {
        return Err(invalid());
    }
    let micros = i64::from_be_bytes(micros.try_into().map_err(|_| invalid())?);
    Ok(HistoryPosition {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id: MessageId::from_uuid(Uuid::from_slice(id).map_err(|_| invalid())?),
    })
}

/// A chatbot's messages across its conversations, newest first, by cursor.
#[utoipa::path(get, path = "/chatbots/{id}/history", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "a cursor of another chatbot, or forged (`unknown_cursor`)", body = ErrorBody)))]
async fn history(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<axum::Json<HistoryPage>> {
    auth.require_conversations()?;
    let chatbot = ChatbotId::from(id);
    let limit = crate::routes::page_limit(params.limit)?;
    // An empty cursor is an absent one (`?cursor=` from a form's first page).
    let before = params
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| open_cursor(&state.cursors, chatbot, &c))
        .transpose()?;
    let from = parse_time("from", params.from)?;
    let to = parse_time("to", params.to)?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "from must not be after to",
        ));
    }
    let scope = auth.0.scope();
    state.store.chatbot(&scope, chatbot).await?;
    // One more than asked tells whether another page follows.
    let query = HistoryQuery {
        chatbot_id: chatbot,
        limit: limit + 1,
        before,
        from,
        to,
    };
    let mut messages = state.store.history(&scope, &query).await?;
    let next_cursor = if messages.len() > limit as usize {
        messages.truncate(limit as usize);
        messages.last().map(|m| {
            seal_cursor(
                &state.cursors,
                chatbot,
                HistoryPosition {
                    created_at: m.created_at,
                    id: m.id,
                },
            )
        })
    } else {
        None
    };
    Ok(axum::Json(HistoryPage {
        messages: messages.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct MessageThread {
    message: MessageDto,
    /// The message with up to ten turns either side of it, oldest first.
    thread: Vec<MessageDto>,
}

/// One message and the turns around it in its conversation.
#[utoipa::path(get, path = "/chatbots/{id}/history/{message_id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 200, body = MessageThread), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn message_thread(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<MessageThread>> {
    auth.require_conversations()?;
    let (message, thread) = state
        .store
        .message_thread(
            &auth.0.scope(),
            id.into(),
            message_id.into(),
            THREAD_CONTEXT,
        )
        .await?;
    Ok(axum::Json(MessageThread {
        message: message.into(),
        thread: thread.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// 1 to 32,000 characters.
    #[schema(schema_with = crate::contract::message_text)]
    text: String,
    /// Continue this conversation; omit to start a new one.
    conversation_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct PostedMessage {
    conversation_id: ConversationId,
    message_id: MessageId,
}

/// Send a message to a chatbot as the signed-in user.
#[utoipa::path(post, path = "/chatbots/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PostMessage,
    responses((status = 201, body = PostedMessage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the chatbot is paused, or conversation_id names no conversation of it", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_message(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Json(body): Json<PostMessage>,
) -> ApiResult<Response> {
    auth.require_conversations()?;
    let body_conversation = body.conversation_id;
    let conversation = match body.conversation_id {
        Some(existing) => ConversationChoice::Existing(existing.into()),
        None => ConversationChoice::Start(ConversationId::new()),
    };
    let chatbot = ChatbotId::from(id);
    let message = NewMessage {
        id: MessageId::new(),
        chatbot_id: chatbot,
        conversation,
        role: MessageRole::User,
        text: MessageText::parse("text", body.text)?,
        channel: "api".into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: vec![
            NewJob::of(
                &RespondArgs {
                    chatbot_id: chatbot,
                    conversation_id: conversation.id(),
                },
                state.config.jobs.max_attempts,
            )
            .for_org(auth.0.org_id()),
        ],
        sender: auth.0.member().map(Sender::member),
        forwarded: false,
        conversation_key: None,
    };
    let response = idempotency::answer(
        StatusCode::CREATED,
        &PostedMessage {
            conversation_id: conversation.id(),
            message_id: message.id,
        },
    );
    match state.store.add_message(&auth.0.scope(), message).await {
        Ok(_) => {}
        // The chatbot is there but the conversation is not: a bad field, not a
        // missing resource.
        Err(StoreError::NotFound)
            if body_conversation.is_some()
                && state.store.chatbot(&auth.0.scope(), chatbot).await.is_ok() =>
        {
            return Err(ApiError::Conflict {
                code: "unknown_conversation",
                message: "conversation_id names no conversation of this chatbot".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    // A permit is kept if no worker waits right now, so the signal is not lost.
    state.jobs_enqueued.notify_one();
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_open_only_for_their_own_chatbot_and_unchanged() {
        let signer = Signer::derive(b"secret", "history-cursor");
        let chatbot = ChatbotId::new();
        let position = HistoryPosition {
            created_at: steward_store::now(),
            id: MessageId::new(),
        };
        let cursor = seal_cursor(&signer, chatbot, position);
        assert_eq!(open_cursor(&signer, chatbot, &cursor).unwrap(), position);
        assert!(open_cursor(&signer, ChatbotId::new(), &cursor).is_err());
        assert!(open_cursor(&signer, chatbot, &cursor[1..]).is_err());
        assert!(open_cursor(&signer, chatbot, "AAAA").is_err());
        assert!(
            open_cursor(
                &Signer::derive(b"other", "history-cursor"),
                chatbot,
                &cursor
            )
            .is_err()
        );
    }
}

/// Give a conversation handed to a person (by the contact-owner tool) back to
/// the assistant, which answers its next message again (owners and admins).
#[utoipa::path(post, path = "/conversations/{id}/release", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn release(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state.store.hand_back(&auth.0.scope(), id.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationListParams {
    /// Only this chatbot's.
    chatbot_id: Option<Uuid>,
    /// Only this channel's kind: `api`, `console`, `web`, `whatsapp`, …
    #[param(pattern = r"^([a-z]{1,32})?$")]
    channel: Option<String>,
    /// RFC 3339; started at or after it.
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; started before it.
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// Some message holds these words in this order, in any case, the last
    /// one possibly cut short ("refund pol" finds "Refund policy"); a text
    /// without a letter or digit is matched as written. Empty: no filter.
    #[param(max_length = 200)]
    q: Option<String>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct LastMessage {
    role: MessageRole,
    /// Its first 200 characters.
    text: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDto {
    id: ConversationId,
    chatbot_id: ChatbotId,
    channel: String,
    /// Who it is with (`GET /people/{id}`): null until someone writes, and
    /// for conversations stored before people were kept.
    person_id: Option<PersonId>,
    created_at: DateTime<Utc>,
    /// Handed to a person, who answers instead of the assistant until released.
    handed_off: bool,
    messages: i64,
    last_message: Option<LastMessage>,
}

/// How much of the latest message a list shows.
const PREVIEW_CHARS: usize = 200;

impl From<ConversationSummary> for ConversationDto {
    fn from(c: ConversationSummary) -> Self {
        let last_message = match (c.last_role, c.last_text, c.last_at) {
            (Some(role), Some(text), Some(created_at)) => Some(LastMessage {
                role,
                text: text.chars().take(PREVIEW_CHARS).collect(),
                created_at,
            }),
            _ => None,
        };
        Self {
            id: c.id,
            chatbot_id: c.chatbot_id,
            channel: c.channel,
            person_id: c.person_id,
            created_at: c.created_at,
            handed_off: c.handed_off_at.is_some(),
            messages: c.messages,
            last_message,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    /// Newest first (by when each started).
    conversations: Vec<ConversationDto>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<ConversationId>,
}

/// The organization's conversations, newest first, filtered by chatbot,
/// channel, start time and text.
#[utoipa::path(get, path = "/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationListParams),
    responses((status = 200, body = ConversationList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`before` names no conversation of this organization (`unknown_cursor`)", body = ErrorBody)))]
async fn list_conversations(
    State(state): State<SharedState>,
    auth: Auth,
    Query(params): Query<ConversationListParams>,
) -> ApiResult<axum::Json<ConversationList>> {
    auth.require_conversations()?;
    let limit = crate::routes::page_limit(params.limit)?;
    let channel = params.channel.filter(|c| !c.is_empty());
    if let Some(channel) = &channel
        && !(channel.len() <= 32 && channel.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "channel must be a channel kind like whatsapp",
        ));
    }
    let text = params.q.filter(|q| !q.trim().is_empty());
    if text.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must be at most 200 characters",
        ));
    }
    // From after to is an empty range: no conversation started in it.
    let from = parse_time("from", params.from)?;
    let to = parse_time("to", params.to)?;
    let query = ConversationQuery {
        chatbot_id: params.chatbot_id.map(ChatbotId::from),
        channel,
        from,
        to,
        text,
        before: params.before.map(ConversationId::from),
        // One more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let read = state
        .store
        .list_conversations(&auth.0.scope(), &query)
        .await;
    let (conversations, next_before) =
        crate::routes::page_before(read, limit, "a conversation", |c| c.id)?;
    Ok(axum::Json(ConversationList {
        conversations: conversations.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagePageParams {
    /// `next_after` of the previous page; absent: from the first message.
    after: Option<Uuid>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationMessages {
    conversation: ConversationDto,
    /// Oldest first.
    messages: Vec<MessageDto>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<MessageId>,
}

/// One conversation, its messages page by page from the first.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path), MessagePageParams),
    responses((status = 200, body = ConversationMessages), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`after` names no message of this conversation (`unknown_cursor`)", body = ErrorBody)))]
async fn conversation_messages(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Query(params): Query<MessagePageParams>,
) -> ApiResult<axum::Json<ConversationMessages>> {
    auth.require_conversations()?;
    let limit = crate::routes::page_limit(params.limit)?;
    let scope = auth.0.scope();
    let conversation = state.store.conversation(&scope, id.into()).await?;
    let mut messages = match state
        .store
        .conversation_messages_after(
            &scope,
            conversation.id,
            params.after.map(MessageId::from),
            limit + 1,
        )
        .await
    {
        Err(StoreError::NotFound) => {
            return Err(ApiError::Conflict {
                code: "unknown_cursor",
                message: "after is not a message of this conversation".into(),
            });
        }
        found => found?,
    };
    let next_after = if messages.len() > limit as usize {
        messages.truncate(limit as usize);
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(axum::Json(ConversationMessages {
        conversation: conversation.into(),
        messages: messages.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
