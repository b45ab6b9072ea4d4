use serde_json::json;
use steward_domain::jobs::{NoticeArgs, PostArgs};

use super::*;

pub async fn tool_calls_are_journaled_once_and_finished_once(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let asked = store
        .add_message(&scope, user_message(bot.id, None, "a quote, please"))
        .await
        .unwrap();
    let (job, reply) = (JobId::new(), MessageId::new());
    let call = |step: i32, position: i32, tool: &str| NewToolCall {
        id: ToolCallId::new(),
        conversation_id: asked.conversation_id,
        job_id: job,
        reply_id: reply,
        step,
        position,
        step_text: "Let me check.".into(),
        call_id: format!("call_{step}_{position}"),
        server: "pricing-calculator".into(),
        tool: tool.into(),
        input: json!({ "sku": "A1" }).to_string(),
    };

    let second = store
        .journal_tool_call(&scope, &call(1, 0, "quote"))
        .await
        .unwrap();
    let first = call(0, 1, "quote");
    let journaled = store.journal_tool_call(&scope, &first).await.unwrap();
    assert_eq!(
        (journaled.id, journaled.status, journaled.result.clone()),
        (first.id, ToolCallStatus::Started, None)
    );
    assert_eq!(
        (
            journaled.org_id,
            journaled.reply_id,
            journaled.input.as_str()
        ),
        (scope.org_id(), reply, r#"{"sku":"A1"}"#)
    );

    // The same place again (a retry, or a racing attempt) finds the first call.
    let again = store
        .journal_tool_call(&scope, &call(0, 1, "other"))
        .await
        .unwrap();
    assert_eq!((again.id, again.tool.as_str()), (first.id, "quote"));

    store
        .finish_tool_call(&scope, first.id, ToolCallStatus::Succeeded, "10 EUR")
        .await
        .unwrap();
    store
        .finish_tool_call(&scope, first.id, ToolCallStatus::Failed, "late")
        .await
        .unwrap();
    // Another organization can neither finish nor read it.
    store
        .finish_tool_call(&other, second.id, ToolCallStatus::Failed, "x")
        .await
        .unwrap();
    assert!(store.job_tool_calls(&other, job).await.unwrap().is_empty());
    assert_not_found(
        store.journal_tool_call(&other, &call(2, 0, "quote")).await,
        "a call in another organization's conversation",
    );

    let calls = store.job_tool_calls(&scope, job).await.unwrap();
    let seen: Vec<_> = calls
        .iter()
        .map(|c| (c.step, c.position, c.status, c.result.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (0, 1, ToolCallStatus::Succeeded, Some("10 EUR")),
            (1, 0, ToolCallStatus::Started, None),
        ]
    );
    assert!(calls[0].finished_at.is_some() && calls[1].finished_at.is_none());
}

pub async fn tool_servers_are_connected_listed_and_removed_within_their_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let server = |name: &str| NewToolServer {
        id: ToolServerId::new(),
        name: name.into(),
        url: format!("https://{name}.example.org/mcp"),
        sealed_headers: vec![1, 2, 3],
        timeout_secs: 15,
        allowed_tools: Some(vec!["find".into()]),
    };
    let crm = store
        .create_tool_server(&scope, server("crm"))
        .await
        .unwrap();
    assert_eq!(
        (
            crm.org_id,
            crm.allowed_tools.clone(),
            crm.sealed_headers.clone()
        ),
        (scope.org_id(), Some(vec!["find".to_owned()]), vec![1, 2, 3])
    );
    assert_conflict(
        store.create_tool_server(&scope, server("crm")).await,
        "tool_server_name_taken",
    );
    // Another organization may use the name, and sees nothing of Acme's.
    store
        .create_tool_server(&other, server("crm"))
        .await
        .unwrap();
    let mut all = server("billing");
    all.allowed_tools = None;
    store.create_tool_server(&scope, all).await.unwrap();
    let names: Vec<String> = store
        .tool_servers(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["billing", "crm"]);
    assert_not_found(
        store.tool_server(&other, crm.id).await,
        "another org's server",
    );
    assert_not_found(
        store.delete_tool_server(&other, crm.id).await,
        "deleting another org's server",
    );

    store
        .record_tool_server_health(&scope, crm.id, Some("refused the connection"))
        .await
        .unwrap();
    store
        .record_tool_server_health(&scope, crm.id, None)
        .await
        .unwrap();
    let read = store.tool_server(&scope, crm.id).await.unwrap();
    assert_eq!(read.last_error.as_deref(), Some("refused the connection"));
    assert!(read.last_ok_at.is_some() && read.last_error_at.is_some());

    store.delete_tool_server(&scope, crm.id).await.unwrap();
    assert_not_found(store.tool_server(&scope, crm.id).await, "a removed server");
    let audit = store.list_audit(&scope, None, 20).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"tool_server.create") && actions.contains(&"tool_server.delete"),
        "{actions:?}"
    );
}

