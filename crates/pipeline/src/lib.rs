//! The `respond` job: answers a conversation's unanswered messages in one
//! reply. Jobs of one conversation run one at a time (ordering key), so replies
//! come in order; a reply records the last user message it answered, so
//! messages that arrived meanwhile are answered by the next reply, and a retried
//! job whose reply was already stored finds nothing left to answer.
//!
//! Every answer is grounded in the chatbot's knowledge: the passages that
//! match the waiting messages go into the prompt as reference material, and
//! the reply keeps their sources (`meta.sources`). With no model, the
//! retrieval-only responder answers with the passages themselves.
//!
//! A chatbot with tools answers in steps: model, then the tools it called,
//! then the model again with their results, until it answers or the steps
//! (`tools.max_steps`) run out; every call is journaled (see [`tools`]).

mod classify;
pub mod export;
mod memory;
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use steward_config::{TiersConfig, ToolsConfig};
use steward_domain::jobs::{DeliverArgs, RespondArgs};
use steward_domain::{MessageId, MessageRole, MessageText, PersonId};
use steward_jobs::{JobError, JobHandler};
use steward_knowledge::{Passage, Retriever, Source};
use steward_llm::{ChatMessage, ChatRequest, DeltaSink, LlmError, Provider, Role};
use steward_store::{
    Chatbot, ConversationChoice, Job, LiveEvent, LiveKind, Message, NewJob, NewMessage, Store,
    StoreError, TenantScope, usage_period,
};
use steward_tools::Toolbox;

use crate::tools::{Calls, Offered};

pub use classify::{CLASSIFY_TASK, Classify};
pub use memory::{EXTRACTION_TASK, Learn, Remembering};

/// What answers when there is no model to ask. It never pretends to be one.
pub const NO_MODEL_REPLY: &str = "No AI model is configured for this assistant yet, so it cannot answer. \
An administrator can configure one (see the llm section of Steward's configuration).";
pub const OVER_LIMIT_REPLY: &str = "This organization has used all the messages its plan includes this month, \
so the assistant cannot answer now. An administrator can change the plan, or it resets next month.";
pub const APOLOGY_REPLY: &str =
    "Sorry, the assistant could not answer just now. Please try again in a little while.";
/// When the model used its last step calling tools instead of answering.
pub const UNFINISHED_REPLY: &str =
    "Sorry, the assistant could not finish that. Please ask again, perhaps in smaller steps.";

/// Who writes the replies.
pub enum Responder {
    /// A model (or a chain of them with fallback).
    Model(Arc<dyn Provider>),
    /// No model configured, or the kill switch is off: the matching passages
    /// of the chatbot's knowledge, quoted with their sources, or when none
    /// match, [`NO_MODEL_REPLY`].
    RetrievalOnly,
}

pub struct Respond {
    pub store: Arc<dyn Store>,
    pub responder: Responder,
    pub tiers: TiersConfig,
    pub history_turns: u32,
    pub max_tokens: u32,
    /// Attempts for the `deliver` jobs of replies on channels.
    pub deliver_attempts: i32,
    pub retriever: Retriever,
    /// Passages of knowledge put into each answer.
    pub passages: u32,
    /// Where chatbots' tools come from; None: no chatbot has any.
    pub toolbox: Option<Arc<dyn Toolbox>>,
    pub tool_limits: ToolsConfig,
    /// What replies remember of their people; None: nothing.
    pub memory: Option<Remembering>,
    /// Attempts of the `classify` job each answered message gets, for
    /// insights; None: no such jobs (a worker without the handler).
    pub classify_attempts: Option<i32>,
}

/// A reply the model wrote, perhaps in several steps.
struct Written {
    text: String,
    tokens: u64,
    provider: String,
    model: String,
    /// What `meta.tool_calls` shows; null when no tool was offered.
    tool_calls: serde_json::Value,
    /// The id to store it with: the one its journaled tool calls name.
    reply: MessageId,
}

/// The user messages still waiting for an answer: those after the user message
/// the latest reply answered (or after the latest reply, if it names none).
fn unanswered(turns: &[Message]) -> &[Message] {
    let start = match turns.iter().rposition(|m| m.role == MessageRole::Assistant) {
        None => 0,
        Some(reply) => match turns[reply]
            .answers
            .and_then(|answered| turns.iter().position(|m| m.id == answered))
        {
            Some(answered) => answered + 1,
            None => reply + 1,
        },
    };
    &turns[start.min(turns.len())..]
}

