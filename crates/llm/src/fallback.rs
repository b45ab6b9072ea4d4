//! Providers in order: the next is tried only when the previous failed transiently.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{ChatRequest, ChatResponse, DeltaSink, LlmError, Provider};

pub struct Fallback {
    providers: Vec<Arc<dyn Provider>>,
    name: String,
}

impl Fallback {
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        let name = providers
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join("+");
        Self { providers, name }
    }
}

#[async_trait]
impl Provider for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut last = LlmError::Permanent {
            provider: self.name.clone(),
            message: "no provider configured".into(),
        };
        for provider in &self.providers {
            match provider.complete(request).await {
                Ok(response) => return Ok(response),
                Err(error) if error.is_transient() => {
                    tracing::warn!(provider = provider.name(), %error, "provider failed; trying the next one");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    async fn stream(
        &self,
        request: &ChatRequest,
        sink: &DeltaSink,
    ) -> Result<ChatResponse, LlmError> {
        let mut last = LlmError::Permanent {
            provider: self.name.clone(),
            message: "no provider configured".into(),
        };
        for provider in &self.providers {
            match provider.stream(request, sink).await {
                Ok(response) => return Ok(response),
                // Only before the first piece: after it, the user has seen this provider's words.
                Err(error) if error.is_transient() && !sink.started() => {
                    tracing::warn!(provider = provider.name(), %error, "provider failed before streaming; trying the next one");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }
}
