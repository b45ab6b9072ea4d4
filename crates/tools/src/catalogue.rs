//! The toolbox Steward runs with: the tools an organization has (its enabled
//! integrations' tools, served by Steward; the tools of the MCP servers the
//! operator runs; those of the MCP servers it connected itself), of which
//! each chatbot gets the ones it was given by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};
use steward_auth::Sealer;
use steward_outbound::Guard;
use steward_store::{Chatbot, Store, TenantScope, ToolServer};

use crate::mcp::{McpClient, McpServer};
use crate::{CallContext, Tool, ToolError, Toolbox, builtin};

/// How long a server's list of tools is used before it is asked again, when
/// the server does not say (`ttlMs`); what it says is kept within the bounds.
const LIST_FRESH_FOR: Duration = Duration::from_secs(60);
const LIST_FRESH_AT_LEAST: Duration = Duration::from_secs(5);
const LIST_FRESH_AT_MOST: Duration = Duration::from_secs(3600);
/// How long a server that could not list its tools is left alone: its tools
/// are unavailable meanwhile, and replies do not wait on it.
const FAILED_LEFT_FOR: Duration = Duration::from_secs(30);

/// Each server's tools (or why it could not list them), and until when that
/// holds, by the server's URL and name.
type Listed = HashMap<String, (Instant, Result<Vec<Tool>, ToolError>)>;

#[derive(Clone)]
pub struct Catalogue {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// The operator's MCP servers, and the client that may reach private networks.
    servers: Arc<Vec<McpServer>>,
    internal: McpClient,
    /// For servers organizations connect: through the outbound guard.
    guarded: McpClient,
    listed: Arc<Mutex<Listed>>,
}

impl Catalogue {
    /// `servers` are the operator's, whose names must not be those of
    /// Steward's own tools.
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        guard: Guard,
        servers: Vec<McpServer>,
    ) -> Self {
        Self {
            store,
            sealer,
            servers: Arc::new(servers),
            internal: McpClient::internal(),
            guarded: McpClient::guarded(guard),
            listed: Arc::default(),
        }
    }

    /// Whether `name` is taken by Steward's own tools or an operator's server.
    pub fn reserves(&self, name: &str) -> bool {
        builtin::SERVERS.contains(&name) || self.servers.iter().any(|s| s.name == name)
    }

    /// Every tool the organization may give its chatbots.
    pub async fn available(&self, scope: &TenantScope) -> Result<Vec<Tool>, ToolError> {
        let unlisted = |error: steward_store::StoreError| {
            tracing::warn!(%error, "listing an organization's tools failed");
            ToolError("the organization's tools could not be listed".into())
        };
        let integrations = self.store.integrations(scope).await.map_err(unlisted)?;
        let mut tools: Vec<Tool> = integrations
            .iter()
            .filter(|i| i.enabled)
            .flat_map(|i| builtin::tools_of(&i.integration.id))
            .collect();
        for server in self.servers.iter() {
            if let (Ok(listed), _) = self.tools_of(&self.internal, server, false).await {
                tools.extend(listed);
            }
        }
        for server in self.store.tool_servers(scope).await.map_err(unlisted)? {
            if let Ok(listed) = self.organization_tools(scope, &server, false).await {
                tools.extend(listed);
            }
        }
        Ok(tools)
    }

    /// An organization's server's tools (those it allows), listed now when
    /// `fresh`; its health records how asking went.
    pub async fn organization_tools(
        &self,
        scope: &TenantScope,
        server: &ToolServer,
        fresh: bool,
    ) -> Result<Vec<Tool>, ToolError> {
        let mcp = self.opened(server)?;
        let (listed, asked) = self.tools_of(&self.guarded, &mcp, fresh).await;
        let health = listed.as_ref().err().map(|e| e.0.as_str());
        if asked
            && let Err(error) = self
                .store
                .record_tool_server_health(scope, server.id, health)
                .await
        {
            tracing::warn!(%error, "recording a tool server's health failed");
        }
        let mut tools = listed?;
        if let Some(allowed) = &server.allowed_tools {
            tools.retain(|tool| allowed.contains(&tool.name));
        }
        Ok(tools)
    }

    /// A stored server as the MCP client reaches it, its headers opened.
    fn opened(&self, server: &ToolServer) -> Result<McpServer, ToolError> {
        let unreadable = || ToolError(format!("{}'s settings cannot be read", server.name));
        let headers = self
            .sealer
            .open(&server.sealed_headers, server.id.to_string().as_bytes())
            .map_err(|_| unreadable())?;
        let headers: Vec<(String, String)> =
            serde_json::from_slice(&headers).map_err(|_| unreadable())?;
        Ok(McpServer {
            name: server.name.clone(),
            url: server.url.clone(),
            headers,
            timeout: Duration::from_secs(u64::try_from(server.timeout_secs).unwrap_or(15)),
        })
    }

    /// A server's tools, asked for again once the last answer expired (its
    /// `ttlMs`, else [`LIST_FRESH_FOR`]; after a failure, [`FAILED_LEFT_FOR`])
    /// or when `fresh`; and whether it was asked now.
    async fn tools_of(
        &self,
        client: &McpClient,
        server: &McpServer,
        fresh: bool,
    ) -> (Result<Vec<Tool>, ToolError>, bool) {
        let key = format!("{} {}", server.url, server.name);
        let cached = self.listed.lock().expect("not poisoned").get(&key).cloned();
        if let Some((until, listed)) = cached.filter(|_| !fresh)
            && Instant::now() < until
        {
            return (listed, false);
        }
        let listed = client.list(server).await;
        let good_for = match &listed {
            Ok(listed) => listed
                .fresh_for
                .unwrap_or(LIST_FRESH_FOR)
                .clamp(LIST_FRESH_AT_LEAST, LIST_FRESH_AT_MOST),
            Err(error) => {
                tracing::warn!(server = %server.name, %error, "an MCP server's tools are unavailable");
                FAILED_LEFT_FOR
            }
        };
        let listed = listed.map(|listed| listed.tools);
        let entry = (Instant::now() + good_for, listed.clone());
        self.listed.lock().expect("not poisoned").insert(key, entry);
        (listed, true)
    }
}

#[async_trait]
impl Toolbox for Catalogue {
    async fn tools(&self, scope: &TenantScope, chatbot: &Chatbot) -> Result<Vec<Tool>, ToolError> {
        if chatbot.tools.is_empty() {
            return Ok(Vec::new());
        }
        let mut tools = self.available(scope).await?;
        tools.retain(|tool| chatbot.tools.contains(&tool.full_name()));
        Ok(tools)
    }

    async fn call(
        &self,
        context: &CallContext,
        tool: &Tool,
        input: &Map<String, Value>,
    ) -> Result<String, ToolError> {
        if let Some(server) = self.servers.iter().find(|s| s.name == tool.server) {
            return self
                .internal
                .call(server, &tool.name, input, context.key)
                .await;
        }
        if builtin::SERVERS.contains(&tool.server.as_str()) {
            return builtin::call(&self.store, context, tool, input).await;
        }
        let servers = self
            .store
            .tool_servers(&context.scope)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "reading an organization's tool servers failed");
                ToolError("the tool's server could not be found just now".into())
            })?;
        let Some(server) = servers.iter().find(|s| s.name == tool.server) else {
            return Err(ToolError(format!("{} is no longer connected", tool.server)));
        };
        let mcp = self.opened(server)?;
        self.guarded
            .call(&mcp, &tool.name, input, context.key)
            .await
    }
}
