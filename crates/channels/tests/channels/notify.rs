//! Steward's own tools telling the organization's people: a lead mailed from
//! the operator's mail server (the real one of scripts/mail-servers, when it
//! runs) and posted through the organization's Slack channel, a hand-off
//! posted; each once, however often the call is made.

use steward_domain::ToolCallId;
use steward_store::Chatbot;
use steward_tools::{CallContext, Toolbox};

use super::email::{header, servers};
use super::*;

impl Harness {
    async fn enable(&self, integration: &str, config: Value) -> Reply {
        self.app
            .post(
                "/api/v1/integrations/enable",
                &self.owner.token,
                json!({ "integration_id": integration, "config": config }),
            )
            .await
    }

    async fn give_tools(&self, tools: Value) {
        let given = self
            .app
            .patch(
                &format!("/api/v1/chatbots/{}", self.bot),
                &self.owner.token,
                json!({ "tools": tools }),
            )
            .await;
        assert_eq!(given.status, StatusCode::OK, "{}", given.text);
    }

    /// Sends a message through the API and waits for the reply's tool call;
    /// the call as the journal has it.
    async fn ask(&self, text: &str) -> (String, Value) {
        let sent = self
            .app
            .post(
                &format!("/api/v1/chatbots/{}/messages", self.bot),
                &self.owner.token,
                json!({ "text": text }),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        let conversation = sent.body["conversation_id"].as_str().unwrap().to_owned();
        let messages = self
            .wait_messages("the reply", |m| {
                m.iter().any(|m| m.role == MessageRole::Assistant)
            })
            .await;
        let reply = messages.last().unwrap();
        let call = reply.meta.as_ref().unwrap()["tool_calls"][0].clone();
        (conversation, call)
    }

    /// Makes the call `call` of the conversation again, as a retried reply
    /// whose journal lost its result would.
    async fn call_again(&self, conversation: &str, call: &Value, input: Value) {
        let context = CallContext {
            scope: TenantScope::for_job(self.owner.org_id.parse().unwrap()),
            chatbot: self.bot.parse().unwrap(),
            conversation: conversation.parse().unwrap(),
            person: None,
            reply: None,
            key: call["id"].as_str().unwrap().parse::<ToolCallId>().unwrap(),
        };
        let chatbot: Chatbot = self
            .app
            .store
            .chatbot(&context.scope, context.chatbot)
            .await
            .unwrap();
        let tools = self
            .app
            .state
            .tools
            .tools(&context.scope, &chatbot, None)
            .await
            .unwrap();
        let tool = tools
            .iter()
            .find(|t| t.name == call["tool"])
            .expect("the tool is offered");
        self.app
            .state
            .tools
            .call(&context, tool, input.as_object().unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_lead_is_mailed_and_posted_to_slack_once() {
    let mail = servers();
    let smtp = mail.as_ref().map(|m| m.smtp.clone());
    let h = Harness::start_with(|c| {
        if let Some((host, port)) = smtp {
            c.mail.smtp_host = host;
            c.mail.smtp_port = port;
            c.mail.from = "steward@example.test".into();
            c.mail.tls = false;
        }
    })
    .await;
    let (slack, _) = h
        .channel(
            "slack",
            json!({ "bot_token": "xoxb-sales-bot", "signing_secret": SLACK_SECRET }),
        )
        .await;
    let slack_post = json!({ "channel_id": slack, "to": "C0SALES01" });
    let sales = match &mail {
        Some(mail) => mail.alice.clone(),
        None => "sales@example.test".into(),
    };
    let enabled = h
        .enable(
            "lead-capture",
            json!({ "mail_to": sales, "slack": slack_post }),
        )
        .await;
    if mail.is_none() {
        // Without the operator's mail server, mailing is refused, not dropped.
        assert_eq!(enabled.status, StatusCode::CONFLICT, "{}", enabled.text);
        assert_eq!(enabled.code(), "mail_not_configured");
        let enabled = h
            .enable("lead-capture", json!({ "slack": slack_post }))
            .await;
        assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text);
    } else {
        assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text);
    }
    h.give_tools(json!(["lead-capture.record"])).await;
    let input = json!({ "name": "Grace <!channel>", "email": "grace@example.org", "note": "a demo next week" });
    h.model
        .call_tools(vec![vec![("lead-capture__record", &input.to_string())]]);

    let (conversation, call) = h.ask("please have someone call me").await;
    assert_eq!(call["status"], "succeeded", "{call}");
    let posts = h.settled(JobKind::Post).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].state, JobState::Succeeded, "{:?}", posts[0]);
    let sent = h.providers.wait_for("slack", 1).await;
    assert_eq!(sent[0].body["channel"], "C0SALES01");
    assert_eq!(
        sent[0].headers["authorization"], "Bearer xoxb-sales-bot",
        "posted by the organization's own bot"
    );
    let text = sent[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("*New lead: Grace &lt;!channel&gt;*") && text.contains("a demo next week"),
        "a visitor's words cannot mention the whole channel: {text}"
    );
    if let Some(mail) = &mail {
        let inbox = mail.wait_inbox(&mail.alice, 1).await;
        assert_eq!(
            header(&inbox[0], "Subject"),
            Some("New lead: Grace <!channel>")
        );
        assert!(inbox[0].contains("grace@example.org"), "{}", inbox[0]);
    }

