//! Each job kind's arguments: what a job is enqueued with and what its handler
//! reads back, as one type. The type knows its kind, the jobs it must run in
//! line with (its ordering key) and the job it would duplicate (its unique
//! key). Payloads are these types as JSON; a field added later is optional,
//! so that jobs already queued by an older Steward still read.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    ChannelId, ChatbotId, ConversationId, CrawlId, DocumentId, JobKind, MessageId, PersonId,
};

/// The arguments of one job kind.
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync {
    const KIND: JobKind;

    /// Jobs with the same ordering key run one at a time, oldest first.
    fn ordering_key(&self) -> Option<String> {
        None
    }

    /// A job whose unique key was used before is not enqueued again.
    fn unique_key(&self) -> Option<String> {
        None
    }
}

/// Answer a conversation's unanswered messages. One conversation's replies
/// are written one at a time, in order; the job names the conversation, not
/// a message, because one reply answers every message still unanswered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespondArgs {
    pub chatbot_id: ChatbotId,
    pub conversation_id: ConversationId,
}

impl JobArgs for RespondArgs {
    const KIND: JobKind = JobKind::Respond;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("conversation:{}", self.conversation_id))
    }
}

/// Learn what a person said about themselves in the messages a reply
/// answered: enqueued with the reply, in its transaction. One person's
/// memory is written by one job at a time, so two extractions never
/// store the same fact twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryArgs {
    pub person_id: PersonId,
    /// The person's messages the reply answered, oldest first.
    pub messages: Vec<MessageId>,
}

impl JobArgs for MemoryArgs {
    const KIND: JobKind = JobKind::Memory;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("memory:{}", self.person_id))
    }
}

/// Label an answered message with a category of the organization's
/// taxonomy, for insights: enqueued with the reply, in its transaction.
/// The label and counts are kept once per message (the message's label is
/// the marker), so a job run twice counts once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifyArgs {
    /// The person's message the reply answered.
    pub message_id: MessageId,
}

impl JobArgs for ClassifyArgs {
    const KIND: JobKind = JobKind::Classify;
}

/// Erase a person for good (see `steward_store::ErasureStore`). Erasing
/// twice erases once; one person's erasures run one at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseArgs {
    pub person_id: PersonId,
}

impl JobArgs for EraseArgs {
    const KIND: JobKind = JobKind::Erase;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("erase:{}", self.person_id))
    }
}

/// Write an export of a person's data (`export_id`), or, with none, delete
/// the exports whose day is over (the scheduler's sweep).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<crate::ExportId>,
}

impl JobArgs for ExportArgs {
    const KIND: JobKind = JobKind::Export;
}

/// Send a stored reply through its channel. One conversation's replies are
/// sent one at a time, in order, apart from the writing of the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverArgs {
    pub message_id: MessageId,
    /// Orders the deliveries of one conversation; absent from jobs queued
    /// before it was added (their ordering key is already set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
}

impl JobArgs for DeliverArgs {
    const KIND: JobKind = JobKind::Deliver;

    fn ordering_key(&self) -> Option<String> {
        self.conversation_id.map(|c| format!("deliver:{c}"))
    }
}

/// Read a document, cut it into passages and index them. One document is
/// ingested at a time, so a re-queued URL never races its earlier run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestArgs {
    pub document_id: DocumentId,
}

impl JobArgs for IngestArgs {
    const KIND: JobKind = JobKind::Ingest;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("document:{}", self.document_id))
    }
}

/// Put a document's passages' vectors into the vector index, after its
/// passages were stored (PostgreSQL's HNSW index costs far more per passage
/// than storing it; until then they are searched exactly). In line with the
/// document's ingests, so it runs after the ingest that stored them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexVectorsArgs {
    pub document_id: DocumentId,
}

impl JobArgs for IndexVectorsArgs {
    const KIND: JobKind = JobKind::IndexVectors;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("document:{}", self.document_id))
    }
}

/// The next step of a crawl; one step of a crawl runs at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlArgs {
    pub crawl_id: CrawlId,
}

impl JobArgs for CrawlArgs {
    const KIND: JobKind = JobKind::Crawl;

    fn ordering_key(&self) -> Option<String> {
        Some(format!("crawl:{}", self.crawl_id))
    }
}

/// Read every email channel's mailbox once (on the scheduler's cron).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollArgs {}

impl JobArgs for PollArgs {
    const KIND: JobKind = JobKind::Poll;
}

/// The platform's housekeeping (on the scheduler's cron).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceArgs {}

impl JobArgs for MaintenanceArgs {
    const KIND: JobKind = JobKind::Maintenance;
}

/// A backup of the database and the blobs (on the scheduler's cron).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupArgs {}

impl JobArgs for BackupArgs {
    const KIND: JobKind = JobKind::Backup;
}

/// A notice mailed to an account holder from the operator's SMTP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeArgs {
    /// What makes the notice one of a kind: a second notice with the same
    /// key is not sent (for example, one per address per hour).
    pub key: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl JobArgs for NoticeArgs {
    const KIND: JobKind = JobKind::Notice;

    fn unique_key(&self) -> Option<String> {
        Some(format!("notice:{}", self.key))
    }
}

/// A text an organization's own tools post to one of its people through
/// one of its channels (a Slack conversation), outside any conversation with
/// the assistant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostArgs {
    /// What makes the post one of a kind: the tool call that caused it.
    pub key: String,
    pub channel_id: ChannelId,
    /// Where in the provider it goes: a Slack conversation id, or a Teams
    /// conversation's route (its JSON).
    pub to: String,
    pub text: String,
}

impl JobArgs for PostArgs {
    const KIND: JobKind = JobKind::Post;

    fn unique_key(&self) -> Option<String> {
        Some(format!("post:{}", self.key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_keep_the_shape_jobs_already_queued_have() {
        let chatbot = ChatbotId::new();
        let conversation = ConversationId::new();
        let respond = RespondArgs {
            chatbot_id: chatbot,
            conversation_id: conversation,
        };
        assert_eq!(
            serde_json::to_value(&respond).unwrap(),
            json!({ "chatbot_id": chatbot, "conversation_id": conversation })
        );
        assert_eq!(
            respond.ordering_key(),
            Some(format!("conversation:{conversation}"))
        );
        // A deliver job queued before conversation_id was added still reads.
        let message = MessageId::new();
        let old: DeliverArgs = serde_json::from_value(json!({ "message_id": message })).unwrap();
        assert_eq!(old.message_id, message);
        assert_eq!(old.ordering_key(), None);
        let poll: PollArgs = serde_json::from_value(json!({})).unwrap();
        assert_eq!(serde_json::to_value(poll).unwrap(), json!({}));
        assert!(serde_json::from_value::<IngestArgs>(json!({ "document": 1 })).is_err());
    }
}
