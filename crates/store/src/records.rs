//! Rows as the rest of Steward sees them, and the inputs that create them.
//! Inputs carry validated domain values, so backends store them as they are.

use chrono::{DateTime, Utc};
use serde_json::Value;
use steward_domain::*;

#[derive(Clone, Debug, PartialEq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub tier: Tier,
    /// Whether its assistants remember what people tell them about themselves.
    pub memory: bool,
    /// Conversations quiet for longer than this many days are deleted; None: kept.
    pub retention_days: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub org_id: OrgId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Their password was set by someone else: they change it before
    /// anything else.
    pub must_change_password: bool,
    /// Moved on by each password change: tokens of an earlier generation no
    /// longer sign in.
    pub session_generation: i64,
}

/// A new person: the owner at registration, or a member added later.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: Email,
    pub name: Option<PersonName>,
    pub role: Role,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// A one-time password (someone else chose it): changed at first sign-in.
    pub must_change_password: bool,
}

#[derive(Clone, Debug)]
pub struct NewOrganization {
    pub name: OrganizationName,
    pub tier: Tier,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    /// The first characters of the key, shown so people can tell keys apart.
    pub prefix: String,
    pub role: Role,
    /// The member who made it (through a key of theirs, or signed in). None
    /// for keys made before keys had owners.
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub created_by: Option<UserId>,
    /// SHA-256 of the whole key, hex. The key itself is never stored.
    pub key_hash: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chatbot {
    pub id: ChatbotId,
    pub org_id: OrgId,
    pub name: String,
    pub system_prompt: String,
    pub temperature: f64,
    /// None: the platform's default model.
    pub model: Option<String>,
    pub status: ChatbotStatus,
    /// The tools it may call, as `server.tool` names.
    pub tools: Vec<String>,
    /// The skills it offers, by name (their latest version).
    pub skills: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewChatbot {
    pub name: ChatbotName,
    pub system_prompt: SystemPrompt,
    pub temperature: Temperature,
    pub model: Option<ModelName>,
    pub status: ChatbotStatus,
}

/// A partial update: `None` leaves a field as it is; `model: Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct ChatbotPatch {
    pub name: Option<ChatbotName>,
    pub system_prompt: Option<SystemPrompt>,
    pub temperature: Option<Temperature>,
    pub model: Option<Option<ModelName>>,
    pub status: Option<ChatbotStatus>,
    pub tools: Option<Vec<String>>,
    pub skills: Option<Vec<String>>,
}

impl ChatbotPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.system_prompt.is_none()
            && self.temperature.is_none()
            && self.model.is_none()
            && self.status.is_none()
            && self.tools.is_none()
            && self.skills.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub org_id: OrgId,
    pub chatbot_id: ChatbotId,
    pub conversation_id: ConversationId,
    pub role: MessageRole,
    pub text: String,
    /// Where it came from or went: `api`, `web`, `whatsapp`, …
    pub channel: String,
    /// The channel's own id for the message, unique per channel when present.
    pub external_id: Option<String>,
    /// For a reply: the last user message it answered.
    pub answers: Option<MessageId>,
    /// The configured channel it came in on or goes out to (None for the API).
    pub channel_id: Option<ChannelId>,
    /// What a reply needs to find its way back on the channel (a thread, a
    /// chat, a Message-ID).
    pub meta: Option<Value>,
    /// A person's message that was forwarded to the assistant rather than
    /// written to it.
    pub forwarded: bool,
    /// Who wrote it: the person, for a person's message.
    pub person_id: Option<PersonId>,
    pub created_at: DateTime<Utc>,
}

/// Which conversation a new message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationChoice {
    /// One that exists; another chatbot's or organization's is `NotFound`.
    Existing(ConversationId),
    /// A new one with this id, chosen by the caller so that jobs can name it.
    Start(ConversationId),
}

