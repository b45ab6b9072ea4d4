//! Conversations in the console: the list with its filters, and one
//! conversation's thread, which follows new messages and replies live.

use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::chatbots::Chatbot;
use super::session::Console;
use super::view::{self, Layout, PagePath, Time, url_encode};

#[derive(Deserialize)]
struct ConversationList {
    conversations: Vec<Conversation>,
    next_before: Option<String>,
}

#[derive(Deserialize)]
struct Conversation {
    id: String,
    chatbot_id: String,
    channel: String,
    created_at: Time,
    handed_off: bool,
    messages: i64,
    last_message: Option<LastMessage>,
}

#[derive(Deserialize)]
struct LastMessage {
    role: String,
    text: String,
    created_at: Time,
}

/// The list's filters, as the form sends them (dates as `YYYY-MM-DD`).
#[derive(Deserialize, Default)]
pub struct Filters {
    chatbot_id: Option<String>,
    channel: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    before: Option<String>,
}

impl Filters {
    fn set(value: &Option<String>) -> Option<&str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }

    /// The API's query for these filters. A date is the whole day, in UTC.
    fn api_query(&self) -> String {
        let mut query = vec!["limit=50".to_owned()];
        let mut add =
            |key: &str, value: String| query.push(format!("{key}={}", url_encode(&value)));
        if let Some(v) = Self::set(&self.chatbot_id) {
            add("chatbot_id", v.to_owned());
        }
        if let Some(v) = Self::set(&self.channel) {
            add("channel", v.to_owned());
        }
        if let Some(v) = Self::set(&self.from) {
            add("from", format!("{v}T00:00:00Z"));
        }
        if let Some(day) = Self::set(&self.to).and_then(|v| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.succ_opt())
                .map(|d| d.format("%Y-%m-%d").to_string())
                .or(Some(v.to_owned()))
        }) {
            add("to", format!("{day}T00:00:00Z"));
        }
        if let Some(v) = Self::set(&self.q) {
            add("q", v.to_owned());
        }
        if let Some(v) = Self::set(&self.before) {
            add("before", v.to_owned());
        }
        query.join("&")
    }

    /// This page's filters with `before` for the next page.
    fn next_page(&self, before: &str) -> String {
        let mut query = Vec::new();
        for (key, value) in [
            ("chatbot_id", &self.chatbot_id),
            ("channel", &self.channel),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ] {
            if let Some(v) = Self::set(value) {
                query.push(format!("{key}={}", url_encode(v)));
            }
        }
        query.push(format!("before={}", url_encode(before)));
        format!("/conversations?{}", query.join("&"))
    }

    fn value(value: &Option<String>) -> String {
        Self::set(value).unwrap_or_default().to_owned()
    }
}

/// Channel kinds a conversation may come from.
const CHANNELS: [&str; 8] = [
    "api", "console", "web", "whatsapp", "slack", "telegram", "email", "generic",
];

#[derive(Template)]
#[template(path = "conversations.html")]
struct ListPage {
    layout: Layout,
    conversations: Vec<(Conversation, String)>,
    chatbots: Vec<Chatbot>,
    chatbot_id: String,
    channel: String,
    from: String,
    to: String,
    q: String,
    older: Option<String>,
    error: Option<String>,
}

pub async fn list(
    console: Console,
    query: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filters = query.map(|Query(f)| f).unwrap_or_default();
    let chatbots = match console
        .api
        .get::<super::chatbots::ChatbotList>("/chatbots?limit=200")
        .await
    {
        Ok(list) => list.chatbots,
        Err(failure) => return view::api_failure(failure),
    };
    let (conversations, older, error) = match console
        .api
        .get::<ConversationList>(&format!("/conversations?{}", filters.api_query()))
        .await
    {
        Ok(list) => (
            list.conversations,
            list.next_before.map(|b| filters.next_page(&b)),
            None,
        ),
        Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 403 => {
            (Vec::new(), None, Some(failure.message))
        }
        Err(failure) => return view::api_failure(failure),
    };
    let named = conversations
        .into_iter()
        .map(|c| {
            let name = chatbots
                .iter()
                .find(|b| b.id == c.chatbot_id)
                .map(|b| b.name.clone())
                .unwrap_or_default();
            (c, name)
        })
        .collect();
    view::render(&ListPage {
        layout: console.layout("Conversations", "conversations"),
        conversations: named,
        chatbot_id: Filters::value(&filters.chatbot_id),
        channel: Filters::value(&filters.channel),
        from: Filters::value(&filters.from),
        to: Filters::value(&filters.to),
        q: Filters::value(&filters.q),
        chatbots,
        older,
        error,
    })
}

#[derive(Deserialize)]
struct ConversationMessages {
    conversation: Conversation,
    messages: Vec<Message>,
    next_after: Option<String>,
}

#[derive(Deserialize)]
pub struct Message {
    id: String,
    role: String,
    text: String,
    channel: String,
    created_at: Time,
    #[serde(default)]
    sources: Option<Vec<Source>>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct Source {
    label: String,
    url: Option<String>,
    #[serde(default)]
    heading: String,
}

#[derive(Deserialize)]
struct ToolCall {
    server: String,
    tool: String,
    status: String,
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    input: Value,
}

impl ToolCall {
    fn input_text(&self) -> String {
        if self.input.is_null() {
            String::new()
        } else {
            self.input.to_string()
        }
    }
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ThreadPage {
    layout: Layout,
    conversation: Conversation,
    chatbot: String,
    messages: Vec<Message>,
    /// The next page, when this is not the last.
    later: Option<String>,
    /// The last message shown, from which the page follows live (last page only).
    follow_after: Option<String>,
}

#[derive(Deserialize)]
pub struct ThreadQuery {
    after: Option<String>,
}

/// One conversation: its messages from the first, 200 a page, with each
/// reply's sources and tool calls; the last page follows it live.
pub async fn show(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Query(query): Query<ThreadQuery>,
) -> Response {
    let mut path = format!("/conversations/{id}/messages?limit=200");
    if let Some(after) = query.after.as_deref().filter(|a| !a.is_empty()) {
        path.push_str(&format!("&after={}", url_encode(after)));
    }
    let page = match console.api.get::<ConversationMessages>(&path).await {
        Ok(page) => page,
        Err(failure) if failure.status.as_u16() == 409 || failure.status.as_u16() == 400 => {
            return view::not_found();
        }
        Err(failure) => return view::api_failure(failure),
    };
    let chatbot = match console
        .api
        .get::<Chatbot>(&format!("/chatbots/{}", page.conversation.chatbot_id))
        .await
    {
        Ok(chatbot) => chatbot.name,
        Err(failure) => return view::api_failure(failure),
    };
    let later = page
        .next_after
        .as_ref()
        .map(|after| format!("/conversations/{id}?after={}", url_encode(after)));
    let follow_after = match &later {
        Some(_) => None,
        None => page.messages.last().map(|m| m.id.clone()).or(query.after),
    };
    view::render(&ThreadPage {
        layout: console.layout(format!("Conversation with {chatbot}"), "conversations"),
        conversation: page.conversation,
        chatbot,
        messages: page.messages,
        later,
        follow_after,
    })
}
