//! Steward's own tools, served in process through the same [`Toolbox`]
//! interface as any other server: one server per integration of the
//! catalogue, named by its slug.
//!
//! [`Toolbox`]: crate::Toolbox

pub mod notify;
pub mod pricing;

use std::sync::Arc;

use serde_json::{Map, Value, json};
use steward_domain::Email;
use steward_store::{NewLead, Store, StoreError, TenantScope};

use crate::{CallContext, Tool, ToolError};

pub const PRICING_CALCULATOR: &str = "pricing-calculator";
pub const LEAD_CAPTURE: &str = "lead-capture";
pub const CONTACT_OWNER: &str = "contact-owner";

/// The integrations of the catalogue, whose names Steward's own servers take.
pub const SERVERS: &[&str] = &[PRICING_CALCULATOR, LEAD_CAPTURE, CONTACT_OWNER];

/// What an integration's settings ask of the rest of Steward, for the API
/// to check against the organization and the operator's configuration.
#[derive(Debug, Default)]
pub struct Needs {
    /// The operator's mail server, to mail someone.
    pub mail: bool,
    /// One of the organization's Slack channels, to post through it.
    pub slack_channel: Option<steward_domain::ChannelId>,
}

/// Checks the settings an admin gives integration `server` when enabling it:
/// the calculator's are its price list; lead capture's and contact-owner's
/// say who is told ([`notify::Notify`]).
pub fn check_settings(server: &str, settings: &Value) -> Result<Needs, String> {
    match server {
        PRICING_CALCULATOR => pricing::PriceList::parse(settings).map(|_| Needs::default()),
        LEAD_CAPTURE | CONTACT_OWNER => {
            let notify = notify::Notify::parse(settings)?;
            Ok(Needs {
                mail: notify.mail_to.is_some(),
                slack_channel: notify.slack.map(|slack| slack.channel_id),
            })
        }
        _ => Err(format!("Steward does not serve {server}")),
    }
}

/// The tools of the integration `server`, if Steward serves it.
pub fn tools_of(server: &str) -> Vec<Tool> {
    match server {
        PRICING_CALCULATOR => vec![
            Tool {
                server: PRICING_CALCULATOR.into(),
                name: "price_list".into(),
                description: "Lists what the organization sells: each item's sku, name, unit price, unit, minimum quantity and volume discounts, in the price list's currency, with its tax.".into(),
                input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            },
            Tool {
                server: PRICING_CALCULATOR.into(),
                name: "quote".into(),
                description: "Quotes a price from the organization's price list: each line's unit price, volume discount and amount, the subtotal, tax and total. Give the prices exactly as quoted; never compute them yourself.".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "lines": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": pricing::MAX_LINES,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "sku": { "type": "string", "description": "The item's sku, from price_list." },
                                    "quantity": { "type": "integer", "minimum": 1, "maximum": pricing::MAX_QUANTITY }
                                },
                                "required": ["sku", "quantity"],
                                "additionalProperties": false
                            }
                        }
                    },
                    "required": ["lines"],
                    "additionalProperties": false
                }),
            },
        ],
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

/// Calls one of Steward's own tools; the jobs that tell someone of its effect
/// get `attempts` tries.
pub async fn call(
    store: &Arc<dyn Store>,
    context: &CallContext,
    tool: &Tool,
    input: &Map<String, Value>,
    attempts: i32,
) -> Result<String, ToolError> {
    match (tool.server.as_str(), tool.name.as_str()) {
        (PRICING_CALCULATOR, name) => call_pricing(store, &context.scope, name, input).await,
        (LEAD_CAPTURE, "record") => record_lead(store, context, input, attempts).await,
        (CONTACT_OWNER, "hand_off") => hand_off(store, context, input, attempts).await,
        _ => Err(ToolError(format!(
            "{} is not a tool Steward serves",
            tool.full_name()
        ))),
    }
}

/// Calls one of `pricing-calculator`'s tools, which act in no conversation.
pub async fn call_pricing(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
    name: &str,
    input: &Map<String, Value>,
) -> Result<String, ToolError> {
    let list = price_list(store, scope).await?;
    match name {
        "price_list" => Ok(list.describe().to_string()),
        "quote" => Ok(list.quote(input)?.to_string()),
        _ => Err(ToolError(format!(
            "{PRICING_CALCULATOR}.{name} is not a tool Steward serves"
        ))),
    }
}