impl ConversationChoice {
    pub fn id(&self) -> ConversationId {
        match self {
            Self::Existing(id) | Self::Start(id) => *id,
        }
    }
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Chosen by the caller, so that the job it causes can name it.
    pub id: MessageId,
    pub chatbot_id: ChatbotId,
    pub conversation: ConversationChoice,
    pub role: MessageRole,
    pub text: MessageText,
    pub channel: String,
    pub external_id: Option<String>,
    /// For a reply: the last user message it answered.
    pub answers: Option<MessageId>,
    pub channel_id: Option<ChannelId>,
    /// The sealed secrets of `channel_id` the message was checked with (a
    /// webhook's signature): when set, it is stored only while the channel
    /// still has them, so a copy of a channel kept in memory never lets in
    /// a message after the channel's secrets were replaced or it was
    /// deleted (`Conflict::ChannelChanged`).
    pub channel_secrets: Option<Vec<u8>>,
    pub meta: Option<Value>,
    /// Model tokens this message cost (replies); added to the month's usage.
    pub tokens: i64,
    /// The jobs this message causes (a reply to write; a reply to send, and
    /// what to learn from what it answered), enqueued in the same
    /// transaction: the message and its jobs are stored together or not at all.
    pub then: Vec<crate::NewJob>,
    /// Who wrote a person's message (None for replies, and for messages of
    /// an API key no member made): the person is found by this identity, or
    /// made, in the message's transaction.
    pub sender: Option<Sender>,
    /// Forwarded to the assistant (an email forwarded, a Slack message
    /// shared, a WhatsApp message marked forwarded) rather than written to it.
    pub forwarded: bool,
    /// With [`ConversationChoice::Start`]: the sender's key on `channel_id`,
    /// kept with the conversation the message starts, which is then the
    /// sender's on that channel. A conversation of theirs started meanwhile
    /// is `Conflict::ConversationStarted`.
    pub conversation_key: Option<String>,
}

/// The author of a message, as its channel or the API knows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Sender {
    pub identity: Identity,
    /// The name the provider gives (a WhatsApp profile, an email's From),
    /// kept for a person who has none yet.
    pub name: Option<String>,
}

impl Sender {
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            name: None,
        }
    }

    pub fn member(user: UserId) -> Self {
        Self::new(Identity::member(user))
    }
}

/// A human who talks to an organization's assistants, with every handle
/// they are known by.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub id: PersonId,
    pub org_id: OrgId,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When they last wrote to an assistant.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub identities: Vec<PersonIdentity>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PersonIdentity {
    pub identity: Identity,
    pub created_at: DateTime<Utc>,
}

/// Which people a list shows: newest first, at most `limit`.
#[derive(Clone, Debug, Default)]
pub struct PeopleQuery {
    /// Part of a name or of a handle, in any case.
    pub text: Option<String>,
    /// Only people who came before this one (the last of the previous page).
    pub before: Option<PersonId>,
    pub limit: u32,
}

/// A point in a chatbot's history, newest first: pages continue strictly
/// before it. (created_at, id) is unique because ids are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPosition {
    pub created_at: DateTime<Utc>,
    pub id: MessageId,
}

#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub chatbot_id: ChatbotId,
    pub limit: u32,
    pub before: Option<HistoryPosition>,
    /// Inclusive lower bound on created_at.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on created_at.
    pub to: Option<DateTime<Utc>>,
}

/// Which conversations a list shows: all of the organization's, narrowed by
/// each filter that is set; newest first, at most `limit`.
#[derive(Clone, Debug, Default)]
pub struct ConversationQuery {
    pub chatbot_id: Option<ChatbotId>,
    /// The channel kind (`api`, `console`, `whatsapp`, …).
    pub channel: Option<String>,
    /// Started at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Started before this.
    pub to: Option<DateTime<Utc>>,
    /// Some message of it holds these words, in order, in any case, the last
    /// one a word's beginning (without letters or digits: this text as written).
    pub text: Option<String>,
    /// Only conversations that started before this one (the last of the
    /// previous page); one of another organization is `NotFound`.
    pub before: Option<ConversationId>,
    pub limit: u32,
}

/// A conversation as a list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub chatbot_id: ChatbotId,
    pub channel: String,
    /// Who it is with: the person who wrote first (None before anyone has,
    /// and for conversations stored before people existed).
    pub person_id: Option<PersonId>,
    pub created_at: DateTime<Utc>,
    /// Handed to a person (the contact-owner tool), not released since.
    pub handed_off_at: Option<DateTime<Utc>>,
    pub messages: i64,
    /// The latest message: when, by whom, and what it said.
    pub last_at: Option<DateTime<Utc>>,
    pub last_role: Option<MessageRole>,
    pub last_text: Option<String>,
}

