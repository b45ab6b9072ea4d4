//! A chatbot's channels in the console: each one's health and the address
//! to paste into its provider, and a form per kind that says what to paste
//! where (the fields are the channels crate's own).

use askama::Template;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use steward_channels::{ChannelConfig, FieldRule};
use steward_domain::ChannelKind;

use super::chatbots::Chatbot;
use super::session::Console;
use super::view::{self, Layout, Notice, PagePath, Time};

#[derive(Deserialize)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

#[derive(Deserialize)]
pub struct Channel {
    pub id: String,
    pub chatbot_id: String,
    pub kind: String,
    pub name: String,
    pub webhook_url: Option<String>,
    pub chat_url: Option<String>,
    pub snippet: Option<String>,
    pub health: Health,
    pub created_at: Time,
}

#[derive(Deserialize)]
pub struct Health {
    pub status: String,
    pub recent_errors: i64,
    pub last_error: Option<String>,
    pub last_inbound_at: Option<Time>,
    pub last_outbound_at: Option<Time>,
}

/// One input of a kind's form.
struct Input {
    name: &'static str,
    /// `text`, `password`, `number`, `checkbox` or `lines`.
    control: &'static str,
    required: bool,
    hint: &'static str,
}

/// A kind's connect form.
struct KindForm {
    kind: &'static str,
    title: &'static str,
    about: &'static str,
    inputs: Vec<Input>,
}

fn title(kind: ChannelKind) -> (&'static str, &'static str) {
    match kind {
        ChannelKind::Web => (
            "Web chat",
            "A chat page Steward serves, and a bubble for your own site. List the sites that may show it.",
        ),
        ChannelKind::Whatsapp => (
            "WhatsApp",
            "Meta's WhatsApp Cloud API. Afterwards, paste the webhook URL and your verify token into App Dashboard → WhatsApp → Configuration.",
        ),
        ChannelKind::Slack => (
            "Slack",
            "A Slack app with the bot scopes chat:write, app_mentions:read and im:history. With a signing secret, paste the webhook URL into Event Subscriptions → Request URL afterwards; with Socket Mode (no public address needed), give the mode socket and an app-level token instead.",
        ),
        ChannelKind::Telegram => (
            "Telegram",
            "A bot made with @BotFather. Steward's webhook URL is then set with setWebhook and your secret token.",
        ),
        ChannelKind::Teams => (
            "Microsoft Teams",
            "An Azure Bot with the Teams channel, registered single-tenant in Microsoft Entra ID. Afterwards, paste the webhook URL into the bot's Configuration → Messaging endpoint.",
        ),
        ChannelKind::Email => (
            "Email",
            "A mailbox Steward reads over IMAP and answers from over SMTP.",
        ),
        ChannelKind::Generic => (
            "Generic webhook",
            "Any system that can POST JSON, signed with a shared secret; replies are POSTed back, signed alike.",
        ),
    }
}

/// What to paste into each field (see docs/channels.md).
fn hint(kind: ChannelKind, field: &str) -> &'static str {
    match (kind, field) {
        (ChannelKind::Web, "allowed_origins") => {
            "One per line, like https://www.example.org: the sites that may show the chat. None: only Steward's own chat page."
        }
        (ChannelKind::Web, "greeting") => "Shown to a visitor before they write.",
        (ChannelKind::Whatsapp, "phone_number_id") => {
            "App Dashboard → WhatsApp → API Setup → Phone number ID."
        }
        (ChannelKind::Whatsapp, "access_token") => {
            "A System User's permanent token with whatsapp_business_messaging."
        }
        (ChannelKind::Whatsapp, "app_secret") => {
            "App Dashboard → App settings → Basic → App secret."
        }
        (ChannelKind::Whatsapp, "verify_token") => {
            "Any string you choose; paste the same into Meta's webhook settings."
        }
        (ChannelKind::Slack, "bot_token") => "OAuth & Permissions → Bot User OAuth Token (xoxb-…).",
        (ChannelKind::Slack, "signing_secret") => {
            "Basic Information → App Credentials → Signing Secret. Not needed in Socket Mode."
        }
        (ChannelKind::Slack, "mode") => {
            "events (the default: Slack posts to Steward's webhook URL) or socket (Steward connects to Slack)."
        }
        (ChannelKind::Slack, "app_token") => {
            "Socket Mode only: Basic Information → App-Level Tokens, with connections:write (xapp-…)."
        }
        (ChannelKind::Telegram, "bot_token") => "The token @BotFather gave you.",
        (ChannelKind::Telegram, "secret_token") => {
            "Letters, digits, _ and - you choose; Telegram sends it with every update."
        }
        (ChannelKind::Teams, "app_id") => {
            "The app registration's Application (client) ID, also the bot's Microsoft App ID."
        }
        (ChannelKind::Teams, "app_password") => {
            "A client secret: the app registration's Certificates & secrets → New client secret (its Value)."
        }
        (ChannelKind::Teams, "tenant_id") => "The app registration's Directory (tenant) ID.",
        (ChannelKind::Teams, "greeting") => {
            "Said when the bot is added to a chat or a team; empty: nothing is said."
        }
        (ChannelKind::Email, "tls") => {
            "Encrypted connections (leave on unless the server is this machine)."
        }
        (ChannelKind::Email, "folder") => "The folder read; INBOX when empty.",
        (ChannelKind::Generic, "signing_secret") => "A secret you share with the sending system.",
        (ChannelKind::Generic, "reply_url") => "Where Steward POSTs each reply (https).",
        _ => "",
    }
}

