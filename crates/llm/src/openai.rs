//! OpenAI-compatible Chat Completions: `POST {base_url}/chat/completions`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::tools::PartialCalls;
use crate::{
    ChatRequest, ChatResponse, DeltaSink, LlmError, Provider, Role, ToolCall, ToolStep, answered,
    instrumented, malformed, read_stream, send,
};

pub struct OpenAiCompatible {
    client: reqwest::Client,
    /// e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1` (Ollama).
    base_url: String,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
}

const REQUEST_ID: &str = "x-request-id";

impl OpenAiCompatible {
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: model.to_owned(),
            timeout,
        }
    }

    fn body(request: &ChatRequest, model: &str) -> Value {
        let mut messages = vec![json!({ "role": "system", "content": request.system })];
        messages.extend(request.messages.iter().map(|m| {
            json!({ "role": match m.role { Role::User => "user", Role::Assistant => "assistant" }, "content": m.content })
        }));
        messages.extend(request.steps.iter().flat_map(step_messages));
        let mut body = json!({
            "model": model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        });
        if !request.tools.is_empty() {
            let tools = request.tools.iter().map(|tool| {
                json!({ "type": "function", "function": {
                    "name": tool.name, "description": tool.description, "parameters": tool.input_schema,
                } })
            });
            body["tools"] = tools.collect();
        }
        body
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let call = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .timeout(self.timeout)
            .json(body);
        match &self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    async fn call(&self, request: &ChatRequest, model: &str) -> Result<ChatResponse, LlmError> {
        let provider = self.name();
        let parsed = send(
            provider,
            self.request(&Self::body(request, model)),
            REQUEST_ID,
        )
        .await?;
        let message = &parsed["choices"][0]["message"];
        if !message.is_object() {
            return Err(malformed(provider, "no choices[0].message"));
        }
        let content = message["content"].as_str().unwrap_or_default();
        let tool_calls: Vec<ToolCall> = message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|call| {
                let function = &call["function"];
                ToolCall::from_json_text(
                    call["id"].as_str().unwrap_or_default().to_owned(),
                    function["name"].as_str().unwrap_or_default().to_owned(),
                    function["arguments"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        Ok(ChatResponse {
            text: answered(provider, content.to_owned(), &tool_calls)?,
            tool_calls,
            input_tokens: parsed["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            output_tokens: parsed["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            provider: provider.to_owned(),
            model: parsed["model"].as_str().unwrap_or(model).to_owned(),
        })
    }

    async fn call_streaming(
        &self,
        request: &ChatRequest,
        model: &str,
        sink: &DeltaSink,
    ) -> Result<ChatResponse, LlmError> {
        let provider = self.name();
        let mut body = Self::body(request, model);
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let (mut text, mut input, mut output) = (String::new(), 0, 0);
        let mut calls = PartialCalls::default();
        read_stream(provider, self.request(&body), REQUEST_ID, |event| {
            if event.data == "[DONE]" {
                return Ok(true);
            }
            let chunk: Value = serde_json::from_str(&event.data)
                .map_err(|_| malformed(provider, "stream event not JSON"))?;
            let delta = &chunk["choices"][0]["delta"];
            if let Some(piece) = delta["content"].as_str() {
                sink.send(piece);
                text.push_str(piece);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let function = &call["function"];
                calls.add(
                    call["index"].as_u64().unwrap_or(0),
                    call["id"].as_str(),
                    function["name"].as_str(),
                    function["arguments"].as_str().unwrap_or_default(),
                );
            }
            if chunk["usage"].is_object() {
                input = chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                output = chunk["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            }
            Ok(false)
        })
        .await?;
        let tool_calls = calls.finish();
        Ok(ChatResponse {
            text: answered(provider, text, &tool_calls)?,
            tool_calls,
            input_tokens: input,
            output_tokens: output,
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

/// A step as messages: the assistant's, with its `tool_calls`, then one
/// `tool` message per result.
fn step_messages(step: &ToolStep) -> Vec<Value> {
    let calls: Vec<Value> = step
        .calls
        .iter()
        .map(|call| {
            json!({ "id": call.id, "type": "function",
                    "function": { "name": call.name, "arguments": call.input_text() } })
        })
        .collect();
    let text = (!step.text.is_empty()).then_some(step.text.as_str());
    let mut messages = vec![json!({ "role": "assistant", "content": text, "tool_calls": calls })];
    messages.extend(step.results.iter().map(|result| {
        // The format has no error flag: the content says it.
        let content = match result.is_error {
            true => format!("error: {}", result.content),
            false => result.content.clone(),
        };
        json!({ "role": "tool", "tool_call_id": result.call_id, "content": content })
    }));
    messages
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &str {
        "openai"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        instrumented(self.name(), &self.model, request, |model| async move {
            self.call(request, &model).await
        })
        .await
    }

    async fn stream(
        &self,
        request: &ChatRequest,
        sink: &DeltaSink,
    ) -> Result<ChatResponse, LlmError> {
        instrumented(self.name(), &self.model, request, |model| async move {
            self.call_streaming(request, &model, sink).await
        })
        .await
    }
}
