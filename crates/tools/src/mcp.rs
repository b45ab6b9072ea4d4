//! Tools on MCP servers, over streamable HTTP, through the official SDK
//! (`rmcp`): this module is the only one that knows it, so an upgrade of the
//! SDK touches nothing else.
//!
//! Each listing and each call opens its own connection. The client offers
//! the current protocol revision (2026-07-28: `server/discover`, every request
//! self-contained) and falls back to 2025-11-25 (`initialize`, a session) for
//! servers that do not know it. A call carries its idempotency key twice: in
//! its `_meta` as `io.steward/idempotency-key`, and as an `Idempotency-Key`
//! header. Dropping a call (its timeout) cancels it on the server.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, JsonObject, MetaObject, ProtocolVersion,
    RequestMetaObject,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value};
use steward_domain::ToolCallId;
use steward_outbound::Guard;

use crate::{Tool, ToolError};

/// The `_meta` key a call's idempotency key travels under.
pub const IDEMPOTENCY_META_KEY: &str = "io.steward/idempotency-key";

/// An MCP server and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct McpServer {
    /// How its tools are named in Steward: `name.tool`.
    pub name: String,
    /// Its streamable HTTP endpoint, e.g. `https://tools.example.org/mcp`.
    pub url: String,
    /// Sent with every request (an API key, say).
    pub headers: Vec<(String, String)>,
    /// For connecting and listing; a call has the reply loop's own bound.
    pub timeout: Duration,
}

/// A server's tools, and what the connection negotiated.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub tools: Vec<Tool>,
    /// The protocol revision the server speaks, e.g. `2026-07-28`.
    pub protocol: String,
    /// How long the server says the list stays true (`ttlMs`), if it says.
    pub fresh_for: Option<Duration>,
}

/// Calls MCP servers. Servers an organization names are reached through the
/// outbound guard (no private, loopback or metadata addresses, re-checked at
/// every connection); the operator's own servers may be on a private network.
#[derive(Clone)]
pub struct McpClient {
    http: reqwest::Client,
    guard: Option<Guard>,
}

impl McpClient {
    /// For servers an organization connects: every address checked by `guard`.
    pub fn guarded(guard: Guard) -> Self {
        Self {
            http: guard.http_client(reqwest::Client::builder()),
            guard: Some(guard),
        }
    }

    /// For the operator's servers, which may be on a private network.
    pub fn internal() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self { http, guard: None }
    }

    /// The server's tools, and the revision it speaks.
    pub async fn list(&self, server: &McpServer) -> Result<Listed, ToolError> {
        let listing = async {
            let connection = self.connect(server, None).await?;
            let protocol = connection
                .peer()
                .peer_info()
                .map(|info| info.protocol_version.to_string())
                .unwrap_or_default();
            let listed = connection.peer().list_all_tools_with_cache_hint().await;
            let _ = connection.cancel().await;
            // Shown as the server's health: the server's own words go to the log only.
            let listed = listed.map_err(|e| failed(server, "listing tools", e))?;
            let fresh_for = listed.ttl_ms.map(Duration::from_millis);
            let tools = listed.items;
            let tools = tools.into_iter().map(|tool| Tool {
                server: server.name.clone(),
                name: tool.name.into_owned(),
                description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*tool.input_schema).clone()),
            });
            Ok(Listed {
                tools: tools.collect(),
                protocol,
                fresh_for,
            })
        };
        tokio::time::timeout(server.timeout, listing)
            .await
            .map_err(|_| ToolError(format!("{} did not list its tools in time", server.name)))?
    }

    /// Calls `tool` with `input`, once per `key` on a server that honours it.
    pub async fn call(
        &self,
        server: &McpServer,
        tool: &str,
        input: &Map<String, Value>,
        key: ToolCallId,
    ) -> Result<String, ToolError> {
        let connection = self.connect(server, Some(key)).await?;
        let mut meta = JsonObject::new();
        meta.insert(IDEMPOTENCY_META_KEY.into(), Value::String(key.to_string()));
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(input.clone());
        params.meta = Some(RequestMetaObject(MetaObject(meta)));
        let called = connection.peer().call_tool(params).await;
        let _ = connection.cancel().await;
        let result = called.map_err(|e| refused(server, "the call", e))?;
        let text = result_text(&result);
        match result.is_error {
            Some(true) => Err(ToolError(text)),
            _ => Ok(text),
        }
    }

    async fn connect(
        &self,
        server: &McpServer,
        key: Option<ToolCallId>,
    ) -> Result<RunningService<RoleClient, ()>, ToolError> {
        if let Some(guard) = &self.guard {
            // Checked here to say why in Steward's words; the client's
            // resolver checks every connection again.
            let url = guard
                .check_url(&server.url)
                .map_err(|refused| ToolError(format!("{}: {refused}", server.name)))?;
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(443);
            guard
                .resolve(host, port)
                .await
                .map_err(|failure| ToolError(format!("{}: {failure}", server.name)))?;
        }
        let mut headers = HashMap::new();
        let extra = key.map(|key| ("idempotency-key".to_owned(), key.to_string()));
        for (name, value) in server.headers.iter().cloned().chain(extra) {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| {
                ToolError(format!(
                    "{}: header {name} is not a header name",
                    server.name
                ))
            })?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                ToolError(format!(
                    "{}: the value of header {name} is not valid",
                    server.name
                ))
            })?;
            headers.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(server.url.as_str())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .map_err(|e| failed(server, "connecting", e))
    }
}

/// A failure, in Steward's words; the SDK's account (which names its own
/// types) goes to the log only.
fn failed(server: &McpServer, what: &str, error: impl std::fmt::Display) -> ToolError {
    tracing::info!(server = %server.name, %error, "{what} failed");
    ToolError(format!("{} failed while {what}", server.name))
}

/// What a server answered a call with, when it refused it: the tool's answer,
/// for the model.
fn refused(server: &McpServer, what: &str, error: ServiceError) -> ToolError {
    match error {
        ServiceError::McpError(answer) => {
            let message: String = answer.message.chars().take(500).collect();
            ToolError(format!("{} refused {what}: {message}", server.name))
        }
        other => failed(server, what, other),
    }
}

/// What the model reads of a result: its text, and a note for each block
/// that is not text; the structured content when there is no text at all.
fn result_text(result: &CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(_) => "[an image]".into(),
            ContentBlock::Audio(_) => "[audio]".into(),
            ContentBlock::Resource(_) => "[an embedded resource]".into(),
            ContentBlock::ResourceLink(link) => format!("[a link to {}]", link.uri),
            _ => "[content of a kind Steward does not read]".into(),
        })
        .collect();
    match (parts.is_empty(), &result.structured_content) {
        (true, Some(structured)) => structured.to_string(),
        _ => parts.join("\n"),
    }
}
