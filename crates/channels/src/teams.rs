//! Microsoft Teams, through the Bot Framework: Teams posts each Activity to
//! the channel's webhook with a bearer token the Bot Framework signed
//! (checked in full by [`auth`]), and a reply is posted to the
//! conversation's `serviceUrl` as an answer to the activity, with a token
//! the bot gets from its own tenant (client credentials), kept until it
//! expires.

pub mod auth;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Field, FieldRule, SecretText};
use crate::inbound::{self, Inbound, InboundMessage, Malformed};
use crate::send::{Part, SendError, Sender, call, retry};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The app registration's Application (client) ID: the bot's id, and
    /// the audience of the tokens Teams sends.
    pub app_id: String,
    /// A client secret of that app registration.
    pub app_password: SecretText,
    /// The Directory (tenant) ID the app is registered in: single-tenant.
    pub tenant_id: String,
    /// Said when the bot is added to a conversation; none: nothing is said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

pub(crate) const FIELDS: &[Field] = &[
    Field::setting("app_id", FieldRule::Token(64), true),
    Field::secret("app_password", FieldRule::Text),
    Field::setting("tenant_id", FieldRule::Token(64), true),
    Field::setting("greeting", FieldRule::Text, false),
];

/// Teams takes about 28 KB per message; replies are split well before.
pub(crate) const PART_LIMIT: usize = 4000;

/// Where a reply goes: the conversation, at the connector the activity came
/// from, as an answer to that activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub service_url: String,
    pub conversation_id: String,
    pub activity_id: String,
}

// --- The webhook ---

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activity {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    service_url: Option<String>,
    from: Option<Account>,
    recipient: Option<Account>,
    conversation: Option<Conversation>,
    text: Option<String>,
    #[serde(default)]
    entities: Vec<Entity>,
    /// Who joined the conversation (a `conversationUpdate`).
    #[serde(default)]
    members_added: Vec<Account>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    id: String,
    name: Option<String>,
    /// The person's Entra ID object id: the same in every chat.
    aad_object_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    id: String,
    /// `personal`, `groupChat` or `channel`.
    conversation_type: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    mentioned: Option<Account>,
    /// How the mention reads in the text: `<at>Steward</at>`.
    text: Option<String>,
}

/// `message` activities from people: every one in a personal chat; in a
/// group chat or a channel, those that @mention the bot, the mention taken
/// out of the text. One conversation per Teams conversation (a channel's
/// thread is one of its own). And the `conversationUpdate` that adds the
/// bot to a conversation, greeted when the channel has a greeting.
pub(crate) fn parse(c: &Config, body: &[u8]) -> Result<Inbound, Malformed> {
    let activity: Activity = inbound::json(body)?;
    if activity.kind == "conversationUpdate" {
        return Ok(added(c, activity));
    }
    if activity.kind != "message" {
        return Ok(Inbound::Ignored("not a message activity"));
    }
    let (Some(id), Some(service_url), Some(from), Some(recipient), Some(conversation)) = (
        activity.id,
        activity.service_url,
        activity.from,
        activity.recipient,
        activity.conversation,
    ) else {
        return Err(Malformed(
            "a message activity without its id, serviceUrl, from, recipient or conversation".into(),
        ));
    };
    if from.id == recipient.id {
        return Ok(Inbound::Ignored("the bot's own message"));
    }
    if conversation
        .tenant_id
        .as_deref()
        .is_some_and(|tenant| !tenant.eq_ignore_ascii_case(&c.tenant_id))
    {
        return Ok(Inbound::Ignored("a conversation of another tenant"));
    }
    let mut text = activity.text.unwrap_or_default();
    let mentions: Vec<&Entity> = activity
        .entities
        .iter()
        .filter(|e| e.kind == "mention")
        .filter(|e| e.mentioned.as_ref().is_some_and(|m| m.id == recipient.id))
        .collect();
    let personal = conversation
        .conversation_type
        .as_deref()
        .is_none_or(|t| t == "personal");
    if !personal && mentions.is_empty() {
        return Ok(Inbound::Ignored("not addressed to the bot"));
    }
    for mention in mentions {
        if let Some(said) = &mention.text {
            text = text.replace(said.as_str(), "");
        }
    }
    Ok(Inbound::Messages(vec![InboundMessage {
        external_id: id.clone(),
        conversation_key: conversation.id.clone(),
        sender: from.aad_object_id.unwrap_or(from.id),
        sender_name: from.name,
        forwarded: false,
        text: text.trim().to_owned(),
        route: inbound::Route::Teams(Route {
            service_url,
            conversation_id: conversation.id,
            activity_id: id,
        }),
    }]))
}

