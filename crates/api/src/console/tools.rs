//! Integrations and tools in the console (owners and admins): Steward's own
//! integrations, enabled with their settings; the organization's MCP
//! servers with their health; and every tool its chatbots may be given.

use askama::Template;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::bridge::Failure;
use super::session::Console;
use super::view::{self, Layout, Notice, PagePath, Time};

#[derive(Deserialize)]
struct IntegrationList {
    integrations: Vec<Integration>,
}

#[derive(Deserialize)]
struct Integration {
    id: String,
    name: String,
    description: String,
    enabled: bool,
    config: Option<Value>,
}

impl Integration {
    /// Its settings as the form shows them.
    fn settings(&self) -> String {
        match &self.config {
            Some(config) if config != &json!({}) => {
                serde_json::to_string_pretty(config).unwrap_or_default()
            }
            _ => String::new(),
        }
    }
}

#[derive(Deserialize)]
struct ServerList {
    servers: Vec<Server>,
}

#[derive(Deserialize)]
struct Server {
    id: String,
    name: String,
    url: String,
    header_names: Vec<String>,
    health: ServerHealth,
    created_at: Time,
}

#[derive(Deserialize)]
struct ServerHealth {
    status: String,
    last_error: Option<String>,
}

#[derive(Deserialize)]
pub struct ToolList {
    pub tools: Vec<Tool>,
}

#[derive(Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "tools.html")]
struct ToolsPage {
    layout: Layout,
    integrations: Vec<Integration>,
    servers: Vec<Server>,
    tools: Vec<Tool>,
    notice: Option<Notice>,
}

async fn tools_page(console: &Console, status: StatusCode, notice: Option<Notice>) -> Response {
    let (integrations, servers, tools) = futures::join!(
        console
            .api
            .get::<IntegrationList>("/integrations/available"),
        console.api.get::<ServerList>("/tools/servers"),
        console.api.get::<ToolList>("/tools"),
    );
    let (integrations, servers, tools) = match (integrations, servers, tools) {
        (Ok(i), Ok(s), Ok(t)) => (i, s, t),
        (Err(failure), _, _) | (_, Err(failure), _) | (_, _, Err(failure)) => {
            return view::api_failure(failure);
        }
    };
    view::render_with(
        status,
        &ToolsPage {
            layout: console.layout("Integrations and tools", "tools"),
            integrations: integrations.integrations,
            servers: servers.servers,
            tools: tools.tools,
            notice,
        },
    )
}

pub async fn show(console: Console) -> Response {
    tools_page(&console, StatusCode::OK, None).await
}

/// After a form: back to the page, or the page with what went wrong.
async fn after(console: &Console, result: Result<Value, Failure>) -> Response {
    match result {
        Ok(_) => Redirect::to("/tools").into_response(),
        Err(failure) => view::refused(failure, |s, n| tools_page(console, s, n)).await,
    }
}

#[derive(Deserialize)]
pub struct EnableForm {
    integration_id: String,
    settings: Option<String>,
}

pub async fn enable(console: Console, Form(form): Form<EnableForm>) -> Response {
    let settings = form.settings.as_deref().map(str::trim).unwrap_or_default();
    let config = if settings.is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(settings) {
            Ok(config) => config,
            Err(e) => {
                let notice = Notice {
                    error: true,
                    text: format!("The settings are not JSON: {e}"),
                    secret: None,
                };
                return tools_page(&console, StatusCode::UNPROCESSABLE_ENTITY, Some(notice)).await;
            }
        }
    };
    let body = json!({ "integration_id": form.integration_id, "config": config });
    let result = console
        .api
        .post::<Value>("/integrations/enable", &body)
        .await;
    after(&console, result).await
}

pub async fn disable(console: Console, PagePath(id): PagePath<String>) -> Response {
    let result = console
        .api
        .delete(&format!("/integrations/{}", view::url_encode(&id)))
        .await
        .map(|()| Value::Null);
    after(&console, result).await
}

#[derive(Deserialize)]
pub struct ServerForm {
    name: String,
    url: String,
    header_name: Option<String>,
    header_value: Option<String>,
}

pub async fn connect(console: Console, Form(form): Form<ServerForm>) -> Response {
    let mut body = json!({ "name": form.name.trim(), "url": form.url.trim() });
    if let (Some(name), Some(value)) = (&form.header_name, &form.header_value)
        && !name.trim().is_empty()
    {
        body["headers"] = json!({ name.trim(): value });
    }
    let result = console.api.post::<Value>("/tools/servers", &body).await;
    after(&console, result).await
}

pub async fn refresh(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    let result = console
        .api
        .post::<Value>(&format!("/tools/servers/{id}/refresh"), &json!({}))
        .await;
    after(&console, result).await
}

pub async fn remove(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    let result = console
        .api
        .delete(&format!("/tools/servers/{id}"))
        .await
        .map(|()| Value::Null);
    after(&console, result).await
}