impl Respond {
    async fn reply(
        &self,
        scope: &TenantScope,
        to: &Message,
        text: &str,
        tokens: i64,
        grounded_in: &[Passage],
    ) -> Result<(), JobError> {
        let meta = Self::meta(grounded_in, serde_json::Value::Null);
        self.store_reply(scope, to, MessageId::new(), text, tokens, meta, None)
            .await
    }

    /// `meta`: the sources a reply is grounded in, and the tools it called.
    fn meta(grounded_in: &[Passage], tool_calls: serde_json::Value) -> Option<serde_json::Value> {
        let mut meta = serde_json::Map::new();
        if !grounded_in.is_empty() {
            let sources: Vec<Source> = grounded_in.iter().map(Passage::source).collect();
            meta.insert("sources".into(), serde_json::json!(sources));
        }
        if !tool_calls.is_null() {
            meta.insert("tool_calls".into(), tool_calls);
        }
        (!meta.is_empty()).then_some(serde_json::Value::Object(meta))
    }

    /// Stores a reply to `to`, with the job that sends it (on a channel) and
    /// `learn`, the job that learns from what it answered.
    #[allow(clippy::too_many_arguments)]
    async fn store_reply(
        &self,
        scope: &TenantScope,
        to: &Message,
        id: MessageId,
        text: &str,
        tokens: i64,
        meta: Option<serde_json::Value>,
        learn: Option<NewJob>,
    ) -> Result<(), JobError> {
        // Replies longer than a message may be are cut, never refused.
        let text: String = text.chars().take(MessageText::MAX_CHARS).collect();
        let text =
            MessageText::parse("reply", text).map_err(|e| JobError::Permanent(e.to_string()))?;
        let reply = NewMessage {
            id,
            chatbot_id: to.chatbot_id,
            conversation: ConversationChoice::Existing(to.conversation_id),
            role: MessageRole::Assistant,
            text,
            channel: to.channel.clone(),
            external_id: None,
            answers: Some(to.id),
            channel_id: to.channel_id,
            channel_secrets: None,
            meta,
            tokens,
            // A reply on a channel is sent by a `deliver` job, stored with it; a
            // reply to the API's chat or the web chat is read from history and
            // the live stream.
            then: to
                .channel_id
                .filter(|_| sends_replies(&to.channel))
                .map(|_| {
                    NewJob::of(
                        &DeliverArgs {
                            message_id: id,
                            conversation_id: Some(to.conversation_id),
                        },
                        self.deliver_attempts,
                    )
                    .for_org(scope.org_id())
                })
                .into_iter()
                .chain(learn)
                .chain(
                    self.classify_attempts
                        .map(|attempts| classify::classify(scope, to, attempts)),
                )
                .collect(),
            sender: None,
            forwarded: false,
            conversation_key: None,
        };
        self.store.add_message(scope, reply).await?;
        Ok(())
    }

    async fn over_limit(&self, scope: &TenantScope, spending: u64) -> Result<bool, JobError> {
        over_limit(self.store.as_ref(), &self.tiers, scope, spending).await
    }
}

/// A background model call's failure (memory, classification) as the job's:
/// tried again when the provider may recover.
fn background_error(error: LlmError) -> JobError {
    match error {
        LlmError::Transient { .. } => JobError::Retryable(error.to_string()),
        LlmError::Permanent { .. } => JobError::Permanent(error.to_string()),
    }
}

/// Counts what a background model call spent in the organization's usage,
/// so that its plan's token limit holds for these calls too.
async fn count_background_tokens(
    store: &dyn Store,
    scope: &TenantScope,
    answer: &steward_llm::ChatResponse,
) -> Result<(), JobError> {
    let tokens = answer.input_tokens.saturating_add(answer.output_tokens);
    if tokens > 0 {
        store
            .count_tokens(scope, i64::try_from(tokens).unwrap_or(i64::MAX))
            .await?;
    }
    Ok(())
}

/// Whether the organization is over its plan's monthly messages or tokens,
/// counting `spending` tokens not recorded yet.
async fn over_limit(
    store: &dyn Store,
    tiers: &TiersConfig,
    scope: &TenantScope,
    spending: u64,
) -> Result<bool, JobError> {
    let organization = store.organization(scope).await?;
    over_limit_of(store, tiers, scope, &organization, spending).await
}

/// The same, for an organization read already.
async fn over_limit_of(
    store: &dyn Store,
    tiers: &TiersConfig,
    scope: &TenantScope,
    organization: &steward_store::Organization,
    spending: u64,
) -> Result<bool, JobError> {
    let usage = store
        .usage(scope, &usage_period(steward_store::now()))
        .await?;
    let limits = tiers.limits(organization.tier);
    let tokens = usage
        .tokens
        .saturating_add(i64::try_from(spending).unwrap_or(i64::MAX));
    Ok(usage.messages > limits.messages_per_month || tokens >= limits.tokens_per_month)
}

