//! The calls of a reply that uses tools. Each is journaled before it is made
//! and its result recorded after, so a retried `respond` job replays what its
//! earlier attempt did: finished calls give their recorded result; a call
//! that started but has no result is made again under the same journal id,
//! the idempotency key its server sees, so a server that honours it applies
//! the call once. A call that fails, times out, or names no tool the chatbot
//! has becomes an error result the model reads, never a failed job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steward_config::ToolsConfig;
use steward_domain::{
    ChatbotId, ConversationId, JobId, MessageId, PersonId, ToolCallId, ToolCallStatus,
};
use steward_jobs::JobError;
use steward_llm::{ToolCall, ToolResult, ToolSpec, ToolStep};
use steward_store::{LiveEvent, LiveKind, NewToolCall, Store, TenantScope, ToolCallRecord};
use steward_tools::{CallContext, Tool, Toolbox, bounded};

/// The tools offered to the model in this reply.
#[derive(Default)]
pub(crate) struct Offered(pub(crate) Vec<Tool>);

impl Offered {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the chatbot's skills are offered (it has some, and they
    /// could be listed).
    pub(crate) fn offers_skills(&self) -> bool {
        self.0
            .iter()
            .any(|tool| tool.server == steward_tools::skills::SERVER)
    }

    pub(crate) fn specs(&self) -> Vec<ToolSpec> {
        let spec = |tool: &Tool| ToolSpec {
            name: Tool::model_name(&tool.server, &tool.name),
            description: tool.description.clone(),
            input_schema: tool.input_schema.clone(),
        };
        self.0.iter().map(spec).collect()
    }

    fn by_model_name(&self, name: &str) -> Option<&Tool> {
        let named = |tool: &&Tool| Tool::model_name(&tool.server, &tool.name) == name;
        self.0.iter().find(named)
    }

    fn by_names(&self, server: &str, name: &str) -> Option<&Tool> {
        self.0.iter().find(|t| t.server == server && t.name == name)
    }
}

/// One reply's calls: where they are journaled and how they are made.
pub(crate) struct Calls<'a> {
    pub(crate) store: &'a Arc<dyn Store>,
    pub(crate) toolbox: &'a dyn Toolbox,
    pub(crate) offered: &'a Offered,
    pub(crate) limits: &'a ToolsConfig,
    pub(crate) scope: &'a TenantScope,
    pub(crate) chatbot: ChatbotId,
    pub(crate) conversation: ConversationId,
    /// Who the reply is for.
    pub(crate) person: Option<PersonId>,
    pub(crate) job: JobId,
    pub(crate) reply: MessageId,
    /// When this reply's time for tools runs out.
    pub(crate) deadline: Instant,
}

