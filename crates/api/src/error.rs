//! The one error type handlers return. Each variant has a stable machine code
//! and a message safe to show; internal details go to the log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use steward_domain::ValidationError;
use steward_store::StoreError;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, query, id or cursor).
    BadRequest { code: &'static str, message: String },
    /// 401: no valid credentials.
    Unauthorized { message: &'static str },
    /// 403: authenticated, but not allowed (a role too low, registration closed).
    Forbidden {
        code: &'static str,
        message: &'static str,
    },
    /// 404: no such resource in the caller's organization.
    NotFound,
    /// 409: conflicts with what is stored.
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than allowed.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: well-formed but invalid.
    Unprocessable { code: &'static str, message: String },
    /// 429: slow down; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// 401: a sign-in through an identity provider failed (the message says why).
    SignInFailed { code: &'static str, message: String },
    /// 502: a server Steward depends on for this request (an identity
    /// provider) could not be reached or answered nonsense; the message
    /// says which, in Steward's words.
    Upstream(String),
    /// 503: a dependency is down; worth retrying.
    Unavailable(String),
    /// 500: a bug. The detail is logged, never sent.
    Internal(String),
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `not_found`, `validation_failed`.
    pub code: String,
    /// For people; may change between releases.
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 403 for a role that may not do this.
    pub fn forbidden() -> Self {
        Self::Forbidden {
            code: "forbidden",
            message: "your role does not allow this",
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } | Self::SignInFailed { .. } => StatusCode::UNAUTHORIZED,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn code_and_message(&self) -> (&str, String) {
        match self {
            Self::BadRequest { code, message }
            | Self::Conflict { code, message }
            | Self::Unprocessable { code, message }
            | Self::SignInFailed { code, message } => (code, message.clone()),
            Self::Upstream(message) => ("upstream_unreachable", message.clone()),
            Self::Unauthorized { message } => ("unauthorized", (*message).to_owned()),
            Self::Forbidden { code, message } => (code, (*message).to_owned()),
            Self::NotFound => ("not_found", "no such resource".into()),
            Self::PayloadTooLarge => ("payload_too_large", "the request body is too large".into()),
            Self::UnsupportedMediaType => (
                "unsupported_media_type",
                "send JSON with Content-Type: application/json".into(),
            ),
            Self::RateLimited { retry_after_secs } => (
                "rate_limited",
                format!("too many attempts; retry in {retry_after_secs} s"),
            ),
            Self::Unavailable(_) => (
                "unavailable",
                "a dependency is unavailable; retry shortly".into(),
            ),
            Self::Internal(_) => ("internal", "something went wrong on our side".into()),
        }
    }
}

/// The standard error body for a status and code.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            Self::Unavailable(detail) => tracing::warn!(error = %detail, "dependency unavailable"),
            Self::Upstream(detail) => tracing::warn!(error = %detail, "upstream unreachable"),
            _ => {}
        }
        let status = self.status();
        let (code, message) = self.code_and_message();
        let mut response = error_response(status, code, message);
        match self {
            Self::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthorized { .. } => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(conflict) => Self::Conflict {
                code: conflict.code(),
                message: conflict.message().into(),
            },
            StoreError::Unavailable(detail) => Self::Unavailable(detail),
            StoreError::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::unprocessable("validation_failed", err.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
