//! The console is a client of the API: pages read and change everything
//! through the same `/api/v1` handlers, called in process with the signed-in
//! person's token, so roles, validation, limits and the audit log hold
//! exactly as they do for any other client. The console's script reaches
//! the API the same way through `/console/api/...`, with the session
//! cookie and CSRF token instead of a bearer header.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use super::session::{Caller, SESSION_COOKIE, cookie};
use crate::auth::PeerAddr;
use crate::error::error_response;

/// The API's routes with their state: what the bridge calls.
#[derive(Clone)]
pub struct ApiRouter(pub Router);

/// How far an API answer is read into a page.
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// An API call that did not succeed: its status and message.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    /// Whether what was sent is at fault (the page is shown again with the
    /// message), rather than the page itself (not found, not allowed).
    pub fn is_about_the_form(&self) -> bool {
        matches!(
            self.status,
            StatusCode::BAD_REQUEST
                | StatusCode::CONFLICT
                | StatusCode::UNPROCESSABLE_ENTITY
                | StatusCode::TOO_MANY_REQUESTS
        )
    }
}

impl From<crate::ApiError> for Failure {
    fn from(e: crate::ApiError) -> Self {
        let status = e.status();
        if let crate::ApiError::Internal(detail) = &e {
            tracing::error!(error = %detail, "console: internal error");
        }
        Self {
            status,
            message: e.code_and_message().1,
        }
    }
}

/// Calls the API as one caller.
#[derive(Clone)]
pub struct Bridge {
    router: ApiRouter,
    authorization: Option<HeaderValue>,
    peer: Option<PeerAddr>,
    forwarded_for: Option<HeaderValue>,
}

impl Bridge {
    pub fn new(
        router: ApiRouter,
        authorization: Option<HeaderValue>,
        peer: Option<PeerAddr>,
        forwarded_for: Option<HeaderValue>,
    ) -> Self {
        Self {
            router,
            authorization,
            peer,
            forwarded_for,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        self.call::<serde::de::IgnoredAny>(Method::DELETE, path, None::<&()>)
            .await
            .map(|_| ())
    }

    /// `method` on `/api/v1{path}` with a JSON body; the answer's JSON as `T`
    /// (an empty answer reads as JSON `null`).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Failure> {
        let body = match body {
            Some(body) => Body::from(serde_json::to_vec(body).expect("request bodies serialize")),
            None => Body::empty(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .body(body)
            .expect("console paths are valid URIs");
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = self.send(request).await;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map_err(|e| internal(format!("reading the API's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let error = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
            let message = error["error"]["message"].as_str().unwrap_or_default();
            return Err(Failure {
                status,
                message: message.to_owned(),
            });
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| internal(format!("the API's answer: {e}")))
    }

    /// Sends `request` (its path already under `/api/v1`) as this caller.
    async fn send(&self, mut request: Request) -> Response {
        let headers = request.headers_mut();
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::COOKIE);
        if let Some(authorization) = &self.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        headers.remove("x-forwarded-for");
        if let Some(forwarded) = &self.forwarded_for {
            headers.insert("x-forwarded-for", forwarded.clone());
        }
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
        }
        match self.router.0.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

fn internal(detail: String) -> Failure {
    crate::ApiError::Internal(detail).into()
}

/// `/console/api/{*path}`: the console's script calls `/api/v1/{path}` as the
/// signed-in person. The session cookie stands for the bearer token; the CSRF
/// layer in front has checked the token of anything but a read. The answer,
/// streams included, is passed on as the API gave it.
pub async fn pass_through(caller: Result<Caller, Response>, request: Request) -> Response {
    let Ok(caller) = caller else {
        let message = match cookie(request.headers(), SESSION_COOKIE) {
            None => "sign in to the console first",
            Some(_) => "the console session has ended; sign in again",
        };
        return error_response(StatusCode::UNAUTHORIZED, "unauthorized", message.into())
            .into_response();
    };
    let (parts, body) = request.into_parts();
    let rest = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .and_then(|p| p.strip_prefix("/console/api"))
        .unwrap_or("/");
    let Ok(uri) = format!("/api/v1{rest}").parse::<Uri>() else {
        return crate::ApiError::NotFound.into_response();
    };
    // A new request, not this one with another URI: this router's matched
    // path and parameters must not reach the API's.
    let mut forwarded = Request::new(body);
    *forwarded.method_mut() = parts.method;
    *forwarded.uri_mut() = uri;
    *forwarded.headers_mut() = parts.headers;
    caller.api.send(forwarded).await
}