    // The call made again (its result lost) records and tells nothing new.
    h.call_again(&conversation, &call, input).await;
    let leads = h.app.get("/api/v1/leads", &h.owner.token).await;
    assert_eq!(leads.body["total"], 1);
    assert_eq!(h.jobs(JobKind::Post).await.len(), 1);
    assert_eq!(
        h.jobs(JobKind::Notice).await.len(),
        usize::from(mail.is_some())
    );
    // Its one post job settled above: Slack had all there was to send.
    assert_eq!(h.providers.sent("slack").len(), 1, "posted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_is_posted_once_and_settings_name_only_the_organizations_slack() {
    let h = Harness::start().await;
    let (slack, _) = h
        .channel(
            "slack",
            json!({ "bot_token": "xoxb-owner-bot", "signing_secret": SLACK_SECRET }),
        )
        .await;
    // What the settings may name: a Slack channel of this organization.
    let (telegram, _) = h
        .channel(
            "telegram",
            json!({ "bot_token": "123456:ABC-DEF", "secret_token": TELEGRAM_SECRET }),
        )
        .await;
    let other = h.app.register("other@example.org", "Other Co").await;
    let others_bot = h.app.chatbot(&other, "Theirs").await;
    let theirs = h
        .app
        .post(
            &format!("/api/v1/chatbots/{others_bot}/channels"),
            &other.token,
            json!({ "kind": "slack", "name": "their slack", "config": { "bot_token": "xoxb-theirs", "signing_secret": SLACK_SECRET } }),
        )
        .await;
    let theirs = theirs.body["id"].as_str().unwrap().to_owned();
    for channel in [telegram, theirs, uuid::Uuid::now_v7().to_string()] {
        let refused = h
            .enable(
                "contact-owner",
                json!({ "slack": { "channel_id": channel, "to": "C0OWNERS1" } }),
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        assert_eq!(refused.code(), "unknown_channel");
    }
    for config in [
        json!({ "slack": { "channel_id": slack, "to": "#owners" } }),
        json!({ "mail_to": "not an address" }),
        json!({ "webhook_url": "http://169.254.169.254/" }),
    ] {
        let refused = h.enable("contact-owner", config.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{config}: {}",
            refused.text
        );
    }
    let enabled = h
        .enable(
            "contact-owner",
            json!({ "slack": { "channel_id": slack, "to": "C0OWNERS1" } }),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text);
    h.give_tools(json!(["contact-owner.hand_off"])).await;
    let input = json!({ "reason": "wants to discuss a refund" });
    h.model
        .call_tools(vec![vec![("contact-owner__hand_off", &input.to_string())]]);

    let (conversation, call) = h.ask("I want to talk to a person").await;
    assert_eq!(call["status"], "succeeded", "{call}");
    let sent = h.providers.wait_for("slack", 1).await;
    let text = sent[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("*A conversation waits for a person*")
            && text.contains("wants to discuss a refund")
            && text.contains(&format!("/api/v1/conversations/{conversation}/release")),
        "{text}"
    );
    h.call_again(&conversation, &call, input).await;
    assert_eq!(h.jobs(JobKind::Post).await.len(), 1, "told once");
}
