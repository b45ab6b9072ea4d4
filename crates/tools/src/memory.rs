//! Personal memory: the facts a person told an assistant about themselves,
//! each sealed under a key of that person's own (a [`DataKey`], itself
//! sealed under the master key), so that destroying their keys makes every
//! copy of their memory unreadable. Also the `recall` and `forget` tools a
//! reply to that person may call.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use steward_auth::{DataKey, Resealed, Sealer};
use steward_domain::{FactId, MessageId, PersonId, PersonKeyId};
use steward_store::{PersonKey, SealedFact, Store, StoreError, StoreResult, TenantScope};

use crate::{CallContext, Tool, ToolError};

/// The server name of the memory tools.
pub const SERVER: &str = "memory";
/// The longest fact kept, in characters; longer ones are cut.
pub const MAX_FACT_CHARS: usize = 500;
/// The most facts one extraction keeps.
pub const MAX_NEW_FACTS: usize = 20;
/// The most facts one `forget` call names.
const MAX_FORGET: usize = 50;

/// One fact of a person's memory, in clear.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub id: FactId,
    pub text: String,
    /// The message it was learnt from.
    pub source: Option<MessageId>,
    pub created_at: DateTime<Utc>,
}

/// People's memory, read and written in clear through their keys.
#[derive(Clone)]
pub struct Memory {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl Memory {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Self { store, sealer }
    }

