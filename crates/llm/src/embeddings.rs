//! OpenAI-compatible embeddings: `POST {base_url}/embeddings` with
//! `{"model", "input": [texts]}`, answered with `data[i].embedding` (in any
//! order; each item names its `index`).

use std::time::Duration;

use serde_json::json;

use crate::{LlmError, malformed, send};

pub struct Embeddings {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    dimensions: usize,
    batch_size: usize,
    timeout: Duration,
}

const PROVIDER: &str = "embeddings";

impl Embeddings {
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        dimensions: usize,
        batch_size: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: model.to_owned(),
            dimensions,
            batch_size: batch_size.max(1),
            timeout,
        }
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// One vector per text, in order, each `dimensions` long.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut call = self
            .client
            .post(format!("{}/embeddings", self.base_url))
            .timeout(self.timeout)
            .json(&json!({ "model": self.model, "input": texts }));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let answer = send(PROVIDER, call, "x-request-id").await?;
        let data = answer["data"]
            .as_array()
            .ok_or_else(|| malformed(PROVIDER, "no data"))?;
        if data.len() != texts.len() {
            return Err(malformed(
                PROVIDER,
                "a different number of vectors than texts",
            ));
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (position, item) in data.iter().enumerate() {
            let index = item["index"].as_u64().map_or(position, |i| i as usize);
            let vector: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or_else(|| malformed(PROVIDER, "an item without an embedding"))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| malformed(PROVIDER, "an embedding that is not numbers"))?;
            if vector.len() != self.dimensions {
                return Err(LlmError::Permanent {
                    provider: PROVIDER.into(),
                    message: format!(
                        "the model returned {} dimensions; embeddings.dimensions says {}",
                        vector.len(),
                        self.dimensions
                    ),
                });
            }
            if !vector.iter().all(|x| x.is_finite()) {
                return Err(malformed(
                    PROVIDER,
                    "an embedding with a value that is not finite",
                ));
            }
            match vectors.get_mut(index) {
                Some(slot @ None) => *slot = Some(vector),
                _ => return Err(malformed(PROVIDER, "an index out of range or repeated")),
            }
        }
        Ok(vectors
            .into_iter()
            .map(|v| v.expect("every index filled"))
            .collect())
    }
}