fn forms() -> Vec<KindForm> {
    // The web chat first: it needs nothing from anyone else.
    let mut kinds = ChannelKind::ALL.to_vec();
    kinds.sort_by_key(|k| *k != ChannelKind::Web);
    kinds
        .into_iter()
        .map(|kind| {
            let (title, about) = title(kind);
            KindForm {
                kind: kind.as_str(),
                title,
                about,
                inputs: ChannelConfig::fields(kind)
                    .iter()
                    .map(|field| Input {
                        name: field.name,
                        control: match field.rule {
                            _ if field.sealed => "password",
                            FieldRule::Port => "number",
                            FieldRule::TlsOn => "checkbox",
                            FieldRule::Origins => "lines",
                            _ => "text",
                        },
                        required: field.required,
                        hint: hint(kind, field.name),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    layout: Layout,
    chatbot: Chatbot,
    channels: Vec<Channel>,
    forms: Vec<KindForm>,
    notice: Option<Notice>,
    public_url_missing: bool,
}

async fn channels_page(
    console: &Console,
    id: uuid::Uuid,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let (bot_path, list_path) = (
        format!("/chatbots/{id}"),
        format!("/chatbots/{id}/channels"),
    );
    let (chatbot, list) = futures::join!(
        console.api.get::<Chatbot>(&bot_path),
        console.api.get::<ChannelList>(&list_path)
    );
    let (chatbot, list) = match (chatbot, list) {
        (Ok(chatbot), Ok(list)) => (chatbot, list),
        (Err(failure), _) | (_, Err(failure)) => return view::api_failure(failure),
    };
    view::render_with(
        status,
        &ChannelsPage {
            layout: console.layout(format!("Channels · {}", chatbot.name), "chatbots"),
            chatbot,
            channels: list.channels,
            forms: forms(),
            notice,
            public_url_missing: console.state.config.http.public_url.is_none(),
        },
    )
}

pub async fn list(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    channels_page(&console, id, StatusCode::OK, None).await
}

/// The API's body for a kind's form: each field as its rule reads it;
/// empty optional fields left out, so the kind's defaults apply.
fn body(kind: ChannelKind, form: &[(String, String)]) -> Value {
    let value = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.as_str())
    };
    let mut config = Map::new();
    for field in ChannelConfig::fields(kind) {
        let raw = value(&format!("config.{}", field.name));
        let entry = match (field.rule, raw) {
            (FieldRule::TlsOn, Some(_)) => Some(json!(true)),
            (FieldRule::TlsOn, None) => None,
            (FieldRule::Origins, Some(lines)) => Some(json!(
                lines
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
            )),
            (_, Some(text)) if text.trim().is_empty() && !field.required => None,
            (FieldRule::Port, Some(text)) => Some(
                text.trim()
                    .parse::<u64>()
                    .map_or_else(|_| json!(text), |n| json!(n)),
            ),
            (_, Some(text)) => Some(json!(text.trim())),
            (_, None) => None,
        };
        if let Some(entry) = entry {
            config.insert(field.name.to_owned(), entry);
        }
    }
    json!({
        "kind": kind.as_str(),
        "name": value("name").unwrap_or_default().trim(),
        "config": config,
    })
}

pub async fn connect(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let kind = form
        .iter()
        .find(|(key, _)| key == "kind")
        .and_then(|(_, kind)| kind.parse::<ChannelKind>().ok());
    let Some(kind) = kind else {
        let notice = Notice {
            error: true,
            text: "Choose a kind of channel.".into(),
            secret: None,
        };
        return channels_page(&console, id, StatusCode::UNPROCESSABLE_ENTITY, Some(notice)).await;
    };
    let path = format!("/chatbots/{id}/channels");
    match console.api.post::<Value>(&path, &body(kind, &form)).await {
        Ok(_) => Redirect::to(&path).into_response(),
        Err(failure) => view::refused(failure, |s, n| channels_page(&console, id, s, n)).await,
    }
}

pub async fn remove(
    console: Console,
    PagePath((id, channel_id)): PagePath<(uuid::Uuid, uuid::Uuid)>,
) -> Response {
    match console
        .api
        .delete(&format!("/chatbots/{id}/channels/{channel_id}"))
        .await
    {
        Ok(()) => Redirect::to(&format!("/chatbots/{id}/channels")).into_response(),
        Err(failure) => view::api_failure(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forms_fields_become_the_kinds_configuration() {
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let web = body(
            ChannelKind::Web,
            &form(&[
                ("name", " Site "),
                (
                    "config.allowed_origins",
                    "https://a.example\r\n\r\n https://b.example ",
                ),
                ("config.greeting", ""),
            ]),
        );
        assert_eq!(
            web,
            json!({"kind": "web", "name": "Site", "config": {"allowed_origins": ["https://a.example", "https://b.example"]}})
        );
        let email = body(
            ChannelKind::Email,
            &form(&[
                ("config.imap_port", "993"),
                ("config.smtp_port", "x"),
                ("config.tls", "on"),
            ]),
        );
        assert_eq!(email["config"]["imap_port"], 993);
        assert_eq!(
            email["config"]["smtp_port"], "x",
            "the API says what is wrong"
        );
        assert_eq!(email["config"]["tls"], true);
    }
}
