//! Messages, history, threads, and the jobs messages cause.

use chrono::{Datelike, Duration};
use serde_json::json;
use steward_domain::*;

use super::*;

pub async fn messages_open_conversations_and_count_usage(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let other = store
        .create_chatbot(&scope, new_chatbot("Other"))
        .await
        .unwrap();

    let first = store
        .add_message(&scope, user_message(bot.id, None, "one"))
        .await
        .unwrap();
    let second = store
        .add_message(
            &scope,
            user_message(bot.id, Some(first.conversation_id), "two"),
        )
        .await
        .unwrap();
    assert_eq!(second.conversation_id, first.conversation_id);
    let fresh = store
        .add_message(&scope, user_message(bot.id, None, "three"))
        .await
        .unwrap();
    assert_ne!(fresh.conversation_id, first.conversation_id);

    assert_not_found(
        store
            .add_message(
                &scope,
                user_message(other.id, Some(first.conversation_id), "x"),
            )
            .await,
        "conversation of another chatbot",
    );
    assert_not_found(
        store
            .add_message(
                &scope,
                user_message(bot.id, Some(ConversationId::new()), "x"),
            )
            .await,
        "unknown conversation",
    );

    let mut reply = user_message(bot.id, Some(first.conversation_id), "an answer");
    reply.role = MessageRole::Assistant;
    store.add_message(&scope, reply).await.unwrap();

    let usage = store.usage(&scope, &usage_period(now())).await.unwrap();
    assert_eq!(usage.messages, 3, "user messages count; replies do not");
    assert_eq!(store.usage(&scope, "1999-01").await.unwrap().messages, 0);

    let line = new_channel(&store, &scope, bot.id, "line").await;
    let mut external = user_message(bot.id, Some(first.conversation_id), "from a channel");
    external.external_id = Some("wamid.1".into());
    external.channel = "whatsapp".into();
    external.channel_id = Some(line.id);
    store.add_message(&scope, external.clone()).await.unwrap();
    external.id = MessageId::new();
    assert_conflict(
        store.add_message(&scope, external).await,
        "duplicate_message",
    );
    assert_eq!(
        store
            .usage(&scope, &usage_period(now()))
            .await
            .unwrap()
            .messages,
        4,
        "the duplicate was not counted"
    );

    store
        .update_chatbot(
            &scope,
            bot.id,
            ChatbotPatch {
                status: Some(ChatbotStatus::Paused),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_conflict(
        store
            .add_message(&scope, user_message(bot.id, None, "anyone?"))
            .await,
        "chatbot_paused",
    );
}

pub async fn history_pages_are_newest_first_without_gaps_or_overlap(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let other = store
        .create_chatbot(&scope, new_chatbot("Other"))
        .await
        .unwrap();
    let mut sent = Vec::new();
    let mut conversation = None;
    for i in 0..25 {
        let message = store
            .add_message(&scope, user_message(bot.id, conversation, &format!("m{i}")))
            .await
            .unwrap();
        conversation = Some(message.conversation_id);
        store
            .add_message(&scope, user_message(other.id, None, "noise"))
            .await
            .unwrap();
        sent.push(message);
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(
                &scope,
                &HistoryQuery {
                    chatbot_id: bot.id,
                    limit: 10,
                    before,
                    from: None,
                    to: None,
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        before = Some(HistoryPosition {
            created_at: last.created_at,
            id: last.id,
        });
        seen.extend(page);
    }
    sent.reverse();
    assert_eq!(seen, sent, "every message once, newest first");
}

pub async fn history_is_filtered_by_time_range(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(
            store
                .add_message(&scope, user_message(bot.id, None, &format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    let query = |from, to| HistoryQuery {
        chatbot_id: bot.id,
        limit: 50,
        before: None,
        from,
        to,
    };
    let all = store.history(&scope, &query(None, None)).await.unwrap();
    assert_eq!(all.len(), 6);

    // `from` is inclusive, `to` exclusive.
    let from = sent[2].created_at;
    let to = sent[4].created_at;
    let window = store
        .history(&scope, &query(Some(from), Some(to)))
        .await
        .unwrap();
    assert!(
        window
            .iter()
            .all(|m| m.created_at >= from && m.created_at < to)
    );
    assert!(window.iter().any(|m| m.id == sent[2].id));
    assert!(!window.iter().any(|m| m.id == sent[4].id));

    let future = now() + Duration::days(1);
    assert!(
        store
            .history(&scope, &query(Some(future), None))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_message_thread_holds_its_neighbours_in_order(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let mut conversation = None;
    let mut sent = Vec::new();
    for i in 0..9 {
        let message = store
            .add_message(&scope, user_message(bot.id, conversation, &format!("m{i}")))
            .await
            .unwrap();
        conversation = Some(message.conversation_id);
        sent.push(message);
    }
    store
        .add_message(&scope, user_message(bot.id, None, "another conversation"))
        .await
        .unwrap();

    let (message, thread) = store
        .message_thread(&scope, bot.id, sent[4].id, 2)
        .await
        .unwrap();
    assert_eq!(message, sent[4]);
    assert_eq!(thread, sent[2..7].to_vec());
    let (_, edge) = store
        .message_thread(&scope, bot.id, sent[0].id, 3)
        .await
        .unwrap();
    assert_eq!(edge, sent[0..4].to_vec());
    let other = store
        .create_chatbot(&scope, new_chatbot("Other"))
        .await
        .unwrap();
    assert_not_found(
        store.message_thread(&scope, other.id, sent[4].id, 2).await,
        "message of another chatbot",
    );
}

pub async fn text_round_trips_exactly(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let name = "مساعد 🤖 Ünïcødé";
    let mut chatbot = new_chatbot(name);
    chatbot.system_prompt = SystemPrompt::parse(
        "p",
        "שלום\n\t👋🏽 \"quotes\" and 'apostrophes'; DROP TABLE users; --",
    )
    .unwrap();
    let bot = store.create_chatbot(&scope, chatbot).await.unwrap();
    let fetched = store.chatbot(&scope, bot.id).await.unwrap();
    assert_eq!(fetched, bot);
    assert_eq!(fetched.name, name);
    let message = store
        .add_message(&scope, user_message(bot.id, None, "emoji 👩‍👩‍👧 and عربى"))
        .await
        .unwrap();
    let (found, _) = store
        .message_thread(&scope, bot.id, message.id, 0)
        .await
        .unwrap();
    assert_eq!(found, message, "including created_at to the microsecond");
}

// --- Messages that cause jobs ---

pub async fn a_message_and_the_job_it_causes_are_stored_together(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let respond = |key: &str| NewJob {
        org_id: Some(scope.org_id()),
        ordering_key: Some(key.into()),
        ..NewJob::raw(JobKind::Respond, json!({}), 3)
    };
    let mut first = user_message(bot.id, None, "hello");
    first.then = vec![respond("c1")];
    let stored = store.add_message(&scope, first).await.unwrap();
    let jobs = store.list_jobs(&scope, None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind, jobs[0].ordering_key.as_deref()),
        (JobKind::Respond, Some("c1"))
    );

    // A message refused (a duplicate) leaves no job behind.
    let line = new_channel(&store, &scope, bot.id, "line").await;
    let mut duplicate = user_message(bot.id, Some(stored.conversation_id), "again");
    duplicate.external_id = Some("ext-1".into());
    duplicate.channel_id = Some(line.id);
    store.add_message(&scope, duplicate.clone()).await.unwrap();
    duplicate.id = MessageId::new();
    duplicate.then = vec![respond("c1")];
    assert_conflict(
        store.add_message(&scope, duplicate).await,
        "duplicate_message",
    );
    assert_eq!(store.list_jobs(&scope, None, 10).await.unwrap().len(), 1);

    // A reply's tokens count toward the month; the reply does not count as a message.
    // Its job keeps every field it was given (PostgreSQL passes them as JSON).
    let later = now() + Duration::minutes(5);
    let deliver = NewJob {
        priority: 7,
        dedupe_key: Some("deliver:ext-1".into()),
        ..NewJob::raw(JobKind::Respond, json!({ "say": "héllo \"quoted\"" }), 4)
            .for_org(scope.org_id())
            .at(later)
    };
    let mut reply = user_message(bot.id, Some(stored.conversation_id), "hi there");
    reply.role = MessageRole::Assistant;
    reply.tokens = 120;
    reply.answers = Some(stored.id);
    reply.then = vec![deliver.clone()];
    let reply = store.add_message(&scope, reply).await.unwrap();
    let queued = store.list_jobs(&scope, None, 10).await.unwrap();
    let job = queued
        .iter()
        .find(|j| j.dedupe_key.as_deref() == Some("deliver:ext-1"))
        .expect("the reply's job");
    assert_eq!(
        (
            &job.payload,
            job.priority,
            job.run_at,
            job.max_attempts,
            job.org_id
        ),
        (&deliver.payload, 7, later, 4, Some(scope.org_id()))
    );
    let (read_back, _) = store
        .message_thread(&scope, bot.id, reply.id, 0)
        .await
        .unwrap();
    assert_eq!(
        read_back.answers,
        Some(stored.id),
        "a reply names what it answered"
    );
    let usage = store.usage(&scope, &usage_period(now())).await.unwrap();
    assert_eq!((usage.messages, usage.tokens), (2, 120));
}

/// Many messages at once, as concurrent webhooks bring them (PostgreSQL
/// stores such messages together, in batches): each stored once; a repeat,
/// a thread started twice and a paused chatbot's message refused without
/// touching the others; every counter counting exactly what was stored.
pub async fn messages_that_come_at_once_are_each_stored_and_counted_once(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (elsewhere, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let paused = store
        .create_chatbot(
            &scope,
            NewChatbot {
                status: ChatbotStatus::Paused,
                ..new_chatbot("Paused")
            },
        )
        .await
        .unwrap();
    let theirs = store
        .create_chatbot(&elsewhere, new_chatbot("Theirs"))
        .await
        .unwrap();
    let channel = super::channels::new_channel(&store, &scope, bot.id, "Desk").await;
    let asked = store
        .add_message(&scope, user_message(bot.id, None, "before"))
        .await
        .unwrap();
    let respond = |scope: &TenantScope, key: String| NewJob {
        org_id: Some(scope.org_id()),
        ordering_key: Some(key),
        ..NewJob::raw(JobKind::Respond, json!({}), 3)
    };
    // Thirty updates from ten phone numbers, each in a thread of its own;
    // the first ten sent twice, each copy starting its thread.
    let update = |n: usize| {
        let mut message = user_message(bot.id, None, &format!("update {n}"));
        let phone = format!("+15550001{:02}", n % 10);
        message.sender = Some(Sender::new(
            Identity::parse("phone", IdentityKind::Whatsapp, &phone).unwrap(),
        ));
        message.external_id = Some(format!("u-{n}"));
        message.channel_id = Some(channel.id);
        message.conversation_key = Some(format!("thread-{n}"));
        message.then = vec![respond(&scope, format!("thread-{n}"))];
        message
    };
    let mut sent: Vec<(&str, TenantScope, NewMessage)> = Vec::new();
    sent.extend((0..30).map(|n| ("update", scope, update(n))));
    sent.extend((0..10).map(|n| ("repeat", scope, update(n))));
    sent.extend((0..3).map(|n| {
        let message = user_message(paused.id, None, &format!("paused {n}"));
        ("paused", scope, message)
    }));
    sent.extend((0..5).map(|n| {
        let mut message = user_message(theirs.id, None, &format!("theirs {n}"));
        message.then = vec![respond(&elsewhere, format!("theirs-{n}"))];
        ("theirs", elsewhere, message)
    }));
    sent.extend((0..2).map(|n| {
        let mut reply = user_message(bot.id, Some(asked.conversation_id), &format!("reply {n}"));
        reply.role = MessageRole::Assistant;
        reply.answers = Some(asked.id);
        reply.tokens = 50;
        ("reply", scope, reply)
    }));
    let calls: Vec<_> = sent
        .into_iter()
        .map(|(what, scope, message)| {
            let store = store.clone();
            let text = message.text.as_str().to_owned();
            let call = tokio::spawn(async move { store.add_message(&scope, message).await });
            (what, text, call)
        })
        .collect();
    let mut stored: std::collections::HashMap<String, usize> = Default::default();
    let mut count = std::collections::HashMap::<&str, usize>::new();
    for (what, text, call) in calls {
        match call.await.unwrap() {
            Ok(_) => {
                *stored.entry(text).or_default() += 1;
                *count.entry(what).or_default() += 1;
            }
            Err(StoreError::Conflict(conflict)) => {
                let expected: &[&str] = match what {
                    "repeat" | "update" => &["duplicate_message", "conversation_started"],
                    "paused" => &["chatbot_paused"],
                    _ => &[],
                };
                assert!(
                    expected.contains(&conflict.code()),
                    "{what} {text}: {conflict:?}"
                );
            }
            Err(e) => panic!("{what} {text}: {e:?}"),
        }
    }
    // Each update is stored once, whichever of its two copies came first.
    for n in 0..30 {
        assert_eq!(stored.get(&format!("update {n}")), Some(&1), "update {n}");
    }
    assert_eq!(
        (count.get("theirs"), count.get("reply"), count.get("paused")),
        (Some(&5), Some(&2), None)
    );

    let usage = store.usage(&scope, &usage_period(now())).await.unwrap();
    assert_eq!((usage.messages, usage.tokens), (31, 100));
    let usage = store.usage(&elsewhere, &usage_period(now())).await.unwrap();
    assert_eq!((usage.messages, usage.tokens), (5, 0));
    assert_eq!(store.list_jobs(&scope, None, 100).await.unwrap().len(), 30);
    assert_eq!(
        store.list_jobs(&elsewhere, None, 100).await.unwrap().len(),
        5
    );
    let now = chrono::Utc::now();
    let activity = store.activity(&scope, now.date_naive(), now).await.unwrap();
    assert_eq!(
        activity.days,
        vec![DayActivity {
            day: now.date_naive(),
            received: 31,
            replied: 2,
            people: 10,
            ..DayActivity::default()
        }]
    );
    assert_eq!((activity.people_today, activity.people_week), (10, 10));
    // One person per phone number, however many batches its messages met
    // in (a sender new to two of them at once is made by one), and none
    // left without a handle.
    let query = PeopleQuery {
        text: None,
        before: None,
        limit: 100,
    };
    let people = store.people(&scope, &query).await.unwrap();
    let phones = people
        .iter()
        .filter(|p| {
            p.identities
                .iter()
                .any(|i| i.identity.kind == IdentityKind::Whatsapp)
        })
        .count();
    assert_eq!(phones, 10);
    assert!(people.iter().all(|p| !p.identities.is_empty()));
    let received: Vec<_> = activity
        .chatbots
        .iter()
        .map(|c| (c.chatbot_id, c.received, c.started))
        .collect();
    assert_eq!(received, vec![(bot.id, 31, 31), (paused.id, 0, 0)]);
}

pub async fn a_conversation_reads_back_its_latest_turns_in_order(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let mut conversation = None;
    let mut sent = Vec::new();
    for i in 0..6 {
        let message = store
            .add_message(&scope, user_message(bot.id, conversation, &format!("m{i}")))
            .await
            .unwrap();
        conversation = Some(message.conversation_id);
        sent.push(message);
    }
    let conversation = conversation.unwrap();
    assert_eq!(
        store
            .conversation_messages(&scope, conversation, 4)
            .await
            .unwrap(),
        sent[2..].to_vec(),
        "the latest four, oldest first"
    );
    assert_eq!(
        store
            .conversation_messages(&scope, conversation, 100)
            .await
            .unwrap(),
        sent
    );
    assert!(
        store
            .conversation_messages(&other, conversation, 100)
            .await
            .unwrap()
            .is_empty(),
        "another org sees nothing"
    );
}

pub async fn messages_after_a_position_and_live_events_reach_subscribers(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let first = store
        .add_message(&scope, user_message(bot.id, None, "one"))
        .await
        .unwrap();
    let conversation = first.conversation_id;
    let second = store
        .add_message(&scope, user_message(bot.id, Some(conversation), "two"))
        .await
        .unwrap();
    let third = store
        .add_message(&scope, user_message(bot.id, Some(conversation), "three"))
        .await
        .unwrap();
    let earlier = [first.id, second.id, third.id];

    let all = store
        .conversation_messages_after(&scope, conversation, None, 10)
        .await
        .unwrap();
    assert_eq!(all, vec![first.clone(), second.clone(), third.clone()]);
    let after = store
        .conversation_messages_after(&scope, conversation, Some(first.id), 10)
        .await
        .unwrap();
    assert_eq!(after, vec![second.clone(), third.clone()]);
    assert_eq!(
        store
            .conversation_messages_after(&scope, conversation, Some(first.id), 1)
            .await
            .unwrap(),
        vec![second]
    );
    assert!(
        store
            .conversation_messages_after(&scope, conversation, Some(third.id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .conversation_messages_after(&other, conversation, Some(first.id), 10)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .conversation_messages_after(&other, conversation, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .conversation_messages_after(&scope, conversation, Some(MessageId::new()), 10)
            .await,
        Err(StoreError::NotFound)
    ));

    // A subscriber sees published events (once its listener is up) and stored messages.
    let mut events = store.subscribe_live().await;
    let probe = LiveEvent {
        org_id: scope.org_id(),
        conversation_id: conversation,
        kind: LiveKind::ReplyStarted {
            attempt: uuid::Uuid::now_v7(),
            reply: MessageId::new(),
        },
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        store.publish_live(probe.clone()).await.unwrap();
        match tokio::time::timeout(std::time::Duration::from_millis(200), events.recv()).await {
            Ok(Ok(event)) if event == probe => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "no live event arrived"
            ),
        }
    }
    while events.try_recv().is_ok() {}
    let delta = LiveEvent {
        kind: LiveKind::Delta { text: "Hel".into() },
        ..probe.clone()
    };
    store.publish_live(delta.clone()).await.unwrap();
    let stored = store
        .add_message(&scope, user_message(bot.id, Some(conversation), "four"))
        .await
        .unwrap();
    // Late copies of the probe may still arrive, and so may the events of
    // the messages stored before the subscription (announced after their
    // commit, by another connection than the probe's): skip them.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = next_event(&mut events).await;
        let late =
            matches!(&event.kind, LiveKind::Message { message_id } if earlier.contains(message_id));
        if event != probe && !late {
            seen.push(event);
        }
    }
    assert_eq!(
        seen,
        vec![
            delta,
            LiveEvent {
                kind: LiveKind::Message {
                    message_id: stored.id
                },
                ..probe
            }
        ],
        "in the order they happened"
    );
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<LiveEvent>) -> LiveEvent {
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await;
    received.expect("an event in time").expect("not lagged")
}

pub async fn conversations_are_listed_newest_first_filtered_and_paged(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (elsewhere, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let other = store
        .create_chatbot(&scope, new_chatbot("Other"))
        .await
        .unwrap();
    let mut started = Vec::new();
    for i in 0..7 {
        let first = store
            .add_message(&scope, user_message(bot.id, None, &format!("question {i}")))
            .await
            .unwrap();
        let mut reply = user_message(bot.id, Some(first.conversation_id), "The 100% ANSWER_x");
        reply.role = MessageRole::Assistant;
        store.add_message(&scope, reply).await.unwrap();
        started.push(first.conversation_id);
    }
    let lone = store
        .add_message(&scope, user_message(other.id, None, "elsewhere"))
        .await
        .unwrap();
    let theirs_bot = store
        .create_chatbot(&elsewhere, new_chatbot("Theirs"))
        .await
        .unwrap();
    let theirs = store
        .add_message(&elsewhere, user_message(theirs_bot.id, None, "question 1"))
        .await
        .unwrap();

    let list = |query: ConversationQuery| {
        let store = store.clone();
        async move { store.list_conversations(&scope, &query).await }
    };
    let everything = list(ConversationQuery {
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(everything.len(), 8, "the organization's own, all chatbots");
    assert_eq!(everything[0].id, lone.conversation_id, "newest first");
    let newest_of_bot = &everything[1];
    assert_eq!(newest_of_bot.id, started[6]);
    assert_eq!(newest_of_bot.messages, 2);
    assert_eq!(newest_of_bot.last_role, Some(MessageRole::Assistant));
    assert_eq!(
        newest_of_bot.last_text.as_deref(),
        Some("The 100% ANSWER_x")
    );
    assert!(newest_of_bot.last_at.unwrap() >= newest_of_bot.created_at);

    // Pages of three: no gaps, no overlap.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = list(ConversationQuery {
            chatbot_id: Some(bot.id),
            before,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
        seen.extend(page.iter().map(|c| c.id));
        if page.len() < 3 {
            break;
        }
        before = page.last().map(|c| c.id);
    }
    let mut expected = started.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // Text, in any case, with LIKE's wildcards taken literally.
    let found = list(ConversationQuery {
        text: Some("QUESTION 3".into()),
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        found.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![started[3]]
    );
    for literal in ["100%", "answer_x"] {
        let found = list(ConversationQuery {
            text: Some(literal.into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(found.len(), 7, "{literal}");
    }
    let wildcard = list(ConversationQuery {
        text: Some("%".into()),
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(wildcard.len(), 7, "'%' is a character, not everything");

    // Channel and time.
    let none = list(ConversationQuery {
        channel: Some("whatsapp".into()),
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(none.is_empty());
    let later = list(ConversationQuery {
        from: Some(everything[0].created_at),
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(later.len(), 1);
    let earlier = list(ConversationQuery {
        to: Some(everything[0].created_at),
        limit: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(earlier.len(), 7);

    // Another organization's conversation is not found, as a cursor or alone.
    assert_not_found(
        list(ConversationQuery {
            before: Some(theirs.conversation_id),
            limit: 50,
            ..Default::default()
        })
        .await,
        "another organization's conversation as a cursor",
    );
    assert_not_found(
        store.conversation(&scope, theirs.conversation_id).await,
        "another organization's conversation",
    );
    assert_eq!(
        store
            .conversation(&scope, started[0])
            .await
            .unwrap()
            .messages,
        2
    );
}

pub async fn activity_counts_days_people_replies_and_chatbots(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let (elsewhere, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let quiet = store
        .create_chatbot(&scope, new_chatbot("Quiet"))
        .await
        .unwrap();
    let from = |chatbot, conversation, text, sender: &Sender| {
        let mut message = user_message(chatbot, conversation, text);
        message.sender = Some(sender.clone());
        message
    };
    let member = Sender::member(owner.id);
    let asked = store
        .add_message(&scope, from(bot.id, None, "one", &member))
        .await
        .unwrap();
    let mut reply = user_message(bot.id, Some(asked.conversation_id), "answer");
    reply.role = MessageRole::Assistant;
    reply.answers = Some(asked.id);
    let reply = store.add_message(&scope, reply).await.unwrap();
    // The same member again, forwarding something: one person, two messages.
    let mut forwarded = from(bot.id, None, "two", &member);
    forwarded.forwarded = true;
    store.add_message(&scope, forwarded).await.unwrap();
    // A message nobody is known to have written counts no person.
    store
        .add_message(&scope, user_message(bot.id, None, "anonymous"))
        .await
        .unwrap();
    let theirs = store
        .create_chatbot(&elsewhere, new_chatbot("Theirs"))
        .await
        .unwrap();
    store
        .add_message(&elsewhere, from(theirs.id, None, "not ours", &member))
        .await
        .unwrap();
    store
        .rate_reply(&scope, reply.id, &member, Rating::Down, None)
        .await
        .unwrap();

    let now = chrono::Utc::now();
    let activity = store
        .activity(&scope, (now - Duration::days(29)).date_naive(), now)
        .await
        .unwrap();
    let today = DayActivity {
        day: now.date_naive(),
        received: 3,
        forwarded: 1,
        replied: 1,
        people: 1,
        rated_down: 1,
        ..DayActivity::default()
    };
    assert_eq!(activity.days, vec![today.clone()]);
    assert_eq!((activity.people_today, activity.people_week), (1, 1));
    let monday = now.date_naive()
        - Duration::days(i64::from(now.date_naive().weekday().num_days_from_monday()));
    assert_eq!(activity.weeks, vec![(monday, 1)]);
    assert_eq!(activity.reply_seconds.len(), 1);
    assert!((0.0..60.0).contains(&activity.reply_seconds[0]));
    let chatbot = |id, received, started, down| ChatbotActivity {
        chatbot_id: id,
        received,
        started,
        rated_up: 0,
        rated_down: down,
    };
    assert_eq!(
        activity.chatbots,
        vec![chatbot(bot.id, 3, 3, 1), chatbot(quiet.id, 0, 0, 0)]
    );

    // Through a channel: one person writes in two threads, each thread's
    // first message starting its conversation (counted as started); a
    // retried webhook's duplicate counts nothing.
    let channel = super::channels::new_channel(&store, &scope, quiet.id, "Desk").await;
    let phone = Sender::new(Identity::parse("phone", IdentityKind::Whatsapp, "+15550001").unwrap());
    for (update, text, thread) in [
        ("u-1", "hello", "thread-1"),
        ("u-1", "hello", "thread-1"),
        ("u-2", "again", "thread-2"),
    ] {
        let known = store
            .find_channel_conversation(&scope, channel.id, thread)
            .await
            .unwrap();
        let mut message = from(quiet.id, known, text, &phone);
        message.external_id = Some(update.into());
        message.channel_id = Some(channel.id);
        message.conversation_key = known.is_none().then(|| thread.to_owned());
        let _ = store.add_message(&scope, message).await;
    }
    let activity = store
        .activity(&scope, (now - Duration::days(29)).date_naive(), now)
        .await
        .unwrap();
    assert_eq!(
        activity.days,
        vec![DayActivity {
            received: 5,
            people: 2,
            ..today
        }]
    );
    assert_eq!(activity.people_today, 2, "the member and the phone number");
    assert_eq!(
        activity.chatbots,
        vec![chatbot(bot.id, 3, 3, 1), chatbot(quiet.id, 2, 2, 0)]
    );
    let later = store
        .activity(
            &scope,
            (now + Duration::days(1)).date_naive(),
            now + Duration::days(8),
        )
        .await
        .unwrap();
    assert!(later.days.is_empty() && later.chatbots.iter().all(|c| c.received == 0));
    // A period from tomorrow on holds this week's people unless tomorrow
    // starts a new week: weeks count all their days.
    let expected = if now.date_naive().weekday() == chrono::Weekday::Sun {
        vec![]
    } else {
        vec![(monday, 2)]
    };
    assert_eq!(later.weeks, expected);
    assert_eq!(later.people_today, 0, "nobody wrote on that day");
}

pub async fn the_text_filter_finds_words_and_word_beginnings_however_many_messages_hold_them(
    store: S,
) {
    let (scope, _) = org(&store, "Acme").await;
    let (elsewhere, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let say = |text: &'static str, conversation: Option<ConversationId>| {
        let store = store.clone();
        async move {
            store
                .add_message(&scope, user_message(bot.id, conversation, text))
                .await
                .unwrap()
                .conversation_id
        }
    };
    let parcel = say("Where is my PARCEL? Tracking number ZX-4471.", None).await;
    let colis = say("Bonjour, où est mon colis ?", None).await;
    let theirs_bot = store
        .create_chatbot(&elsewhere, new_chatbot("Theirs"))
        .await
        .unwrap();
    store
        .add_message(
            &elsewhere,
            user_message(theirs_bot.id, None, "tracking number of my parcel"),
        )
        .await
        .unwrap();
    let page = |text: &'static str, limit: u32, before: Option<ConversationId>| {
        let store = store.clone();
        async move {
            store
                .list_conversations(
                    &scope,
                    &ConversationQuery {
                        text: Some(text.into()),
                        limit,
                        before,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    let find = |text: &'static str| page(text, 50, None);
    // Words in any case, in order, the last one a word's beginning; never
    // another organization's.
    for text in [
        "tracking number",
        "Tracking numb",
        "zx 4471",
        "parcel?",
        "PAR",
    ] {
        assert_eq!(find(text).await, vec![parcel], "{text}");
    }
    assert_eq!(find("où").await, vec![colis]);
    for text in ["number tracking", "racking", "4471 zx", "nowhere"] {
        assert!(
            find(text).await.is_empty(),
            "{text}: words, in order, from their start"
        );
    }

    // A word more messages hold than the index is read for: conversations
    // are tested one by one, and the answer is the same.
    let busy = say("parcel 0", None).await;
    for _ in 0..crate::sql::WORD_INDEX_READ_LIMIT {
        say("another parcel", Some(busy)).await;
    }
    assert_eq!(find("parcel").await, vec![busy, parcel]);
    assert_eq!(find("another parc").await, vec![busy]);
    assert_eq!(find("tracking").await, vec![parcel]);

    // Newer conversations than the window tests, none holding the word: the
    // older ones are read from the index, after those the window found.
    for _ in 0..crate::sql::SCAN_WINDOW {
        say("nothing to see", None).await;
    }
    assert_eq!(find("parcel").await, vec![busy, parcel]);
    assert_eq!(find("another parc").await, vec![busy]);
    let newest = say("one more parcel", None).await;
    assert_eq!(find("parcel").await, vec![newest, busy, parcel]);
    assert_eq!(
        page("parcel", 2, None).await,
        vec![newest, busy],
        "a page ends where its limit does"
    );
    assert_eq!(
        page("parcel", 2, Some(busy)).await,
        vec![parcel],
        "the next begins after it"
    );
    assert!(page("parcel", 2, Some(parcel)).await.is_empty());
}
