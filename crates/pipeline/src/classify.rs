//! The `classify` job: labels each answered message with a category of the
//! organization's taxonomy (two levels), for insights. A model labels it
//! when one is configured (`llm.background`, else the primary), the
//! taxonomy's keywords otherwise, or when the model's answer names no
//! category of the taxonomy. Only the label and the counts are kept.
//!
//! Once: the label on the message is the marker, set in the transaction
//! that counts it; a job run again finds it labelled and counts nothing.

use std::sync::Arc;

use async_trait::async_trait;
use steward_config::TiersConfig;
use steward_domain::MessageRole;
use steward_domain::jobs::ClassifyArgs;
use steward_domain::taxonomy::{Label, OTHER, Taxonomy};
use steward_jobs::{JobError, JobHandler};
use steward_llm::{ChatMessage, ChatRequest, Provider, Role};
use steward_store::{Job, Message, NewJob, Store, StoreError, TenantScope};

/// The task the model is given. Its first line names it (the test model
/// answers it by that line).
pub const CLASSIFY_TASK: &str = "Task: name the category of this message.";

/// The job that labels `message`, a person's message a reply answers.
pub(crate) fn classify(scope: &TenantScope, message: &Message, attempts: i32) -> NewJob {
    NewJob::of(
        &ClassifyArgs {
            message_id: message.id,
        },
        attempts,
    )
    .for_org(scope.org_id())
}

fn classify_prompt(taxonomy: &Taxonomy) -> String {
    let mut prompt = format!(
        "{CLASSIFY_TASK}\n\
Answer with exactly one line from the list below, as it is written, naming what the person's \
message is about; if none fits, answer {OTHER}.\n\n"
    );
    for category in &taxonomy.categories {
        for sub in &category.subcategories {
            prompt.push_str(&format!("{} > {}\n", category.name, sub.name));
        }
    }
    prompt
}

/// The taxonomy's label a model's answer names, if any.
fn named_label(taxonomy: &Taxonomy, answer: &str) -> Option<Label> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (l1, l2) = line.split_once('>')?;
    taxonomy.find(
        l1.trim_matches(['-', '*', ' ', '"']),
        l2.trim_matches(['"', '.', ' ']),
    )
}

/// The `classify` job.
pub struct Classify {
    pub store: Arc<dyn Store>,
    /// The background model, then the primary and the fallback; None:
    /// keywords only.
    pub provider: Option<Arc<dyn Provider>>,
    pub tiers: TiersConfig,
}

impl Classify {
    /// The label the model gives, None when it names nothing in the taxonomy.
    async fn ask(
        &self,
        scope: &TenantScope,
        provider: &dyn Provider,
        taxonomy: &Taxonomy,
        text: &str,
    ) -> Result<Option<Label>, JobError> {
        let request = ChatRequest {
            model: None,
            system: classify_prompt(taxonomy),
            messages: vec![ChatMessage {
                role: Role::User,
                content: text.to_owned(),
            }],
            temperature: 0.0,
            max_tokens: 40,
            tools: Vec::new(),
            steps: Vec::new(),
        };
        let answer = provider
            .complete(&request)
            .await
            .map_err(crate::background_error)?;
        crate::count_background_tokens(self.store.as_ref(), scope, &answer).await?;
        Ok(named_label(taxonomy, &answer.text))
    }
}

#[async_trait]
impl JobHandler for Classify {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("a classify job names no organization".into()))?;
        let ClassifyArgs { message_id } = job.args()?;
        let scope = TenantScope::for_job(org);
        let message = match self.store.message(&scope, message_id).await {
            Ok(m) if m.role == MessageRole::User => m,
            // Gone (erased, or its conversation expired): nothing to count.
            Ok(_) | Err(StoreError::NotFound) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        if self.store.labelled(&scope, message_id).await? {
            return Ok(()); // counted by an earlier attempt: ask nothing
        }
        let taxonomy = self
            .store
            .taxonomy(&scope)
            .await?
            .unwrap_or_else(Taxonomy::workplace);
        let organization = self.store.organization(&scope).await?;
        let model = match &self.provider {
            Some(provider)
                if !crate::over_limit_of(
                    self.store.as_ref(),
                    &self.tiers,
                    &scope,
                    &organization,
                    0,
                )
                .await? =>
            {
                self.ask(&scope, provider.as_ref(), &taxonomy, &message.text)
                    .await?
            }
            _ => None,
        };
        let label = model.unwrap_or_else(|| taxonomy.label_by_keywords(&message.text));
        // Counted by organization and category from the store, at
        // /metrics/organizations (`steward_patterns_collected_total`).
        self.store
            .record_pattern(&scope, message_id, &label)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_lists_every_label_and_the_answer_is_read_back() {
        let taxonomy = Taxonomy::workplace();
        let prompt = classify_prompt(&taxonomy);
        assert!(prompt.starts_with(CLASSIFY_TASK));
        assert!(prompt.contains("\nPeople & HR > Leave & time off\n"));
        assert_eq!(
            named_label(&taxonomy, "  \nIT & tools > Devices\n"),
            Some(("IT & tools".into(), "Devices".into()))
        );
        assert_eq!(
            named_label(&taxonomy, "- it & tools > devices."),
            Some(("IT & tools".into(), "Devices".into()))
        );
        assert_eq!(named_label(&taxonomy, "Other"), None);
        assert_eq!(named_label(&taxonomy, "Cooking > Pasta"), None);
    }
}
