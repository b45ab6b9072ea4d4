//! Signing in and out of the console, and changing a one-time password.
//! Sign-in goes through `POST /api/v1/auth/login`, so its rate limits are
//! the API's.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::bridge::{ApiRouter, Bridge};
use super::session::{Caller, Console, SESSION_COOKIE, form_token, set_cookie};
use super::view::{self, Layout};
use crate::auth::PeerAddr;
use crate::state::SharedState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path of this console, never elsewhere.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.contains(['\r', '\n']) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The sign-in form. A browser without a cookie yet gets one, which the
/// form's CSRF token is bound to.
pub async fn form(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<Next>,
) -> Response {
    match super::setup::has_organizations(&state).await {
        Ok(false) => return Redirect::to("/setup").into_response(),
        Ok(true) => {}
        Err(e) => return view::api_failure(e.into()),
    }
    let token = form_token(&state, &headers);
    let page = view::render(&LoginPage {
        csrf: token.csrf.clone(),
        next: safe_next(query.next.as_deref()),
        email: String::new(),
        error: None,
    });
    token.set_on(&state, page)
}

#[derive(Deserialize)]
pub struct SingleSignOn {
    organization: String,
    next: Option<String>,
}

/// From the sign-in page to the organization's single sign-on.
pub async fn single_sign_on(Query(form): Query<SingleSignOn>) -> Response {
    let slug = form.organization.trim().to_lowercase();
    if slug.is_empty()
        || slug.len() > 63
        || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return view::problem(
            StatusCode::BAD_REQUEST,
            "Single sign-on",
            "That is not an organization's sign-in name: lowercase letters, digits and dashes.",
        );
    }
    let next = safe_next(form.next.as_deref());
    let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
    Redirect::to(&format!("/api/v1/auth/sso/{slug}?{query}")).into_response()
}

#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Session {
    token: String,
}

/// Signs in through the API; on success the token becomes the session cookie.
pub async fn submit(
    State(state): State<SharedState>,
    axum::Extension(api): axum::Extension<ApiRouter>,
    peer: Option<axum::Extension<PeerAddr>>,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Response {
    let bridge = Bridge::new(
        api,
        None,
        peer.map(|p| p.0),
        headers.get("x-forwarded-for").cloned(),
    );
    let answer: Result<Session, _> = bridge
        .post(
            "/auth/login",
            &json!({ "email": form.email, "password": form.password }),
        )
        .await;
    match answer {
        Ok(session) => {
            let ttl = state.config.auth.token_ttl_secs;
            let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, SESSION_COOKIE, &session.token, ttl),
            );
            response
        }
        Err(failure) => {
            let status = match failure.status {
                StatusCode::TOO_MANY_REQUESTS => StatusCode::TOO_MANY_REQUESTS,
                status if status.is_server_error() => status,
                _ => StatusCode::UNAUTHORIZED,
            };
            view::render_with(
                status,
                &LoginPage {
                    csrf: form_token(&state, &headers).csrf,
                    next: safe_next(form.next.as_deref()),
                    email: form.email,
                    error: Some(failure.message),
                },
            )
        }
    }
}

/// Signs out: the session ends on the server (its token no longer signs in
/// anywhere, a copy of the cookie included) and the cookie is cleared.
pub async fn sign_out(
    State(state): State<SharedState>,
    caller: Result<Caller, Response>,
) -> Response {
    if let Ok(caller) = caller
        && let Err(failure) = caller
            .api
            .post::<serde::de::IgnoredAny>("/auth/logout", &json!({}))
            .await
        && failure.status.is_server_error()
    {
        // Not signed out yet: say so rather than only forget the cookie.
        return view::api_failure(failure);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", 0),
    );
    response
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    layout: Layout,
    required: bool,
    error: Option<String>,
}

pub async fn password_form(console: Console) -> Response {
    let required = console.principal.password_change_required();
    view::render(&PasswordPage {
        layout: console.layout("Change your password", ""),
        required,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Changes the password through the API. Every other session of the person
/// ends; this one carries on with the new token.
pub async fn change_password(
    State(state): State<SharedState>,
    console: Console,
    Form(form): Form<PasswordChange>,
) -> Response {
    let answer: Result<Session, _> = console
        .api
        .post(
            "/auth/password",
            &json!({
                "current_password": form.current_password,
                "new_password": form.new_password,
            }),
        )
        .await;
    match answer {
        Ok(session) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    &state,
                    SESSION_COOKIE,
                    &session.token,
                    state.config.auth.token_ttl_secs,
                ),
            );
            response
        }
        Err(failure) if failure.status.is_client_error() => view::render_with(
            failure.status,
            &PasswordPage {
                required: console.principal.password_change_required(),
                layout: console.layout("Change your password", ""),
                error: Some(failure.message),
            },
        ),
        Err(failure) => view::api_failure(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn after_sign_in_only_paths_of_this_console_are_followed() {
        assert_eq!(safe_next(Some("/chatbots?x=1")), "/chatbots?x=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
