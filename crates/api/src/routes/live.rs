//! Following a conversation live, as Server-Sent Events: its new messages
//! (`message`, with the message id as event id), and each reply as it is
//! written (`reply_started`, then `delta` pieces, and `tool_call` as each of
//! its tool calls starts and finishes), each with an id
//! `{last message}.{attempt}.{n}`. A client that reconnects with
//! `Last-Event-ID` (or a browser's first `?after=`, since EventSource cannot
//! set headers) gets every message after the last it got and, when that was
//! a piece of a reply still being written, the pieces after it: nothing is
//! lost, nothing sent twice. `0` sends the whole conversation and the reply
//! in progress from its start. Pieces are not stored (this process keeps
//! those of the replies in progress, [`crate::live_hub`]); the reply is.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use steward_domain::{ConversationId, MessageId};
use steward_store::{LiveKind, Message, TenantScope};
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Auth;
use crate::dto::MessageDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::live_hub::{Numbered, Piece};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Stored messages are read again this often even without a notification, in
/// case one was missed (a listener reconnecting).
const REREAD_EVERY: Duration = Duration::from_secs(2);
const PAGE: u32 = 100;

fn message_event(message: Message, audience: Audience) -> Event {
    let id = message.id.to_string();
    let dto = match audience {
        Audience::Member => MessageDto::from(message),
        Audience::Visitor => MessageDto::for_visitor(message),
    };
    Event::default()
        .event("message")
        .id(id)
        .json_data(dto)
        .expect("messages serialize")
}

/// One event of the stream, as a client reads it: its name, the message id
/// (for `message`), and its JSON as text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the stream; never built
pub struct StreamEvent {
    #[schema(pattern = "^(message|reply_started|delta|tool_call)$")]
    event: String,
    id: Option<String>,
    data: String,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Resume {
    /// As `Last-Event-ID`, for clients that cannot set headers (a browser's
    /// EventSource): start after this message. The header wins when both are given.
    after: Option<Uuid>,
}

/// Follow a conversation: its new messages, and replies as they are written.
#[utoipa::path(get, path = "/conversations/{id}/events", tag = "conversations", security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^(0|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(0|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[0-9]{1,9})$",
            description = "The id of the last event received: a message's (messages after it are sent first), a reply piece's (the pieces of that reply after it follow, while it is being written), or `0` (the whole conversation first, and the reply in progress from its start)."),
        Resume,
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "events: message, reply_started, delta, tool_call ({id, server, tool, status})", body = StreamEvent),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn events(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Query(query): Query<Resume>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    auth.require_conversations()?;
    let scope = auth.0.scope();
    let conversation = ConversationId::from(id);
    // A reconnection's header is newer than the query the stream began with.
    let since = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => query.after.map_or(Since::Now, |id| Since::After(id.into(), None)),
        Some(value) => value
            .ok()
            .and_then(parse_last_event_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id this stream sent (a message id, or MESSAGE.ATTEMPT.N of a reply piece), or 0 for the whole conversation",
                )
            })?,
    };
    follow(&state, scope, conversation, since, Audience::Member).await
}

/// A message id as the document says: the hyphenated form, lowercase.
fn strict_uuid(text: &str) -> Option<Uuid> {
    (text.len() == 36 && !text.contains(|c: char| c.is_ascii_uppercase()))
        .then(|| Uuid::parse_str(text).ok())
        .flatten()
}

/// `0`, a message id, or a piece's `{message or 0}.{attempt}.{n}`.
pub(crate) fn parse_last_event_id(value: &str) -> Option<Since> {
    if value == "0" {
        return Some(Since::Start);
    }
    let mut parts = value.split('.');
    let (message, attempt, n) = (parts.next()?, parts.next(), parts.next());
    let after = match message {
        "0" => None,
        id => Some(MessageId::from(strict_uuid(id)?)),
    };
    match (attempt, n, parts.next()) {
        (None, None, None) => after.map(|id| Since::After(id, None)),
        (Some(attempt), Some(n), None) => {
            let piece = Piece {
                attempt: strict_uuid(attempt)?,
                n: n.parse().ok().filter(|_| n.len() <= 9)?,
            };
            Some(match after {
                Some(id) => Since::After(id, Some(piece)),
                None => Since::StartAfter(piece),
            })
        }
        _ => None,
    }
}

/// A piece's event id: the last message the stream sent, the attempt, its number.
fn piece_id(after: Option<MessageId>, piece: Piece) -> String {
    let message = after.map_or_else(|| "0".to_owned(), |id| id.to_string());
    format!("{message}.{}.{}", piece.attempt, piece.n)
}

/// Who follows a conversation: a member of the organization sees every
/// event; a web chat visitor does not see the tools a reply called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Member,
    Visitor,
}

/// Where a follower's stream begins.
#[derive(Clone, Copy)]
pub(crate) enum Since {
    /// With what happens from now (the history endpoint has the past).
    Now,
    /// With every stored message of the conversation, then the reply in
    /// progress from its start.
    Start,
    /// The same, but of the reply in progress only the pieces after this
    /// one (none when it is of an attempt no longer in progress).
    StartAfter(Piece),
    /// With the stored messages after this one (all of them when the
    /// conversation has no such message), then, with a piece, the pieces
    /// after it of the reply in progress.
    After(MessageId, Option<Piece>),
}

