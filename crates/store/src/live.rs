//! Live events of a conversation, for clients following it (SSE): a reply
//! starting, pieces of it as the model writes them and the tools it calls
//! (not stored), and stored messages (by id, so a client that reconnects can
//! ask for what it missed).

use serde::{Deserialize, Serialize};
use steward_domain::{ConversationId, MessageId, OrgId, ToolCallId, ToolCallStatus};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEvent {
    pub org_id: OrgId,
    pub conversation_id: ConversationId,
    pub kind: LiveKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveKind {
    /// An attempt at a reply began: pieces before it (of a failed attempt)
    /// are void. `attempt` is new for every attempt; `reply` is the id the
    /// reply will be stored with.
    ReplyStarted {
        attempt: uuid::Uuid,
        reply: MessageId,
    },
    /// The next piece of the reply being written.
    Delta { text: String },
    /// A message was stored.
    Message { message_id: MessageId },
    /// A tool call of the reply being written started, or finished.
    ToolCall {
        id: ToolCallId,
        server: String,
        tool: String,
        status: ToolCallStatus,
    },
}

/// Subscribers that fall this far behind lose events and re-read what they missed.
pub const LIVE_BUFFER: usize = 1024;
