//! Errors every backend maps its driver errors into.

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No such row in this tenant. Another tenant's row is also "not found".
    #[error("not found")]
    NotFound,
    /// The change conflicts with what is stored (a taken email, the last owner).
    #[error("conflict: {}", .0.message())]
    Conflict(Conflict),
    /// The database cannot be reached or is overloaded; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data. Details are for the log only.
    #[error("store error: {0}")]
    Internal(String),
}

/// Why a change conflicts with what is stored: each has a stable code (the
/// API's `error.code`) and a message for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// A value that must be unique is taken (the database's own check,
    /// before a caller names what it was).
    Duplicate,
    /// An inbound message whose provider id was stored before.
    DuplicateMessage,
    /// A person's message to a paused chatbot.
    ChatbotPaused,
    /// A message checked with a channel's secrets that the channel no
    /// longer has (replaced, or the channel deleted) since they were read.
    ChannelChanged,
    /// A message that was to start its sender's conversation on a channel,
    /// when another message of theirs started it first: it is found, not
    /// started.
    ConversationStarted,
    /// A channel name the chatbot has already.
    ChannelNameTaken,
    /// A tool server name the organization has already.
    ToolServerNameTaken,
    /// A change that would leave the organization without an owner.
    LastOwner,
    /// An email address that has an account.
    EmailTaken,
    /// A write of a keyed request whose claim a retry took over.
    IdempotencyClaimLost,
    /// A merge of two people who each have a member account.
    BothMembers,
    /// A merge of a person with themself.
    SamePerson,
    /// A rating of a message that is not a reply.
    NotAReply,
    /// A person named who is not one of the organization's.
    UnknownPerson,
    /// A single sign-on slug another organization has.
    SlugTaken,
    /// A single sign-on by someone who is a member of another organization.
    OtherOrganization,
    /// A single sign-on as a member who signs in as another identity of
    /// the same provider.
    OtherIdentity,
}

impl Conflict {
    pub fn code(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::DuplicateMessage => "duplicate_message",
            Self::ChatbotPaused => "chatbot_paused",
            Self::ChannelChanged => "channel_changed",
            Self::ConversationStarted => "conversation_started",
            Self::ChannelNameTaken => "channel_name_taken",
            Self::ToolServerNameTaken => "tool_server_name_taken",
            Self::LastOwner => "last_owner",
            Self::EmailTaken => "email_taken",
            Self::IdempotencyClaimLost => "idempotency_claim_lost",
            Self::BothMembers => "both_members",
            Self::SamePerson => "same_person",
            Self::UnknownPerson => "unknown_person",
            Self::NotAReply => "not_a_reply",
            Self::SlugTaken => "slug_taken",
            Self::OtherOrganization => "member_of_another_organization",
            Self::OtherIdentity => "other_identity",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Duplicate => "this already exists",
            Self::DuplicateMessage => "this message was already received",
            Self::ChatbotPaused => "this chatbot is paused and takes no messages",
            Self::ChannelChanged => "the channel changed while this message was being checked",
            Self::ConversationStarted => {
                "the sender's conversation on this channel was started already"
            }
            Self::ChannelNameTaken => "this chatbot already has a channel with that name",
            Self::ToolServerNameTaken => {
                "the organization already has a tool server with that name"
            }
            Self::LastOwner => "an organization keeps at least one owner",
            Self::EmailTaken => "a user with this email already exists",
            Self::IdempotencyClaimLost => {
                "another request with this Idempotency-Key took over; retry to get its answer"
            }
            Self::BothMembers => "both people have a member account; one person keeps at most one",
            Self::SamePerson => "a person cannot be merged with themself",
            Self::NotAReply => "only the assistant's replies are rated",
            Self::UnknownPerson => "a person named is not one of the organization's",
            Self::SlugTaken => "another organization signs in with this slug",
            Self::OtherOrganization => "this address belongs to a member of another organization",
            Self::OtherIdentity => "this member signs in as another identity of this provider",
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