impl Respond {
    /// The tools the chatbot may call in a reply to `person`; none when they
    /// cannot be listed now (the reply is written without them).
    async fn offered(
        &self,
        scope: &TenantScope,
        chatbot: &Chatbot,
        person: Option<PersonId>,
    ) -> Offered {
        let Some(toolbox) = &self.toolbox else {
            return Offered::default();
        };
        match toolbox.tools(scope, chatbot, person).await {
            Ok(tools) => Offered(tools),
            Err(error) => {
                tracing::warn!(chatbot = %chatbot.id, %error, "tools unavailable: answering without them");
                Offered::default()
            }
        }
    }

    /// Asks the model, and when it calls tools, makes the calls and asks again
    /// with their results, until it answers. The reply's pieces reach the
    /// conversation's live followers as they are written. The outer error is
    /// the store's; the inner, the model's.
    async fn converse(
        &self,
        provider: &dyn Provider,
        mut request: ChatRequest,
        offered: &Offered,
        scope: &TenantScope,
        to: &Message,
        job: &Job,
    ) -> Result<Result<Written, LlmError>, JobError> {
        let mut reply = MessageId::new();
        let mut calls = None;
        if let Some(toolbox) = self.toolbox.as_deref().filter(|_| !offered.is_empty()) {
            let journal = self.store.job_tool_calls(scope, job.id).await?;
            reply = journal.first().map_or(reply, |call| call.reply_id);
            let journaled = Calls {
                store: &self.store,
                toolbox,
                offered,
                limits: &self.tool_limits,
                scope,
                chatbot: to.chatbot_id,
                conversation: to.conversation_id,
                person: to.person_id,
                job: job.id,
                reply,
                deadline: Instant::now() + Duration::from_secs(self.tool_limits.turn_timeout_secs),
            };
            request.steps = journaled.replay(&journal).await?;
            calls = Some(journaled);
        }
        let offer = offered.specs();
        let max_steps = self.tool_limits.max_steps as usize;
        let mut said: Vec<String> = request.steps.iter().map(|s| s.text.clone()).collect();
        let mut tokens = 0;
        let live = LiveReply::start(self.store.clone(), scope, to.conversation_id, reply).await;
        let written = loop {
            let step = request.steps.len();
            // On the last step the model must answer: no tools are offered.
            let last = calls.is_none() || step + 1 >= max_steps;
            request.tools = if last { Vec::new() } else { offer.clone() };
            if step > 0 && self.over_limit(scope, tokens).await? {
                break Ok((OVER_LIMIT_REPLY.to_owned(), None));
            }
            let answer = match provider.stream(&request, &live.sink).await {
                Ok(answer) => answer,
                Err(error) => break Err(error),
            };
            tokens += answer.input_tokens + answer.output_tokens;
            said.push(answer.text.clone());
            let Some(calls) = calls
                .as_ref()
                .filter(|_| !last && !answer.tool_calls.is_empty())
            else {
                break Ok((said_text(&said), Some(answer)));
            };
            let done = calls.step(step, &answer.text, &answer.tool_calls).await?;
            request.steps.push(done);
        };
        live.finish().await;
        if calls.is_some() {
            metrics::histogram!("steward_tool_loop_steps").record(request.steps.len() as f64 + 1.0);
        }
        let (text, answer) = match written {
            Ok(written) => written,
            Err(error) => return Ok(Err(error)),
        };
        let tool_calls = match calls {
            Some(_) => tools::shown(&self.store.job_tool_calls(scope, job.id).await?),
            None => serde_json::Value::Null,
        };
        Ok(Ok(Written {
            text,
            tokens,
            provider: answer
                .as_ref()
                .map_or_else(String::new, |a| a.provider.clone()),
            model: answer.map_or_else(String::new, |a| a.model),
            tool_calls,
            reply,
        }))
    }
}

/// What the model said over every step, or, when it said nothing (its last
/// step spent on calls), that it could not finish.
fn said_text(said: &[String]) -> String {
    let said: Vec<&str> = said
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    match said.is_empty() {
        true => UNFINISHED_REPLY.to_owned(),
        false => said.join("\n\n"),
    }
}

/// A reply on its way to the conversation's live followers: started once,
/// then its pieces, step after step. Live delivery is best effort: the
/// stored reply is what counts.
struct LiveReply {
    sink: DeltaSink,
    publisher: tokio::task::JoinHandle<()>,
}

