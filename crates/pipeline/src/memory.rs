//! What a reply remembers of its person, and the `memory` job that learns
//! from what they said: after each reply, a model (`llm.background`, else
//! the primary) lists the lasting facts the person stated about themselves,
//! and those the person's memory does not hold yet are kept, sealed under
//! their own key (see [`steward_tools::memory`]).
//!
//! Once: a retried job whose facts were kept finds them by the message they
//! came from and asks nothing; an extraction's facts are kept in one
//! transaction, all or none.

use std::sync::Arc;

use async_trait::async_trait;
use steward_config::TiersConfig;
use steward_domain::jobs::MemoryArgs;
use steward_domain::{MessageRole, PersonId};
use steward_jobs::{JobError, JobHandler};
use steward_llm::{ChatMessage, ChatRequest, Provider, Role};
use steward_store::{Job, Message, NewJob, Store, StoreError, TenantScope};
use steward_tools::memory::{Fact, MAX_NEW_FACTS, Memory};

/// What replies remember, and learn, of the people they answer.
#[derive(Clone)]
pub struct Remembering {
    pub memory: Memory,
    /// The most facts put before the model in one reply.
    pub recall_facts: u32,
    /// Tries of the `memory` jobs that learn from what replies answered.
    pub attempts: i32,
}

impl Remembering {
    /// The part of the system prompt that gives what is remembered of
    /// `person` near `question`; empty when nothing is.
    pub(crate) async fn prompt_block(
        &self,
        scope: &TenantScope,
        person: PersonId,
        question: &str,
    ) -> Result<String, StoreError> {
        let facts = self.memory.facts(scope, person).await?;
        let picked = steward_tools::memory::relevant(&facts, question, self.recall_facts as usize);
        if picked.is_empty() {
            return Ok(String::new());
        }
        Ok(steward_tools::memory::prompt_block(&picked))
    }

    /// The job that learns from `answered`, `person`'s messages a reply answered.
    pub(crate) fn learn(
        &self,
        scope: &TenantScope,
        person: PersonId,
        answered: &[&Message],
    ) -> NewJob {
        let args = MemoryArgs {
            person_id: person,
            messages: answered.iter().map(|m| m.id).collect(),
        };
        NewJob::of(&args, self.attempts).for_org(scope.org_id())
    }
}

/// The task the model is given. Its first line names it (the test model
/// answers it by that line).
pub const EXTRACTION_TASK: &str = "Task: note what this person told you about themselves.";

fn extraction_prompt(known: &[Fact]) -> String {
    let mut prompt = format!(
        "{EXTRACTION_TASK}\n\
From the person's messages, list the lasting facts they state about themselves or their work that \
would help an assistant in later conversations: their role, team, place, projects, the tools they \
use, how they like to be answered. One fact per line, each starting with \"- \", in the third \
person, standing on its own, at most {MAX_NEW_FACTS}. Leave out anything passing (a question of \
the moment, today's plans), what they say about other people, passwords and card, account or \
identity numbers, and health. If there is nothing to note, answer NONE."
    );
    if !known.is_empty() {
        prompt.push_str("\n\nAlready noted (do not repeat these):\n");
        for fact in known {
            prompt.push_str("- ");
            prompt.push_str(&fact.text);
            prompt.push('\n');
        }
    }
    prompt
}

/// The facts a model's answer lists: its lines, without their bullets;
/// NONE and blank lines are nothing.
fn listed_facts(answer: &str) -> Vec<String> {
    answer
        .lines()
        .map(|line| {
            line.trim()
                .trim_start_matches(['-', '*', '•'])
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(['.', ')'])
                .trim()
        })
        .filter(|line| !line.is_empty() && !line.eq_ignore_ascii_case("none"))
        .map(str::to_owned)
        .collect()
}

/// The `memory` job.
pub struct Learn {
    pub store: Arc<dyn Store>,
    /// The background model, then the primary and the fallback.
    pub provider: Arc<dyn Provider>,
    pub memory: Memory,
    pub tiers: TiersConfig,
    /// `memory.max_facts`.
    pub max_facts: u32,
}

#[async_trait]
impl JobHandler for Learn {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("a memory job names no organization".into()))?;
        let MemoryArgs {
            person_id: person,
            messages,
        } = job.args()?;
        let scope = TenantScope::for_job(org);
        let organization = self.store.organization(&scope).await?;
        if !organization.memory
            || crate::over_limit_of(self.store.as_ref(), &self.tiers, &scope, &organization, 0)
                .await?
        {
            return Ok(());
        }
        let mut said = Vec::new();
        for id in messages {
            match self.store.message(&scope, id).await {
                Ok(m) if m.role == MessageRole::User && m.person_id == Some(person) => said.push(m),
                // Gone (erased, or the conversation deleted), or now someone else's.
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let Some(source) = said.last().map(|m| m.id) else {
            return Ok(());
        };
        let known = self.memory.known(&scope, person).await?;
        if known.facts.iter().any(|fact| fact.source == Some(source)) {
            return Ok(()); // learnt already, by an earlier attempt
        }
        let request = ChatRequest {
            model: None,
            system: extraction_prompt(&known.facts),
            messages: vec![ChatMessage {
                role: Role::User,
                content: said
                    .iter()
                    .map(|m| m.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            }],
            temperature: 0.0,
            max_tokens: 512,
            tools: Vec::new(),
            steps: Vec::new(),
        };
        let answer = self
            .provider
            .complete(&request)
            .await
            .map_err(crate::background_error)?;
        crate::count_background_tokens(self.store.as_ref(), &scope, &answer).await?;
        let facts = listed_facts(&answer.text);
        match self
            .memory
            .remember(&scope, person, source, known, &facts, self.max_facts)
            .await
        {
            Ok(kept) => {
                tracing::debug!(%person, kept, "learnt from a reply's messages");
                Ok(())
            }
            // The person was merged into another, or erased, meanwhile.
            Err(StoreError::NotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_list_reads_as_facts() {
        assert_eq!(
            listed_facts(
                "- Works in finance\n\n* Lives in Porto\n3. Prefers short answers\n• Uses SAP"
            ),
            [
                "Works in finance",
                "Lives in Porto",
                "Prefers short answers",
                "Uses SAP"
            ]
        );
        assert!(listed_facts("NONE").is_empty());
        assert!(listed_facts("  none \n").is_empty());
        assert!(listed_facts("").is_empty());
    }

    #[test]
    fn the_prompt_names_its_task_first_and_what_is_known() {
        let known = [Fact {
            id: steward_domain::FactId::new(),
            text: "Works in finance".into(),
            source: None,
            created_at: steward_store::now(),
        }];
        let prompt = extraction_prompt(&known);
        assert!(prompt.starts_with(EXTRACTION_TASK));
        assert!(prompt.ends_with("- Works in finance\n"));
        assert!(!extraction_prompt(&[]).contains("Already noted"));
    }
}
