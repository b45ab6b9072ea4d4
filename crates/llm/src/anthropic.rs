//! Anthropic Messages: `POST {base_url}/v1/messages`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::tools::PartialCalls;
use crate::{
    ChatMessage, ChatRequest, ChatResponse, DeltaSink, LlmError, Provider, Role, ToolCall,
    ToolStep, answered, instrumented, malformed, read_stream, send,
};

const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    client: reqwest::Client,
    /// e.g. `https://api.anthropic.com`.
    base_url: String,
    api_key: String,
    model: String,
    timeout: Duration,
}

const REQUEST_ID: &str = "request-id";

impl Anthropic {
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: String,
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
        let mut messages = alternating(&request.messages);
        messages.extend(request.steps.iter().flat_map(step_turns));
        let mut body = json!({
            "model": model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": messages,
            // Anthropic takes 0 to 1; our chatbots allow up to 2.
            "temperature": request.temperature.min(1.0),
        });
        if !request.tools.is_empty() {
            let tools = request.tools.iter().map(|tool| {
                json!({ "name": tool.name, "description": tool.description, "input_schema": tool.input_schema })
            });
            body["tools"] = tools.collect();
        }
        body
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/messages", self.base_url))
            .timeout(self.timeout)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION)
            .json(body)
    }

    async fn call(&self, request: &ChatRequest, model: &str) -> Result<ChatResponse, LlmError> {
        let provider = self.name();
        let parsed = send(
            provider,
            self.request(&Self::body(request, model)),
            REQUEST_ID,
        )
        .await?;
        let blocks = parsed["content"]
            .as_array()
            .ok_or_else(|| malformed(provider, "no content"))?;
        let text: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        let tool_calls: Vec<ToolCall> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| ToolCall {
                id: b["id"].as_str().unwrap_or_default().to_owned(),
                name: b["name"].as_str().unwrap_or_default().to_owned(),
                input: match &b["input"] {
                    Value::Object(input) => Ok(input.clone()),
                    other => Err(other.to_string()),
                },
            })
            .collect();
        Ok(ChatResponse {
            text: answered(provider, text, &tool_calls)?,
            tool_calls,
            input_tokens: parsed["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: parsed["usage"]["output_tokens"].as_u64().unwrap_or(0),
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
        let (mut text, mut input, mut output) = (String::new(), 0, 0);
        let mut calls = PartialCalls::default();
        read_stream(provider, self.request(&body), REQUEST_ID, |event| {
            let data: Value = serde_json::from_str(&event.data)
                .map_err(|_| malformed(provider, "stream event not JSON"))?;
            match event
                .name
                .as_deref()
                .unwrap_or_else(|| data["type"].as_str().unwrap_or(""))
            {
                "message_start" => {
                    input = data["message"]["usage"]["input_tokens"]
                        .as_u64()
                        .unwrap_or(0)
                }
                "content_block_delta" if data["delta"]["type"] == "text_delta" => {
                    let piece = data["delta"]["text"].as_str().unwrap_or("");
                    sink.send(piece);
                    text.push_str(piece);
                }
                "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                    let block = &data["content_block"];
                    let index = data["index"].as_u64().unwrap_or(0);
                    calls.add(index, block["id"].as_str(), block["name"].as_str(), "");
                }
                "content_block_delta" if data["delta"]["type"] == "input_json_delta" => {
                    let index = data["index"].as_u64().unwrap_or(0);
                    let piece = data["delta"]["partial_json"].as_str().unwrap_or("");
                    calls.add(index, None, None, piece);
                }
                "message_delta" => {
                    output = data["usage"]["output_tokens"].as_u64().unwrap_or(output)
                }
                "message_stop" => return Ok(true),
                "error" => {
                    let message = format!("stream error: {}", data["error"]);
                    let transient = matches!(
                        data["error"]["type"].as_str(),
                        Some("overloaded_error" | "api_error" | "rate_limit_error")
                    );
                    return Err(if transient {
                        LlmError::Transient {
                            provider: provider.to_owned(),
                            message,
                            retry_after: None,
                        }
                    } else {
                        LlmError::Permanent {
                            provider: provider.to_owned(),
                            message,
                        }
                    });
                }
                _ => {} // ping, a text block's start, any block's stop
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

/// Anthropic wants turns to alternate, starting with the user: consecutive
/// turns of one role (messages answered together) are joined.
fn alternating(messages: &[ChatMessage]) -> Vec<Value> {
    let mut turns: Vec<(Role, String)> = Vec::new();
    for message in messages.iter().skip_while(|m| m.role == Role::Assistant) {
        match turns.last_mut() {
            Some((role, text)) if *role == message.role => {
                text.push_str("\n\n");
                text.push_str(&message.content);
            }
            _ => turns.push((message.role, message.content.clone())),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({ "role": match role { Role::User => "user", Role::Assistant => "assistant" }, "content": content }))
        .collect()
}

/// A step as two turns: the model's text and `tool_use` blocks, then the
/// user's `tool_result` blocks.
fn step_turns(step: &ToolStep) -> [Value; 2] {
    let mut said: Vec<Value> = Vec::new();
    if !step.text.is_empty() {
        said.push(json!({ "type": "text", "text": step.text }));
    }
    said.extend(step.calls.iter().map(|call| {
        // Input that was not an object went back to the model as an error
        // result; the call itself is sent with no input.
        let input = call.input.clone().unwrap_or_default();
        json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input })
    }));
    let results = step.results.iter().map(|result| {
        json!({
            "type": "tool_result",
            "tool_use_id": result.call_id,
            "content": result.content,
            "is_error": result.is_error,
        })
    });
    [
        json!({ "role": "assistant", "content": said }),
        json!({ "role": "user", "content": results.collect::<Vec<_>>() }),
    ]
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_alternate_starting_with_the_user() {
        let m = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let turns = alternating(&[
            m(Role::Assistant, "welcome"),
            m(Role::User, "a"),
            m(Role::User, "b"),
            m(Role::Assistant, "c"),
            m(Role::User, "d"),
        ]);
        assert_eq!(
            turns,
            vec![
                json!({"role": "user", "content": "a\n\nb"}),
                json!({"role": "assistant", "content": "c"}),
                json!({"role": "user", "content": "d"})
            ]
        );
    }
}