/// How an organization's assistants were used over recent days.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// One entry per day that had messages, oldest first.
    pub days: Vec<DayActivity>,
    /// One entry per week (Monday to Sunday, UTC) of the period in which
    /// someone wrote, oldest first: the Monday, and the people who wrote.
    pub weeks: Vec<(chrono::NaiveDate, i64)>,
    /// People who wrote today and in the last seven days, today included
    /// (UTC): a person counts once whatever channels they wrote on.
    pub people_today: i64,
    pub people_week: i64,
    /// Seconds from a message to its reply, for the latest replies (at most
    /// 2,000), in no particular order.
    pub reply_seconds: Vec<f64>,
    /// Per chatbot, in the period.
    pub chatbots: Vec<ChatbotActivity>,
}

/// One day (UTC) of an organization's use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DayActivity {
    pub day: chrono::NaiveDate,
    /// Messages from people, and of those, the forwarded ones.
    pub received: i64,
    pub forwarded: i64,
    pub replied: i64,
    /// People who wrote that day.
    pub people: i64,
    /// Replies that first loaded a skill that day.
    pub with_skills: i64,
    /// Ratings first given that day.
    pub rated_up: i64,
    pub rated_down: i64,
    /// Each skill loaded that day (or whose replies were rated), by name.
    pub skills: Vec<crate::SkillUse>,
}

/// One chatbot's use over a period.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatbotActivity {
    pub chatbot_id: ChatbotId,
    /// Messages from people, and conversations started.
    pub received: i64,
    pub started: i64,
    /// Replies rated up and down (by when they were first rated).
    pub rated_up: i64,
    pub rated_down: i64,
}

/// Use within one calendar month (UTC), e.g. period "2026-11".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub period: String,
    pub messages: i64,
    pub tokens: i64,
}

/// The month a moment falls in, as usage counters name it.
pub fn usage_period(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Integration {
    /// A stable slug such as `lead-capture`.
    pub id: String,
    pub name: String,
    pub description: String,
}

/// An integration of the catalogue as one organization sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrationState {
    pub integration: Integration,
    pub enabled: bool,
    pub config: Option<Value>,
    pub enabled_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: AuditId,
    pub org_id: OrgId,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
    pub created_at: DateTime<Utc>,
}

tokio::task_local! {
    /// The time [`now`] gives inside [`as_of`].
    static AS_OF: DateTime<Utc>;
}

/// The current time at the precision both backends keep (microseconds), so a
/// record reads back exactly as it was written; inside [`as_of`], the time
/// it was given.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    AS_OF
        .try_with(|at| *at)
        .unwrap_or_else(|_| Utc::now())
        .trunc_subsecs(6)
}

/// Runs `work` with the store's clock stopped at `at`, for this task only
/// (nothing else in the process sees that time): a test writes a past month
/// through the real write path, counters included.
pub async fn as_of<F: Future>(at: DateTime<Utc>, work: F) -> F::Output {
    AS_OF.scope(at, work).await
}

/// Bounds that stand for "no bound": both backends store them without overflow.
pub(crate) fn end_of_time() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31 is representable")
}

pub(crate) fn start_of_time() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is representable")
}

impl HistoryQuery {
    /// The page lies strictly before the returned position and at or after the
    /// returned time. Folding the cursor and `to` into one position keeps the
    /// query a single index range on (created_at, id).
    pub fn bounds(&self) -> (HistoryPosition, DateTime<Utc>) {
        let mut upper = HistoryPosition {
            created_at: end_of_time(),
            id: MessageId::from_uuid(uuid::Uuid::max()),
        };
        if let Some(to) = self.to {
            // created_at < to  ⇔  (created_at, id) < (to, nil)
            let to = HistoryPosition {
                created_at: to,
                id: MessageId::from_uuid(uuid::Uuid::nil()),
            };
            upper = to.min_position(upper);
        }
        if let Some(before) = self.before {
            upper = before.min_position(upper);
        }
        (upper, self.from.unwrap_or_else(start_of_time))
    }
}

impl HistoryPosition {
    fn min_position(self, other: Self) -> Self {
        if (self.created_at, self.id) <= (other.created_at, other.id) {
            self
        } else {
            other
        }
    }
}
