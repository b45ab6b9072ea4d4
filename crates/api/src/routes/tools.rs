//! Tools an organization may give its chatbots (`PATCH /chatbots/{id}`
//! `{"tools": [...]}` chooses among them), and the leads the lead-capture
//! tool recorded.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_domain::{ChatbotId, ConversationId, LeadId};
use steward_store::Lead;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_tools))
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
/// integrations.
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
    let tools = tools.into_iter().map(|tool| ToolDto {
        name: tool.full_name(),
        server: tool.server,
        tool: tool.name,
        description: tool.description,
        input_schema: tool.input_schema,
    });
    Ok(axum::Json(ToolList {
        tools: tools.collect(),
    }))
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
    #[param(minimum = 0, maximum = 1_000_000_000)]
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
    let offset = query.offset.unwrap_or(0);
    if offset > 1_000_000_000 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "offset must be at most 1000000000",
        ));
    }
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
    let mut leads = Vec::new();
    while leads.len() < EXPORT_MAX as usize {
        let (page, _) = state
            .store
            .leads(&auth.0.scope(), crate::routes::MAX_PAGE, leads.len() as u64)
            .await?;
        let last = page.len() < crate::routes::MAX_PAGE as usize;
        leads.extend(page);
        if last {
            break;
        }
    }
    leads.truncate(EXPORT_MAX as usize);
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
