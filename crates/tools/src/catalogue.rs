//! The toolbox Steward runs with: the tools an organization has (its enabled
//! integrations' tools, served by Steward), of which each chatbot gets the
//! ones it was given by name.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use steward_store::{Chatbot, Store, TenantScope};

use crate::{CallContext, Tool, ToolError, Toolbox, builtin};

#[derive(Clone)]
pub struct Catalogue {
    store: Arc<dyn Store>,
}

impl Catalogue {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every tool the organization may give its chatbots.
    pub async fn available(&self, scope: &TenantScope) -> Result<Vec<Tool>, ToolError> {
        let integrations = self.store.integrations(scope).await.map_err(|error| {
            tracing::warn!(%error, "listing integrations failed");
            ToolError("the organization's tools could not be listed".into())
        })?;
        Ok(integrations
            .iter()
            .filter(|i| i.enabled)
            .flat_map(|i| builtin::tools_of(&i.integration.id))
            .collect())
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
        builtin::call(&self.store, context, tool, input).await
    }
}
