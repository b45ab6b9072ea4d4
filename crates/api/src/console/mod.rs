//! The console: Steward in a browser, served at `/` by the API role. Pages
//! are rendered on the server from templates compiled into the binary; the
//! little script there is (live replies, uploads) is our own and served from
//! the binary too. Every page reads and writes through the API
//! ([`bridge`]), as the signed-in person.

mod assets;
pub mod bridge;
mod channels;
mod chatbots;
mod context;
mod conversations;
mod organization;
mod patterns;
pub mod session;
mod setup;
mod sign_in;
mod tools;
mod view;

use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::{Extension, Router, middleware};

use crate::state::SharedState;

/// The console's routes. `api` is the `/api/v1` router the pages call.
pub fn router(state: &SharedState, api: bridge::ApiRouter) -> Router<SharedState> {
    let pages = Router::new()
        .route("/", get(organization::overview))
        .route("/login", get(sign_in::form).post(sign_in::submit))
        .route("/login/sso", get(sign_in::single_sign_on))
        .route("/logout", post(sign_in::sign_out))
        .route("/setup", get(setup::form).post(setup::submit))
        .route(
            "/password",
            get(sign_in::password_form).post(sign_in::change_password),
        )
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::show))
        .route("/chatbots", get(chatbots::list).post(chatbots::create))
        .route("/chatbots/{id}", get(chatbots::show).post(chatbots::update))
        .route("/chatbots/{id}/delete", post(chatbots::delete))
        .route("/chatbots/{id}/tools", post(chatbots::choose_tools))
        .route("/chatbots/{id}/knowledge", get(chatbots::knowledge))
        .route(
            "/chatbots/{id}/channels",
            get(channels::list).post(channels::connect),
        )
        .route(
            "/chatbots/{id}/channels/{channel_id}/delete",
            post(channels::remove),
        )
        .route("/chatbots/{id}/knowledge/url", post(chatbots::add_url))
        .route("/chatbots/{id}/knowledge/crawl", post(chatbots::crawl))
        .route(
            "/chatbots/{id}/knowledge/{doc_id}/delete",
            post(chatbots::delete_document),
        )
        .route(
            "/members",
            get(organization::members).post(organization::invite),
        )
        .route("/members/{id}/role", post(organization::change_role))
        .route("/members/{id}/remove", post(organization::remove_member))
        .route("/members/{id}/password", post(organization::reset_password))
        .route(
            "/api-keys",
            get(organization::api_keys).post(organization::create_key),
        )
        .route("/api-keys/{id}/revoke", post(organization::revoke_key))
        .route("/context", get(context::show).post(context::add))
        .route("/context/{doc_id}/delete", post(context::delete))
        .route("/tools", get(tools::show))
        .route("/tools/integrations", post(tools::enable))
        .route("/tools/integrations/{id}/disable", post(tools::disable))
        .route("/tools/servers", post(tools::connect))
        .route("/tools/servers/{id}/refresh", post(tools::refresh))
        .route("/tools/servers/{id}/remove", post(tools::remove))
        .route("/jobs", get(organization::jobs))
        .route("/jobs/{id}/retry", post(organization::retry_job))
        .route("/jobs/{id}/discard", post(organization::discard_job))
        .route("/audit", get(organization::audit))
        .route("/usage", get(organization::usage))
        .route("/patterns", get(patterns::show))
        .route("/console/api/{*path}", any(bridge::pass_through))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_csrf,
        ))
        .layer(Extension(api));
    pages.route("/assets/{name}", get(assets::serve))
}

pub(crate) use sign_in::safe_next;

/// A single sign-on that failed, as a page (the API's answer is JSON).
pub(crate) fn sign_in_failed(failure: crate::error::ApiError) -> Response {
    let (_, message) = failure.code_and_message();
    view::problem(failure.status(), "Single sign-on failed", &message)
}

/// The console's "not found" page.
pub fn not_found_response() -> Response {
    view::not_found()
}

/// For a path no route serves: a page for a browser outside the API, else
/// `None` (the API's JSON answer).
pub fn not_found_page(request: &Request) -> Option<Response> {
    let browser = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    (browser && !request.uri().path().starts_with("/api/")).then(view::not_found)
}
