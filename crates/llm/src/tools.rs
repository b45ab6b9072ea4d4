//! Tool calling, in terms both provider formats share: the tools a model is
//! offered, the calls it makes, their results, and the steps of a reply that
//! called tools, sent back with the next request.

use serde_json::{Map, Value};

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    /// Letters, digits, `_` and `-` (what both providers accept).
    pub name: String,
    pub description: String,
    /// The JSON Schema of the tool's input, an object.
    pub input_schema: Value,
}

/// A call the model asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The provider's id for the call; its result names it.
    pub id: String,
    pub name: String,
    /// The input, a JSON object; or, when the model wrote something else,
    /// what it wrote.
    pub input: Result<Map<String, Value>, String>,
}

impl ToolCall {
    /// A call whose input arrives as JSON text (streamed, or as OpenAI sends it).
    pub fn from_json_text(id: String, name: String, text: &str) -> Self {
        let input = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(input)) => Ok(input),
            // Tools without parameters may get no input at all.
            _ if text.trim().is_empty() => Ok(Map::new()),
            _ => Err(text.to_owned()),
        };
        Self { id, name, input }
    }

    /// The input as JSON text, as the model wrote it.
    pub fn input_text(&self) -> String {
        match &self.input {
            Ok(input) => Value::Object(input.clone()).to_string(),
            Err(text) => text.clone(),
        }
    }
}

/// What a call gave back, for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    pub content: String,
    /// The call failed: `content` says why.
    pub is_error: bool,
}

/// One step of a reply that called tools: what the model wrote, the calls it
/// made, and their results, in the order of the calls.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolStep {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub results: Vec<ToolResult>,
}

/// Tool calls as a stream brings them, piece by piece, each by its index
/// (Anthropic's content block, OpenAI's `tool_calls[].index`).
#[derive(Default)]
pub(crate) struct PartialCalls {
    calls: Vec<(u64, String, String, String)>,
}

impl PartialCalls {
    /// The call at `index`, started when it first appears.
    fn at(&mut self, index: u64) -> &mut (u64, String, String, String) {
        let position = match self.calls.iter().position(|c| c.0 == index) {
            Some(position) => position,
            None => {
                self.calls
                    .push((index, String::new(), String::new(), String::new()));
                self.calls.len() - 1
            }
        };
        &mut self.calls[position]
    }

    /// Adds what a piece says of the call at `index`.
    pub(crate) fn add(&mut self, index: u64, id: Option<&str>, name: Option<&str>, input: &str) {
        let call = self.at(index);
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            call.1 = id.to_owned();
        }
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            call.2.push_str(name);
        }
        call.3.push_str(input);
    }

    pub(crate) fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .map(|(_, id, name, input)| ToolCall::from_json_text(id, name, &input))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inputs_that_are_not_objects_are_kept_as_written() {
        let call = |text| ToolCall::from_json_text("c".into(), "t".into(), text).input;
        assert_eq!(
            call(r#"{"a":1}"#),
            Ok(json!({"a": 1}).as_object().unwrap().clone())
        );
        assert_eq!(call(""), Ok(Map::new()));
        assert_eq!(call(r#"{"a":"#), Err(r#"{"a":"#.to_owned()));
        assert_eq!(call("[1]"), Err("[1]".to_owned()));
    }

    #[test]
    fn streamed_pieces_are_joined_by_index() {
        let mut calls = PartialCalls::default();
        calls.add(1, Some("call_a"), Some("quote"), "");
        calls.add(2, Some("call_b"), Some("lead"), "{\"na");
        calls.add(1, None, None, "{\"sku\":");
        calls.add(2, None, None, "me\":\"Ada\"}");
        calls.add(1, None, None, "\"A1\"}");
        let calls = calls.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_a", "quote")
        );
        assert_eq!(calls[0].input_text(), r#"{"sku":"A1"}"#);
        assert_eq!(calls[1].input_text(), r#"{"name":"Ada"}"#);
    }
}