    /// The person's facts in clear, oldest first. A fact that does not open
    /// (its key destroyed or damaged) is left out.
    pub async fn facts(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Vec<Fact>> {
        Ok(self.read(scope, person, false).await?.facts)
    }

    /// The person's facts and the key new ones are sealed with, read once,
    /// for [`remember`](Self::remember).
    pub async fn known(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Known> {
        self.read(scope, person, true).await
    }

    /// `with_key`: also open the person's key when they have no facts.
    async fn read(
        &self,
        scope: &TenantScope,
        person: PersonId,
        with_key: bool,
    ) -> StoreResult<Known> {
        let sealed = self.store.memory(scope, person).await?;
        if sealed.is_empty() && !with_key {
            return Ok(Known::default());
        }
        let keys = self.keys(scope, person).await?;
        let facts = sealed
            .into_iter()
            .filter_map(|fact| {
                let (_, key) = keys.iter().find(|(id, _)| *id == fact.key_id)?;
                let text = key.open(&fact.sealed, fact.id.to_string().as_bytes());
                let text = text.ok().and_then(|t| String::from_utf8(t).ok());
                if text.is_none() {
                    tracing::warn!(fact = %fact.id, "a remembered fact does not open: left out");
                }
                Some(Fact {
                    id: fact.id,
                    text: text?,
                    source: fact.source_message_id,
                    created_at: fact.created_at,
                })
            })
            .collect();
        Ok(Known {
            facts,
            key: keys.into_iter().next(),
        })
    }

    /// Keeps those of `texts` the person's memory does not hold yet
    /// (compared by their words, in any case, with `known`), learnt from
    /// message `source`, then only the newest `keep` facts; how many were
    /// kept. Nothing is kept twice from one message, nor while the
    /// organization's memory is off.
    pub async fn remember(
        &self,
        scope: &TenantScope,
        person: PersonId,
        source: MessageId,
        known: Known,
        texts: &[String],
        keep: u32,
    ) -> StoreResult<usize> {
        let mut seen: Vec<String> = known.facts.iter().map(|f| words(&f.text)).collect();
        let mut new = Vec::new();
        for text in texts {
            let text: String = text.trim().chars().take(MAX_FACT_CHARS).collect();
            let key = words(&text);
            if key.is_empty() || seen.contains(&key) || new.len() == MAX_NEW_FACTS {
                continue;
            }
            seen.push(key);
            new.push(text);
        }
        if new.is_empty() {
            return Ok(0);
        }
        let (key_id, key) = match known.key {
            Some(key) => key,
            None => self.new_key(scope, person).await?,
        };
        let now = steward_store::now();
        let facts: Vec<SealedFact> = new
            .iter()
            .map(|text| {
                let id = FactId::new();
                SealedFact {
                    id,
                    key_id,
                    sealed: key.seal(text.as_bytes(), id.to_string().as_bytes()),
                    source_message_id: Some(source),
                    created_at: now,
                }
            })
            .collect();
        let kept = self
            .store
            .remember(scope, person, source, &facts, keep)
            .await?;
        Ok(if kept { facts.len() } else { 0 })
    }

    /// The person's keys that open, oldest first.
    async fn keys(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<Vec<(PersonKeyId, DataKey)>> {
        let stored = self.store.person_keys(scope, person).await?;
        Ok(stored
            .into_iter()
            .filter_map(|key| {
                let opened = self.sealer.open_data_key(&key.sealed, key.id.to_string().as_bytes());
                count_key("open");
                match opened {
                    Ok(opened) => Some((key.id, opened)),
                    Err(_) => {
                        tracing::warn!(key = %key.id, "a person's key does not open with the master key");
                        None
                    }
                }
            })
            .collect())
    }

    /// A new key for the person, kept now.
    async fn new_key(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<(PersonKeyId, DataKey)> {
        let id = PersonKeyId::new();
        let (key, sealed) = self.sealer.new_data_key(id.to_string().as_bytes());
        count_key("seal");
        self.store
            .add_person_key(scope, person, &PersonKey { id, sealed })
            .await?;
        Ok((id, key))
    }
}

/// A person's memory as read for learning: their facts, and the key new
/// facts are sealed with (None: they have none yet; one is made).
#[derive(Default)]
pub struct Known {
    pub facts: Vec<Fact>,
    key: Option<(PersonKeyId, DataKey)>,
}

fn count_key(operation: &'static str) {
    metrics::counter!("steward_key_operations_total", "operation" => operation).increment(1);
}

/// A fact's words, lowercased: two facts with the same words are one.
fn words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The facts worth putting before the model for `question`: all of them
/// when they are at most `limit`, else the `limit` sharing the most words
/// of four letters or more with it (short words say little of what a fact
/// is about), the newest first among equals. Oldest first, as learnt.
pub fn relevant<'a>(facts: &'a [Fact], question: &str, limit: usize) -> Vec<&'a Fact> {
    if facts.len() <= limit {
        return facts.iter().collect();
    }
    let asked: std::collections::HashSet<String> = words(question)
        .split(' ')
        .filter(|w| w.chars().count() > 3)
        .map(str::to_owned)
        .collect();
    let mut scored: Vec<(usize, usize, &Fact)> = facts
        .iter()
        .enumerate()
        .map(|(at, fact)| {
            let shared = words(&fact.text)
                .split(' ')
                .filter(|w| asked.contains(*w))
                .count();
            (shared, at, fact)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    scored.truncate(limit);
    scored.sort_by_key(|(_, at, _)| *at);
    scored.into_iter().map(|(_, _, fact)| fact).collect()
}

/// The system prompt's part that gives the model what it remembers.
pub fn prompt_block(facts: &[&Fact]) -> String {
    let mut block = String::from(
        "What you remember about the person you are talking to, from what they told you before \
(use it where it helps; they can ask what you remember, or that you forget something, through \
the memory tools):\n",
    );
    for fact in facts {
        block.push_str("- ");
        block.push_str(&fact.text);
        block.push('\n');
    }
    block
}

/// The memory tools, offered in replies to a known person while their
/// organization's memory is on and no one else is in the conversation
/// (the reply decides; see `steward_pipeline`).
pub fn tools() -> Vec<Tool> {
    vec![
        Tool {
            server: SERVER.into(),
            name: "recall".into(),
            description: "Lists everything you remember about the person you are talking to (what they told you about themselves before), each fact with its id. Call it when they ask what you remember, or to find what they want forgotten.".into(),
            input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
        },
        Tool {
            server: SERVER.into(),
            name: "forget".into(),
            description: "Forgets facts about the person you are talking to, for good, when they ask you to: the ids recall listed, or everything.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "fact_ids": {
                        "type": "array",
                        "items": { "type": "string" },
                        "maxItems": MAX_FORGET,
                        "description": "The ids of the facts to forget, from recall."
                    },
                    "everything": { "type": "boolean", "description": "Forget everything about them." }
                },
                "additionalProperties": false
            }),
        },
    ]
}

