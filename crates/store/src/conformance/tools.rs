use serde_json::json;

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