impl LiveReply {
    async fn start(
        store: Arc<dyn Store>,
        scope: &TenantScope,
        conversation: steward_domain::ConversationId,
        reply: MessageId,
    ) -> Self {
        let started = LiveEvent {
            org_id: scope.org_id(),
            conversation_id: conversation,
            kind: LiveKind::ReplyStarted {
                attempt: uuid::Uuid::now_v7(),
                reply,
            },
        };
        let _ = store.publish_live(started.clone()).await;
        let (pieces, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
        let publisher = tokio::spawn(async move {
            while let Some(mut text) = received.recv().await {
                // Pieces that came while the last was being published go out
                // together: one event (on PostgreSQL one NOTIFY) for them all.
                while let Ok(more) = received.try_recv() {
                    text.push_str(&more);
                }
                let piece = LiveEvent {
                    kind: LiveKind::Delta { text },
                    ..started.clone()
                };
                let _ = store.publish_live(piece).await;
            }
        });
        Self {
            sink: DeltaSink::new(pieces),
            publisher,
        }
    }

    /// Waits until every piece is published.
    async fn finish(self) {
        drop(self.sink);
        let _ = self.publisher.await;
    }
}

#[async_trait]
impl JobHandler for Respond {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let started = Instant::now();
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("a respond job names no organization".into()))?;
        let RespondArgs {
            chatbot_id,
            conversation_id: conversation,
        } = job.args()?;
        let scope = TenantScope::for_job(org);