/// A greeting for the conversation the bot was just added to, if the
/// channel has one.
fn added(c: &Config, activity: Activity) -> Inbound {
    let (Some(text), Some(id), Some(service_url), Some(recipient), Some(conversation)) = (
        c.greeting.clone(),
        activity.id,
        activity.service_url,
        activity.recipient,
        activity.conversation,
    ) else {
        return Inbound::Ignored("a conversation update with nothing to greet");
    };
    if !activity.members_added.iter().any(|m| m.id == recipient.id) {
        return Inbound::Ignored("someone else joined the conversation");
    }
    Inbound::Greet {
        key: id.clone(),
        text,
        route: inbound::Route::Teams(Route {
            service_url,
            conversation_id: conversation.id,
            activity_id: id,
        }),
    }
}

// --- Sending ---

/// The scope of a token for the Bot Framework's connector.
const SCOPE: &str = "https://api.botframework.com/.default";

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Tokens for the connector, per app, until shortly before they expire.
#[derive(Clone, Default)]
pub(crate) struct Tokens(Arc<tokio::sync::Mutex<HashMap<App, Token>>>);

/// An app by its tenant, id and secret (a new secret, a new token).
type App = (String, String, String);

#[derive(Clone)]
struct Token {
    value: String,
    until: Instant,
}

impl Tokens {
    /// A token for `c`'s app: the one kept, or a new one from its tenant.
    pub(crate) async fn get(&self, sender: &Sender, c: &Config) -> Result<String, SendError> {
        let key = (
            c.tenant_id.clone(),
            c.app_id.clone(),
            c.app_password.expose().to_owned(),
        );
        // Held while asking, so that concurrent replies ask once.
        let mut kept = self.0.lock().await;
        if let Some(token) = kept.get(&key).filter(|t| Instant::now() < t.until) {
            return Ok(token.value.clone());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            sender.apis.teams_login.trim_end_matches('/'),
            c.tenant_id
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", c.app_id.as_str()),
            ("client_secret", c.app_password.expose()),
            ("scope", SCOPE),
        ];
        let answer = call(sender.client.post(url).form(&form))
            .await
            .map_err(|e| match e {
                SendError::Permanent(why) => {
                    SendError::Permanent(format!("the tenant refused the app's credentials: {why}"))
                }
                retry => retry,
            })?;
        let Some(value) = answer["access_token"].as_str() else {
            return Err(retry("the tenant's token answer had no access_token"));
        };
        let lasts = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(3600));
        let token = Token {
            value: value.to_owned(),
            until: Instant::now() + lasts.saturating_sub(RENEW_BEFORE),
        };
        kept.insert(key, token.clone());
        Ok(token.value)
    }

    /// Forgets `c`'s token: the connector refused it.
    async fn forget(&self, c: &Config) {
        let mut kept = self.0.lock().await;
        kept.retain(|(tenant, app, _), _| !(tenant == &c.tenant_id && app == &c.app_id));
    }
}

/// `POST {serviceUrl}/v3/conversations/{id}/activities/{activity}`: the
/// part as an answer to the activity; the connector's id for it.
pub(crate) async fn send(
    sender: &Sender,
    c: &Config,
    route: &Route,
    part: Part<'_>,
) -> Result<Option<String>, SendError> {
    let url = connector_url(route, Some(&route.activity_id))?;
    let body = json!({ "type": "message", "text": part.text, "replyToId": route.activity_id });
    let token = sender.teams.get(sender, c).await?;
    // The serviceUrl came in a signed token, but is still a destination
    // a message chose: through the outbound guard.
    let request = sender.guarded.post(url).bearer_auth(token).json(&body);
    match call(request).await {
        Ok(answer) => Ok(answer["id"].as_str().map(str::to_owned)),
        Err(SendError::Permanent(why)) if why.starts_with("HTTP 401") => {
            sender.teams.forget(c).await;
            Err(retry(format!("the connector refused the token: {why}")))
        }
        Err(e) => Err(e),
    }
}

/// `POST {serviceUrl}/v3/conversations/{id}/activities`: `text` said in
/// the conversation, answering nothing (a greeting); the connector's id.
pub(crate) async fn post(
    sender: &Sender,
    c: &Config,
    route: &Route,
    text: &str,
) -> Result<Option<String>, SendError> {
    let url = connector_url(route, None)?;
    let token = sender.teams.get(sender, c).await?;
    let request = sender.guarded.post(url).bearer_auth(token);
    let answer = call(request.json(&json!({ "type": "message", "text": text }))).await?;
    Ok(answer["id"].as_str().map(str::to_owned))
}

