//! Replies that call tools: the loop, its bounds, and the journal that keeps
//! a retried reply from calling a tool twice.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Map;
use steward_config::ToolsConfig;
use steward_domain::{JobId, MessageId, PersonId, ToolCallId};
use steward_store::{Chatbot, NewToolCall, TenantScope};
use steward_tools::{CallContext, Tool, ToolError, Toolbox};

use super::*;

/// Tools for the tests: each call is remembered with its idempotency key.
#[derive(Default)]
struct Workshop {
    calls: Mutex<Vec<(String, ToolCallId)>>,
}

fn tool(server: &str, name: &str) -> Tool {
    Tool {
        server: server.into(),
        name: name.into(),
        description: format!("{name}, for the tests"),
        input_schema: json!({ "type": "object" }),
    }
}

#[async_trait]
impl Toolbox for Workshop {
    async fn tools(
        &self,
        _: &TenantScope,
        _: &Chatbot,
        _: Option<PersonId>,
    ) -> Result<Vec<Tool>, ToolError> {
        Ok(["add", "slow", "huge", "broken"]
            .iter()
            .map(|name| tool("calc", name))
            .chain([tool("down", "ping")])
            .collect())
    }

    async fn call(
        &self,
        context: &CallContext,
        tool: &Tool,
        input: &Map<String, Value>,
    ) -> Result<String, ToolError> {
        self.calls
            .lock()
            .unwrap()
            .push((tool.full_name(), context.key));
        match (tool.server.as_str(), tool.name.as_str()) {
            ("calc", "add") => {
                let number = |name: &str| input.get(name).and_then(Value::as_i64).unwrap_or(0);
                Ok((number("a") + number("b")).to_string())
            }
            ("calc", "slow") => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok("late".into())
            }
            ("calc", "huge") => Ok("x".repeat(5 * 1024 * 1024)),
            ("calc", "broken") => Err(ToolError("the service said no".into())),
            _ => Err(ToolError("could not connect to the server".into())),
        }
    }
}

impl Workshop {
    fn made(&self) -> Vec<(String, ToolCallId)> {
        self.calls.lock().unwrap().clone()
    }
}

fn with_tools(workshop: &Arc<Workshop>, limits: ToolsConfig) -> impl FnOnce(&mut Respond) + use<> {
    let toolbox: Arc<dyn Toolbox> = workshop.clone();
    move |respond| {
        respond.toolbox = Some(toolbox);
        respond.tool_limits = limits;
    }
}

/// The reply to `message`, once it is stored.
fn reply_to<'a>(messages: &'a [Value], message: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["role"] == "assistant" && m["answers"] == message)
        .unwrap()
}