/// The conversation's events since `since`.
pub(crate) async fn follow(
    state: &SharedState,
    scope: TenantScope,
    conversation: ConversationId,
    since: Since,
    audience: Audience,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    // Subscribe before reading, so that nothing falls between the two.
    let resume = match since {
        Since::Now => None,
        Since::Start => Some(None),
        Since::StartAfter(piece) | Since::After(_, Some(piece)) => Some(Some(piece)),
        Since::After(_, None) => None,
    };
    let (mut kept, in_progress, mut live) = state
        .live
        .follow(&state.store, scope.org_id(), conversation, resume.flatten())
        .await;
    if resume.is_none() {
        kept.clear();
    }
    let latest = state
        .store
        .conversation_messages(&scope, conversation, 1)
        .await?;
    let Some(latest) = latest.last() else {
        return Err(ApiError::NotFound);
    };
    let after = match since {
        Since::After(id, _) => match state
            .store
            .conversation_messages_after(&scope, conversation, Some(id), 0)
            .await
        {
            Ok(_) => Some(id),
            // An id this conversation does not know: send everything, as a
            // new reader of the whole conversation would get it.
            Err(steward_store::StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Since::Start | Since::StartAfter(_) => None,
        Since::Now => Some(latest.id),
    };

    let (sender, receiver) = tokio::sync::mpsc::channel::<Event>(64);
    let store = state.store.clone();
    tokio::spawn(async move {
        let mut after = after;
        let mut reread = !matches!(since, Since::Now);
        // A stored message's announcement re-reads only up to that message:
        // later ones (a reply whose pieces are still queued behind it) wait
        // for their own, so that pieces never follow their finished reply.
        let mut upto: Option<MessageId> = None;
        loop {
            if reread {
                reread = false;
                match read_after(&*store, &scope, conversation, after).await {
                    Ok(messages) => {
                        for message in messages {
                            let id = message.id;
                            after = Some(id);
                            // The reply kept in progress is stored already: its pieces are void.
                            if Some(id) == in_progress {
                                kept.clear();
                            }
                            if sender.send(message_event(message, audience)).await.is_err() {
                                return;
                            }
                            if upto == Some(id) {
                                break;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "live events: could not read messages"),
                }
                // What this process kept of the reply in progress, after the
                // stored messages, as it was first sent.
                for numbered in std::mem::take(&mut kept) {
                    if let Some(event) = piece_event(&numbered, audience, after)
                        && sender.send(event).await.is_err()
                    {
                        return;
                    }
                }
            }
            let event = tokio::select! {
                received = live.recv() => match received {
                    Ok(Numbered { event: None, .. }) | Err(RecvError::Lagged(_)) => {
                        (reread, upto) = (true, None);
                        continue;
                    }
                    Ok(numbered) => {
                        let Some(event) = &numbered.event else { continue };
                        if event.conversation_id != conversation || event.org_id != scope.org_id() {
                            continue;
                        }
                        if let LiveKind::Message { message_id } = event.kind {
                            (reread, upto) = (true, Some(message_id));
                            continue;
                        }
                        match piece_event(&numbered, audience, after) {
                            Some(event) => event,
                            None => continue,
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(REREAD_EVERY) => {
                    (reread, upto) = (true, None);
                    continue;
                }
                () = sender.closed() => return,
            };
            if sender.send(event).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A piece of a reply as the follower sees it (a visitor sees no tool
/// calls), with its id when this process numbered it.
fn piece_event(numbered: &Numbered, audience: Audience, after: Option<MessageId>) -> Option<Event> {
    let event = match &numbered.event.as_ref()?.kind {
        LiveKind::ReplyStarted { .. } => Event::default().event("reply_started").data("{}"),
        LiveKind::Delta { text } => Event::default()
            .event("delta")
            .json_data(serde_json::json!({ "text": text }))
            .expect("text serializes"),
        LiveKind::ToolCall { .. } if audience == Audience::Visitor => return None,
        LiveKind::ToolCall {
            id,
            server,
            tool,
            status,
        } => Event::default()
            .event("tool_call")
            .json_data(
                serde_json::json!({ "id": id, "server": server, "tool": tool, "status": status }),
            )
            .expect("a tool call serializes"),
        LiveKind::Message { .. } => return None,
    };
    Some(match numbered.piece {
        Some(piece) => event.id(piece_id(after, piece)),
        None => event,
    })
}

/// Every stored message after `after`, page by page.
async fn read_after(
    store: &dyn steward_store::Store,
    scope: &TenantScope,
    conversation: ConversationId,
    mut after: Option<MessageId>,
) -> steward_store::StoreResult<Vec<Message>> {
    let mut all = Vec::new();
    loop {
        let page = store
            .conversation_messages_after(scope, conversation, after, PAGE)
            .await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|m| m.id).or(after);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}
