//! The vocabulary of Steward: typed ids, validated values and the small enums
//! (roles, tiers, states) that every other crate speaks. Nothing here does IO.

mod identity;
mod ids;
pub mod jobs;
mod kinds;
pub mod taxonomy;
mod values;

pub use identity::Identity;
pub use ids::{
    ApiKeyId, AuditId, ChannelId, ChatbotId, ConversationId, CrawlId, DocumentId, ExportId, FactId,
    JobId, LeadId, MessageId, OrgId, PersonId, PersonKeyId, SkillId, ToolCallId, ToolServerId,
    UserId,
};
pub use jobs::JobArgs;
pub use kinds::{
    ChannelKind, ChannelStatus, ChatbotStatus, CrawlStatus, DocumentSource, DocumentStatus,
    ExportState, IdentityKind, JobKind, JobState, MessageRole, Rating, Role, Tier, ToolCallStatus,
};
pub use taxonomy::Taxonomy;
pub use values::{
    ChatbotName, Email, FeedbackComment, MessageText, ModelName, OrganizationName, Password,
    PersonName, SystemPrompt, Temperature, ValidationError, WebUrl,
};
