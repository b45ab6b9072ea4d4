//! The toolbox Steward runs with: the tools an organization has (its enabled
//! integrations' tools, served by Steward; the tools of the MCP servers the
//! operator runs; those of the MCP servers it connected itself), of which
//! each chatbot gets the ones it was given by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};
use steward_auth::{Resealed, Sealer};
use steward_domain::{PersonId, ToolServerId};
use steward_outbound::Guard;
use steward_store::{Chatbot, Store, StoreError, TenantScope, ToolServer};

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
/// holds, by server.
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
    /// The tries of the jobs Steward's own tools enqueue (telling someone).
    job_attempts: i32,
    memory: crate::memory::Memory,
}

impl Catalogue {
    /// `servers` are the operator's, whose names must not be those of
    /// Steward's own tools; the jobs its own tools enqueue get `job_attempts`.
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        guard: Guard,
        servers: Vec<McpServer>,
        job_attempts: i32,
    ) -> Self {
        Self {
            memory: crate::memory::Memory::new(store.clone(), sealer.clone()),
            store,
            sealer,
            servers: Arc::new(servers),
            internal: McpClient::internal(),
            guarded: McpClient::guarded(guard),
            listed: Arc::default(),
            job_attempts,
        }
    }

    /// Whether `name` is taken by Steward's own tools or an operator's server.
    pub fn reserves(&self, name: &str) -> bool {
        builtin::SERVERS.contains(&name)
            || name == crate::skills::SERVER
            || name == crate::memory::SERVER
            || self.servers.iter().any(|s| s.name == name)
    }

    /// Every tool the organization may give its chatbots.
    pub async fn available(&self, scope: &TenantScope) -> Result<Vec<Tool>, ToolError> {
        self.tools_on(scope, |_| true).await
    }

    /// The organization's tools on the servers `wanted` names: only those
    /// servers are asked, side by side.
    async fn tools_on(
        &self,
        scope: &TenantScope,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<Tool>, ToolError> {
        let unlisted = |error: steward_store::StoreError| {
            tracing::warn!(%error, "listing an organization's tools failed");
            ToolError("the organization's tools could not be listed".into())
        };
        let integrations = self.store.integrations(scope).await.map_err(unlisted)?;
        let mut tools: Vec<Tool> = integrations
            .iter()
            .filter(|i| i.enabled && wanted(&i.integration.id))
            .flat_map(|i| builtin::tools_of(&i.integration.id))
            .collect();
        let operators = self
            .servers
            .iter()
            .filter(|s| wanted(&s.name))
            .map(|server| async move {
                let key = format!("operator {}", server.name);
                self.tools_of(&self.internal, server, &key, false).await.0
            });
        let theirs = self.store.tool_servers(scope).await.map_err(unlisted)?;
        let theirs = theirs
            .iter()
            .filter(|s| wanted(&s.name))
            .map(|server| self.organization_tools(scope, server, false));
        let (operators, theirs) = futures::future::join(
            futures::future::join_all(operators),
            futures::future::join_all(theirs),
        )
        .await;
        // A server that cannot list its tools offers none; the others still do.
        tools.extend(operators.into_iter().chain(theirs).flatten().flatten());
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
        // Keyed by the server's own id: two organizations that connect the
        // same URL with their own credentials never share a list.
        let key = format!("organization {}", server.id);
        let (listed, asked) = self.tools_of(&self.guarded, &mcp, &key, fresh).await;
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
        let headers = open_headers(&self.sealer, server)
            .ok_or_else(|| ToolError(format!("{}'s settings cannot be read", server.name)))?;
        Ok(McpServer {
            name: server.name.clone(),
            url: server.url.clone(),
            headers,
            timeout: Duration::from_secs(u64::try_from(server.timeout_secs).unwrap_or(15)),
        })
    }

    /// A server's tools, asked for again once the last answer expired (its
    /// `ttlMs`, else [`LIST_FRESH_FOR`]; after a failure, [`FAILED_LEFT_FOR`])
    /// or when `fresh`; and whether it was asked now. Kept under `key`.
    async fn tools_of(
        &self,
        client: &McpClient,
        server: &McpServer,
        key: &str,
        fresh: bool,
    ) -> (Result<Vec<Tool>, ToolError>, bool) {
        let cached = self.listed.lock().expect("not poisoned").get(key).cloned();
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
        self.listed
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), entry);
        (listed, true)
    }
}

/// An organization's server's headers, sealed with its id as associated data.
pub fn seal_headers(sealer: &Sealer, id: ToolServerId, headers: &[(String, String)]) -> Vec<u8> {
    let plain = serde_json::to_vec(headers).expect("headers serialize");
    sealer.seal(&plain, id.to_string().as_bytes())
}

/// A stored server's headers, opened; None when they cannot be.
pub fn open_headers(sealer: &Sealer, server: &ToolServer) -> Option<Vec<(String, String)>> {
    let plain = sealer
        .open(&server.sealed_headers, server.id.to_string().as_bytes())
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// The second half of a master-key rotation for organizations' MCP servers:
/// every server's headers sealed again under the current key.
pub async fn reseal(
    store: &dyn Store,
    sealer: &Sealer,
) -> Result<Resealed<ToolServerId>, StoreError> {
    let servers = store.all_tool_servers().await?;
    let sealed = servers.into_iter().map(|s| (s.id, s.sealed_headers));
    Resealed::run(sealer, sealed, async |id, old, new| {
        store.replace_tool_server_headers(id, old, new).await
    })
    .await
}

#[async_trait]
impl Toolbox for Catalogue {
    async fn tools(
        &self,
        scope: &TenantScope,
        chatbot: &Chatbot,
        person: Option<PersonId>,
    ) -> Result<Vec<Tool>, ToolError> {
        let mut skills = Vec::new();
        if !chatbot.skills.is_empty() {
            let offered = self
                .store
                .offered_skills(scope, &chatbot.skills, person)
                .await;
            skills = crate::skills::tools_for(&offered.map_err(|error| {
                tracing::warn!(%error, "listing a chatbot's skills failed");
                ToolError("the chatbot's skills could not be listed".into())
            })?);
        }
        // A known person's memory. The reply, which has read whether the
        // organization keeps memory and who else is in the conversation,
        // leaves these out where it must not be reached.
        if person.is_some() {
            skills.extend(crate::memory::tools());
        }
        if chatbot.tools.is_empty() {
            return Ok(skills);
        }
        // Only the servers the chatbot has a tool of are asked.
        let given = |server: &str| {
            let prefix = format!("{server}.");
            chatbot.tools.iter().any(|name| name.starts_with(&prefix))
        };
        let mut tools = self.tools_on(scope, given).await?;
        tools.retain(|tool| chatbot.tools.contains(&tool.full_name()));
        tools.extend(skills);
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
            return builtin::call(&self.store, context, tool, input, self.job_attempts).await;
        }
        if tool.server == crate::skills::SERVER {
            return crate::skills::call(&self.store, context, tool, input).await;
        }
        if tool.server == crate::memory::SERVER {
            return crate::memory::call(&self.memory, context, tool, input).await;
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
