//! Storing an inbound message: its conversation, the message and its
//! `respond` job in one transaction, unique per channel by the provider's id.
//! And a reaction to a reply, as its author's feedback.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use steward_domain::jobs::RespondArgs;
use steward_domain::{ChannelId, ConversationId, Identity, MessageId, MessageRole, MessageText};
use steward_store::{
    Channel, ChannelEvent, Conflict, ConversationChoice, NewJob, NewMessage, Rated, Sender, Store,
    StoreError, StoreResult, TenantScope,
};

use crate::inbound::{InboundMessage, Reaction, ReactionChange};

/// What one payload's messages and reactions came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub stored: usize,
    /// Seen before: a provider's retry.
    pub duplicates: usize,
    /// Ratings given or taken back.
    pub rated: usize,
}

/// Stores a payload's messages and records its reactions: what a webhook
/// and a Slack Socket Mode event both come to. A store failure returns
/// early, for the provider to send the payload again; what was stored
/// before it is found as a duplicate then, and a rating repeated replaces
/// itself.
pub async fn take(
    store: &dyn Store,
    channel: &Channel,
    (messages, reactions): (Vec<InboundMessage>, Vec<Reaction>),
    max_attempts: i32,
) -> StoreResult<Taken> {
    let mut taken = Taken::default();
    for reaction in reactions {
        match react(store, channel, reaction).await? {
            Reacted::Rated(_) | Reacted::Withdrawn => taken.rated += 1,
            Reacted::Ignored => {}
        }
    }
    for message in messages {
        match receive(store, channel, message, max_attempts).await? {
            Received::Stored(_) => taken.stored += 1,
            Received::Duplicate => taken.duplicates += 1,
            Received::Skipped(why) => {
                tracing::info!(channel = %channel.id, why, "inbound message skipped")
            }
        }
    }
    Ok(taken)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Stored(MessageId),
    /// Seen before (a provider's retry): nothing new stored.
    Duplicate,
    /// The chatbot is paused or the message is empty: acknowledged, not stored.
    Skipped(&'static str),
}

/// What a reaction did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reacted {
    Rated(Rated),
    Withdrawn,
    /// Not on a reply Steward sent on this channel, or nothing to take back.
    Ignored,
}

/// Records a 👍 or 👎 on a reply as the reacting person's feedback, or
/// takes it back.
pub async fn react(
    store: &dyn Store,
    channel: &Channel,
    reaction: Reaction,
) -> StoreResult<Reacted> {
    let scope = TenantScope::for_channel(channel);
    let Some(reply) = store
        .delivered_reply(&scope, channel.id, &reaction.target)
        .await?
    else {
        return Ok(Reacted::Ignored);
    };
    let Ok(identity) = Identity::on_channel(channel.kind, channel.id, &reaction.sender) else {
        return Ok(Reacted::Ignored);
    };
    let rater = Sender::new(identity);
    match reaction.change {
        ReactionChange::Rate(rating) => {
            let (_, rated) = store
                .rate_reply(&scope, reply, &rater, rating, None)
                .await?;
            Ok(Reacted::Rated(rated))
        }
        ReactionChange::Withdraw(only) => {
            let withdrawn = store.withdraw_rating(&scope, reply, &rater, only).await?;
            Ok(if withdrawn {
                Reacted::Withdrawn
            } else {
                Reacted::Ignored
            })
        }
    }
}

/// Whether this process recorded an inbound message on `channel` within the
/// last second, noting that it does now when not. A second-old record is
/// fresh enough, which spares the store (SQLite's single writer above all)
/// one write per message under load. Kept here, not read from the channel,
/// because one reading of a channel serves many messages (a webhook's kept
/// channel, a Socket Mode connection's).
fn recorded_lately(channel: ChannelId) -> bool {
    static RECORDED: LazyLock<Mutex<HashMap<ChannelId, Instant>>> = LazyLock::new(Default::default);
    let mut recorded = RECORDED
        .lock()
        .expect("the health records' lock is never poisoned");
    let now = Instant::now();
    match recorded.get(&channel) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(1) => true,
        _ => {
            recorded.insert(channel, now);
            false
        }
    }
}

/// The conversation each sender's key on a channel was found in, kept by
/// this process: looking it up is a round trip per message otherwise. A kept
/// conversation deleted since (its person erased) is caught where the
/// message is stored (`add_message` answers `NotFound`), then forgotten and
/// looked up again. At most [`KEPT_CONVERSATIONS`]; past it, all are dropped.
static CONVERSATIONS: LazyLock<Mutex<HashMap<(ChannelId, String), ConversationId>>> =
    LazyLock::new(Default::default);

const KEPT_CONVERSATIONS: usize = 10_000;

