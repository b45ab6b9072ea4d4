//! Tools an organization may give its chatbots (`PATCH /chatbots/{id}`
//! `{"tools": [...]}` chooses among them), the MCP servers it connects, and
//! the leads the lead-capture tool recorded.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::{ChatbotId, ConversationId, LeadId, ToolServerId};
use steward_store::{Conflict, Lead, NewToolServer, StoreError, ToolServer};
use steward_tools::Tool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_tools))
        .routes(routes!(list_servers, connect_server))
        .routes(routes!(remove_server))
        .routes(routes!(refresh_server))
        .routes(routes!(list_leads))
        .routes(routes!(export_leads))
}

#[derive(Serialize, ToSchema)]
pub struct ToolDto {
    /// `server.tool`: how a chatbot is given it.
    name: String,
    server: String,
    tool: String,
    description: String,
    /// The JSON Schema of its input.
    #[schema(value_type = Object)]
    input_schema: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ToolList {
    tools: Vec<ToolDto>,
}

/// Every tool the organization may give its chatbots: those of its enabled
/// integrations, of the operator's MCP servers and of its own.
#[utoipa::path(get, path = "/tools", tag = "tools", security(("bearer" = [])),
    responses((status = 200, body = ToolList), (status = 503, body = ErrorBody)))]
