//! `steward mcp`: Steward's own tools served over MCP (streamable HTTP, the
//! official SDK's server) to other agents on the private network. Like
//! [`crate::mcp`], the only module that knows the SDK's server side.
//!
//! Each request names its organization by the API key the listener checked
//! ([`Caller`], put in the HTTP request's extensions before the SDK sees
//! it); an organization is offered the tools of the integrations it enabled,
//! named `server.tool`. Calls that act in a conversation (`lead-capture.record`,
//! `contact-owner.hand_off`) name it with `conversation_id`. A call's
//! idempotency key is read from `_meta` (`io.steward/idempotency-key`) or the
//! `Idempotency-Key` header, as Steward sends them: one lead per key.
//! Requests are served without sessions in both protocol revisions, so any
//! replica answers any request.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value, json};
use steward_domain::{ConversationId, ToolCallId};
use steward_store::{Store, StoreError, TenantScope};

use crate::mcp::IDEMPOTENCY_META_KEY;
use crate::{CallContext, Tool, ToolError, builtin};

/// The organization a request acts for, as the listener authenticated it.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub TenantScope);

/// The tools that act in a conversation, which a caller names.
const IN_A_CONVERSATION: &[&str] = &[builtin::LEAD_CAPTURE, builtin::CONTACT_OWNER];

/// The MCP endpoint as a tower service, to be mounted (at `/mcp`) behind the
/// authentication that puts a [`Caller`] in each request. `allowed_hosts`
/// are the `Host` names it answers to (DNS-rebinding protection).
pub fn service(
    store: Arc<dyn Store>,
    job_attempts: i32,
    allowed_hosts: Vec<String>,
) -> StreamableHttpService<OwnTools, NeverSessionManager> {
    let tools = OwnTools {
        store,
        job_attempts,
    };
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    // No sessions: each request stands alone, on every revision.
    config.legacy_session_mode = false;
    config.json_response = true;
    config.sse_keep_alive = None;
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

#[derive(Clone)]
pub struct OwnTools {
    store: Arc<dyn Store>,
    job_attempts: i32,
}

impl OwnTools {
    /// The tools the caller's organization has: its enabled integrations'.
    async fn offered(&self, scope: &TenantScope) -> Result<Vec<Tool>, ErrorData> {
        let integrations = self.store.integrations(scope).await.map_err(|error| {
            tracing::warn!(%error, "listing an organization's own tools failed");
            ErrorData::internal_error("the organization's tools could not be listed", None)
        })?;
        Ok(integrations
            .iter()
            .filter(|i| i.enabled)
            .flat_map(|i| builtin::tools_of(&i.integration.id))
            .map(|mut tool| {
                if IN_A_CONVERSATION.contains(&tool.server.as_str()) {
                    name_the_conversation(&mut tool.input_schema);
                }
                tool
            })
            .collect())
    }

    /// Makes one call; a failure of the tool's own is its result, as MCP has it.
    async fn call(
        &self,
        scope: TenantScope,
        tool: &Tool,
        mut input: Map<String, Value>,
        key: ToolCallId,
    ) -> Result<String, ToolError> {
        if !IN_A_CONVERSATION.contains(&tool.server.as_str()) {
            return builtin::call_pricing(&self.store, &scope, &tool.name, &input).await;
        }
        let conversation = input
            .remove("conversation_id")
            .and_then(|id| id.as_str()?.parse::<ConversationId>().ok())
            .ok_or_else(|| ToolError("conversation_id: the id of one of the organization's conversations is required".into()))?;
        // A conversation is opened by its first message, which names its chatbot.
        let first = self
            .store
            .conversation_messages(&scope, conversation, 1)
            .await;
        let chatbot = match first.as_deref().map(|messages| messages.first()) {
            Ok(Some(message)) => message.chatbot_id,
            Ok(None) | Err(StoreError::NotFound) => {
                return Err(ToolError("conversation_id: no such conversation".into()));
            }
            Err(error) => {
                tracing::warn!(%error, "reading a conversation failed");
                return Err(ToolError(
                    "the conversation could not be read just now".into(),
                ));
            }
        };
        let context = CallContext {
            scope,
            chatbot,
            conversation,
            person: None,
            reply: None,
            key,
        };
        builtin::call(&self.store, &context, tool, &input, self.job_attempts).await
    }
}

impl ServerHandler for OwnTools {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("steward", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Steward's own tools for one organization: those of the integrations it enabled. \
             Send a UUID as io.steward/idempotency-key in a call's _meta to have it applied once."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scope = caller(&context)?;
        let tools = self.offered(&scope).await?.into_iter().map(|tool| {
            let name = tool.full_name();
            let schema = match tool.input_schema {
                Value::Object(schema) => schema,
                _ => Map::new(),
            };
            rmcp::model::Tool::new(name, tool.description, schema)
        });
        Ok(ListToolsResult::with_all_items(tools.collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let scope = caller(&context)?;
        let offered = self.offered(&scope).await?;
        let Some(tool) = offered.iter().find(|t| t.full_name() == request.name) else {
            let shown: String = request.name.chars().take(100).collect();
            return Err(ErrorData::invalid_params(
                format!("no tool {shown:?}: see tools/list"),
                None,
            ));
        };
        let key = idempotency_key(&request, &context)?;
        let input = request.arguments.unwrap_or_default();
        let result = match self.call(scope, tool, input, key).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.0)]),
        };
        Ok(result.into())
    }
}

/// The caller the listener authenticated; a request that reached the SDK
/// without one is refused (it cannot happen behind the listener).
fn caller(context: &RequestContext<RoleServer>) -> Result<TenantScope, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .map(|caller| caller.0)
        .ok_or_else(|| ErrorData::invalid_request("no organization: send an API key", None))
}

/// The call's idempotency key: `_meta`'s, else the header's, else a new one
/// (the call is then applied as often as it is made).
fn idempotency_key(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<ToolCallId, ErrorData> {
    let from_meta = context
        .meta
        .get(IDEMPOTENCY_META_KEY)
        .or_else(|| request.meta.as_ref()?.get(IDEMPOTENCY_META_KEY))
        .map(|key| key.as_str().unwrap_or_default().to_owned());
    let from_header = || {
        let parts = context.extensions.get::<http::request::Parts>()?;
        let key = parts.headers.get("idempotency-key")?;
        Some(key.to_str().unwrap_or_default().to_owned())
    };
    match from_meta.or_else(from_header) {
        None => Ok(ToolCallId::new()),
        Some(key) => key.trim().parse().map_err(|_| {
            ErrorData::invalid_params(format!("{IDEMPOTENCY_META_KEY} must be a UUID"), None)
        }),
    }
}

/// Adds the required `conversation_id` to a tool's input schema.
fn name_the_conversation(schema: &mut Value) {
    schema["properties"]["conversation_id"] = json!({
        "type": "string",
        "format": "uuid",
        "description": "The id of the organization's conversation this call is about.",
    });
    match schema["required"].as_array_mut() {
        Some(required) => required.push("conversation_id".into()),
        None => schema["required"] = json!(["conversation_id"]),
    }
}