fn conversations() -> MutexGuard<'static, HashMap<(ChannelId, String), ConversationId>> {
    CONVERSATIONS
        .lock()
        .expect("the kept conversations' lock is never poisoned")
}

fn kept_conversation(key: &(ChannelId, String)) -> Option<ConversationId> {
    conversations().get(key).copied()
}

fn keep_conversation(key: (ChannelId, String), conversation: ConversationId) {
    let mut kept = conversations();
    if kept.len() >= KEPT_CONVERSATIONS && !kept.contains_key(&key) {
        kept.clear();
    }
    kept.insert(key, conversation);
}

fn forget_conversation(key: &(ChannelId, String)) {
    conversations().remove(key);
}

pub async fn receive(
    store: &dyn Store,
    channel: &Channel,
    message: InboundMessage,
    max_attempts: i32,
) -> StoreResult<Received> {
    let scope = TenantScope::for_channel(channel);
    // A message longer than Steward keeps is cut, not lost.
    let text: String = message
        .text
        .trim()
        .chars()
        .take(MessageText::MAX_CHARS)
        .collect();
    let Ok(text) = MessageText::parse("text", text) else {
        return Ok(Received::Skipped("empty message"));
    };
    // The sender's conversation: kept by this process, or looked up (a
    // read); a sender who has none has it started by the message itself.
    let key = (channel.id, message.conversation_key.clone());
    let kept = kept_conversation(&key);
    let conversation = match kept {
        Some(conversation) => Some(conversation),
        None => {
            store
                .find_channel_conversation(&scope, channel.id, &message.conversation_key)
                .await?
        }
    };
    // A handle the provider should never send (a WhatsApp sender that is no
    // number) still stores the message, without an author.
    let sender = match Identity::on_channel(channel.kind, channel.id, &message.sender) {
        Ok(identity) => Some(Sender {
            identity,
            name: message.sender_name.filter(|n| n.chars().count() <= 200),
        }),
        Err(e) => {
            tracing::warn!(channel = %channel.id, error = %e, "message stored without its author");
            None
        }
    };
    let id = MessageId::new();
    let new = |conversation: Option<ConversationId>| {
        let (choice, conversation_id) = match conversation {
            Some(existing) => (ConversationChoice::Existing(existing), existing),
            None => {
                let started = ConversationId::new();
                (ConversationChoice::Start(started), started)
            }
        };
        NewMessage {
            id,
            chatbot_id: channel.chatbot_id,
            conversation: choice,
            conversation_key: conversation
                .is_none()
                .then(|| message.conversation_key.clone()),
            role: MessageRole::User,
            text: text.clone(),
            channel: channel.kind.as_str().into(),
            external_id: Some(message.external_id.clone()),
            answers: None,
            channel_id: Some(channel.id),
            // Stored only if the channel still has the secrets it was read
            // with, which a kept copy of it (a webhook's) may no longer have.
            channel_secrets: Some(channel.sealed_secrets.clone()),
            meta: Some(message.route.to_meta()),
            tokens: 0,
            then: vec![
                NewJob::of(
                    &RespondArgs {
                        chatbot_id: channel.chatbot_id,
                        conversation_id,
                    },
                    max_attempts,
                )
                .for_org(channel.org_id),
            ],
            sender: sender.clone(),
            forwarded: message.forwarded,
        }
    };
    let mut stored = store.add_message(&scope, new(conversation)).await;
    // The kept conversation is gone (its person erased), or another message
    // of the sender's started theirs first: look it up again.
    let stale = matches!(stored, Err(StoreError::NotFound)) && kept.is_some();
    if stale
        || matches!(
            stored,
            Err(StoreError::Conflict(Conflict::ConversationStarted))
        )
    {
        forget_conversation(&key);
        let found = store
            .find_channel_conversation(&scope, channel.id, &message.conversation_key)
            .await?;
        stored = store.add_message(&scope, new(found)).await;
    }
    match stored {
        Ok(stored) => keep_conversation(key, stored.conversation_id),
        Err(StoreError::Conflict(Conflict::DuplicateMessage)) => return Ok(Received::Duplicate),
        Err(StoreError::Conflict(Conflict::ChatbotPaused)) => {
            return Ok(Received::Skipped("the chatbot is paused"));
        }
        Err(e) => return Err(e),
    }
    crate::count_message(channel.kind, "inbound");
    // Health is informative, and a failure to record it must not fail the
    // message.
    if !recorded_lately(channel.id)
        && let Err(e) = store
            .record_channel_event(channel.id, ChannelEvent::Inbound)
            .await
    {
        tracing::warn!(channel = %channel.id, error = %e, "could not record channel health");
    }
    Ok(Received::Stored(id))
}
