//! Newtype ids. All are UUIDv7, so sorting by id follows creation order within
//! the same millisecond as well as across them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    )*};
}

id_type!(
    /// An organization: the tenant.
    OrgId,
    /// A person who can sign in.
    UserId,
    ApiKeyId,
    ChatbotId,
    ConversationId,
    MessageId,
    AuditId,
    /// A unit of background work in the queue.
    JobId,
    /// A chatbot's connection to WhatsApp, Slack, Telegram, a mailbox or a webhook.
    ChannelId,
    /// A piece of knowledge: an uploaded file, a fetched URL, a crawled page,
    /// or an organization's strategic context.
    DocumentId,
    /// A crawl of a web site for a chatbot's knowledge.
    CrawlId,
    /// A tool call a reply made, journaled before it was made; also the
    /// idempotency key its server sees.
    ToolCallId,
    /// A lead a chatbot recorded for its organization.
    LeadId,
    /// An MCP server an organization connected.
    ToolServerId,
    /// A human who talks to an organization's assistants, on any channel.
    PersonId,
    /// One version of an organization's skill.
    SkillId,
    /// One fact of a person's memory.
    FactId,
    /// A key of a person's own, which seals their memory.
    PersonKeyId,
    /// An export of everything Steward holds about a person.
    ExportId,
);