async fn list_tools(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<ToolList>> {
    let tools = state
        .tools
        .available(&auth.0.scope())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(axum::Json(ToolList {
        tools: tools.into_iter().map(ToolDto::from).collect(),
    }))
}

impl From<Tool> for ToolDto {
    fn from(tool: Tool) -> Self {
        Self {
            name: tool.full_name(),
            server: tool.server,
            tool: tool.name,
            description: tool.description,
            input_schema: tool.input_schema,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LeadDto {
    id: LeadId,
    /// Null once the chatbot is deleted.
    chatbot_id: Option<ChatbotId>,
    conversation_id: Option<ConversationId>,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    note: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Lead> for LeadDto {
    fn from(lead: Lead) -> Self {
        Self {
            id: lead.id,
            chatbot_id: lead.chatbot_id,
            conversation_id: lead.conversation_id,
            name: lead.name,
            email: lead.email,
            phone: lead.phone,
            company: lead.company,
            note: lead.note,
            created_at: lead.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadsQuery {
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// How many to skip; default 0.
    #[param(minimum = 0, maximum = 1_000_000_000)] // routes::MAX_OFFSET
    offset: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct LeadList {
    /// Newest first.
    leads: Vec<LeadDto>,
    total: u64,
    limit: u32,
    offset: u64,
}

/// The leads the organization's chatbots recorded, newest first (owners and admins).
#[utoipa::path(get, path = "/leads", tag = "tools", security(("bearer" = [])),
    params(LeadsQuery),
    responses((status = 200, body = LeadList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_leads(
    State(state): State<SharedState>,
    auth: Auth,
    Query(query): Query<LeadsQuery>,
) -> ApiResult<axum::Json<LeadList>> {
    auth.require_admin()?;
    let limit = crate::routes::page_limit(query.limit)?;
    let offset = crate::routes::page_offset(query.offset)?;
    let (leads, total) = state.store.leads(&auth.0.scope(), limit, offset).await?;
    Ok(axum::Json(LeadList {
        leads: leads.into_iter().map(LeadDto::from).collect(),
        total,
        limit,
        offset,
    }))
}

/// The most leads one export holds; page with `GET /leads` beyond it.
const EXPORT_MAX: u32 = 10_000;

/// Every lead (up to 10,000, newest first) as CSV, for a spreadsheet or a
/// CRM import (owners and admins).
#[utoipa::path(get, path = "/leads/export.csv", tag = "tools", security(("bearer" = [])),
    responses((status = 200, description = "CSV with a header row: created_at,name,email,phone,company,note,chatbot_id,conversation_id", content_type = "text/csv"),
        (status = 403, body = ErrorBody)))]
async fn export_leads(State(state): State<SharedState>, auth: Auth) -> ApiResult<Response> {
    auth.require_admin()?;
    let (leads, _) = state.store.leads(&auth.0.scope(), EXPORT_MAX, 0).await?;
    let csv = leads_csv(&leads).map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"leads.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// The leads as CSV. A cell that a spreadsheet would read as a formula
/// (`=`, `+`, `-`, `@` first) is quoted with a leading `'`: what a visitor
/// typed must not run in someone's spreadsheet.
fn leads_csv(leads: &[Lead]) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "created_at",
        "name",
        "email",
        "phone",
        "company",
        "note",
        "chatbot_id",
        "conversation_id",
    ])?;
    let safe = |text: Option<&str>| -> String {
        let text = text.unwrap_or_default();
        match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            true => format!("'{text}"),
            false => text.to_owned(),
        }
    };
    for lead in leads {
        out.write_record([
            lead.created_at.to_rfc3339(),
            safe(Some(&lead.name)),
            safe(lead.email.as_deref()),
            safe(lead.phone.as_deref()),
            safe(lead.company.as_deref()),
            safe(lead.note.as_deref()),
            lead.chatbot_id.map(|id| id.to_string()).unwrap_or_default(),
            lead.conversation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use steward_domain::OrgId;

    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_quoted() {
        let lead = Lead {
            id: LeadId::new(),
            org_id: OrgId::new(),
            chatbot_id: None,
            conversation_id: None,
            name: "=HYPERLINK(\"http://evil\")".into(),
            email: Some("ada@example.org".into()),
            phone: Some("+44 20 7946 0958".into()),
            company: Some("Acme, Inc.".into()),
            note: Some("line one\nline two".into()),
            created_at: steward_store::now(),
        };
        let csv = String::from_utf8(leads_csv(&[lead]).unwrap()).unwrap();
        let row = csv.lines().nth(1).unwrap();
        assert!(row.contains(r#""'=HYPERLINK(""http://evil"")""#), "{row}");
        assert!(row.contains("'+44 20 7946 0958"), "{row}");
        assert!(row.contains(r#""Acme, Inc.""#), "{row}");
        assert!(csv.contains("\"line one\nline two\""), "{csv}");
    }
}

// --- The organization's own MCP servers ---

#[derive(Serialize, ToSchema)]
pub struct ToolServerHealth {
    /// `waiting` (not reached yet), `ok` (it answered last), `failing`.
    status: &'static str,
    last_ok_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ToolServerDto {
    id: ToolServerId,
    /// Its tools are named `name.tool`.
    name: String,
    url: String,
    /// The headers it is sent; their values are never shown again.
    header_names: Vec<String>,
    timeout_secs: i32,
    /// The only tools of it offered; null: all of them.
    allowed_tools: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    health: ToolServerHealth,
}

impl ToolServerDto {
    fn new(server: ToolServer, header_names: Vec<String>) -> Self {
        let status = match (server.last_ok_at, server.last_error_at) {
            (None, None) => "waiting",
            (ok, Some(failed)) if ok.is_none_or(|ok| failed > ok) => "failing",
            _ => "ok",
        };
        Self {
            id: server.id,
            name: server.name,
            url: server.url,
            header_names,
            timeout_secs: server.timeout_secs,
            allowed_tools: server.allowed_tools,
            created_at: server.created_at,
            health: ToolServerHealth {
                status,
                last_ok_at: server.last_ok_at,
                last_error: server.last_error,
                last_error_at: server.last_error_at,
            },
        }
    }

    /// The server as shown: its header names read from its sealed headers.
    fn shown(server: ToolServer, state: &SharedState) -> Self {
        let names = steward_tools::open_headers(&state.sealer, &server)
            .map(|headers| headers.into_iter().map(|(name, _)| name).collect())
            .unwrap_or_default();
        Self::new(server, names)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectToolServer {
    #[schema(schema_with = crate::contract::tool_server_name)]
    name: String,
    /// Its streamable HTTP endpoint, on the public internet (private networks
    /// only when `outbound.allow_private_networks` is set).
    #[schema(schema_with = crate::contract::web_url)]
    url: String,
    #[schema(schema_with = crate::contract::tool_server_headers)]
    headers: Option<BTreeMap<String, String>>,
    /// For connecting and listing its tools: 1 to 60; default 15.
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 60)]
    timeout_secs: Option<i32>,
    #[schema(schema_with = crate::contract::allowed_tools)]
    allowed_tools: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ToolServerList {
    servers: Vec<ToolServerDto>,
}

/// The MCP servers the organization connected, with their health (owners and admins).
#[utoipa::path(get, path = "/tools/servers", tag = "tools", security(("bearer" = [])),
    responses((status = 200, body = ToolServerList), (status = 403, body = ErrorBody)))]
async fn list_servers(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<ToolServerList>> {
    auth.require_admin()?;
    let servers = state.store.tool_servers(&auth.0.scope()).await?;
    Ok(axum::Json(ToolServerList {
        servers: servers
            .into_iter()
            .map(|s| ToolServerDto::shown(s, &state))
            .collect(),
    }))
}

/// Connect an MCP server: its tools join `GET /tools` (owners and admins).
/// Its headers are encrypted at rest and never shown again.
#[utoipa::path(post, path = "/tools/servers", tag = "tools", security(("bearer" = [])),
    request_body = ConnectToolServer,
    responses((status = 201, body = ToolServerDto), (status = 403, body = ErrorBody),
        (status = 409, description = "the name is taken (`tool_server_name_taken`)", body = ErrorBody),
        (status = 422, description = "a field is invalid, or the URL is an address that is never called (`url_refused`)", body = ErrorBody)))]
async fn connect_server(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<ConnectToolServer>,
) -> ApiResult<(StatusCode, axum::Json<ToolServerDto>)> {
    auth.require_admin()?;
    let invalid = |message: String| ApiError::unprocessable("validation_failed", message);
    let name_ok = (1..=40).contains(&body.name.len())
        && body
            .name
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(invalid(
            "name: 1 to 40 lowercase letters, digits and -, not starting with -".into(),
        ));
    }
    if state.tools.reserves(&body.name) {
        return Err(StoreError::Conflict(Conflict::ToolServerNameTaken).into());
    }
    let url = crate::routes::knowledge::checked_url(&state, &body.url)?;
    let headers: Vec<(String, String)> = body.headers.unwrap_or_default().into_iter().collect();
    let header_ok = |(name, value): &(String, String)| {
        axum::http::HeaderName::try_from(name.as_str()).is_ok()
            && (1..=64).contains(&name.len())
            && (1..=2048).contains(&value.chars().count())
            && axum::http::HeaderValue::try_from(value.as_str()).is_ok()
            && !value.chars().any(char::is_control)
    };
    if headers.len() > 16 || !headers.iter().all(header_ok) {
        return Err(invalid(
            "headers: at most 16, each a header name with a value of 1 to 2048 characters".into(),
        ));
    }
    let timeout_secs = body.timeout_secs.unwrap_or(15);
    if !(1..=60).contains(&timeout_secs) {
        return Err(invalid("timeout_secs: 1 to 60".into()));
    }
    let tool_name_ok = |name: &String| {
        (1..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    if let Some(allowed) = &body.allowed_tools
        && (allowed.len() > 64 || !allowed.iter().all(tool_name_ok))
    {
        return Err(invalid(
            "allowed_tools: at most 64 tool names (letters, digits, _ . -)".into(),
        ));
    }
    let id = ToolServerId::new();
    let sealed_headers = steward_tools::seal_headers(&state.sealer, id, &headers);
    let answering = state.clone();
    idempotency::answer_from(StatusCode::CREATED, move |s: &ToolServer| {
        ToolServerDto::shown(s.clone(), &answering)
    });
    let server = state
        .store
        .create_tool_server(
            &auth.0.scope(),
            NewToolServer {
                id,
                name: body.name,
                url: url.to_string(),
                sealed_headers,
                timeout_secs,
                allowed_tools: body.allowed_tools,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ToolServerDto::shown(server, &state)),
    ))
}

/// Remove an MCP server: its tools are no longer offered (owners and admins).
#[utoipa::path(delete, path = "/tools/servers/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_server(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state
        .store
        .delete_tool_server(&auth.0.scope(), id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Refreshed {
    /// The server, its health updated.
    server: ToolServerDto,
    /// Its tools now (those it allows); empty when it could not be reached.
    tools: Vec<ToolDto>,
}

/// Ask an MCP server for its tools now (owners and admins).
#[utoipa::path(post, path = "/tools/servers/{id}/refresh", tag = "tools", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Refreshed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn refresh_server(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<Refreshed>> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let server = state.store.tool_server(&scope, id.into()).await?;
    let tools = state
        .tools
        .organization_tools(&scope, &server, true)
        .await
        .unwrap_or_default();
    let server = state.store.tool_server(&scope, id.into()).await?;
    Ok(axum::Json(Refreshed {
        server: ToolServerDto::shown(server, &state),
        tools: tools.into_iter().map(ToolDto::from).collect(),
    }))
}
