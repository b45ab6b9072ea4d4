//! `Idempotency-Key` on POST: the first request with a key runs and its
//! response is kept; a repeat with the same body gets that response again
//! (marked `Idempotent-Replayed: true`) and changes nothing; a repeat with
//! another body is 422. Repeats that arrive while the first still runs wait
//! for it. Keys belong to the caller (user, API key, or anonymous) and last 24 h.
//!
//! The request runs as a `KeyedRequest`: its writes are fenced by its claim,
//! and a handler that knows its answer before its write sets it with
//! [`answer`], so the effect and the kept response commit together. A claim
//! whose request died before any effect is taken over once the request can
//! no longer be running (the request timeout has passed).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use steward_store::{
    IdempotencyKey, IdempotencyStart, KeyedRequest, StoredResponse, answer_keyed_request, now,
};

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::SharedState;

pub const HEADER: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const JSON: &str = "application/json";
/// Beyond the request timeout, before a claim with no effect is taken over:
/// room for a commit already under way when the timeout struck.
const STALE_MARGIN: chrono::Duration = chrono::Duration::seconds(2);
/// How long a repeat waits for the first request to finish, at most; never
/// past half the request timeout, so the repeat is told why it waited.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(30);
/// Responses larger than this are not kept (none of ours come close).
const MAX_KEPT_RESPONSE: usize = 4 * 1024 * 1024;

pub async fn layer(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw_key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    match run(&state, raw_key.clone(), request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(
    state: &SharedState,
    raw_key: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = parse_key(&raw_key).map_err(IntoResponse::into_response)?;
    let (mut parts, body) = request.into_parts();
    let principal = authenticate(state, &parts.headers)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    hasher.update([0]);
    let http = &state.config.http;
    // Uploads may be larger than other bodies: beyond what is kept in memory,
    // they are spooled to disk as their digest is taken.
    let at_most = if parts.uri.path().ends_with("/knowledge/upload") {
        state
            .config
            .knowledge
            .upload_limit_bytes()
            .max(http.body_limit_bytes)
    } else {
        http.body_limit_bytes
    };
    let body = read_body(body, http.body_limit_bytes, at_most, &mut hasher)
        .await
        .map_err(IntoResponse::into_response)?;
    let request_hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claim = IdempotencyKey {
        caller: principal
            .as_ref()
            .map(|p| p.actor().to_string())
            .unwrap_or_else(|| "anonymous".into()),
        key,
        org_id: principal.as_ref().map(|p| p.org_id()),
        request_hash,
    };
    if let Some(principal) = principal {
        parts.extensions.insert(principal);
    }

    let timeout = Duration::from_secs(state.config.http.request_timeout_secs);
    let stale_after =
        chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(1)) + STALE_MARGIN;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST.min(timeout / 2);
    let token = loop {
        let moment = now();
        let started = state
            .store
            .idempotency_start(
                &claim,
                moment - stale_after,
                moment - steward_store::IDEMPOTENCY_KEY_LIFETIME,
            )
            .await;
        match started.map_err(|e| ApiError::from(e).into_response())? {
            IdempotencyStart::Started(token) => break token,
            IdempotencyStart::Replay(stored) => return Ok(replay(stored)),
            IdempotencyStart::Mismatch => {
                return Err(ApiError::unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                )
                .into_response());
            }
            IdempotencyStart::ResponseLost => {
                return Err(ApiError::Conflict {
                    code: "idempotency_response_lost",
                    message: "the request with this Idempotency-Key took effect, but its response \
                              was lost when the server stopped; it will not run again"
                        .into(),
                }
                .into_response());
            }
            IdempotencyStart::InProgress if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::Conflict {
                    code: "idempotency_in_progress",
                    message:
                        "a request with this Idempotency-Key is still being processed; retry later"
                            .into(),
                }
                .into_response());
            }
            IdempotencyStart::InProgress => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };

    let keyed = KeyedRequest::new(&claim, token.clone());
    let response = keyed
        .run(next.run(Request::from_parts(parts, body.into_body())))
        .await;
    if response.status().is_server_error() {
        // Not an answer to keep: let a retry run the request again, unless
        // something of it committed.
        let _ = state.store.idempotency_abandon(&claim, &token).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT_RESPONSE).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = state.store.idempotency_abandon(&claim, &token).await;
            return Err(
                ApiError::Internal(format!("response not kept for idempotency: {e}"))
                    .into_response(),
            );
        }
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: bytes.to_vec(),
    };
    if let Err(e) = state
        .store
        .idempotency_complete(&claim, &token, &stored)
        .await
    {
        tracing::warn!(error = %e, "could not keep an idempotent response; a repeat will be told it was lost");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The JSON response of a handler that knows it before its write: kept with
/// the write when the request has an `Idempotency-Key`, so a crash between the
/// two cannot leave an effect without its answer. Call it just before the write.
pub fn answer<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let json = match serde_json::to_vec(body) {
        Ok(json) => json,
        Err(e) => {
            return ApiError::Internal(format!("response not serialized: {e}")).into_response();
        }
    };
    answer_keyed_request(StoredResponse {
        status: status.as_u16(),
        content_type: Some(JSON.into()),
        body: json.clone(),
    });
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// Sets a keyed request's response before its write, when it is known
/// whatever the write does (`body` None: no body), so that it commits with
/// the effect.
pub fn answer_known<D: Serialize>(status: StatusCode, body: Option<&D>) {
    steward_store::answer_keyed_request(StoredResponse {
        status: status.as_u16(),
        content_type: body.map(|_| JSON.into()),
        body: body
            .map(|b| serde_json::to_vec(b).expect("response bodies serialize"))
            .unwrap_or_default(),
    });
}

/// Sets a keyed request's response to be built, with `status`, from the
/// record of type `T` its write commits (a created chatbot, say), so that
/// the response commits with the effect. The handler answers with the same
/// `body` of the record the store gives back; the bytes are the same.
pub fn answer_from<T: std::any::Any, D: Serialize>(
    status: StatusCode,
    body: impl Fn(&T) -> D + Send + Sync + 'static,
) {
    steward_store::answer_keyed_request_from(move |record: &T| StoredResponse {
        status: status.as_u16(),
        content_type: Some(JSON.into()),
        body: serde_json::to_vec(&body(record)).expect("response bodies serialize"),
    });
}

/// 1 to 255 visible ASCII characters.
fn parse_key(raw: &HeaderValue) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    };
    let key = raw.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(invalid());
    }
    Ok(key.to_owned())
}

