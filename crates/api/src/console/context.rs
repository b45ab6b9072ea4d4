//! The organization's strategic context (mission, priorities, policies):
//! documents every chatbot of the organization draws on (owners and admins).

use askama::Template;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chatbots::{Document, DocumentList};
use super::session::Console;
use super::view::{self, Layout, Notice, PagePath};

#[derive(Template)]
#[template(path = "context.html")]
struct ContextPage {
    layout: Layout,
    documents: Vec<Document>,
    notice: Option<Notice>,
    /// What the form held when it was refused, to be corrected.
    title: String,
    text: String,
    /// Documents are still being read: the page refreshes itself.
    working: bool,
}

async fn context_page(
    console: &Console,
    status: StatusCode,
    notice: Option<Notice>,
    form: Option<ContextForm>,
) -> Response {
    match console
        .api
        .get::<DocumentList>("/organizations/context")
        .await
    {
        Ok(list) => {
            let form = form.unwrap_or_default();
            view::render_with(
                status,
                &ContextPage {
                    layout: console.layout("Strategic context", "context"),
                    working: list.documents.iter().any(Document::is_working),
                    documents: list.documents,
                    notice,
                    title: form.title,
                    text: form.text,
                },
            )
        }
        Err(failure) => view::api_failure(failure),
    }
}

pub async fn show(console: Console) -> Response {
    context_page(&console, StatusCode::OK, None, None).await
}

#[derive(Deserialize, Default, Clone)]
pub struct ContextForm {
    title: String,
    text: String,
}

pub async fn add(console: Console, Form(form): Form<ContextForm>) -> Response {
    let body = json!({ "title": form.title.trim(), "text": form.text });
    match console
        .api
        .post::<Value>("/organizations/context", &body)
        .await
    {
        Ok(_) => Redirect::to("/context").into_response(),
        Err(failure) => {
            view::refused(failure, |s, n| {
                context_page(&console, s, n, Some(form.clone()))
            })
            .await
        }
    }
}

pub async fn delete(console: Console, PagePath(doc_id): PagePath<uuid::Uuid>) -> Response {
    match console
        .api
        .delete(&format!("/organizations/context/{doc_id}"))
        .await
    {
        Ok(()) => Redirect::to("/context").into_response(),
        Err(failure) => view::api_failure(failure),
    }
}
