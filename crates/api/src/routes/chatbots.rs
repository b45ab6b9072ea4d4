//! Chatbots: create, list, read, tune, delete.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use steward_domain::{ChatbotName, ChatbotStatus, ModelName, SystemPrompt, Temperature};
use steward_store::{Chatbot, ChatbotPatch, NewChatbot};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::dto::ChatbotDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_chatbots, create_chatbot))
        .routes(routes!(get_chatbot, update_chatbot, delete_chatbot))
}

const DEFAULT_TEMPERATURE: f64 = 0.7;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// How many to skip; default 0.
    #[param(minimum = 0, maximum = 1_000_000_000)] // routes::MAX_OFFSET
    offset: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatbotList {
    chatbots: Vec<ChatbotDto>,
    total: u64,
    limit: u32,
    offset: u64,
}

/// The organization's chatbots, oldest first.
#[utoipa::path(get, path = "/chatbots", tag = "chatbots", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = ChatbotList), (status = 400, body = ErrorBody)))]
async fn list_chatbots(
    State(state): State<SharedState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<ChatbotList>> {
    let limit = crate::routes::page_limit(query.limit)?;
    let offset = crate::routes::page_offset(query.offset)?;
    let (chatbots, total) = state
        .store
        .list_chatbots(&auth.0.scope(), limit, offset)
        .await?;
    Ok(axum::Json(ChatbotList {
        chatbots: chatbots
            .into_iter()
            .map(|c| ChatbotDto::seen_by(c, auth.0.role()))
            .collect(),
        total,
        limit,
        offset,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChatbot {
    /// 1 to 100 characters.
    #[schema(schema_with = crate::contract::chatbot_name)]
    name: String,
    /// Up to 20,000 characters; default empty.
    #[schema(schema_with = crate::contract::optional_system_prompt)]
    system_prompt: Option<String>,
    /// 0.0 to 2.0; default 0.7.
    #[schema(schema_with = crate::contract::optional_temperature)]
    temperature: Option<f64>,
    /// Default: the platform's model.
    #[schema(schema_with = crate::contract::optional_model_name)]
    model: Option<String>,
    status: Option<ChatbotStatus>,
}

/// Create a chatbot (owners and admins).
#[utoipa::path(post, path = "/chatbots", tag = "chatbots", security(("bearer" = [])),
    request_body = CreateChatbot,
    responses((status = 201, body = ChatbotDto), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_chatbot(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<CreateChatbot>,
) -> ApiResult<(StatusCode, axum::Json<ChatbotDto>)> {
    auth.require_admin()?;
    let chatbot = NewChatbot {
        name: ChatbotName::parse("name", body.name)?,
        system_prompt: SystemPrompt::parse(
            "system_prompt",
            body.system_prompt.unwrap_or_default(),
        )?,
        temperature: Temperature::parse(
            "temperature",
            body.temperature.unwrap_or(DEFAULT_TEMPERATURE),
        )?,
        model: body
            .model
            .map(|m| ModelName::parse("model", m))
            .transpose()?,
        status: body.status.unwrap_or(ChatbotStatus::Active),
    };
    idempotency::answer_from(StatusCode::CREATED, |c: &Chatbot| {
        ChatbotDto::from(c.clone())
    });
    let created = state.store.create_chatbot(&auth.0.scope(), chatbot).await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

/// One chatbot.
#[utoipa::path(get, path = "/chatbots/{id}", tag = "chatbots", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ChatbotDto), (status = 404, body = ErrorBody)))]
async fn get_chatbot(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<ChatbotDto>> {
    let chatbot = state.store.chatbot(&auth.0.scope(), id.into()).await?;
    Ok(axum::Json(ChatbotDto::seen_by(chatbot, auth.0.role())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChatbot {
    #[schema(schema_with = crate::contract::optional_chatbot_name)]
    name: Option<String>,
    #[schema(schema_with = crate::contract::optional_system_prompt)]
    system_prompt: Option<String>,
    #[schema(schema_with = crate::contract::optional_temperature)]
    temperature: Option<f64>,
    /// A model name, or null for the platform's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::contract::optional_model_name)]
    model: Option<Option<String>>,
    status: Option<ChatbotStatus>,
    /// The tools it may call, each named as `GET /api/v1/tools` names it
    /// (`server.tool`); `[]` for none.
    #[schema(schema_with = crate::contract::tool_names)]
    tools: Option<Vec<String>>,
    /// The skills it offers, by name (`GET /api/v1/skills`); `[]` for none.
    /// Each is offered in its latest version.
    #[schema(schema_with = crate::contract::skill_names)]
    skills: Option<Vec<String>>,
}

/// The most tools one chatbot may be given.
const MAX_TOOLS: usize = 64;

/// Tool names the organization has, without repeats; anything else is 409.
async fn tools_the_org_has(
    state: &SharedState,
    auth: &Auth,
    names: Vec<String>,
) -> ApiResult<Vec<String>> {
    let available = state
        .tools
        .available(&auth.0.scope())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let has = |name: &str| available.iter().any(|tool| tool.full_name() == name);
    chosen(names, ("tool", "unknown_tool"), has)
}

/// Skill names the organization has now, without repeats; anything else is 409.
async fn skills_the_org_has(
    state: &SharedState,
    auth: &Auth,
    names: Vec<String>,
) -> ApiResult<Vec<String>> {
    let have = state.store.skills(&auth.0.scope()).await?;
    let has = |name: &str| have.iter().any(|skill| skill.name == name);
    chosen(names, ("skill", "unknown_skill"), has)
}

/// `names` without repeats, when there are at most [`MAX_TOOLS`] and the
/// organization `has` each; `what` names the kind and the code of a 409.
fn chosen(
    names: Vec<String>,
    (what, code): (&str, &'static str),
    has: impl Fn(&str) -> bool,
) -> ApiResult<Vec<String>> {
    if names.len() > MAX_TOOLS {
        return Err(ApiError::unprocessable(
            "validation_failed",
            format!("{what}s: at most {MAX_TOOLS}"),
        ));
    }
    let mut chosen: Vec<String> = Vec::new();
    for name in names {
        if !has(&name) {
            let shown: String = name.chars().take(100).collect();
            // 409 like an unknown conversation in a body: the name is well
            // formed, and names nothing the organization has now.
            return Err(ApiError::Conflict {
                code,
                message: format!(
                    "{what}s: the organization has no {what} {shown:?} (see GET /api/v1/{what}s)"
                ),
            });
        }
        if !chosen.contains(&name) {
            chosen.push(name);
        }
    }
    Ok(chosen)
}

/// Tells a field sent as null (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Change some of a chatbot's settings (owners and admins).
#[utoipa::path(patch, path = "/chatbots/{id}", tag = "chatbots", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateChatbot,
    responses((status = 200, body = ChatbotDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a tool or a skill the organization does not have (`unknown_tool`, `unknown_skill`)", body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn update_chatbot(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(body): Json<UpdateChatbot>,
) -> ApiResult<axum::Json<ChatbotDto>> {
    auth.require_admin()?;
    let patch = ChatbotPatch {
        name: body
            .name
            .map(|n| ChatbotName::parse("name", n))
            .transpose()?,
        system_prompt: body
            .system_prompt
            .map(|p| SystemPrompt::parse("system_prompt", p))
            .transpose()?,
        temperature: body
            .temperature
            .map(|t| Temperature::parse("temperature", t))
            .transpose()?,
        model: body
            .model
            .map(|m| m.map(|m| ModelName::parse("model", m)).transpose())
            .transpose()?,
        status: body.status,
        tools: match body.tools {
            Some(names) => Some(tools_the_org_has(&state, &auth, names).await?),
            None => None,
        },
        skills: match body.skills {
            Some(names) => Some(skills_the_org_has(&state, &auth, names).await?),
            None => None,
        },
    };
    if patch.is_empty() {
        // Nothing to change: the chatbot as it is.
        let chatbot = state.store.chatbot(&auth.0.scope(), id.into()).await?;
        return Ok(axum::Json(ChatbotDto::seen_by(chatbot, auth.0.role())));
    }
    Ok(axum::Json(
        state
            .store
            .update_chatbot(&auth.0.scope(), id.into(), patch)
            .await?
            .into(),
    ))
}

/// Delete a chatbot with its conversations (owners and admins).
#[utoipa::path(delete, path = "/chatbots/{id}", tag = "chatbots", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_chatbot(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state
        .store
        .delete_chatbot(&auth.0.scope(), id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