/// `POST {serviceUrl}/v3/conversations/{id}/activities`, a `typing`
/// activity: Teams shows the bot typing until the reply comes, or for a few
/// seconds.
pub(crate) async fn typing(sender: &Sender, c: &Config, route: &Route) -> Result<(), SendError> {
    let url = connector_url(route, None)?;
    let token = sender.teams.get(sender, c).await?;
    let request = sender.guarded.post(url).bearer_auth(token);
    call(request.json(&json!({ "type": "typing" })))
        .await
        .map(drop)
}

/// `{serviceUrl}/v3/conversations/{id}/activities[/{activity}]`, each
/// part of the path escaped (conversation ids hold `:`, `@` and `;`).
fn connector_url(route: &Route, activity: Option<&str>) -> Result<reqwest::Url, SendError> {
    let bad = || SendError::Permanent("the activity's serviceUrl is not an https URL".into());
    let mut url = reqwest::Url::parse(&route.service_url).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad());
    }
    {
        let mut path = url.path_segments_mut().map_err(|_| bad())?;
        path.pop_if_empty().extend([
            "v3",
            "conversations",
            route.conversation_id.as_str(),
            "activities",
        ]);
        if let Some(activity) = activity {
            path.push(activity);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            app_id: "11111111-2222-3333-4444-555555555555".into(),
            app_password: SecretText::from("app-secret"),
            tenant_id: "tenant-1".into(),
            greeting: None,
        }
    }

    fn activity(conversation_type: &str, text: &str, mentioned: Option<&str>) -> Vec<u8> {
        let entities: Vec<serde_json::Value> = mentioned
            .map(|id| {
                json!({ "type": "mention", "text": "<at>Steward</at>",
                        "mentioned": { "id": id, "name": "Steward" } })
            })
            .into_iter()
            .collect();
        json!({
            "type": "message", "id": "1712345678901", "channelId": "msteams",
            "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "from": { "id": "29:1abc", "name": "Ana", "aadObjectId": "aad-ana" },
            "recipient": { "id": "28:bot", "name": "Steward" },
            "conversation": { "id": "a:1xyz;messageid=1712", "conversationType": conversation_type,
                              "tenantId": "tenant-1" },
            "text": text, "entities": entities
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn personal_chats_are_answered_and_elsewhere_only_when_mentioned() {
        let Inbound::Messages(found) =
            parse(&config(), &activity("personal", "Hours?", None)).unwrap()
        else {
            panic!("a personal chat's message is taken");
        };
        assert_eq!(found[0].sender, "aad-ana");
        assert_eq!(found[0].external_id, "1712345678901");
        assert_eq!(found[0].conversation_key, "a:1xyz;messageid=1712");
        let in_channel = activity(
            "channel",
            "<at>Steward</at> what are the hours?",
            Some("28:bot"),
        );
        let Inbound::Messages(found) = parse(&config(), &in_channel).unwrap() else {
            panic!("a mention in a channel is taken");
        };
        assert_eq!(found[0].text, "what are the hours?");
        for ignored in [
            activity("channel", "talking among ourselves", None),
            activity("groupChat", "<at>Ana</at> hi", Some("29:other")),
        ] {
            assert!(matches!(
                parse(&config(), &ignored).unwrap(),
                Inbound::Ignored(_)
            ));
        }
        let mut other_tenant = config();
        other_tenant.tenant_id = "tenant-2".into();
        assert!(matches!(
            parse(&other_tenant, &activity("personal", "hi", None)).unwrap(),
            Inbound::Ignored("a conversation of another tenant")
        ));
        let typing = json!({ "type": "typing", "id": "1" }).to_string();
        assert!(matches!(
            parse(&config(), typing.as_bytes()).unwrap(),
            Inbound::Ignored(_)
        ));
        assert!(parse(&config(), br#"{"type": "message"}"#).is_err());
        assert!(parse(&config(), b"not json").is_err());
    }

    #[test]
    fn the_connector_url_escapes_the_conversation_id() {
        let route = Route {
            service_url: "https://smba.trafficmanager.net/emea/".into(),
            conversation_id: "a:1xyz;messageid=17/12".into(),
            activity_id: "17".into(),
        };
        assert_eq!(
            connector_url(&route, Some("17")).unwrap().as_str(),
            "https://smba.trafficmanager.net/emea/v3/conversations/a:1xyz;messageid=17%2F12/activities/17"
        );
        let bad = Route {
            service_url: "file:///etc".into(),
            ..route
        };
        assert!(connector_url(&bad, None).is_err());
    }
}
