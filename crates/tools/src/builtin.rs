//! Steward's own tools, served in process through the same [`Toolbox`]
//! interface as any other server: one server per integration of the
//! catalogue, named by its slug.
//!
//! `lead-capture` and `contact-owner` are served; `pricing-calculator` is
//! listed in the catalogue but offers no tool yet.
//!
//! [`Toolbox`]: crate::Toolbox

use std::sync::Arc;

use serde_json::{Map, Value, json};
use steward_domain::Email;
use steward_store::{NewLead, Store, StoreError};

use crate::{CallContext, Tool, ToolError};

pub const LEAD_CAPTURE: &str = "lead-capture";
pub const CONTACT_OWNER: &str = "contact-owner";

/// The integrations of the catalogue, whose names Steward's own servers take.
pub const SERVERS: &[&str] = &["pricing-calculator", LEAD_CAPTURE, CONTACT_OWNER];

/// The tools of the integration `server`, if Steward serves it.
pub fn tools_of(server: &str) -> Vec<Tool> {
    match server {
        LEAD_CAPTURE => vec![Tool {
            server: LEAD_CAPTURE.into(),
            name: "record".into(),
            description: "Records a sales lead for the organization: someone interested in what it offers who gave their name and an email address or phone number to be reached at. Call it once the person has agreed to be contacted.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "description": "The person's name.", "maxLength": 200 },
                    "email": { "type": "string", "description": "Their email address." },
                    "phone": { "type": "string", "description": "Their phone number, with country code." },
                    "company": { "type": "string", "description": "Their company, if they said.", "maxLength": 200 },
                    "note": { "type": "string", "description": "What they are interested in, in a sentence or two.", "maxLength": 2000 }
                },
                "required": ["name"],
                "additionalProperties": false
            }),
        }],
        CONTACT_OWNER => vec![Tool {
            server: CONTACT_OWNER.into(),
            name: "hand_off".into(),
            description: "Hands the conversation to a person of the organization, when the person asks for one or the assistant cannot help. After it the assistant stays quiet in this conversation until a person of the organization gives it back; say so in the answer.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "reason": { "type": "string", "description": "Why a person is needed, in a sentence.", "maxLength": 500 }
                },
                "additionalProperties": false
            }),
        }],
        _ => Vec::new(),
    }
}

/// Calls one of Steward's own tools.
pub async fn call(
    store: &Arc<dyn Store>,
    context: &CallContext,
    tool: &Tool,
    input: &Map<String, Value>,
) -> Result<String, ToolError> {
    match (tool.server.as_str(), tool.name.as_str()) {
        (LEAD_CAPTURE, "record") => record_lead(store, context, input).await,
        (CONTACT_OWNER, "hand_off") => hand_off(store, context).await,
        _ => Err(ToolError(format!(
            "{} is not a tool Steward serves",
            tool.full_name()
        ))),
    }
}

/// `lead-capture.record`: one lead per call, however often the call is made.
async fn record_lead(
    store: &Arc<dyn Store>,
    context: &CallContext,
    input: &Map<String, Value>,
) -> Result<String, ToolError> {
    let lead = lead_from(context, input)?;
    match store.record_lead(&context.scope, &lead).await {
        Ok(recorded) => Ok(json!({ "recorded": true, "lead_id": recorded.id }).to_string()),
        Err(StoreError::NotFound) => Err(ToolError("the conversation is gone".into())),
        Err(error) => {
            tracing::warn!(%error, "recording a lead failed");
            Err(ToolError("the lead could not be recorded just now".into()))
        }
    }
}

/// `contact-owner.hand_off`: the conversation is a person's from now on (a
/// second call changes nothing). Telling the owner (mail, Slack) is not built.
async fn hand_off(store: &Arc<dyn Store>, context: &CallContext) -> Result<String, ToolError> {
    match store.hand_off(&context.scope, context.conversation).await {
        Ok(()) => Ok(json!({ "handed_off": true }).to_string()),
        Err(StoreError::NotFound) => Err(ToolError("the conversation is gone".into())),
        Err(error) => {
            tracing::warn!(%error, "handing a conversation off failed");
            Err(ToolError(
                "the conversation could not be handed off just now".into(),
            ))
        }
    }
}

