//! What Steward stores and how it is reached: the [`Store`] trait every backend
//! implements, its records and errors, and the [`TenantScope`] that every
//! tenant-owned call takes. Statements both dialects share are written once,
//! in [`sql`]; what differs for real lives in the backend crates.

mod accounts;
mod channels;
mod chatbots;
mod erasure;
mod error;
mod export;
mod feedback;
mod idempotency;
mod knowledge;
mod leader;
mod live;
mod memory;
mod messages;
mod ops;
mod patterns;
mod people;
mod queue;
mod records;
mod scope;
mod skills;
pub mod sql;
mod sso;
mod store;
mod tools;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use accounts::AccountStore;
pub use channels::{Channel, ChannelEvent, ChannelHealth, ChannelStore, ERROR_WINDOW, NewChannel};
pub use chatbots::ChatbotStore;
pub use erasure::{Erased, Erasure, ErasureStore};
pub use error::{Conflict, StoreError, StoreResult};
pub use export::{Export, ExportStore, PersonRecord, RatingGiven, SkillLoad};
pub use feedback::{Feedback, FeedbackStore, Rated};
pub use idempotency::{
    Fence, IDEMPOTENCY_KEY_LIFETIME, IdempotencyKey, IdempotencyStart, IdempotencyStore,
    KeyedRequest, StoredClaim, StoredResponse, answer_keyed_request, answer_keyed_request_from,
    claim_lost, keyed_request_fence,
};
pub use knowledge::{
    ChunkHit, Crawl, CrawlProgress, Document, Ingested, KnowledgeStore, MAX_SEARCH_TERMS, NewChunk,
    NewCrawl, NewDocument, RANKED_AT_MOST, SearchStore, cosine, rarest_first, search_terms,
    vector_bytes, vector_from_bytes, vector_literal,
};
pub use leader::Leadership;
pub use live::{LIVE_BUFFER, LiveEvent, LiveKind};
pub use memory::{MemoryStore, PERSON_KEY_RESEALED, PersonKey, SealedFact};
pub use messages::MessageStore;
pub use ops::{
    BackupRun, BackupStatus, CatalogueStore, OpsStore, OrgActivity, TableSize, quote_identifier,
};
pub use patterns::{PatternCount, PatternStore, Span};
pub use people::PeopleStore;
pub use queue::{ArgsError, Claimed, Job, JobFailure, JobQueue, NewJob, QueueStat};
pub use records::*;
pub use scope::{Actor, Principal, TenantScope};
pub use skills::{NewActivation, NewSkill, Skill, SkillAssignees, SkillStore, SkillUse};
pub use sso::{SsoAttempt, SsoIdentity, SsoMember, SsoProvider, SsoSettings, SsoStore};
pub use store::{Backend, Store};
pub use tools::{
    HandOffStore, Lead, LeadStore, NewLead, NewToolCall, NewToolServer, ToolCallRecord,
    ToolJournal, ToolServer, ToolServerStore,
};
