//! Chatbots in the console: the list, each one's settings beside a "try it"
//! chat, and its knowledge.

use askama::Template;
use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::Console;
use super::view::{self, Layout, Notice, PagePath, Time, url_encode};

#[derive(Deserialize)]
pub struct Chatbot {
    pub id: String,
    pub name: String,
    pub system_prompt: Option<String>,
    pub temperature: f64,
    pub model: Option<String>,
    pub status: String,
    pub tools: Vec<String>,
}

impl Chatbot {
    pub fn is_paused(&self) -> bool {
        self.status == "paused"
    }
}

#[derive(Deserialize)]
pub struct ChatbotList {
    pub chatbots: Vec<Chatbot>,
    pub total: u64,
}

#[derive(Template)]
#[template(path = "chatbots.html")]
struct ListPage {
    layout: Layout,
    chatbots: Vec<Chatbot>,
    notice: Option<Notice>,
    /// What was typed into the form that failed.
    name: String,
    system_prompt: String,
}

async fn list_page(
    console: &Console,
    status: StatusCode,
    notice: Option<Notice>,
    typed: Option<&ChatbotForm>,
) -> Response {
    match console.api.get::<ChatbotList>("/chatbots?limit=200").await {
        Ok(list) => view::render_with(
            status,
            &ListPage {
                layout: console.layout("Chatbots", "chatbots"),
                chatbots: list.chatbots,
                notice,
                name: typed.and_then(|t| t.name.clone()).unwrap_or_default(),
                system_prompt: typed
                    .and_then(|t| t.system_prompt.clone())
                    .unwrap_or_default(),
            },
        ),
        Err(failure) => view::api_failure(failure),
    }
}

pub async fn list(console: Console) -> Response {
    list_page(&console, StatusCode::OK, None, None).await
}

/// The settings form, for a new chatbot and an existing one. Every field is
/// optional here: what is absent is not changed.
#[derive(Deserialize)]
pub struct ChatbotForm {
    name: Option<String>,
    system_prompt: Option<String>,
    temperature: Option<String>,
    model: Option<String>,
    status: Option<String>,
}

impl ChatbotForm {
    /// The API's body. A temperature that is not a number is sent as text,
    /// so that the API refuses it with its own message.
    fn body(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(name) = &self.name {
            body.insert("name".into(), json!(name.trim()));
        }
        if let Some(prompt) = &self.system_prompt {
            // Browsers send line breaks in a textarea as CRLF.
            body.insert("system_prompt".into(), json!(prompt.replace("\r\n", "\n")));
        }
        if let Some(temperature) = &self.temperature {
            let temperature = temperature.trim();
            body.insert(
                "temperature".into(),
                temperature
                    .parse::<f64>()
                    .map_or_else(|_| json!(temperature), |t| json!(t)),
            );
        }
        if let Some(model) = &self.model {
            let model = model.trim();
            body.insert(
                "model".into(),
                if model.is_empty() {
                    Value::Null
                } else {
                    json!(model)
                },
            );
        }
        if let Some(status) = &self.status {
            body.insert("status".into(), json!(status));
        }
        Value::Object(body)
    }
}

pub async fn create(console: Console, Form(form): Form<ChatbotForm>) -> Response {
    match console.api.post::<Chatbot>("/chatbots", &form.body()).await {
        Ok(chatbot) => Redirect::to(&format!("/chatbots/{}", chatbot.id)).into_response(),
        Err(failure) => view::refused(failure, |s, n| list_page(&console, s, n, Some(&form))).await,
    }
}

#[derive(Template)]
#[template(path = "chatbot.html")]
struct ChatbotPage {
    layout: Layout,
    chatbot: Chatbot,
    /// Every tool it may be given (owners and admins choose).
    tools: Vec<super::tools::Tool>,
    notice: Option<Notice>,
}

impl ChatbotPage {
    fn has(&self, tool: &str) -> bool {
        self.chatbot.tools.iter().any(|t| t == tool)
    }
}

async fn chatbot_page(
    console: &Console,
    id: uuid::Uuid,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let chatbot = match console.api.get::<Chatbot>(&format!("/chatbots/{id}")).await {
        Ok(chatbot) => chatbot,
        Err(failure) => return view::api_failure(failure),
    };
    let tools = if console.is_admin() {
        match console.api.get::<super::tools::ToolList>("/tools").await {
            Ok(list) => list.tools,
            Err(failure) => return view::api_failure(failure),
        }
    } else {
        Vec::new()
    };
    view::render_with(
        status,
        &ChatbotPage {
            layout: console.layout(chatbot.name.clone(), "chatbots"),
            chatbot,
            tools,
            notice,
        },
    )
}

/// A chatbot's settings, and a chat with it beside them.
pub async fn show(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    chatbot_page(&console, id, StatusCode::OK, None).await
}

pub async fn update(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<ChatbotForm>,
) -> Response {
    match console
        .api
        .patch::<Chatbot>(&format!("/chatbots/{id}"), &form.body())
        .await
    {
        Ok(_) => Redirect::to(&format!("/chatbots/{id}")).into_response(),
        Err(failure) => view::refused(failure, |s, n| chatbot_page(&console, id, s, n)).await,
    }
}

/// The tools the chatbot may call: the form's checked boxes.
pub async fn choose_tools(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let tools: Vec<&str> = form
        .iter()
        .filter(|(key, _)| key == "tools")
        .map(|(_, tool)| tool.as_str())
        .collect();
    match console
        .api
        .patch::<Chatbot>(&format!("/chatbots/{id}"), &json!({ "tools": tools }))
        .await
    {
        Ok(_) => Redirect::to(&format!("/chatbots/{id}")).into_response(),
        Err(failure) => view::refused(failure, |s, n| chatbot_page(&console, id, s, n)).await,
    }
}