fn statuses(reply: &Value) -> Vec<(String, String)> {
    let calls = reply["tool_calls"].as_array().unwrap();
    calls
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The context of `reply`'s first tool call as a retried reply that lost
/// the call's result makes it again: the same key.
fn call_again(owner: &Session, bot: &str, conversation: &str, reply: &Value) -> CallContext {
    let id = |value: &Value| value.as_str().unwrap().to_owned();
    CallContext {
        scope: TenantScope::for_job(owner.org_id.parse().unwrap()),
        chatbot: bot.parse().unwrap(),
        conversation: conversation.parse().unwrap(),
        person: None,
        reply: Some(id(&reply["id"]).parse().unwrap()),
        key: id(&reply["tool_calls"][0]["id"]).parse().unwrap(),
    }
}

/// One message answered by a worker with the workshop's tools, the model
/// scripted by `script` first.
struct Asked {
    app: TestApp,
    fake: FakeModel,
    workshop: Arc<Workshop>,
    owner: Session,
    /// The conversation's messages, oldest first, and the message's id.
    messages: Vec<Value>,
    message: String,
}

impl Asked {
    fn reply(&self) -> &Value {
        reply_to(&self.messages, &self.message)
    }
}

async fn ask(text: &str, limits: ToolsConfig, script: impl FnOnce(&FakeModel)) -> Asked {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    script(&fake);
    let workshop = Arc::new(Workshop::default());
    let worker = start_worker_with(&app, model(&fake), with_tools(&workshop, limits));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (_, message) = send(&app, &owner, &bot, text, None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    Asked {
        app,
        fake,
        workshop,
        owner,
        messages,
        message,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_calls_a_tool_and_answers_with_its_result() {
    let asked = ask("what is 2 and 3?", ToolsConfig::default(), |fake| {
        fake.call_tools(vec![vec![("calc__add", r#"{"a": 2, "b": 3}"#)]])
    })
    .await;
    let reply = asked.reply();
    assert_eq!(reply["text"], "echo: what is 2 and 3? | tools: 5");
    assert_eq!(statuses(reply), [("add".into(), "succeeded".into())]);
    assert_eq!(reply["tool_calls"][0]["server"], "calc");
    assert_eq!(reply["tool_calls"][0]["input"], json!({"a": 2, "b": 3}));
    assert_eq!(reply["tool_calls"][0]["result_preview"], "5");
    assert_eq!(asked.workshop.made().len(), 1);

    let requests = asked.fake.requests();
    assert_eq!(requests.len(), 2, "the model, the tool, the model again");
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "calc__add",
            "calc__slow",
            "calc__huge",
            "calc__broken",
            "down__ping"
        ]
    );
    let usage = asked
        .app
        .get("/api/v1/organizations/usage", &asked.owner.token)
        .await;
    assert!(
        usage.body["tokens_used"].as_i64().unwrap() > 15,
        "both steps' tokens count (the tool call's alone is 15)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_a_chain_unknown_tools_and_bad_input_all_reach_the_model() {
    let asked = ask("sums", ToolsConfig::default(), |fake| {
        fake.call_tools(vec![
            vec![
                ("calc__add", r#"{"a": 1, "b": 1}"#),
                ("calc__add", r#"{"a": 3, "b": 4}"#),
            ],
            vec![("nope__tool", "{}"), ("calc__add", r#"{"a": "#)],
        ])
    })
    .await;
    let reply = asked.reply();
    assert_eq!(
        reply["text"],
        "echo: sums | tools: 2 | 7 | error: there is no tool named nope__tool | error: the input is not a JSON object"
    );
    assert_eq!(
        statuses(reply),
        [
            ("add".into(), "succeeded".into()),
            ("add".into(), "succeeded".into()),
            ("nope__tool".into(), "failed".into()),
            ("add".into(), "failed".into()),
        ]
    );
    assert_eq!(
        reply["tool_calls"][3]["input"], r#"{"a": "#,
        "input kept as written"
    );
    assert_eq!(
        asked.workshop.made().len(),
        2,
        "only the two good calls were made"
    );
    assert_eq!(asked.fake.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_stops_calling_is_stopped_by_the_step_bound_and_still_answers() {
    let limits = ToolsConfig {
        max_steps: 3,
        ..ToolsConfig::default()
    };
    let asked = ask("again and again", limits, |fake| {
        fake.always_call("calc__add", r#"{"a": 1, "b": 2}"#)
    })
    .await;
    let requests = asked.fake.requests();
    assert_eq!(requests.len(), 3, "max_steps model calls");
    assert!(
        requests[2].get("tools").is_none(),
        "the last step offers no tools"
    );
    assert_eq!(asked.workshop.made().len(), 2);
    assert_eq!(
        asked.reply()["text"],
        "echo: again and again | tools: 3 | 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_huge_failing_and_unreachable_tools_do_not_stop_the_reply() {
    let limits = ToolsConfig {
        call_timeout_secs: 1,
        turn_timeout_secs: 2,
        max_result_bytes: 1024,
        ..ToolsConfig::default()
    };
    let asked = ask("try everything", limits, |fake| {
        fake.call_tools(vec![vec![
            ("calc__slow", "{}"),
            ("calc__huge", "{}"),
            ("calc__broken", "{}"),
            ("down__ping", "{}"),
        ]])
    })
    .await;
    assert_eq!(
        statuses(asked.reply()),
        [
            ("slow".into(), "failed".into()),
            ("huge".into(), "succeeded".into()),
            ("broken".into(), "failed".into()),
            ("ping".into(), "failed".into()),
        ]
    );
    let results: Vec<String> = asked.fake.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        results[0],
        "error: the tool did not answer within 1 seconds"
    );
    assert!(
        results[1].len() < 1200,
        "the 5 MB result was cut: {} bytes",
        results[1].len()
    );
    assert!(
        results[1].ends_with("[cut: the result was 5242880 bytes; only the first 1024 are shown]")
    );
    assert_eq!(results[2], "error: the service said no");
    assert_eq!(results[3], "error: could not connect to the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_reply_replays_its_journaled_calls_instead_of_calling_again() {
    let asked = ask("the answer?", ToolsConfig::default(), |fake| {
        fake.call_tools(vec![vec![("calc__add", r#"{"a": 20, "b": 22}"#)]]);
        // The model call after the tool's fails: the job is retried.
        fake.fail_call(1);
    })
    .await;
    assert_eq!(
        asked.fake.calls(),
        3,
        "the first attempt's two calls, and the retry's one"
    );
    assert_eq!(asked.workshop.made().len(), 1, "the tool was called once");
    let reply = asked.reply();
    assert_eq!(reply["text"], "echo: the answer? | tools: 42");
    assert_eq!(statuses(reply), [("add".into(), "succeeded".into())]);
    let replies = asked.messages.iter().filter(|m| m["role"] == "assistant");
    assert_eq!(replies.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_result_was_lost_is_made_again_under_the_same_key() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let workshop = Arc::new(Workshop::default());
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, message) = send(&app, &owner, &bot, "and now?", None).await;

    // An earlier attempt journaled a call and died before recording its result.
    let jobs = app.get("/api/v1/jobs?state=queued", &owner.token).await;
    let job: JobId = jobs.body["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let org = owner.org_id.parse().unwrap();
    let scope = TenantScope::for_job(org);
    let journaled = ToolCallId::new();
    let reply_id = MessageId::new();
    app.store
        .journal_tool_call(
            &scope,
            &NewToolCall {
                id: journaled,
                conversation_id: conversation.parse().unwrap(),
                job_id: job,
                reply_id,
                step: 0,
                position: 0,
                step_text: String::new(),
                call_id: "call_lost".into(),
                server: "calc".into(),
                tool: "add".into(),
                input: r#"{"a": 1, "b": 1}"#.into(),
            },
        )
        .await
        .unwrap();

    let worker = start_worker_with(
        &app,
        model(&fake),
        with_tools(&workshop, ToolsConfig::default()),
    );
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    assert_eq!(
        workshop.made(),
        [("calc.add".into(), journaled)],
        "made again, with the journal's id as its key"
    );
    let reply = reply_to(&messages, &message);
    assert_eq!(
        reply["id"],
        reply_id.to_string(),
        "stored with the id its calls name"
    );
    assert_eq!(reply["text"], "echo: and now? | tools: 2");
    assert_eq!(
        fake.calls(),
        1,
        "the model was asked only for what came after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pricing_calculator_quotes_from_the_organizations_price_list() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let enabled = app
        .post(
            "/api/v1/integrations/enable",
            &owner.token,
            json!({"integration_id": "pricing-calculator", "config": {
                "currency": "EUR", "tax_name": "VAT", "tax_percent": 20,
                "items": {"team": {"name": "Team plan", "unit_price": 12.5, "unit": "seat per month",
                                   "volume": [{"from": 20, "percent_off": 10}]}}
            }}),
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    app.patch(
        &format!("/api/v1/chatbots/{bot}"),
        &owner.token,
        json!({"tools": ["pricing-calculator.price_list", "pricing-calculator.quote"]}),
    )
    .await;
    // A chain: the list first, then the quote from what it said.
    fake.call_tools(vec![
        vec![("pricing-calculator__price_list", "{}")],
        vec![(
            "pricing-calculator__quote",
            r#"{"lines": [{"sku": "team", "quantity": 24}]}"#,
        )],
    ]);
    let toolbox: Arc<dyn Toolbox> = Arc::new(app.state.tools.clone());
    let worker = start_worker_with(&app, model(&fake), move |respond| {
        respond.toolbox = Some(toolbox);
    });
    let (_, message) = send(&app, &owner, &bot, "what would 24 seats cost?", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    let reply = reply_to(&messages, &message);
    assert_eq!(
        statuses(reply),
        [
            ("price_list".into(), "succeeded".into()),
            ("quote".into(), "succeeded".into())
        ]
    );
    // 24 × 12.50 = 300.00, 10% off = 270.00, VAT 54.00.
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains(r#""total":"324.00""#), "{text}");
    let listed = &fake.requests()[1];
    assert!(
        listed.to_string().contains("Team plan"),
        "the model read the price list before quoting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_capture_records_one_lead_per_call_however_often_it_is_made() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    app.post(
        "/api/v1/integrations/enable",
        &owner.token,
        json!({"integration_id": "lead-capture"}),
    )
    .await;
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"tools": ["lead-capture.record"]}),
        )
        .await;
    assert_eq!(given.status, 200, "{}", given.text);
    fake.call_tools(vec![vec![(
        "lead-capture__record",
        r#"{"name": "Grace", "email": "grace@example.org", "note": "a demo next week"}"#,
    )]]);
    // The model call after the tool's fails once: the retry must not record it again.
    fake.fail_call(1);
    let catalogue = app.state.tools.clone();
    let toolbox: Arc<dyn Toolbox> = Arc::new(catalogue.clone());
    let worker = start_worker_with(&app, model(&fake), move |respond| {
        respond.toolbox = Some(toolbox);
    });

    let (conversation, message) = send(&app, &owner, &bot, "please call me", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    let reply = reply_to(&messages, &message);
    assert_eq!(statuses(reply), [("record".into(), "succeeded".into())]);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains(r#""recorded":true"#),
        "{}",
        reply["text"]
    );
    let leads = app.get("/api/v1/leads", &owner.token).await;
    assert_eq!(leads.body["total"], 1, "{}", leads.text);
    assert_eq!(leads.body["leads"][0]["name"], "Grace");
    assert_eq!(leads.body["leads"][0]["conversation_id"], conversation);

    // The same call made again (its journal write lost) records nothing new.
    let context = call_again(&owner, &bot, &conversation, reply);
    let tool = steward_tools::builtin::tools_of("lead-capture").remove(0);
    let input = json!({"name": "Grace", "email": "grace@example.org"});
    let again = catalogue
        .call(&context, &tool, input.as_object().unwrap())
        .await
        .unwrap();
    assert_eq!(
        again,
        reply["tool_calls"][0]["result_preview"].as_str().unwrap(),
        "the first call's lead"
    );
    let leads = app.get("/api/v1/leads", &owner.token).await;
    assert_eq!(leads.body["total"], 1);

    // A tool the organization no longer has is no longer offered.
    app.delete("/api/v1/integrations/lead-capture", &owner.token)
        .await;
    let chatbot = app
        .store
        .chatbot(&context.scope, bot.parse().unwrap())
        .await
        .unwrap();
    assert!(
        catalogue
            .tools(&context.scope, &chatbot, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_mcp_server_is_offered_and_called_with_each_calls_key() {
    let Ok(url) = std::env::var("STEWARD_TEST_MCP_SHOP") else {
        eprintln!(
            "skipped: backend not configured (STEWARD_TEST_MCP_SHOP: eval \"$(scripts/mcp-servers)\")"
        );
        return;
    };
    let app = spawn_app_with(move |c| {
        c.tools.servers = vec![steward_config::ToolServerConfig {
            name: "shop".into(),
            url,
            headers: [("x-shop-client".to_owned(), "steward".to_owned())].into(),
            timeout_secs: 10,
        }]
    })
    .await;
    let fake = FakeModel::start().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let tools = app.get("/api/v1/tools", &owner.token).await;
    let names: Vec<&str> = tools.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"shop.place_order"), "{names:?}");
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"tools": ["shop.place_order"]}),
        )
        .await;
    assert_eq!(given.status, 200, "{}", given.text);
    fake.call_tools(vec![vec![(
        "shop__place_order",
        r#"{"item": "lamp", "quantity": 1}"#,
    )]]);
    let toolbox: Arc<dyn Toolbox> = Arc::new(app.state.tools.clone());
    let worker = start_worker_with(&app, model(&fake), move |respond| {
        respond.toolbox = Some(toolbox);
    });
    let (_, message) = send(&app, &owner, &bot, "one lamp, please", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    let reply = reply_to(&messages, &message);
    assert_eq!(
        statuses(reply),
        [("place_order".into(), "succeeded".into())]
    );
    assert_eq!(reply["tool_calls"][0]["server"], "shop");
    let offered = &fake.requests()[0]["tools"];
    assert_eq!(
        offered.as_array().unwrap().len(),
        1,
        "only the tool it was given"
    );
    assert_eq!(offered[0]["function"]["name"], "shop__place_order");
    // The model read the whole result (the fake echoes it).
    let text = reply["text"].as_str().unwrap();
    let result: Value = serde_json::from_str(text.split_once(" | tools: ").unwrap().1).unwrap();
    assert_eq!(
        result["meta_key"], reply["tool_calls"][0]["id"],
        "the server saw the call's journal id as its idempotency key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_each_tool_call_start_and_finish_before_the_reply() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let workshop = Arc::new(Workshop::default());
    let worker = start_worker_with(
        &app,
        model(&fake),
        with_tools(&workshop, ToolsConfig::default()),
    );
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let (conversation, first) = send(&app, &owner, &bot, "hello", None).await;
    answered(&app, &owner, &bot, &first).await;

    fake.call_tools(vec![vec![
        ("calc__add", r#"{"a": 1, "b": 2}"#),
        ("calc__broken", "{}"),
    ]]);
    let stream = connect(&app, &owner, &conversation, None).await;
    send(&app, &owner, &bot, "add it up", Some(&conversation)).await;
    let events = read_events(stream, |e| {
        e.name == "message" && e.data["role"] == "assistant"
    })
    .await;
    worker.stop().await;
    let calls: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.name == "tool_call")
        .map(|e| {
            let tool = e.data["tool"].as_str().unwrap().to_owned();
            (tool, e.data["status"].as_str().unwrap().to_owned())
        })
        .collect();
    for expected in [
        ("add", "started"),
        ("add", "succeeded"),
        ("broken", "started"),
        ("broken", "failed"),
    ] {
        assert!(
            calls.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {calls:?}"
        );
    }
    let reply = events.last().unwrap();
    let ids: Vec<&Value> = reply.data["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    let first_call = events.iter().find(|e| e.name == "tool_call").unwrap();
    assert!(
        ids.contains(&&first_call.data["id"]),
        "the events name the reply's calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_handed_to_a_person_is_left_to_them_until_released() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let member = app.member(&owner, "m@example.org", "member").await;
    let bot = app.chatbot(&owner, "Helper").await;
    app.post(
        "/api/v1/integrations/enable",
        &owner.token,
        json!({"integration_id": "contact-owner"}),
    )
    .await;
    let given = app
        .patch(
            &format!("/api/v1/chatbots/{bot}"),
            &owner.token,
            json!({"tools": ["contact-owner.hand_off"]}),
        )
        .await;
    assert_eq!(given.status, 200, "{}", given.text);
    fake.call_tools(vec![vec![(
        "contact-owner__hand_off",
        r#"{"reason": "wants a person"}"#,
    )]]);
    let toolbox: Arc<dyn Toolbox> = Arc::new(app.state.tools.clone());
    let worker = start_worker_with(&app, model(&fake), move |respond| {
        respond.toolbox = Some(toolbox);
    });

    let (conversation, first) = send(&app, &owner, &bot, "a person, please", None).await;
    let messages = answered(&app, &owner, &bot, &first).await;
    assert_eq!(
        statuses(reply_to(&messages, &first)),
        [("hand_off".into(), "succeeded".into())]
    );
    // Handed off: the next message waits for a person, and the assistant is quiet.
    let (_, second) = send(&app, &owner, &bot, "hello?", Some(&conversation)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app
        .get("/api/v1/jobs?state=queued", &owner.token)
        .await
        .body["jobs"]
        .as_array()
        .unwrap()
        .is_empty()
        || !app
            .get("/api/v1/jobs?state=running", &owner.token)
            .await
            .body["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls_before = fake.calls();
    let history = app
        .get(
            &format!("/api/v1/chatbots/{bot}/history?limit=200"),
            &owner.token,
        )
        .await;
    assert!(
        !history.text.contains(&format!(r#""answers":"{second}""#)),
        "no reply while a person has the conversation"
    );

    let path = format!("/api/v1/conversations/{conversation}/release");
    assert_eq!(app.post(&path, &member.token, json!({})).await.status, 403);
    assert_eq!(app.post(&path, &owner.token, json!({})).await.status, 204);
    let (_, third) = send(&app, &owner, &bot, "still there?", Some(&conversation)).await;
    let messages = answered(&app, &owner, &bot, &third).await;
    worker.stop().await;
    assert!(fake.calls() > calls_before, "the assistant answers again");
    assert_eq!(reply_to(&messages, &third)["text"], "echo: still there?");
}

/// The organization's two skills: `expense-report` (with a resource file),
/// offered by the chatbot, and `travel`, which it does not offer.
async fn expense_skill(app: &TestApp, owner: &Session, bot: &str) {
    let skill_md = "---\nname: expense-report\ndescription: Files an expense report from receipts.\n---\nAsk for each receipt's date and amount, then total them.";
    let zipped = steward_testkit::docx::archive(&[
        ("SKILL.md", skill_md.as_bytes()),
        ("rates.md", b"Taxis: up to 40 EUR."),
    ]);
    let skill = app
        .client
        .post(app.url("/api/v1/skills"))
        .bearer_auth(&owner.token)
        .header("content-type", "application/zip")
        .body(zipped)
        .send()
        .await
        .unwrap();
    assert_eq!(skill.status(), 201);
    let other = json!({"name": "travel", "description": "Books trips.", "instructions": "Secret travel steps."});
    app.post("/api/v1/skills", &owner.token, other).await;
    app.patch(
        &format!("/api/v1/chatbots/{bot}"),
        &owner.token,
        json!({"skills": ["expense-report"]}),
    )
    .await;
}

/// Steward, a fake model, and an owner's chatbot offering `expense-report`.
async fn skilled() -> (TestApp, FakeModel, Session, String) {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    expense_skill(&app, &owner, &bot).await;
    (app, fake, owner, bot)
}

/// A worker whose replies may call the organization's tools and skills.
fn skills_worker(app: &TestApp, responder: Responder) -> super::Running {
    let toolbox: Arc<dyn Toolbox> = Arc::new(app.state.tools.clone());
    start_worker_with(app, responder, move |respond| {
        respond.toolbox = Some(toolbox);
    })
}

/// Each skill's activations since yesterday, by name.
async fn activations(app: &TestApp, owner: &Session) -> Vec<(String, i64)> {
    let scope = steward_store::TenantScope::for_job(owner.org_id.parse().unwrap());
    let used = app
        .store
        .skill_use(
            &scope,
            (steward_store::now() - chrono::Duration::days(1)).date_naive(),
        )
        .await
        .unwrap();
    used.into_iter().map(|u| (u.name, u.activations)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_loads_a_skill_it_is_offered_reads_its_file_and_counts_one_activation() {
    let (app, fake, owner, bot) = skilled().await;
    // The model loads the skill, tries one it is not offered and a file the
    // skill does not have, then answers.
    fake.call_tools(vec![
        vec![("skills__use_skill", r#"{"name": "expense-report"}"#)],
        vec![
            (
                "skills__read_skill_file",
                r#"{"name": "expense-report", "path": "rates.md"}"#,
            ),
            ("skills__use_skill", r#"{"name": "travel"}"#),
            (
                "skills__read_skill_file",
                r#"{"name": "expense-report", "path": "none.md"}"#,
            ),
        ],
    ]);
    let worker = skills_worker(&app, model(&fake));
    let (_, message) = send(&app, &owner, &bot, "I need to claim a taxi", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    let reply = reply_to(&messages, &message);
    assert_eq!(
        statuses(reply),
        [
            ("use_skill".into(), "succeeded".into()),
            ("read_skill_file".into(), "succeeded".into()),
            ("use_skill".into(), "failed".into()),
            ("read_skill_file".into(), "failed".into()),
        ]
    );
    let requests = fake.requests();
    // Offered by name and description; its instructions only once loaded.
    let first = requests[0].to_string();
    assert!(
        first.contains("expense-report: Files an expense report"),
        "{first}"
    );
    assert!(
        !first.contains("then total them"),
        "the body is not in the prompt"
    );
    assert!(
        !first.contains("Books trips"),
        "a skill the chatbot lacks is not offered"
    );
    assert!(requests[1].to_string().contains("then total them"));
    assert!(
        requests[1]
            .to_string()
            .contains("Files of this skill (read_skill_file): rates.md")
    );
    let last = requests.last().unwrap().to_string();
    assert!(
        last.contains("there is no skill 'travel' to use here"),
        "{last}"
    );
    assert!(!last.contains("Secret travel steps"));
    assert!(last.contains("Taxis: up to 40 EUR."), "{last}");
    assert_eq!(
        activations(&app, &owner).await,
        [("expense-report".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_is_loaded_through_anthropics_format_too() {
    let (app, fake, owner, bot) = skilled().await;
    fake.call_tools(vec![
        vec![("skills__use_skill", r#"{"name": "expense-report"}"#)],
        vec![(
            "skills__read_skill_file",
            r#"{"name": "expense-report", "path": "rates.md"}"#,
        )],
    ]);
    let anthropic = steward_llm::Anthropic::new(
        reqwest::Client::new(),
        &fake.anthropic_base_url(),
        "test-key".into(),
        "claude-test",
        Duration::from_secs(5),
    );
    let worker = skills_worker(&app, Responder::Model(Arc::new(anthropic)));
    let (_, message) = send(&app, &owner, &bot, "I need to claim a taxi", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    let reply = reply_to(&messages, &message);
    assert_eq!(
        statuses(reply),
        [
            ("use_skill".into(), "succeeded".into()),
            ("read_skill_file".into(), "succeeded".into()),
        ]
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    // Anthropic's request: the skills listed in `system`, the tools by
    // `input_schema`, the results as `tool_result` blocks.
    let system = requests[0]["system"].to_string();
    assert!(
        system.contains("expense-report: Files an expense report"),
        "{system}"
    );
    assert!(!system.contains("then total them"));
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["skills__use_skill", "skills__read_skill_file"]);
    assert_eq!(
        requests[0]["tools"][0]["input_schema"]["properties"]["name"]["enum"],
        json!(["expense-report"])
    );
    let results = requests[2].to_string();
    assert!(
        results.contains("tool_result") && results.contains("then total them"),
        "{results}"
    );
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .ends_with("rates.md | Taxis: up to 40 EUR."),
        "{reply}"
    );
    assert_eq!(
        activations(&app, &owner).await,
        [("expense-report".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_kept_to_members_is_neither_shown_to_nor_loaded_by_an_owner() {
    let (app, fake, owner, bot) = skilled().await;
    let member = app.member(&owner, "grace@example.org", "member").await;
    app.patch(
        &format!("/api/v1/chatbots/{bot}"),
        &owner.token,
        json!({"skills": ["expense-report", "travel"]}),
    )
    .await;
    let kept = app
        .put(
            "/api/v1/skills/expense-report/assignees",
            &owner.token,
            json!({"roles": ["member"]}),
        )
        .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    // Both the owner's and the member's reply try to load it.
    let load = || vec![vec![("skills__use_skill", r#"{"name": "expense-report"}"#)]];
    fake.call_tools(load());
    let worker = skills_worker(&app, model(&fake));
    let (_, asked) = send(&app, &owner, &bot, "I need to claim a taxi", None).await;
    let messages = answered(&app, &owner, &bot, &asked).await;
    assert_eq!(
        statuses(reply_to(&messages, &asked)),
        [("use_skill".into(), "failed".into())],
        "the owner cannot load it"
    );
    fake.call_tools(load());
    let (_, asked) = send(&app, &member, &bot, "I need to claim a taxi", None).await;
    let messages = answered(&app, &member, &bot, &asked).await;
    worker.stop().await;
    assert_eq!(
        statuses(reply_to(&messages, &asked)),
        [("use_skill".into(), "succeeded".into())],
        "the member can"
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    let enum_of = |request: &Value| {
        request["tools"][0]["function"]["parameters"]["properties"]["name"]["enum"].clone()
    };
    let owners = requests[0].to_string();
    assert!(!owners.contains("expense-report:"), "{owners}");
    assert!(owners.contains("travel: Books trips."), "{owners}");
    assert_eq!(enum_of(&requests[0]), json!(["travel"]));
    let refused = requests[1].to_string();
    assert!(refused.contains("there is no skill 'expense-report' to use here"));
    assert!(!refused.contains("then total them"));
    assert!(
        requests[2]
            .to_string()
            .contains("expense-report: Files an expense report")
    );
    assert_eq!(enum_of(&requests[2]), json!(["expense-report", "travel"]));
    assert!(requests[3].to_string().contains("then total them"));
    assert_eq!(
        activations(&app, &owner).await,
        [("expense-report".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_reply_counts_its_skill_once() {
    let (app, fake, owner, bot) = skilled().await;
    fake.call_tools(vec![vec![(
        "skills__use_skill",
        r#"{"name": "expense-report"}"#,
    )]]);
    // The model call after the skill's load fails: the job is retried.
    fake.fail_call(1);
    let worker = skills_worker(&app, model(&fake));
    let (conversation, message) = send(&app, &owner, &bot, "a taxi, please", None).await;
    let messages = answered(&app, &owner, &bot, &message).await;
    worker.stop().await;
    assert_eq!(fake.calls(), 3, "two calls, then the retry's one");
    let reply = reply_to(&messages, &message);
    assert_eq!(statuses(reply), [("use_skill".into(), "succeeded".into())]);
    assert_eq!(
        activations(&app, &owner).await,
        [("expense-report".to_owned(), 1)]
    );

    // The same load made again under its key (a retry that lost its
    // result) counts nothing more.
    let context = call_again(&owner, &bot, &conversation, reply);
    let chatbot = app
        .store
        .chatbot(&context.scope, context.chatbot)
        .await
        .unwrap();
    let tools = app
        .state
        .tools
        .tools(&context.scope, &chatbot, None)
        .await
        .unwrap();
    let again = app
        .state
        .tools
        .call(
            &context,
            &tools[0],
            json!({"name": "expense-report"}).as_object().unwrap(),
        )
        .await
        .unwrap();
    assert!(again.contains("then total them"));
    assert_eq!(
        activations(&app, &owner).await,
        [("expense-report".to_owned(), 1)]
    );
}