impl Calls<'_> {
    /// The steps an earlier attempt journaled, each call's result recorded
    /// then or obtained now.
    pub(crate) async fn replay(
        &self,
        journal: &[ToolCallRecord],
    ) -> Result<Vec<ToolStep>, JobError> {
        let mut steps = Vec::new();
        for records in journal.chunk_by(|a, b| a.step == b.step) {
            steps.push(self.settle(records).await?);
        }
        Ok(steps)
    }

    /// Journals the calls the model made in step `step`, makes them (at once,
    /// side by side), and returns the step with their results.
    pub(crate) async fn step(
        &self,
        step: usize,
        text: &str,
        calls: &[ToolCall],
    ) -> Result<ToolStep, JobError> {
        let mut records = Vec::with_capacity(calls.len());
        for (position, call) in calls.iter().enumerate() {
            // A name the chatbot has no tool for is journaled as the model wrote it.
            let (server, tool) = match self.offered.by_model_name(&call.name) {
                Some(tool) => (tool.server.clone(), tool.name.clone()),
                None => (String::new(), call.name.clone()),
            };
            let new = NewToolCall {
                id: ToolCallId::new(),
                conversation_id: self.conversation,
                job_id: self.job,
                reply_id: self.reply,
                step: i32::try_from(step).expect("few steps"),
                position: i32::try_from(position).expect("few calls"),
                step_text: text.to_owned(),
                call_id: call.id.clone(),
                server,
                tool,
                input: call.input_text(),
            };
            records.push(self.store.journal_tool_call(self.scope, &new).await?);
        }
        self.settle(&records).await
    }

    /// One journaled step, with every call's result.
    async fn settle(&self, records: &[ToolCallRecord]) -> Result<ToolStep, JobError> {
        let results = futures::future::join_all(records.iter().map(|r| self.result_of(r))).await;
        let calls = records.iter().map(|record| {
            let name = match record.server.is_empty() {
                true => record.tool.clone(),
                false => Tool::model_name(&record.server, &record.tool),
            };
            ToolCall::from_json_text(record.call_id.clone(), name, &record.input)
        });
        Ok(ToolStep {
            text: records
                .first()
                .map(|r| r.step_text.clone())
                .unwrap_or_default(),
            calls: calls.collect(),
            results: results.into_iter().collect::<Result<_, _>>()?,
        })
    }

    /// A call's recorded result, or the result of making it now (recorded).
    async fn result_of(&self, record: &ToolCallRecord) -> Result<ToolResult, JobError> {
        let (status, content) = match record.status {
            ToolCallStatus::Started => {
                self.tell(record, ToolCallStatus::Started).await;
                let (status, content) = self.make(record).await;
                self.store
                    .finish_tool_call(self.scope, record.id, status, &content)
                    .await?;
                self.tell(record, status).await;
                (status, content)
            }
            done => (done, record.result.clone().unwrap_or_default()),
        };
        Ok(ToolResult {
            call_id: record.call_id.clone(),
            content,
            is_error: status == ToolCallStatus::Failed,
        })
    }

    /// Tells the conversation's live followers where a call is (best effort).
    async fn tell(&self, record: &ToolCallRecord, status: ToolCallStatus) {
        let event = LiveEvent {
            org_id: self.scope.org_id(),
            conversation_id: self.conversation,
            kind: LiveKind::ToolCall {
                id: record.id,
                server: record.server.clone(),
                tool: record.tool.clone(),
                status,
            },
        };
        let _ = self.store.publish_live(event).await;
    }

    /// Makes one call within its bounds; what it gave back, or why not.
    async fn make(&self, record: &ToolCallRecord) -> (ToolCallStatus, String) {
        let failed = |why: String| (ToolCallStatus::Failed, why);
        let Some(tool) = self.offered.by_names(&record.server, &record.tool) else {
            return failed(format!("there is no tool named {}", record.tool));
        };
        let call = ToolCall::from_json_text(String::new(), String::new(), &record.input);
        let Ok(input) = call.input else {
            return failed("the input is not a JSON object".into());
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return failed(
                "no time is left for tools in this reply: answer with what you have".into(),
            );
        }
        let limit = left.min(Duration::from_secs(self.limits.call_timeout_secs));
        let started = Instant::now();
        let context = CallContext {
            scope: *self.scope,
            chatbot: self.chatbot,
            conversation: self.conversation,
            person: self.person,
            reply: Some(self.reply),
            key: record.id,
        };
        let called = self.toolbox.call(&context, tool, &input);
        let (status, content) = match tokio::time::timeout(limit, called).await {
            Ok(Ok(result)) => (ToolCallStatus::Succeeded, result),
            Ok(Err(error)) => failed(error.0),
            Err(_) => failed(format!(
                "the tool did not answer within {} seconds",
                limit.as_secs_f64().ceil()
            )),
        };
        metrics::counter!("steward_tool_calls_total", "server" => tool.server.clone(), "tool" => tool.name.clone(), "status" => status.as_str())
            .increment(1);
        metrics::histogram!("steward_tool_call_duration_seconds", "server" => tool.server.clone())
            .record(started.elapsed().as_secs_f64());
        (status, bounded(content, self.limits.max_result_bytes))
    }
}

/// What a reply's `meta.tool_calls` shows of each call.
pub(crate) fn shown(journal: &[ToolCallRecord]) -> Value {
    let calls = journal.iter().map(|call| {
        let input: Value =
            serde_json::from_str(&call.input).unwrap_or_else(|_| Value::String(call.input.clone()));
        let duration = call
            .finished_at
            .map(|at| (at - call.started_at).num_milliseconds());
        let preview: String = call
            .result
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        json!({
            "id": call.id,
            "server": call.server,
            "tool": call.tool,
            "input": input,
            "status": call.status,
            "duration_ms": duration,
            "result_preview": preview,
        })
    });
    Value::Array(calls.collect())
}
