//! The tool-call journal: every call a reply makes is written down before it
//! is made and its result after, so a retried `respond` job replays what was
//! done instead of doing it again. And what Steward's own tools keep: leads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::{
    ChatbotId, ConversationId, JobId, LeadId, MessageId, OrgId, ToolCallId, ToolCallStatus,
    ToolServerId,
};

use crate::{NewJob, StoreResult, TenantScope};

/// A call about to be made: the `step`-th model call of the reply its
/// `respond` job writes, the `position`-th call of that step.
#[derive(Clone, Debug, PartialEq)]
pub struct NewToolCall {
    pub id: ToolCallId,
    pub conversation_id: ConversationId,
    pub job_id: JobId,
    /// The id the reply will be stored with.
    pub reply_id: MessageId,
    pub step: i32,
    pub position: i32,
    /// What the model wrote in that step, before its calls.
    pub step_text: String,
    /// The model's id for the call.
    pub call_id: String,
    pub server: String,
    pub tool: String,
    /// The input as the model wrote it (JSON, unless the model erred).
    pub input: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallRecord {
    pub id: ToolCallId,
    pub org_id: OrgId,
    pub conversation_id: ConversationId,
    pub job_id: JobId,
    pub reply_id: MessageId,
    pub step: i32,
    pub position: i32,
    pub step_text: String,
    pub call_id: String,
    pub server: String,
    pub tool: String,
    pub input: String,
    pub status: ToolCallStatus,
    /// What the call gave back (or why it failed), once it finished.
    pub result: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ToolJournal: Send + Sync {
    /// Writes a call down before it is made. A call already journaled at the
    /// same job, step and position is returned as it stands, so an attempt
    /// that lost the race (or a retry) finds the first one's.
    async fn journal_tool_call(
        &self,
        scope: &TenantScope,
        call: &NewToolCall,
    ) -> StoreResult<ToolCallRecord>;

    /// Records a started call's result; a call already finished keeps its first.
    async fn finish_tool_call(
        &self,
        scope: &TenantScope,
        id: ToolCallId,
        status: ToolCallStatus,
        result: &str,
    ) -> StoreResult<()>;

    /// The calls a `respond` job journaled, by step and position.
    async fn job_tool_calls(
        &self,
        scope: &TenantScope,
        job: JobId,
    ) -> StoreResult<Vec<ToolCallRecord>>;
}

/// Conversations handed to a person by the contact-owner tool.
#[async_trait]
pub trait HandOffStore: Send + Sync {
    /// Hands a conversation to a person, and enqueues the `announce` jobs
    /// (telling someone) in the same transaction; one already handed off
    /// stays as it is, and nothing is announced again. Another
    /// organization's conversation is `NotFound`.
    async fn hand_off(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        announce: &[NewJob],
    ) -> StoreResult<()>;

    /// Gives a conversation back to the assistant (audited).
    async fn hand_back(&self, scope: &TenantScope, conversation: ConversationId)
    -> StoreResult<()>;

    /// When the conversation was handed to a person, if it is now.
    async fn handed_off_at(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
    ) -> StoreResult<Option<DateTime<Utc>>>;
}

/// A lead the lead-capture tool records.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLead {
    /// The call that records it: the lead's idempotency key.
    pub tool_call_id: ToolCallId,
    pub chatbot_id: ChatbotId,
    pub conversation_id: ConversationId,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lead {
    pub id: LeadId,
    pub org_id: OrgId,
    /// None once the chatbot or conversation is deleted; the lead stays.
    pub chatbot_id: Option<ChatbotId>,
    pub conversation_id: Option<ConversationId>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait LeadStore: Send + Sync {
    /// Records a lead once per tool call, with the `announce` jobs (telling
    /// someone) enqueued in the same transaction: the same call again
    /// returns the lead it recorded and enqueues nothing. A conversation of
    /// another organization is `NotFound`.
    async fn record_lead(
        &self,
        scope: &TenantScope,
        lead: &NewLead,
        announce: &[NewJob],
    ) -> StoreResult<Lead>;

    /// The organization's leads, newest first, and how many there are.
    async fn leads(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Lead>, u64)>;
}

/// An MCP server an organization connects.
#[derive(Clone, Debug, PartialEq)]
pub struct NewToolServer {
    pub id: ToolServerId,
    pub name: String,
    pub url: String,
    /// Its headers, sealed with its id as associated data.
    pub sealed_headers: Vec<u8>,
    pub timeout_secs: i32,
    /// The only tools of it offered; None: all of them.
    pub allowed_tools: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolServer {
    pub id: ToolServerId,
    pub org_id: OrgId,
    pub name: String,
    pub url: String,
    pub sealed_headers: Vec<u8>,
    pub timeout_secs: i32,
    pub allowed_tools: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    /// When it last answered, and when and how it last failed.
    pub last_ok_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ToolServerStore: Send + Sync {
    /// Connects a server (audited). A name the organization has is
    /// `Conflict(ToolServerNameTaken)`.
    async fn create_tool_server(
        &self,
        scope: &TenantScope,
        server: NewToolServer,
    ) -> StoreResult<ToolServer>;

    /// The organization's servers, by name.
    async fn tool_servers(&self, scope: &TenantScope) -> StoreResult<Vec<ToolServer>>;

    async fn tool_server(&self, scope: &TenantScope, id: ToolServerId) -> StoreResult<ToolServer>;

    /// Removes a server (audited); its tools are no longer offered.
    async fn delete_tool_server(&self, scope: &TenantScope, id: ToolServerId) -> StoreResult<()>;

    // --- Operator maintenance (unscoped): the master key's rotation ---

    /// Every organization's servers.
    async fn all_tool_servers(&self) -> StoreResult<Vec<ToolServer>>;

    /// Replaces a server's sealed headers if they are still `expected`;
    /// whether they were.
    async fn replace_tool_server_headers(
        &self,
        id: ToolServerId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool>;

    /// Records that a server answered (`None`) or how it failed.
    async fn record_tool_server_health(
        &self,
        scope: &TenantScope,
        id: ToolServerId,
        error: Option<&str>,
    ) -> StoreResult<()>;
}
