//! Response shapes shared by several areas. Request shapes live beside their
//! handlers; all of them refuse unknown fields, so nothing smuggled in applies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use steward_domain::*;
use steward_store as store;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub id: UserId,
    /// Null when an advisor asks: advisors see aggregates, not people's addresses.
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Signed in with a one-time password: nothing but
    /// `POST /api/v1/auth/password` works until it is changed.
    pub must_change_password: bool,
}

impl UserDto {
    /// The member as `viewer` may see them.
    pub fn seen_by(user: store::User, viewer: Role) -> Self {
        let mut dto = Self::from(user);
        if !viewer.sees_details() {
            dto.email = None;
        }
        dto
    }
}

impl ChatbotDto {
    /// The chatbot as `viewer` may see it.
    pub fn seen_by(chatbot: store::Chatbot, viewer: Role) -> Self {
        let mut dto = Self::from(chatbot);
        if !viewer.sees_details() {
            dto.system_prompt = None;
        }
        dto
    }
}

impl From<store::User> for UserDto {
    fn from(u: store::User) -> Self {
        Self {
            id: u.id,
            email: Some(u.email),
            name: u.name,
            role: u.role,
            created_at: u.created_at,
            must_change_password: u.must_change_password,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationDto {
    pub id: OrgId,
    pub name: String,
    pub tier: Tier,
    pub created_at: DateTime<Utc>,
}

impl From<store::Organization> for OrganizationDto {
    fn from(o: store::Organization) -> Self {
        Self {
            id: o.id,
            name: o.name,
            tier: o.tier,
            created_at: o.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChatbotDto {
    pub id: ChatbotId,
    pub name: String,
    /// Null when an advisor asks.
    pub system_prompt: Option<String>,
    pub temperature: f64,
    /// Null: the platform's default model.
    pub model: Option<String>,
    pub status: ChatbotStatus,
    /// The tools it may call (`server.tool`, from `GET /api/v1/tools`).
    pub tools: Vec<String>,
    /// The skills it offers (`GET /api/v1/skills`), each in its latest version.
    pub skills: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<store::Chatbot> for ChatbotDto {
    fn from(c: store::Chatbot) -> Self {
        Self {
            id: c.id,
            name: c.name,
            system_prompt: Some(c.system_prompt),
            temperature: c.temperature,
            model: c.model,
            status: c.status,
            tools: c.tools,
            skills: c.skills,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageDto {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub role: MessageRole,
    pub text: String,
    pub channel: String,
    /// For a reply: the last user message it answered.
    pub answers: Option<MessageId>,
    /// For a reply: the knowledge it was grounded in
    /// (`{document_id, label, url, heading}` each); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub sources: Option<serde_json::Value>,
    /// For a reply: the tools it called (`{id, server, tool, input, status,
    /// duration_ms, result_preview}` each); absent when none were offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<serde_json::Value>,
    /// A person's message forwarded to the assistant rather than written to it.
    pub forwarded: bool,
    /// Who wrote a person's message (`GET /people/{id}`); null for a reply,
    /// and in the web chat.
    pub person_id: Option<PersonId>,
    pub created_at: DateTime<Utc>,
}

impl MessageDto {
    /// The message as a web chat visitor sees it: without the tools a reply
    /// called (their inputs and results are the organization's).
    pub fn for_visitor(message: store::Message) -> Self {
        Self {
            tool_calls: None,
            person_id: None,
            ..Self::from(message)
        }
    }
}

impl From<store::Message> for MessageDto {
    fn from(m: store::Message) -> Self {
        // Only a reply's own meta holds sources; a user message's meta is
        // its channel's routing, which is not shown.
        let shown = |key: &str| match (&m.role, &m.meta) {
            (MessageRole::Assistant, Some(meta)) => meta.get(key).cloned(),
            _ => None,
        };
        Self {
            sources: shown("sources"),
            tool_calls: shown("tool_calls"),
            id: m.id,
            conversation_id: m.conversation_id,
            role: m.role,
            text: m.text,
            channel: m.channel,
            answers: m.answers,
            forwarded: m.forwarded,
            person_id: m.person_id,
            created_at: m.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_visitor_sees_a_replys_sources_and_not_its_tool_calls() {
        let reply = store::Message {
            id: MessageId::new(),
            org_id: OrgId::new(),
            chatbot_id: ChatbotId::new(),
            conversation_id: ConversationId::new(),
            role: MessageRole::Assistant,
            text: "Yes".into(),
            channel: "web".into(),
            external_id: None,
            answers: None,
            channel_id: None,
            meta: Some(json!({
                "sources": [{"label": "faq.md"}],
                "tool_calls": [{"server": "crm", "tool": "lookup", "input": {"email": "a@example.org"}}],
            })),
            forwarded: false,
            person_id: None,
            created_at: chrono::Utc::now(),
        };
        let member = serde_json::to_value(MessageDto::from(reply.clone())).unwrap();
        assert_eq!(member["tool_calls"][0]["tool"], "lookup");
        let visitor = serde_json::to_value(MessageDto::for_visitor(reply)).unwrap();
        assert_eq!(visitor["sources"][0]["label"], "faq.md");
        assert!(visitor.get("tool_calls").is_none(), "{visitor}");
    }
}
