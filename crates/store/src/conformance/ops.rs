use chrono::{DateTime, Duration};

use super::*;

pub async fn backup_runs_report_the_latest_success_and_failure(store: S) {
    assert_eq!(
        store.backup_status().await.unwrap(),
        BackupStatus::default()
    );
    let at = |minutes: i64| {
        // Whole microseconds: both backends keep that precision.
        let t = now() - Duration::minutes(minutes);
        DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
    };
    let run = |id: &str, finished: i64, succeeded: bool| BackupRun {
        backup_id: id.into(),
        started_at: at(finished + 1),
        finished_at: at(finished),
        succeeded,
        bytes: if succeeded { 1234 } else { 0 },
        error: (!succeeded).then(|| "No space left on device".to_owned()),
    };
    let older = run("20261122T010000Z", 30, true);
    let newer = run("20261122T020000Z", 20, true);
    let failed = run("20261122T030000Z", 10, false);
    for r in [&newer, &failed, &older] {
        store.record_backup_run(r).await.unwrap();
    }
    let status = store.backup_status().await.unwrap();
    assert_eq!(
        status.last_success,
        Some(newer),
        "the newest success, whatever the insert order"
    );
    assert_eq!(status.last_failure, Some(failed));
}

pub async fn expired_idempotency_keys_are_pruned(store: S) {
    let key = super::accounts::idem("k-prune", "hash");
    store
        .idempotency_start(&key, now() - Duration::hours(1), now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .prune_idempotency_keys(now() - Duration::hours(1))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        store
            .prune_idempotency_keys(now() + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(
        matches!(
            store
                .idempotency_start(&key, now() - Duration::hours(1), now() - Duration::days(1))
                .await
                .unwrap(),
            IdempotencyStart::Started(_)
        ),
        "a pruned key is claimed afresh"
    );
}

pub async fn schema_version_table_sizes_and_whether_data_is_held(store: S) {
    let latest = store.latest_schema_version();
    assert!(latest > 0);
    assert_eq!(store.schema_version().await.unwrap(), latest);
    assert!(
        !store.holds_data().await.unwrap(),
        "a fresh store holds no data"
    );
    store.check_integrity().await.unwrap();

    org(&store, "Sized").await;
    assert!(store.holds_data().await.unwrap());
    store.analyze().await.unwrap();
    let sizes = store.table_sizes().await.unwrap();
    let organizations = sizes.iter().find(|t| t.table == "organizations").unwrap();
    assert_eq!(organizations.rows, 1);
    assert!(organizations.bytes > 0);
    for table in ["users", "messages", "jobs", "chunks", "backup_runs"] {
        assert!(
            sizes.iter().any(|t| t.table == table),
            "{table} is reported"
        );
    }
    store.check_integrity().await.unwrap();
}

pub async fn activity_counts_people_messages_replies_and_audit_per_org(store: S) {
    let (acme, owner) = org(&store, "Acme").await;
    let (_quiet, _) = org(&store, "Quiet").await;
    let bot = store
        .create_chatbot(&acme, new_chatbot("Desk"))
        .await
        .unwrap();
    let member = Sender::member(owner.id);
    let mut first = user_message(bot.id, None, "hello");
    first.sender = Some(member.clone());
    let first = store.add_message(&acme, first).await.unwrap();
    let mut again = user_message(bot.id, Some(first.conversation_id), "again");
    again.sender = Some(member.clone());
    store.add_message(&acme, again).await.unwrap();
    let mut reply = user_message(bot.id, Some(first.conversation_id), "hi");
    reply.role = MessageRole::Assistant;
    reply.tokens = 42;
    let reply = store.add_message(&acme, reply).await.unwrap();
    let mut another = user_message(bot.id, None, "another person, forwarding");
    another.sender = Some(Sender::new(
        Identity::parse("phone", IdentityKind::Whatsapp, "+15550002").unwrap(),
    ));
    another.forwarded = true;
    store.add_message(&acme, another).await.unwrap();
    store
        .rate_reply(&acme, reply.id, &member, Rating::Up, None)
        .await
        .unwrap();
    store.set_tier(&acme, Tier::Pro).await.unwrap();

    let period = usage_period(now());
    let orgs = store
        .org_activity(now() - Duration::days(7), &period, now().date_naive())
        .await
        .unwrap();
    let audit_actions = store
        .audit_actions(Some(now() - Duration::days(7)))
        .await
        .unwrap();
    assert_eq!(
        orgs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["Acme", "Quiet"]
    );
    let a = &orgs[0];
    let usage = store.usage(&acme, &period).await.unwrap();
    assert_eq!(
        (
            a.org_id,
            a.tier,
            a.members,
            a.active_conversations,
            a.user_messages,
            a.replies
        ),
        (acme.org_id(), Tier::Pro, 1, 2, 3, 1)
    );
    assert_eq!(
        (a.month_messages, a.month_tokens),
        (usage.messages as u64, usage.tokens as u64)
    );
    assert!(a.month_tokens >= 42);
    assert_eq!((a.people_day, a.people_week, a.people_month), (2, 2, 2));
    assert_eq!((a.rated_up, a.rated_down), (1, 0));
    assert_eq!(a.messages, vec![("api".to_owned(), 2, 1)]);
    let q = &orgs[1];
    assert_eq!(
        (
            q.active_conversations,
            q.user_messages,
            q.replies,
            q.month_messages
        ),
        (0, 0, 0, 0)
    );
    assert!(
        audit_actions.contains(&("billing.tier_changed".to_owned(), 1)),
        "{audit_actions:?}"
    );

    let later = now() + Duration::seconds(1);
    let orgs = store
        .org_activity(later, &period, later.date_naive())
        .await
        .unwrap();
    assert_eq!(orgs[0].user_messages, 0, "only the window counts");
    let next_month = store
        .org_activity(later, &period, (now() + Duration::days(30)).date_naive())
        .await
        .unwrap();
    let a = &next_month[0];
    assert_eq!((a.people_day, a.people_week, a.people_month), (0, 0, 0));
    assert_eq!(
        a.messages,
        vec![("api".to_owned(), 2, 1)],
        "counted for good"
    );
    assert!(store.audit_actions(Some(later)).await.unwrap().is_empty());
    let ever = store.audit_actions(None).await.unwrap();
    assert!(
        ever.contains(&("billing.tier_changed".to_owned(), 1)),
        "{ever:?}"
    );
}
