//! OpenAI-compatible Chat Completions: `POST {base_url}/chat/completions`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{
    ChatRequest, ChatResponse, DeltaSink, LlmError, Provider, Role, instrumented, malformed,
    non_empty, read_stream, send,
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
        json!({
            "model": model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        })
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
        let content = parsed["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| malformed(provider, "no choices[0].message.content"))?;
        Ok(ChatResponse {
            text: non_empty(provider, content.to_owned())?,
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
        read_stream(provider, self.request(&body), REQUEST_ID, |event| {
            if event.data == "[DONE]" {
                return Ok(true);
            }
            let chunk: Value = serde_json::from_str(&event.data)
                .map_err(|_| malformed(provider, "stream event not JSON"))?;
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                sink.send(piece);
                text.push_str(piece);
            }
            if chunk["usage"].is_object() {
                input = chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                output = chunk["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            }
            Ok(false)
        })
        .await?;
        Ok(ChatResponse {
            text: non_empty(provider, text)?,
            input_tokens: input,
            output_tokens: output,
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
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