/// The settings of integration `server`, when the organization enabled it.
async fn settings_of(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
    server: &str,
) -> Result<Option<Value>, ToolError> {
    let integrations = store.integrations(scope).await.map_err(|error| {
        tracing::warn!(%error, "reading an integration's settings failed");
        ToolError(format!("{server}'s settings could not be read just now"))
    })?;
    Ok(integrations
        .into_iter()
        .find(|i| i.enabled && i.integration.id == server)
        .map(|i| i.config.unwrap_or_default()))
}

/// The organization's price list, as its admin last set it.
async fn price_list(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
) -> Result<pricing::PriceList, ToolError> {
    let settings = settings_of(store, scope, PRICING_CALCULATOR)
        .await?
        .ok_or_else(|| ToolError("the pricing calculator is not enabled".into()))?;
    // Checked when it was set; a list stored before the check is said so.
    pricing::PriceList::parse(&settings).map_err(|why| {
        ToolError(format!(
            "the price list needs to be set again by an admin ({why})"
        ))
    })
}

/// Who integration `server` tells of what it did; no one when its settings
/// predate the check (they are logged).
async fn notify_of(
    store: &Arc<dyn Store>,
    scope: &TenantScope,
    server: &str,
) -> Result<notify::Notify, ToolError> {
    let settings = settings_of(store, scope, server).await?.unwrap_or_default();
    Ok(notify::Notify::parse(&settings).unwrap_or_else(|why| {
        tracing::warn!(server, %why, "an integration's settings cannot be read: no one is told");
        notify::Notify::default()
    }))
}

/// `lead-capture.record`: one lead per call, however often the call is made,
/// and whoever the settings name told of it once.
async fn record_lead(
    store: &Arc<dyn Store>,
    context: &CallContext,
    input: &Map<String, Value>,
    attempts: i32,
) -> Result<String, ToolError> {
    let lead = lead_from(context, input)?;
    let told = notify_of(store, &context.scope, LEAD_CAPTURE).await?.jobs(
        context.key,
        &format!("New lead: {}", lead.name),
        &lead_text(&lead),
        attempts,
    );
    match store.record_lead(&context.scope, &lead, &told).await {
        Ok(recorded) => Ok(json!({ "recorded": true, "lead_id": recorded.id }).to_string()),
        Err(StoreError::NotFound) => Err(ToolError("the conversation is gone".into())),
        Err(error) => {
            tracing::warn!(%error, "recording a lead failed");
            Err(ToolError("the lead could not be recorded just now".into()))
        }
    }
}

fn lead_text(lead: &NewLead) -> String {
    let field = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    format!(
        "The assistant recorded a lead.\n\nName: {}\nEmail: {}\nPhone: {}\nCompany: {}\nNote: {}\n\n\
         Conversation: {}\nEvery lead: GET /api/v1/leads (or /api/v1/leads/export.csv)\n",
        lead.name,
        field(&lead.email),
        field(&lead.phone),
        field(&lead.company),
        field(&lead.note),
        lead.conversation_id,
    )
}

/// `contact-owner.hand_off`: the conversation is a person's from now on, and
/// whoever the settings name is told once; a second call changes nothing.
async fn hand_off(
    store: &Arc<dyn Store>,
    context: &CallContext,
    input: &Map<String, Value>,
    attempts: i32,
) -> Result<String, ToolError> {
    if let Some(field) = input.keys().find(|k| *k != "reason") {
        return Err(ToolError(format!("unknown field {field}")));
    }
    let reason = match input.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(reason))
            if reason.chars().count() <= 500 && !reason.chars().any(char::is_control) =>
        {
            Some(reason.trim()).filter(|r| !r.is_empty())
        }
        Some(_) => {
            return Err(ToolError(
                "reason must be a sentence: at most 500 characters, without control characters"
                    .into(),
            ));
        }
    };
    let conversation = context.conversation;
    let text = format!(
        "The assistant handed a conversation to a person, and stays quiet in it until it is released.\n\n\
         Reason: {}\nConversation: {conversation}\n\
         Follow it: GET /api/v1/conversations/{conversation}/events\n\
         Give it back to the assistant: POST /api/v1/conversations/{conversation}/release\n",
        reason.unwrap_or("none given"),
    );
    let told = notify_of(store, &context.scope, CONTACT_OWNER).await?.jobs(
        context.key,
        "A conversation waits for a person",
        &text,
        attempts,
    );
    match store.hand_off(&context.scope, conversation, &told).await {
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
            person: None,
            reply: None,
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
