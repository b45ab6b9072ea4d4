//! [`ChatbotStore`]: an organization's chatbots and its integrations.

use async_trait::async_trait;
use serde_json::Value;
use steward_domain::*;

use crate::{Chatbot, ChatbotPatch, IntegrationState, NewChatbot, StoreResult, TenantScope};

#[async_trait]
pub trait ChatbotStore: Send + Sync {
    // --- Chatbots ---

    /// A page ordered by creation, oldest first, and the total count.
    async fn list_chatbots(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Chatbot>, u64)>;

    async fn create_chatbot(
        &self,
        scope: &TenantScope,
        chatbot: NewChatbot,
    ) -> StoreResult<Chatbot>;

    async fn chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<Chatbot>;

    async fn update_chatbot(
        &self,
        scope: &TenantScope,
        id: ChatbotId,
        patch: ChatbotPatch,
    ) -> StoreResult<Chatbot>;

    /// Deletes the chatbot with its conversations and messages.
    async fn delete_chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<()>;

    // --- Integrations ---

    async fn integrations(&self, scope: &TenantScope) -> StoreResult<Vec<IntegrationState>>;

    /// Enables (or reconfigures) an integration of the catalogue; unknown ids are `NotFound`.
    async fn enable_integration(
        &self,
        scope: &TenantScope,
        id: &str,
        config: Value,
    ) -> StoreResult<IntegrationState>;

    /// Disabling one that is not enabled is `NotFound`.
    async fn disable_integration(&self, scope: &TenantScope, id: &str) -> StoreResult<()>;
}