pub async fn conversations_are_handed_to_a_person_and_back_within_their_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let asked = store
        .add_message(&scope, user_message(bot.id, None, "a person, please"))
        .await
        .unwrap();
    let conversation = asked.conversation_id;
    assert_eq!(
        store.handed_off_at(&scope, conversation).await.unwrap(),
        None
    );
    let told = |key: &str| {
        NewJob::of(
            &PostArgs {
                key: key.into(),
                channel_id: ChannelId::new(),
                to: "C0SALES".into(),
                text: "a conversation waits for a person".into(),
            },
            3,
        )
    };
    store
        .hand_off(&scope, conversation, &[told("first")])
        .await
        .unwrap();
    let first = store.handed_off_at(&scope, conversation).await.unwrap();
    assert!(first.is_some());
    store
        .hand_off(&scope, conversation, &[told("second")])
        .await
        .unwrap();
    assert_eq!(
        store.handed_off_at(&scope, conversation).await.unwrap(),
        first,
        "handing off again changes nothing"
    );
    let posts = store
        .claim("w", &[JobKind::Post], 10, chrono::Duration::seconds(30))
        .await
        .unwrap();
    let keys: Vec<String> = posts
        .iter()
        .map(|job| job.args::<PostArgs>().unwrap().key)
        .collect();
    assert_eq!(keys, ["first"], "told once, as it was handed off");
    assert_eq!(posts[0].org_id, Some(scope.org_id()));
    assert_not_found(
        store.hand_off(&other, conversation, &[]).await,
        "another org's conversation",
    );
    assert_not_found(
        store.hand_back(&other, conversation).await,
        "another org's release",
    );
    assert_not_found(
        store.handed_off_at(&other, conversation).await,
        "another org's reading",
    );
    store.hand_back(&scope, conversation).await.unwrap();
    assert_eq!(
        store.handed_off_at(&scope, conversation).await.unwrap(),
        None
    );
}

pub async fn leads_are_recorded_once_per_call_and_announced_once(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let asked = store
        .add_message(&scope, user_message(bot.id, None, "call me"))
        .await
        .unwrap();
    let lead = NewLead {
        tool_call_id: ToolCallId::new(),
        chatbot_id: bot.id,
        conversation_id: asked.conversation_id,
        name: "Grace".into(),
        email: Some("grace@example.org".into()),
        phone: None,
        company: None,
        note: Some("a demo".into()),
    };
    let notice = |key: &str| {
        NewJob::of(
            &NoticeArgs {
                key: key.into(),
                to: "sales@example.org".into(),
                subject: "A new lead".into(),
                text: "Grace".into(),
            },
            3,
        )
    };
    let first = store
        .record_lead(&scope, &lead, &[notice("lead-1")])
        .await
        .unwrap();
    let again = store
        .record_lead(&scope, &lead, &[notice("lead-1-again")])
        .await
        .unwrap();
    assert_eq!(first, again, "one lead per call");
    assert_eq!(store.leads(&scope, 10, 0).await.unwrap().1, 1);
    let notices = store
        .claim("w", &[JobKind::Notice], 10, chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(notices.len(), 1, "announced with the lead, once");
    assert_eq!(notices[0].args::<NoticeArgs>().unwrap().key, "lead-1");

    let stranger = NewLead {
        tool_call_id: ToolCallId::new(),
        ..lead
    };
    assert_not_found(
        store
            .record_lead(&other, &stranger, &[notice("stranger")])
            .await,
        "a lead in another org's conversation",
    );
    let notices = store
        .claim("w", &[JobKind::Notice], 10, chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert!(notices.is_empty(), "nothing announced for a refused lead");
}
