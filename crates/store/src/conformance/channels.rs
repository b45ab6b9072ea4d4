//! Channels, their conversations and health, and delivered reply parts.

use serde_json::json;
use steward_domain::*;

use super::*;

fn channel_input(chatbot: ChatbotId, name: &str) -> NewChannel {
    NewChannel {
        id: ChannelId::new(),
        chatbot_id: chatbot,
        kind: ChannelKind::Telegram,
        name: name.into(),
        settings: json!({ "api_base_url": "https://api.telegram.org" }),
        sealed_secrets: vec![1, 2, 3, 0, 255],
    }
}

pub(super) async fn new_channel(
    store: &S,
    scope: &TenantScope,
    chatbot: ChatbotId,
    name: &str,
) -> Channel {
    store
        .create_channel(scope, channel_input(chatbot, name))
        .await
        .unwrap()
}

pub async fn channels_are_created_listed_found_and_deleted_within_their_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let theirs = store
        .create_chatbot(&other, new_chatbot("Theirs"))
        .await
        .unwrap();

    let created = new_channel(&store, &scope, bot.id, "Support").await;
    assert_eq!(created.sealed_secrets, vec![1, 2, 3, 0, 255]);
    assert_eq!(created.health.status(), ChannelStatus::Waiting);
    let read = store.channel(&scope, created.id).await.unwrap();
    assert_eq!(read.settings, created.settings);
    assert_eq!(read.sealed_secrets, created.sealed_secrets);
    assert_eq!(read.kind, ChannelKind::Telegram);
    assert_eq!(
        store.find_channel(created.id).await.unwrap().unwrap().id,
        created.id
    );
    assert!(
        store
            .find_channel(ChannelId::new())
            .await
            .unwrap()
            .is_none()
    );

    let taken = store
        .create_channel(&scope, channel_input(bot.id, "Support"))
        .await;
    assert_conflict(taken, "channel_name_taken");
    // Another organization's chatbot, channel or listing is not found.
    let foreign = store
        .create_channel(&scope, channel_input(theirs.id, "x"))
        .await;
    assert_not_found(foreign, "a channel on another org's chatbot");
    assert_not_found(
        store.channel(&other, created.id).await,
        "another org's channel",
    );
    assert!(
        store
            .list_channels(&other, Some(bot.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(
        store.delete_channel(&other, bot.id, created.id).await,
        "deleting another org's channel",
    );

    let second = new_channel(&store, &scope, bot.id, "Sales").await;
    let listed: Vec<_> = store
        .list_channels(&scope, Some(bot.id))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![created.id, second.id]);
    // The organization's channels, whichever chatbot has them; not another's.
    let other_bot = store
        .create_chatbot(&scope, new_chatbot("Other desk"))
        .await
        .unwrap();
    let third = new_channel(&store, &scope, other_bot.id, "Desk").await;
    let everywhere: std::collections::HashSet<_> = store
        .list_channels(&scope, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(everywhere, [created.id, second.id, third.id].into());
    assert!(store.list_channels(&other, None).await.unwrap().is_empty());
    assert_eq!(
        store
            .all_channels(Some(ChannelKind::Telegram))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .all_channels(Some(ChannelKind::Email))
            .await
            .unwrap()
            .is_empty()
    );

    store
        .delete_channel(&scope, bot.id, created.id)
        .await
        .unwrap();
    assert_not_found(store.channel(&scope, created.id).await, "a deleted channel");
    let audit = store.list_audit(&scope, None, 10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "channel.create"));
    assert!(audit.iter().any(|a| a.action == "channel.delete"));
}

/// Stores a message of `key` on `channel` as a webhook does: in the sender's
/// conversation there, which their first message starts.
async fn write_as(
    store: &S,
    scope: &TenantScope,
    bot: ChatbotId,
    channel: &Channel,
    key: &str,
    external: &str,
) -> ConversationId {
    let known = store
        .find_channel_conversation(scope, channel.id, key)
        .await
        .unwrap();
    let mut message = user_message(bot, known, "hi");
    message.channel_id = Some(channel.id);
    message.external_id = Some(external.into());
    message.conversation_key = known.is_none().then(|| key.to_owned());
    store
        .add_message(scope, message)
        .await
        .unwrap()
        .conversation_id
}

pub async fn each_external_user_has_one_conversation_per_channel(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let one = new_channel(&store, &scope, bot.id, "one").await;
    let two = new_channel(&store, &scope, bot.id, "two").await;

    // One conversation per sender and channel (concurrent first messages:
    // `a_first_message_starts_its_senders_conversation_once`).
    let first = write_as(&store, &scope, bot.id, &one, "user-1", "m1").await;
    assert_eq!(
        write_as(&store, &scope, bot.id, &one, "user-1", "m2").await,
        first
    );
    assert_ne!(
        write_as(&store, &scope, bot.id, &one, "user-2", "m3").await,
        first
    );
    let convo_two = write_as(&store, &scope, bot.id, &two, "user-1", "m4").await;
    assert_ne!(convo_two, first);

    // The same provider id on two channels is two messages; on one, a duplicate.
    for (channel, conversation) in [(&one, first), (&two, convo_two)] {
        let mut message = user_message(bot.id, Some(conversation), "hello");
        message.external_id = Some("update-1".into());
        message.channel_id = Some(channel.id);
        message.meta = Some(json!({ "chat_id": 42 }));
        let stored = store.add_message(&scope, message).await.unwrap();
        let read = store.message(&scope, stored.id).await.unwrap();
        assert_eq!(read.channel_id, Some(channel.id));
        assert_eq!(read.meta, Some(json!({ "chat_id": 42 })));
    }
    let mut again = user_message(bot.id, Some(first), "hello");
    again.external_id = Some("update-1".into());
    again.channel_id = Some(one.id);
    assert_conflict(store.add_message(&scope, again).await, "duplicate_message");

    // Removing a channel keeps its conversations, without it.
    store.delete_channel(&scope, bot.id, one.id).await.unwrap();
    let kept = store
        .conversation_messages(&scope, first, 10)
        .await
        .unwrap();
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|m| m.channel_id.is_none()));
}