pub async fn delete(console: Console, PagePath(id): PagePath<uuid::Uuid>) -> Response {
    match console.api.delete(&format!("/chatbots/{id}")).await {
        Ok(()) => Redirect::to("/chatbots").into_response(),
        Err(failure) => view::api_failure(failure),
    }
}

#[derive(Deserialize)]
pub(super) struct DocumentList {
    pub documents: Vec<Document>,
    crawls: Vec<Crawl>,
    retrieval: String,
}

#[derive(Deserialize)]
pub(super) struct Document {
    pub id: String,
    pub source: String,
    pub label: String,
    pub url: Option<String>,
    pub bytes: i64,
    pub status: String,
    pub error: Option<String>,
}

impl Document {
    /// Still being read or indexed: a page showing it refreshes itself.
    pub fn is_working(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "processing")
    }
}

#[derive(Deserialize)]
struct Crawl {
    url: String,
    max_pages: i32,
    status: String,
    pages_done: i32,
    pages_failed: i32,
    note: Option<String>,
    created_at: Time,
}

impl Crawl {
    fn is_running(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "running")
    }
}

#[derive(Deserialize)]
struct SearchResults {
    passages: Vec<Passage>,
}

#[derive(Deserialize)]
struct Passage {
    label: String,
    heading: String,
    text: String,
}

#[derive(Template)]
#[template(path = "knowledge.html")]
struct KnowledgePage {
    layout: Layout,
    chatbot: Chatbot,
    documents: Vec<Document>,
    crawls: Vec<Crawl>,
    retrieval: String,
    notice: Option<Notice>,
    query: String,
    passages: Option<Vec<Passage>>,
    /// Documents or crawls are still being worked on: the page refreshes itself.
    working: bool,
    upload_limit_mb: u64,
}

#[derive(Deserialize)]
pub struct KnowledgeQuery {
    q: Option<String>,
}

async fn knowledge_page(
    console: &Console,
    id: uuid::Uuid,
    status: StatusCode,
    notice: Option<Notice>,
    query: Option<String>,
) -> Response {
    let (chatbot_path, list_path) = (
        format!("/chatbots/{id}"),
        format!("/chatbots/{id}/knowledge"),
    );
    let chatbot = console.api.get::<Chatbot>(&chatbot_path);
    let list = console.api.get::<DocumentList>(&list_path);
    let (chatbot, list) = match futures::join!(chatbot, list) {
        (Ok(chatbot), Ok(list)) => (chatbot, list),
        (Err(failure), _) | (_, Err(failure)) => return view::api_failure(failure),
    };
    let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    let passages = match &query {
        None => None,
        Some(q) => {
            let path = format!("/chatbots/{id}/knowledge/search?q={}", url_encode(q));
            match console.api.get::<SearchResults>(&path).await {
                Ok(results) => Some(results.passages),
                Err(failure) => return view::api_failure(failure),
            }
        }
    };
    let working = list.documents.iter().any(Document::is_working)
        || list.crawls.iter().any(Crawl::is_running);
    view::render_with(
        status,
        &KnowledgePage {
            layout: console.layout(format!("Knowledge · {}", chatbot.name), "chatbots"),
            chatbot,
            documents: list.documents,
            crawls: list.crawls,
            retrieval: list.retrieval,
            notice,
            query: query.unwrap_or_default(),
            passages,
            working,
            upload_limit_mb: console.state.config.knowledge.max_file_bytes as u64 / (1024 * 1024),
        },
    )
}

/// A chatbot's documents and crawls, the forms that add more, and a search.
pub async fn knowledge(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Query(query): Query<KnowledgeQuery>,
) -> Response {
    knowledge_page(&console, id, StatusCode::OK, None, query.q).await
}

#[derive(Deserialize)]
pub struct UrlForm {
    url: String,
}

pub async fn add_url(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<UrlForm>,
) -> Response {
    let path = format!("/chatbots/{id}/knowledge/url");
    match console
        .api
        .post::<Value>(&path, &json!({ "url": form.url.trim() }))
        .await
    {
        Ok(_) => Redirect::to(&format!("/chatbots/{id}/knowledge")).into_response(),
        Err(failure) => {
            view::refused(failure, |s, n| knowledge_page(&console, id, s, n, None)).await
        }
    }
}

#[derive(Deserialize)]
pub struct CrawlForm {
    url: String,
    max_pages: Option<String>,
    max_depth: Option<String>,
}

pub async fn crawl(
    console: Console,
    PagePath(id): PagePath<uuid::Uuid>,
    Form(form): Form<CrawlForm>,
) -> Response {
    let number = |text: &Option<String>| {
        text.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n)))
    };
    let mut body = json!({ "url": form.url.trim() });
    if let Some(pages) = number(&form.max_pages) {
        body["max_pages"] = pages;
    }
    if let Some(depth) = number(&form.max_depth) {
        body["max_depth"] = depth;
    }
    let path = format!("/chatbots/{id}/knowledge/crawl");
    match console.api.post::<Value>(&path, &body).await {
        Ok(_) => Redirect::to(&format!("/chatbots/{id}/knowledge")).into_response(),
        Err(failure) => {
            view::refused(failure, |s, n| knowledge_page(&console, id, s, n, None)).await
        }
    }
}

pub async fn delete_document(
    console: Console,
    PagePath((id, doc_id)): PagePath<(uuid::Uuid, uuid::Uuid)>,
) -> Response {
    let path = format!("/chatbots/{id}/knowledge/{doc_id}");
    match console.api.delete(&path).await {
        Ok(()) => Redirect::to(&format!("/chatbots/{id}/knowledge")).into_response(),
        Err(failure) => view::api_failure(failure),
    }
}
