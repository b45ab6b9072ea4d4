//! Who is using the console: the API's own session token, kept in an
//! HttpOnly cookie, and a CSRF token required on every form and every
//! request that changes something.
//!
//! The CSRF token is a MAC of the cookie that identifies the browser: the
//! session cookie once signed in, before that a random one set with the
//! sign-in page. A page of another site can send the cookies (SameSite=Lax
//! stops most of that already) but can neither read nor compute the token.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use serde::Deserialize;
use steward_store::Principal;
use subtle::ConstantTimeEq;

use super::bridge::Bridge;
use super::view::{self, Layout};
use crate::auth::{PeerAddr, authenticate};
use crate::state::{AppState, SharedState};

/// Holds the API token of a signed-in browser.
pub const SESSION_COOKIE: &str = "steward_session";
/// A random value identifying a browser before it signs in.
pub const BROWSER_COOKIE: &str = "steward_browser";
/// Where requests made by the console's script carry the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Forms are small; uploads go through the bridge with the header instead.
const FORM_LIMIT: usize = 256 * 1024;

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, for the whole site; Secure
/// when Steward is served over HTTPS.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.config.http.behind_tls {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie values are base64url or JWTs")
}

/// The CSRF token for a browser identified by `basis`.
pub fn csrf_token(state: &AppState, basis: &str) -> String {
    state.csrf.mac(basis.as_bytes())
}

/// What the CSRF token of this request must be bound to.
fn csrf_basis(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).or_else(|| cookie(headers, BROWSER_COOKIE))
}

/// A new random browser id.
fn new_browser_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

/// The CSRF token of a form shown before sign-in (sign-in, first run), and
/// the browser cookie it is bound to when the browser has none yet.
pub struct FormToken {
    pub csrf: String,
    new_browser: Option<String>,
}

pub fn form_token(state: &AppState, headers: &HeaderMap) -> FormToken {
    match csrf_basis(headers) {
        Some(basis) => FormToken {
            csrf: csrf_token(state, basis),
            new_browser: None,
        },
        None => {
            let id = new_browser_id();
            FormToken {
                csrf: csrf_token(state, &id),
                new_browser: Some(id),
            }
        }
    }
}

impl FormToken {
    /// `response`, setting the browser cookie the token is bound to if it is new.
    pub fn set_on(self, state: &AppState, mut response: Response) -> Response {
        if let Some(id) = self.new_browser {
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(state, BROWSER_COOKIE, &id, 24 * 3600),
            );
        }
        response
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// Refuses any request but GET and HEAD whose CSRF token is missing or wrong:
/// from the `X-CSRF-Token` header, or the form's `csrf` field.
pub async fn require_csrf(
    axum::extract::State(state): axum::extract::State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let Some(expected) = csrf_basis(request.headers()).map(|b| csrf_token(&state, b)) else {
        return view::refused_form();
    };
    let header_token = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (token, request) = match header_token {
        Some(token) => (Some(token), request),
        None if is_form(request.headers()) => {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = http_body_util::Limited::new(body, FORM_LIMIT)
                .collect()
                .await
            else {
                return view::form_too_large();
            };
            let bytes = bytes.to_bytes();
            let token = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
                .ok()
                .and_then(|f| f.csrf);
            (token, Request::from_parts(parts, bytes.into()))
        }
        None => (None, request),
    };
    match token {
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => {
            next.run(request).await
        }
        _ => view::refused_form(),
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// A signed-in person using the console: their API token, who they are, and
/// a way to call the API as them.
pub struct Console {
    pub state: SharedState,
    pub principal: Principal,
    pub layout: Layout,
    pub api: Bridge,
}

impl Console {
    /// The page layout, with `title` and the nav `section` it belongs to.
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            ..self.layout.clone()
        }
    }

    pub fn is_admin(&self) -> bool {
        self.principal.role().can_administer()
    }
}

/// Who is signed in according to `/auth/me`.
#[derive(Deserialize)]
struct Me {
    user: Option<MeUser>,
    role: String,
    organization: MeOrganization,
}

#[derive(Deserialize)]
struct MeUser {
    email: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct MeOrganization {
    name: String,
}

/// Not signed in (or no longer): to the sign-in page, and back here after.
fn sign_in_first(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| *p != "/")
        .map(|p| format!("?next={}", view::url_encode(p)))
        .unwrap_or_default();
    Redirect::to(&format!("/login{next}")).into_response()
}

/// A signed-in person calling through the console: who they are, and the
/// API as them. The script's requests take this; pages take [`Console`],
/// which adds what the page around them shows.
pub struct Caller {
    pub principal: Principal,
    pub api: Bridge,
    /// The session cookie, which the CSRF token is bound to.
    session: String,
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in_first(parts));
        };
        let mut headers = HeaderMap::new();
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| sign_in_first(parts))?;
        headers.insert(header::AUTHORIZATION, bearer.clone());
        let principal = match authenticate(state, &headers).await {
            Ok(Some(principal)) => principal,
            Ok(None) | Err(crate::ApiError::Unauthorized { .. }) => {
                return Err(sign_in_first(parts));
            }
            Err(e) => return Err(view::api_failure(e.into())),
        };
        if principal.password_change_required()
            && !matches!(parts.uri.path(), "/password" | "/logout")
        {
            return Err(Redirect::to("/password").into_response());
        }
        let api = Bridge::new(
            parts
                .extensions
                .get::<super::bridge::ApiRouter>()
                .expect("the console router carries the API")
                .clone(),
            Some(bearer),
            parts.extensions.get::<PeerAddr>().copied(),
            parts.headers.get("x-forwarded-for").cloned(),
        );
        Ok(Self {
            principal,
            api,
            session: token.to_owned(),
        })
    }
}

impl FromRequestParts<SharedState> for Console {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Caller {
            principal,
            api,
            session,
        } = Caller::from_request_parts(parts, state).await?;
        let me: Me = api.get("/auth/me").await.map_err(view::api_failure)?;
        let person = me
            .user
            .map(|u| u.name.or(u.email).unwrap_or_default())
            .unwrap_or_default();
        let layout = Layout {
            title: String::new(),
            section: "",
            person,
            organization: me.organization.name,
            role: me.role,
            is_admin: principal.role().can_administer(),
            sees_conversations: principal.role().can_read_conversations(),
            reads_patterns: principal.role().reads_patterns(),
            csrf: csrf_token(state, &session),
        };
        Ok(Self {
            state: state.clone(),
            principal,
            layout,
            api,
        })
    }
}
