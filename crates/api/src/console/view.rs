//! Turning templates and failures into pages.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::bridge::Failure;

/// The console's own policy: its script and styles only, from this origin;
/// no inline script; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// What every signed-in page shows around its content.
#[derive(Clone, Default)]
pub struct Layout {
    pub title: String,
    /// The nav entry this page belongs to.
    pub section: &'static str,
    /// The person signed in: their name, else their email.
    pub person: String,
    pub organization: String,
    pub role: String,
    pub is_admin: bool,
    /// Everyone but advisors, who see aggregates only.
    pub sees_conversations: bool,
    /// Owners, admins and advisors.
    pub reads_patterns: bool,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
}

/// Something to tell the person at the top of a page: a result, or what was
/// wrong with what they sent.
pub struct Notice {
    pub error: bool,
    pub text: String,
    /// A secret shown once (a one-time password, an API key).
    pub secret: Option<String>,
}

impl Notice {
    pub fn failed(failure: &Failure) -> Option<Self> {
        Some(Self {
            error: true,
            text: failure.message.clone(),
            secret: None,
        })
    }
}

/// `template` as an HTML page with `status`.
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            // Pages show an organization's data: never kept by a shared cache.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "console: a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Problem<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page that says what went wrong, with a way back.
pub fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    render_with(status, &Problem { title, message })
}

/// An API failure as a page: another organization's id and a missing one
/// are the same "not found"; a role too low is "not allowed".
pub fn api_failure(failure: Failure) -> Response {
    match failure.status {
        StatusCode::NOT_FOUND => not_found(),
        StatusCode::FORBIDDEN => problem(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your role in this organization does not allow this page. Ask an owner or an admin.",
        ),
        StatusCode::UNAUTHORIZED => Redirect::to("/login").into_response(),
        status => problem(status, "Something went wrong", &failure.message),
    }
}

pub fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in your organization.",
    )
}

/// A page again, with what went wrong on top; failures that are not about
/// the form (not found, not allowed) are their own page.
pub async fn refused<F, Fut>(failure: Failure, page: F) -> Response
where
    F: FnOnce(StatusCode, Option<Notice>) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    if failure.is_about_the_form() {
        page(failure.status, Notice::failed(&failure)).await
    } else {
        api_failure(failure)
    }
}

/// A form sent without its CSRF token, or with another browser's.
pub fn refused_form() -> Response {
    problem(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form was not sent from a page of this console, or it has expired. Go back, reload the page and send it again.",
    )
}

pub fn form_too_large() -> Response {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Form too large",
        "The form is larger than the console accepts.",
    )
}

/// `text` for a URL's query.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A timestamp from the API, shown as `2026-12-02 16:05` (UTC).
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct Time(String);

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match chrono::DateTime::parse_from_rfc3339(&self.0) {
            Ok(t) => write!(
                f,
                "{}",
                t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M")
            ),
            Err(_) => f.write_str(&self.0),
        }
    }
}

/// A path parameter of a page; one that does not parse is a page not found.
pub struct PagePath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PagePath<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PagePath(value))
            .map_err(|_| not_found())
    }
}
