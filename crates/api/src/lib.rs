//! Steward's HTTP surface: the management API under `/api/v1`, health,
//! readiness and metrics. Only this crate knows HTTP; handlers reach data
//! through the store with the caller's tenant scope.

pub mod auth;
mod console;
mod contract;
mod dto;
pub mod error;
mod extract;
mod idempotency;
mod live_hub;
pub mod mcp;
pub mod metrics;
mod oidc;
mod patterns;
pub mod ratelimit;
mod routes;
pub mod server;
mod services;
pub mod state;
mod webchat;

pub use routes::sso::reseal as reseal_sso_secrets;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, middleware};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, error_response};
pub use server::{ServeOptions, bind, serve};
pub use services::Services;
pub use state::{AppState, SharedState};

#[derive(OpenApi)]
#[openapi(
    info(title = "Steward API", description = "Manage organizations, chatbots, knowledge and conversations."),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("http.metrics_token")
                    .build(),
            ),
        );
    }
}

/// Every route, with its documentation.
fn compose(state: &SharedState) -> OpenApiRouter<SharedState> {
    let api = routes::api(state)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .routes(routes!(routes::ops::openapi_json));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::ops::router())
        .nest("/api/v1", api)
}

/// The whole application, with its middleware.
pub fn router(state: SharedState) -> Router {
    let (routes, mut openapi) = compose(&state).split_for_parts();
    contract::declare_common_errors(&mut openapi);
    contract::declare_exact_schemas(&mut openapi, &state.config.knowledge);
    let doc = routes::ops::OpenApiJson(Arc::new(
        openapi.to_json().expect("the OpenAPI document serializes"),
    ));
    let http = &state.config.http;

    // The console's calls are new requests: they carry the API's body limit
    // themselves (the outer layer's would not reach them).
    let api = console::bridge::ApiRouter(
        routes
            .clone()
            .with_state(state.clone())
            .layer(DefaultBodyLimit::max(http.body_limit_bytes)),
    );
    let mut app = routes
        .merge(routes::webhooks::router(&state))
        .merge(console::router(&state, api))
        .merge(webchat::router())
        .layer(Extension(doc))
        .fallback(|request: axum::extract::Request| async move {
            console::not_found_page(&request).unwrap_or_else(|| ApiError::NotFound.into_response())
        })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method".into(),
            )
        })
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_secs),
        ))
        .layer(middleware::map_response(json_for_bare_errors));
    if !http.cors_allowed_origins.is_empty() {
        let origins = http
            .cors_allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok());
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static(idempotency::HEADER),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    if http.behind_tls {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    app.layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        // The web chat's page says in its own policy which sites may frame it.
        |response: &Response| {
            (response.extensions().get::<webchat::Embeddable>().is_none())
                .then(|| HeaderValue::from_static("DENY"))
        },
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ))
    .layer(middleware::from_fn_with_state(state, metrics::track_http))
    .layer(TraceLayer::new_for_http())
}

/// Errors raised by layers (timeouts, limits) come without a body: give them
/// the standard one.
async fn json_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let code = match status {
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let mut replaced = error_response(status, code, message);
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH {
            replaced.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    replaced.into_response()
}

/// Serves the application on `listener` until `shutdown` completes. The
/// router is built before this returns, not when the future is first
/// polled, so that the caller knows start-up's work is done.
pub fn run(
    state: SharedState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(state.config.http.header_read_timeout_secs),
        shutdown_grace: Duration::from_secs(state.config.http.shutdown_grace_secs),
    };
    serve(listener, router(state), options, shutdown)
}

/// Serves `steward mcp` (Steward's own tools over MCP, [`mcp::router`]) on
/// `listener` until `shutdown` completes.
pub async fn run_mcp(
    state: SharedState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(state.config.http.header_read_timeout_secs),
        shutdown_grace: Duration::from_secs(state.config.http.shutdown_grace_secs),
    };
    serve(listener, mcp::router(state), options, shutdown).await
}
