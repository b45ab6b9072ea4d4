//! The toolbox Steward runs with: the tools an organization has (its enabled
//! integrations' tools, served by Steward, and the tools of the MCP servers
//! the operator runs), of which each chatbot gets the ones it was given by
//! name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};
use steward_store::{Chatbot, Store, TenantScope};

use crate::mcp::{McpClient, McpServer};
use crate::{CallContext, Tool, ToolError, Toolbox, builtin};

/// How long a server's list of tools is used before it is asked again.
const LIST_FRESH_FOR: Duration = Duration::from_secs(60);

/// Each server's tools, and when they were listed, by server name.
type Listed = HashMap<String, (Instant, Vec<Tool>)>;

#[derive(Clone)]
pub struct Catalogue {
    store: Arc<dyn Store>,
    /// The operator's MCP servers.
    servers: Arc<Vec<McpServer>>,
    mcp: McpClient,
    listed: Arc<Mutex<Listed>>,
}

impl Catalogue {
    /// Steward's own tools only.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_servers(store, Vec::new())
    }

    /// Steward's own tools and those of the operator's `servers`, whose names
    /// must not be those of Steward's own.
    pub fn with_servers(store: Arc<dyn Store>, servers: Vec<McpServer>) -> Self {
        Self {
            store,
            servers: Arc::new(servers),
            mcp: McpClient::internal(),
            listed: Arc::default(),
        }
    }

    /// Every tool the organization may give its chatbots.
    pub async fn available(&self, scope: &TenantScope) -> Result<Vec<Tool>, ToolError> {
        let integrations = self.store.integrations(scope).await.map_err(|error| {
            tracing::warn!(%error, "listing integrations failed");
            ToolError("the organization's tools could not be listed".into())
        })?;
        let mut tools: Vec<Tool> = integrations
            .iter()
            .filter(|i| i.enabled)
            .flat_map(|i| builtin::tools_of(&i.integration.id))
            .collect();
        for server in self.servers.iter() {
            tools.extend(self.tools_of(server).await);
        }
        Ok(tools)
    }

    /// A server's tools, listed at most every [`LIST_FRESH_FOR`]; none while
    /// it cannot be reached (it is asked again at the next listing).
    async fn tools_of(&self, server: &McpServer) -> Vec<Tool> {
        let fresh = |listed: &Listed| {
            listed
                .get(&server.name)
                .filter(|(at, _)| at.elapsed() < LIST_FRESH_FOR)
                .map(|(_, tools)| tools.clone())
        };
        if let Some(tools) = fresh(&self.listed.lock().expect("not poisoned")) {
            return tools;
        }
        match self.mcp.list(server).await {
            Ok(listed) => {
                let mut cache = self.listed.lock().expect("not poisoned");
                cache.insert(server.name.clone(), (Instant::now(), listed.tools.clone()));
                listed.tools
            }
            Err(error) => {
                tracing::warn!(server = %server.name, %error, "an MCP server's tools are unavailable");
                self.listed
                    .lock()
                    .expect("not poisoned")
                    .remove(&server.name);
                Vec::new()
            }
        }
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
        match self.servers.iter().find(|s| s.name == tool.server) {
            Some(server) => self.mcp.call(server, &tool.name, input, context.key).await,
            None => builtin::call(&self.store, context, tool, input).await,
        }
    }
}