pub async fn channel_health_counts_errors_in_a_window(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let line = new_channel(&store, &scope, bot.id, "line").await;

    store
        .record_channel_event(line.id, ChannelEvent::Inbound)
        .await
        .unwrap();
    let health = store.channel(&scope, line.id).await.unwrap().health;
    assert!(health.last_inbound_at.is_some());
    assert_eq!(health.status(), ChannelStatus::Ok);

    for n in 0..3 {
        let long = format!("HTTP 401: invalid token {n} {}", "x".repeat(5000));
        store
            .record_channel_event(line.id, ChannelEvent::Error(long))
            .await
            .unwrap();
    }
    let health = store.channel(&scope, line.id).await.unwrap().health;
    assert_eq!(health.status(), ChannelStatus::Failing);
    assert_eq!(health.recent_errors(now()), 3);
    assert_eq!(
        health.recent_errors(now() + ERROR_WINDOW),
        0,
        "the window ends"
    );
    let error = health.last_error.unwrap();
    assert!(error.starts_with("HTTP 401: invalid token 2"));
    assert!(error.chars().count() <= 500, "errors are kept short");

    store
        .record_channel_event(line.id, ChannelEvent::Outbound)
        .await
        .unwrap();
    assert_eq!(
        store
            .channel(&scope, line.id)
            .await
            .unwrap()
            .health
            .status(),
        ChannelStatus::Ok
    );

    store
        .set_channel_cursor(&scope, line.id, json!({ "uid": 41 }))
        .await
        .unwrap();
    assert_eq!(
        store.channel(&scope, line.id).await.unwrap().cursor,
        Some(json!({ "uid": 41 }))
    );
    let (other, _) = org(&store, "Other").await;
    assert_not_found(
        store.set_channel_cursor(&other, line.id, json!({})).await,
        "another org's cursor",
    );
}