/// The lead an input describes, checked field by field.
fn lead_from(context: &CallContext, input: &Map<String, Value>) -> Result<NewLead, ToolError> {
    let refused = |why: String| ToolError(why);
    if let Some(field) = input
        .keys()
        .find(|k| !["name", "email", "phone", "company", "note"].contains(&k.as_str()))
    {
        return Err(refused(format!("unknown field {field}")));
    }
    let text = |field: &str, max: usize| -> Result<Option<String>, ToolError> {
        match input.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.chars().count() > max || text.chars().any(char::is_control) {
                    return Err(refused(format!(
                        "{field} must be at most {max} characters, without control characters"
                    )));
                }
                Ok((!text.is_empty()).then(|| text.to_owned()))
            }
            Some(_) => Err(refused(format!("{field} must be a string"))),
        }
    };
    let name = text("name", 200)?.ok_or_else(|| refused("name is required".into()))?;
    let email = text("email", 254)?
        .map(|email| Email::parse("email", &email).map(|e| e.as_str().to_owned()))
        .transpose()
        .map_err(|e| refused(e.to_string()))?;
    let phone = text("phone", 40)?;
    let phone_chars = |c: char| c.is_ascii_digit() || " +-().".contains(c);
    if phone
        .as_deref()
        .is_some_and(|p| p.len() < 3 || !p.chars().all(phone_chars))
    {
        return Err(refused(
            "phone must be a phone number: digits, spaces and + - ( ) .".into(),
        ));
    }
    if email.is_none() && phone.is_none() {
        return Err(refused(
            "a lead needs an email address or a phone number to be reached at".into(),
        ));
    }
    Ok(NewLead {
        tool_call_id: context.key,
        chatbot_id: context.chatbot,
        conversation_id: context.conversation,
        name,
        email,
        phone,
        company: text("company", 200)?,
        note: text("note", 2000)?,
    })
}

#[cfg(test)]
mod tests {
    use steward_domain::{ChatbotId, ConversationId, OrgId, ToolCallId};
    use steward_store::TenantScope;

    use super::*;

    fn context() -> CallContext {
        CallContext {
            scope: TenantScope::for_job(OrgId::new()),
            chatbot: ChatbotId::new(),
            conversation: ConversationId::new(),
            key: ToolCallId::new(),
        }
    }

    fn lead(input: Value) -> Result<NewLead, ToolError> {
        lead_from(&context(), input.as_object().unwrap())
    }

    #[test]
    fn a_lead_needs_a_name_and_a_way_to_reach_them() {
        let ok =
            lead(json!({ "name": " Ada ", "email": "Ada@Example.org", "note": "wants a demo" }))
                .unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.note.as_deref()),
            ("Ada", Some("wants a demo"))
        );
        assert!(lead(json!({ "name": "Ada", "phone": "+44 20 7946 0958" })).is_ok());
        let refused = |input: Value, expected: &str| {
            let error = lead(input).unwrap_err().0;
            assert!(error.contains(expected), "{error}");
        };
        refused(json!({ "email": "a@example.org" }), "name is required");
        refused(json!({ "name": "Ada" }), "email address or a phone number");
        refused(json!({ "name": "Ada", "email": "nope" }), "email");
        refused(json!({ "name": "Ada", "phone": "call me maybe" }), "phone");
        refused(
            json!({ "name": "x".repeat(201), "phone": "123" }),
            "at most 200",
        );
        refused(json!({ "name": "Ada\u{0}", "phone": "123" }), "control");
        refused(json!({ "name": 7, "phone": "123" }), "must be a string");
        refused(
            json!({ "name": "Ada", "phone": "123", "admin": true }),
            "unknown field admin",
        );
    }
}