/// A keyed request's body, read whole before its claim so that its digest is
/// known: in memory up to `in_memory` bytes, the rest in an unnamed temporary
/// file that is gone once the request is.
enum KeptBody {
    Memory(Bytes),
    Spooled { head: Bytes, rest: tokio::fs::File },
}

async fn read_body(
    mut body: Body,
    in_memory: usize,
    at_most: usize,
    hasher: &mut Sha256,
) -> Result<KeptBody, ApiError> {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};

    let unreadable =
        || ApiError::bad_request("unreadable_body", "the request body could not be read");
    let spool_failed =
        |e: std::io::Error| ApiError::Internal(format!("spooling a keyed body: {e}"));
    let mut head = bytes::BytesMut::new();
    let mut rest: Option<tokio::fs::File> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(|_| unreadable())?.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(chunk.len());
        if total > at_most {
            return Err(ApiError::PayloadTooLarge);
        }
        hasher.update(&chunk);
        match &mut rest {
            Some(file) => file.write_all(&chunk).await.map_err(spool_failed)?,
            None if head.len() + chunk.len() <= in_memory => head.extend_from_slice(&chunk),
            None => {
                let file = tempfile::tempfile().map_err(spool_failed)?;
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(&chunk).await.map_err(spool_failed)?;
                rest = Some(file);
            }
        }
    }
    Ok(match rest {
        None => KeptBody::Memory(head.freeze()),
        Some(mut file) => {
            file.flush().await.map_err(spool_failed)?;
            file.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(spool_failed)?;
            KeptBody::Spooled {
                head: head.freeze(),
                rest: file,
            }
        }
    })
}

impl KeptBody {
    fn into_body(self) -> Body {
        use futures::StreamExt;
        use tokio::io::AsyncReadExt;

        match self {
            KeptBody::Memory(bytes) => Body::from(bytes),
            KeptBody::Spooled { head, rest } => {
                let rest = futures::stream::unfold(Some(rest), |file| async move {
                    let mut file = file?;
                    let mut buffer = vec![0u8; 64 * 1024];
                    match file.read(&mut buffer).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buffer.truncate(n);
                            Some((Ok(Bytes::from(buffer)), Some(file)))
                        }
                        Err(e) => Some((Err(e), None)),
                    }
                });
                Body::from_stream(futures::stream::once(async { Ok(head) }).chain(rest))
            }
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    if let Some(value) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