pub async fn delivered_parts_are_recorded_once_per_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let reply = store
        .add_message(&scope, user_message(bot.id, None, "a reply"))
        .await
        .unwrap();
    assert!(
        store
            .delivered_parts(&scope, reply.id)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .record_delivery(&scope, reply.id, 1, Some("m-2".into()))
        .await
        .unwrap();
    store
        .record_delivery(&scope, reply.id, 0, None)
        .await
        .unwrap();
    store
        .record_delivery(&scope, reply.id, 1, Some("again".into()))
        .await
        .unwrap();
    assert_eq!(
        store.delivered_parts(&scope, reply.id).await.unwrap(),
        vec![0, 1]
    );
    // Another organization neither sees nor records parts of this reply.
    store
        .record_delivery(&other, reply.id, 2, None)
        .await
        .unwrap();
    assert!(
        store
            .delivered_parts(&other, reply.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.delivered_parts(&scope, reply.id).await.unwrap(),
        vec![0, 1]
    );
    assert_not_found(
        store.message(&other, reply.id).await,
        "another org's message",
    );
}

pub async fn channel_secrets_are_replaced_only_if_unchanged(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let channel = new_channel(&store, &scope, bot.id, "Support").await;
    assert!(
        store
            .replace_channel_secrets(channel.id, &channel.sealed_secrets, &[9, 9, 9])
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .channel(&scope, channel.id)
            .await
            .unwrap()
            .sealed_secrets,
        [9, 9, 9]
    );
    assert!(
        !store
            .replace_channel_secrets(channel.id, &channel.sealed_secrets, &[7])
            .await
            .unwrap(),
        "changed meanwhile: left alone"
    );
    assert!(
        !store
            .replace_channel_secrets(ChannelId::new(), &[9, 9, 9], &[7])
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .channel(&scope, channel.id)
            .await
            .unwrap()
            .sealed_secrets,
        [9, 9, 9]
    );
}

/// A sender's first message on a channel starts their conversation there
/// (what a webhook does for a sender it has no conversation for); one
/// started meanwhile by another of their messages is refused with nothing
/// stored, for the caller to find it.
pub async fn a_first_message_starts_its_senders_conversation_once(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let channel = new_channel(&store, &scope, bot.id, "Support").await;
    let first = |sender: &str, external: &str| {
        let mut message = user_message(bot.id, None, "hello");
        message.channel_id = Some(channel.id);
        message.external_id = Some(external.into());
        message.conversation_key = Some(sender.into());
        message
    };

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (store, message) = (store.clone(), first("user-1", &format!("m{i}")));
        calls.spawn(async move { store.add_message(&scope, message).await });
    }
    let mut started = Vec::new();
    for result in calls.join_all().await {
        match result {
            Ok(message) => started.push(message),
            Err(e) => assert!(
                matches!(e, StoreError::Conflict(Conflict::ConversationStarted)),
                "{e:?}"
            ),
        }
    }
    assert_eq!(started.len(), 1, "one message starts the conversation");
    let conversation = started[0].conversation_id;
    assert_eq!(
        store
            .find_channel_conversation(&scope, channel.id, "user-1")
            .await
            .unwrap(),
        Some(conversation)
    );
    let stored = store
        .conversation_messages(&scope, conversation, 20)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the refused messages stored nothing");

    let theirs = store
        .add_message(&scope, first("user-2", "m-other"))
        .await
        .unwrap();
    assert_ne!(theirs.conversation_id, conversation);
    assert_eq!(
        store
            .find_channel_conversation(&scope, channel.id, "user-2")
            .await
            .unwrap(),
        Some(theirs.conversation_id)
    );
}

pub async fn a_message_checked_with_a_channels_secrets_is_stored_only_while_it_has_them(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Desk"))
        .await
        .unwrap();
    let channel = new_channel(&store, &scope, bot.id, "Support").await;
    let checked_in = |conversation, secrets: &[u8], external: &str| {
        let mut message = user_message(bot.id, conversation, "hello");
        message.channel_id = Some(channel.id);
        message.external_id = Some(external.into());
        message.channel_secrets = Some(secrets.to_vec());
        message.conversation_key = conversation.is_none().then(|| "user-1".to_owned());
        message
    };
    let conversation = store
        .add_message(&scope, checked_in(None, &channel.sealed_secrets, "m1"))
        .await
        .unwrap()
        .conversation_id;
    let checked_with =
        |secrets: &[u8], external: &str| checked_in(Some(conversation), secrets, external);
    assert_conflict(
        store
            .add_message(&scope, checked_with(&[9, 9, 9], "m2"))
            .await,
        "channel_changed",
    );

    // Replaced (by any process): the secrets read before no longer let in.
    assert!(
        store
            .replace_channel_secrets(channel.id, &channel.sealed_secrets, &[9, 9, 9])
            .await
            .unwrap()
    );
    assert_conflict(
        store
            .add_message(&scope, checked_with(&channel.sealed_secrets, "m3"))
            .await,
        "channel_changed",
    );
    store
        .add_message(&scope, checked_with(&[9, 9, 9], "m4"))
        .await
        .unwrap();

    // Deleted: nothing lets in.
    store
        .delete_channel(&scope, bot.id, channel.id)
        .await
        .unwrap();
    assert_conflict(
        store
            .add_message(&scope, checked_with(&[9, 9, 9], "m5"))
            .await,
        "channel_changed",
    );
    let stored: Vec<_> = store
        .conversation_messages(&scope, conversation, 10)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| m.external_id)
        .collect();
    assert_eq!(stored, ["m1", "m4"]);
}