        let chatbot = match self.store.chatbot(&scope, chatbot_id).await {
            Ok(chatbot) => chatbot,
            // Deleted since: its conversations went with it; nothing to answer.
            Err(StoreError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let turns = self
            .store
            .conversation_messages(&scope, conversation, self.history_turns)
            .await?;
        let waiting = unanswered(&turns);
        let Some(last) = waiting.iter().rev().find(|m| m.role == MessageRole::User) else {
            return Ok(()); // answered already, by this job's earlier attempt or a previous reply
        };
        // Handed to a person (contact-owner): the assistant stays quiet.
        if self
            .store
            .handed_off_at(&scope, conversation)
            .await?
            .is_some()
        {
            return Ok(());
        }

        let organization = self.store.organization(&scope).await?;
        if over_limit_of(self.store.as_ref(), &self.tiers, &scope, &organization, 0).await? {
            return self.reply(&scope, last, OVER_LIMIT_REPLY, 0, &[]).await;
        }
        let question: Vec<&str> = waiting
            .iter()
            .filter(|m| m.role == MessageRole::User)
            .map(|m| m.text.as_str())
            .collect();
        let passages = self
            .retriever
            .retrieve(&scope, chatbot_id, &question.join("\n"), self.passages)
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        let provider = match &self.responder {
            Responder::RetrievalOnly if passages.is_empty() => {
                return self.reply(&scope, last, NO_MODEL_REPLY, 0, &[]).await;
            }
            Responder::RetrievalOnly => {
                let answer = steward_knowledge::retrieve::quoted_answer(&passages);
                return self.reply(&scope, last, &answer, 0, &passages).await;
            }
            Responder::Model(provider) => provider,
        };
        let mut system = chatbot.system_prompt.clone();
        if !passages.is_empty() {
            system.push_str("\n\n");
            system.push_str(&steward_knowledge::retrieve::prompt_block(&passages));
        }
        // A person's memory is theirs: it is used only where everyone
        // the assistant hears in this conversation is that person.
        let remembered = match &self.memory {
            Some(memory) if organization.memory => last
                .person_id
                .filter(|person| {
                    turns
                        .iter()
                        .filter(|m| m.role == MessageRole::User)
                        .all(|m| m.person_id == Some(*person))
                })
                .map(|person| (memory, person)),
            _ => None,
        };
        if let Some((memory, person)) = remembered {
            let block = memory
                .prompt_block(&scope, person, &question.join("\n"))
                .await?;
            if !block.is_empty() {
                system.push_str("\n\n");
                system.push_str(&block);
            }
        }
        let mut offered = self.offered(&scope, &chatbot, last.person_id).await;
        if remembered.is_none() {
            offered
                .0
                .retain(|tool| tool.server != steward_tools::memory::SERVER);
        }
        // The skills this reply may load: named and described, never their
        // instructions (`use_skill` loads those).
        if offered.offers_skills() {
            let skills = self
                .store
                .offered_skills(&scope, &chatbot.skills, last.person_id)
                .await?;
            system.push_str("\n\n");
            system.push_str(&steward_tools::skills::prompt_block(&skills));
        }
        let request = ChatRequest {
            model: chatbot.model.clone(),
            system,
            messages: turns
                .iter()
                .map(|m| ChatMessage {
                    role: if m.role == MessageRole::User {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    content: m.text.clone(),
                })
                .collect(),
            temperature: chatbot.temperature,
            max_tokens: self.max_tokens,
            // Offered step by step in `converse`.
            tools: Vec::new(),
            steps: Vec::new(),
        };
        match self
            .converse(provider.as_ref(), request, &offered, &scope, last, job)
            .await?
        {
            Ok(answer) => {
                let tokens = i64::try_from(answer.tokens).unwrap_or(i64::MAX);
                let meta = Self::meta(&passages, answer.tool_calls);
                let learn = remembered.map(|(memory, person)| {
                    let answered: Vec<&Message> = waiting
                        .iter()
                        .filter(|m| m.role == MessageRole::User)
                        .collect();
                    memory.learn(&scope, person, &answered)
                });
                self.store_reply(
                    &scope,
                    last,
                    answer.reply,
                    &answer.text,
                    tokens,
                    meta,
                    learn,
                )
                .await?;
                let waited = steward_store::now() - waiting[0].created_at;
                metrics::histogram!("steward_message_processing_duration_seconds")
                    .record(waited.num_milliseconds().max(0) as f64 / 1000.0);
                tracing::info!(provider = %answer.provider, model = %answer.model, took_ms = started.elapsed().as_millis() as u64, "replied");
                Ok(())
            }
            Err(error) => {
                let last_attempt = job.attempts >= job.max_attempts || !error.is_transient();
                if last_attempt {
                    // The user hears something rather than nothing; the job is dead for the operator.
                    self.reply(&scope, last, APOLOGY_REPLY, 0, &[]).await?;
                }
                match error {
                    // The provider said when to come back: not before then.
                    LlmError::Transient {
                        retry_after: Some(after),
                        ..
                    } if !last_attempt => Err(JobError::RetryableAfter(error.to_string(), after)),
                    LlmError::Transient { .. } if !last_attempt => {
                        Err(JobError::Retryable(error.to_string()))
                    }
                    LlmError::Transient { .. } => {
                        Err(JobError::Retryable(format!("gave up: {error}")))
                    }
                    LlmError::Permanent { .. } => Err(JobError::Permanent(error.to_string())),
                }
            }
        }
    }
}

/// Whether replies on the channel a message came from are sent out.
fn sends_replies(channel: &str) -> bool {
    channel
        .parse::<steward_domain::ChannelKind>()
        .is_ok_and(|kind| kind.sends_replies())
}

#[cfg(test)]
mod tests {
    use steward_domain::{ChatbotId, ConversationId, OrgId};

    use super::*;

    fn message(role: MessageRole, answers: Option<MessageId>) -> Message {
        Message {
            id: MessageId::new(),
            org_id: OrgId::new(),
            chatbot_id: ChatbotId::new(),
            conversation_id: ConversationId::new(),
            role,
            text: "x".into(),
            channel: "api".into(),
            external_id: None,
            answers,
            channel_id: None,
            meta: None,
            forwarded: false,
            person_id: None,
            created_at: steward_store::now(),
        }
    }

    #[test]
    fn messages_after_the_last_answered_one_are_waiting() {
        let u1 = message(MessageRole::User, None);
        let u2 = message(MessageRole::User, None);
        assert_eq!(
            unanswered(&[u1.clone(), u2.clone()]).len(),
            2,
            "nothing answered yet"
        );

        // A reply to u1 was stored after u2 arrived: u2 still waits.
        let reply = message(MessageRole::Assistant, Some(u1.id));
        let turns = [u1.clone(), u2.clone(), reply.clone()];
        let waiting = unanswered(&turns);
        assert_eq!(
            waiting
                .iter()
                .filter(|m| m.role == MessageRole::User)
                .map(|m| m.id)
                .collect::<Vec<_>>(),
            vec![u2.id]
        );

        let answered = [
            u1.clone(),
            u2.clone(),
            message(MessageRole::Assistant, Some(u2.id)),
        ];
        assert!(
            unanswered(&answered)
                .iter()
                .all(|m| m.role != MessageRole::User)
        );
        assert!(unanswered(&[]).is_empty());
        // A reply whose answered message fell out of the window counts from the reply.
        let old = [
            message(MessageRole::Assistant, Some(MessageId::new())),
            u2.clone(),
        ];
        assert_eq!(unanswered(&old).len(), 1);
    }
}
