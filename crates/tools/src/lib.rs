//! Tools a chatbot may call, as the reply loop sees them: a [`Toolbox`] lists
//! the tools a chatbot may use and calls one, whatever serves it. Each call
//! carries its journal id, the idempotency key a server uses to apply a call
//! once however often it is sent.
//!
//! [`Catalogue`] is the toolbox Steward runs with: its own tools
//! ([`builtin`]), one server per integration of the catalogue, each offered
//! once the organization enables its integration and given to a chatbot by
//! name (`server.tool`).

pub mod builtin;
mod catalogue;
pub mod mcp;
pub mod memory;
pub mod serve;
pub mod skills;

use async_trait::async_trait;
use serde_json::{Map, Value};
use steward_domain::{ChatbotId, ConversationId, MessageId, PersonId, ToolCallId};
use steward_store::{Chatbot, TenantScope};

pub use catalogue::{Catalogue, open_headers, reseal, seal_headers};

/// A tool, as a server offers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// The server that serves it (`pricing-calculator`, or an MCP server's name).
    pub server: String,
    pub name: String,
    pub description: String,
    /// The JSON Schema of its input, an object.
    pub input_schema: Value,
}

impl Tool {
    /// `server.tool`: how people see it.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.server, self.name)
    }

    /// How a model sees it: `server__tool`, in the characters and length both
    /// provider formats accept (letters, digits, `_` and `-`; at most 64).
    pub fn model_name(server: &str, name: &str) -> String {
        let safe = |text: &str| -> String {
            text.chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
                    _ => '_',
                })
                .collect()
        };
        let mut model_name = format!("{}__{}", safe(server), safe(name));
        model_name.truncate(64);
        model_name
    }
}

/// Why a call gave no result; the model is told, and answers with that.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// What a call is made for.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub scope: TenantScope,
    pub chatbot: ChatbotId,
    pub conversation: ConversationId,
    /// Who the reply is for (the author of the message it answers): the
    /// skills they may use are the ones offered, and the memory tools
    /// reach their memory.
    pub person: Option<PersonId>,
    /// The reply the call is made for (stored after it); None for a call
    /// through Steward's MCP server, which writes no reply.
    pub reply: Option<MessageId>,
    /// The call's journal id: its idempotency key.
    pub key: ToolCallId,
}

#[async_trait]
pub trait Toolbox: Send + Sync {
    /// The tools `chatbot` may call now in a reply to `person`.
    async fn tools(
        &self,
        scope: &TenantScope,
        chatbot: &Chatbot,
        person: Option<PersonId>,
    ) -> Result<Vec<Tool>, ToolError>;

    /// Calls `tool` with `input`, once per `context.key`.
    async fn call(
        &self,
        context: &CallContext,
        tool: &Tool,
        input: &Map<String, Value>,
    ) -> Result<String, ToolError>;
}

/// A result cut to at most `max_bytes` (on a character boundary), with a
/// note saying so, so the model knows it has only the start.
pub fn bounded(result: String, max_bytes: usize) -> String {
    if result.len() <= max_bytes {
        return result;
    }
    let mut end = max_bytes;
    while !result.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[cut: the result was {} bytes; only the first {end} are shown]",
        &result[..end],
        result.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_keep_to_what_providers_accept() {
        assert_eq!(
            Tool::model_name("pricing-calculator", "quote"),
            "pricing-calculator__quote"
        );
        assert_eq!(Tool::model_name("crm.eu", "find lead"), "crm_eu__find_lead");
        assert_eq!(Tool::model_name(&"s".repeat(80), "t").len(), 64);
    }

    #[test]
    fn long_results_are_cut_on_a_character_boundary_and_say_so() {
        assert_eq!(bounded("short".into(), 16), "short");
        let cut = bounded("é".repeat(10), 5);
        assert!(
            cut.starts_with("éé\n[cut: the result was 20 bytes; only the first 4 are shown]"),
            "{cut}"
        );
    }
}