/// Calls `recall` or `forget` for the person the reply is for.
pub async fn call(
    memory: &Memory,
    context: &CallContext,
    tool: &Tool,
    input: &Map<String, Value>,
) -> Result<String, ToolError> {
    let unavailable = |error: StoreError| {
        tracing::warn!(%error, "reaching a person's memory failed");
        ToolError("memory cannot be reached just now".into())
    };
    let Some(person) = context.person else {
        return Err(ToolError(
            "this conversation is with nobody Steward knows, so there is no memory".into(),
        ));
    };
    let scope = &context.scope;
    match tool.name.as_str() {
        "recall" => {
            let facts = memory.facts(scope, person).await.map_err(unavailable)?;
            if facts.is_empty() {
                return Ok("Nothing is remembered about this person.".into());
            }
            let mut listed = String::from("What is remembered about this person (id: fact):\n");
            for fact in facts {
                listed.push_str(&format!("{}: {}\n", fact.id, fact.text));
            }
            Ok(listed)
        }
        "forget" => {
            if input.get("everything").and_then(Value::as_bool) == Some(true) {
                let forgotten = memory
                    .store
                    .forget_memory(scope, person)
                    .await
                    .map_err(unavailable)?;
                return Ok(format!("Forgot everything ({forgotten} facts)."));
            }
            let ids: Vec<&str> = input
                .get("fact_ids")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if ids.is_empty() || ids.len() > MAX_FORGET {
                return Err(ToolError(format!(
                    "fact_ids: give 1 to {MAX_FORGET} ids from recall, or everything: true"
                )));
            }
            let (mut forgotten, mut unknown) = (0, Vec::new());
            for id in ids {
                match id.parse::<FactId>() {
                    Ok(fact) => match memory.store.forget_fact(scope, person, fact).await {
                        Ok(()) => forgotten += 1,
                        Err(StoreError::NotFound) => unknown.push(id),
                        Err(error) => return Err(unavailable(error)),
                    },
                    Err(_) => unknown.push(id),
                }
            }
            let mut said = format!("Forgot {forgotten} facts.");
            if !unknown.is_empty() {
                said.push_str(&format!(
                    " Not remembered (already forgotten, or not an id from recall): {}.",
                    unknown.join(", ")
                ));
            }
            Ok(said)
        }
        other => Err(ToolError(format!("memory has no tool {other}"))),
    }
}

/// The second half of a master-key rotation for people's keys: every
/// person's key sealed again under the current master key.
pub async fn reseal(
    store: &dyn Store,
    sealer: &Sealer,
) -> Result<Resealed<PersonKeyId>, StoreError> {
    let keys = store.all_person_keys().await?;
    let sealed = keys.into_iter().map(|k| (k.id, k.sealed));
    Resealed::run(sealer, sealed, async |id, old, new| {
        store.replace_person_key(id, old, new).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(text: &str) -> Fact {
        Fact {
            id: FactId::new(),
            text: text.into(),
            source: None,
            created_at: steward_store::now(),
        }
    }

    #[test]
    fn facts_with_the_same_words_are_one() {
        assert_eq!(words("Works in  Finance."), words("works in finance"));
        assert_ne!(words("works in finance"), words("works in sales"));
        assert_eq!(words(" ... "), "");
    }

    #[test]
    fn the_facts_sharing_most_words_with_the_question_are_picked() {
        let facts = [
            fact("Has two children"),
            fact("Works in the finance team"),
            fact("Prefers answers in Spanish"),
            fact("Travels to Lisbon every month"),
        ];
        assert_eq!(relevant(&facts, "anything", 4).len(), 4, "few: all of them");
        let picked: Vec<&str> =
            relevant(&facts, "Which finance team approves travel to Lisbon?", 2)
                .iter()
                .map(|f| f.text.as_str())
                .collect();
        assert_eq!(
            picked,
            ["Works in the finance team", "Travels to Lisbon every month"]
        );
        // Nothing shared: the newest.
        let picked = relevant(&facts, "hello", 1);
        assert_eq!(picked[0].text, "Travels to Lisbon every month");
    }
}
