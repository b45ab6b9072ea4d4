//! Personal memory: people's keys and sealed facts, kept once per message,
//! bounded, moved by a merge, and gone when the organization turns memory
//! off; never seen from another organization. And erasure: a person gone
//! for good, their keys first, everyone else's data kept.

use steward_domain::*;

use super::*;

/// A person who wrote on Telegram as `handle`, and the message they wrote.
async fn person(store: &S, scope: &TenantScope, handle: &str) -> (PersonId, MessageId) {
    let chatbot = store
        .create_chatbot(scope, new_chatbot("Helper"))
        .await
        .unwrap()
        .id;
    let mut message = user_message(chatbot, None, "hello");
    message.sender = Some(Sender::new(
        Identity::parse("sender", IdentityKind::Telegram, handle).unwrap(),
    ));
    let stored = store.add_message(scope, message).await.unwrap();
    (stored.person_id.unwrap(), stored.id)
}

fn key() -> PersonKey {
    PersonKey {
        id: PersonKeyId::new(),
        sealed: vec![7; 60],
    }
}

fn fact(key: &PersonKey, sealed: &[u8], minutes_ago: i64) -> SealedFact {
    SealedFact {
        id: FactId::new(),
        key_id: key.id,
        sealed: sealed.to_vec(),
        source_message_id: None,
        created_at: now() - chrono::Duration::minutes(minutes_ago),
    }
}

fn sealed_of(facts: &[SealedFact]) -> Vec<Vec<u8>> {
    facts.iter().map(|f| f.sealed.clone()).collect()
}

pub async fn memory_is_kept_once_per_message_bounded_and_within_its_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let (ada, said) = person(&store, &scope, "1").await;
    let (theirs, _) = person(&store, &globex, "1").await;
    let ada_key = key();
    store.add_person_key(&scope, ada, &ada_key).await.unwrap();
    assert_not_found(
        store.add_person_key(&globex, ada, &key()).await,
        "a key for another organization's person",
    );
    assert_eq!(
        store.person_keys(&scope, ada).await.unwrap(),
        std::slice::from_ref(&ada_key)
    );
    assert!(store.person_keys(&globex, ada).await.unwrap().is_empty());

    let facts = [fact(&ada_key, b"one", 3), fact(&ada_key, b"two", 2)];
    assert!(store.remember(&scope, ada, said, &facts, 10).await.unwrap());
    assert!(
        !store
            .remember(&scope, ada, said, &[fact(&ada_key, b"again", 1)], 10)
            .await
            .unwrap(),
        "a message's facts are kept once"
    );
    let kept = store.memory(&scope, ada).await.unwrap();
    assert_eq!(sealed_of(&kept), [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(kept[0].source_message_id, Some(said));
    assert!(store.memory(&globex, ada).await.unwrap().is_empty());
    // Another organization's person, or a key that is not the person's: nothing stored.
    store
        .remember(
            &globex,
            theirs,
            MessageId::new(),
            &[fact(&ada_key, b"stolen", 0)],
            10,
        )
        .await
        .unwrap();
    assert!(store.memory(&globex, theirs).await.unwrap().is_empty());

    // Bounded: only the newest are kept.
    let newer = [fact(&ada_key, b"three", 1), fact(&ada_key, b"four", 0)];
    assert!(
        store
            .remember(&scope, ada, MessageId::new(), &newer, 3)
            .await
            .unwrap()
    );
    let kept = store.memory(&scope, ada).await.unwrap();
    assert_eq!(
        sealed_of(&kept),
        [b"two".to_vec(), b"three".to_vec(), b"four".to_vec()]
    );

    assert_not_found(
        store.forget_fact(&globex, ada, kept[0].id).await,
        "from another org",
    );
    store.forget_fact(&scope, ada, kept[0].id).await.unwrap();
    assert_not_found(
        store.forget_fact(&scope, ada, kept[0].id).await,
        "forgotten already",
    );
    assert_eq!(store.forget_memory(&globex, ada).await.unwrap(), 0);
    assert_eq!(store.forget_memory(&scope, ada).await.unwrap(), 2);
    assert!(store.memory(&scope, ada).await.unwrap().is_empty());
    assert_eq!(
        store.person_keys(&scope, ada).await.unwrap().len(),
        1,
        "the key stays"
    );

    // A master-key rotation replaces a key only if it is unchanged.
    assert!(
        !store
            .replace_person_key(ada_key.id, b"other", b"new")
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_person_key(ada_key.id, &ada_key.sealed, b"new")
            .await
            .unwrap()
    );
    assert_eq!(
        store.person_keys(&scope, ada).await.unwrap()[0].sealed,
        b"new"
    );
    assert_eq!(store.all_person_keys().await.unwrap().len(), 1);
    let log = store.list_audit(&scope, None, 10).await.unwrap();
    let rotated: Vec<_> = log
        .iter()
        .filter(|e| e.action == crate::PERSON_KEY_RESEALED)
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(
        rotated,
        [format!("person_key:{}", ada_key.id)],
        "each rotation audited once"
    );
}

pub async fn memory_moves_with_a_merge_and_goes_when_turned_off(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let (ada, first) = person(&store, &scope, "1").await;
    let (also_ada, second) = person(&store, &scope, "2").await;
    let (theirs, elsewhere) = person(&store, &globex, "1").await;
    let (a, b, c) = (key(), key(), key());
    store.add_person_key(&scope, ada, &a).await.unwrap();
    store.add_person_key(&scope, also_ada, &b).await.unwrap();
    store.add_person_key(&globex, theirs, &c).await.unwrap();
    store
        .remember(&scope, ada, first, &[fact(&a, b"a", 2)], 10)
        .await
        .unwrap();
    store
        .remember(&scope, also_ada, second, &[fact(&b, b"b", 1)], 10)
        .await
        .unwrap();
    store
        .remember(&globex, theirs, elsewhere, &[fact(&c, b"c", 1)], 10)
        .await
        .unwrap();

    store.merge_people(&scope, ada, also_ada).await.unwrap();
    let keys: Vec<PersonKeyId> = store
        .person_keys(&scope, ada)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&a.id) && keys.contains(&b.id));
    assert_eq!(
        sealed_of(&store.memory(&scope, ada).await.unwrap()),
        [b"a".to_vec(), b"b".to_vec()]
    );

    assert!(
        store.organization(&scope).await.unwrap().memory,
        "on by default"
    );
    let off = store.set_memory(&scope, false).await.unwrap();
    assert!(!off.memory);
    assert!(store.memory(&scope, ada).await.unwrap().is_empty());
    assert!(
        !store
            .remember(&scope, ada, MessageId::new(), &[fact(&a, b"late", 0)], 10)
            .await
            .unwrap(),
        "nothing is kept while memory is off"
    );
    assert!(store.memory(&scope, ada).await.unwrap().is_empty());
    assert_eq!(
        sealed_of(&store.memory(&globex, theirs).await.unwrap()),
        [b"c".to_vec()],
        "another organization keeps its memory"
    );
    let audit = store.list_audit(&scope, None, 10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "organization.memory_changed")
    );
    assert!(store.set_memory(&scope, true).await.unwrap().memory);
}

/// A message `handle` wrote on Telegram, in `conversation` or a new one.
async fn written(
    store: &S,
    scope: &TenantScope,
    chatbot: ChatbotId,
    conversation: Option<ConversationId>,
    handle: &str,
    text: &str,
) -> Message {
    let mut message = user_message(chatbot, conversation, text);
    message.sender = Some(Sender::new(
        Identity::parse("sender", IdentityKind::Telegram, handle).unwrap(),
    ));
    store.add_message(scope, message).await.unwrap()
}

/// Acme and Globex, each with a chatbot.
async fn two_organizations(store: &S) -> ((TenantScope, ChatbotId), (TenantScope, ChatbotId)) {
    let mut made = Vec::new();
    for name in ["Acme", "Globex"] {
        let (scope, _) = org(store, name).await;
        let bot = store
            .create_chatbot(&scope, new_chatbot("Helper"))
            .await
            .unwrap()
            .id;
        made.push((scope, bot));
    }
    (made[0], made[1])
}

pub async fn a_person_is_erased_for_good_and_everyone_else_kept(store: S) {
    let ((scope, chatbot), (globex, theirs)) = two_organizations(&store).await;
    // Ada's own conversation, with a reply; Bo's, where Ada wrote too.
    let ada_says = written(&store, &scope, chatbot, None, "1", "I am Ada").await;
    let mut reply = user_message(chatbot, Some(ada_says.conversation_id), "Hello Ada");
    reply.role = MessageRole::Assistant;
    reply.answers = Some(ada_says.id);
    let reply = store.add_message(&scope, reply).await.unwrap();
    let bo_says = written(&store, &scope, chatbot, None, "2", "I am Bo").await;
    let ada_joins = written(
        &store,
        &scope,
        chatbot,
        Some(bo_says.conversation_id),
        "1",
        "Ada too",
    )
    .await;
    let elsewhere = written(&store, &globex, theirs, None, "1", "Another Ada").await;
    let (ada, bo) = (ada_says.person_id.unwrap(), bo_says.person_id.unwrap());
    let ada_key = key();
    store.add_person_key(&scope, ada, &ada_key).await.unwrap();
    store
        .remember(
            &scope,
            ada,
            ada_says.id,
            &[fact(&ada_key, b"sealed", 0)],
            10,
        )
        .await
        .unwrap();
    let bo_key = key();
    store.add_person_key(&scope, bo, &bo_key).await.unwrap();
    store
        .remember(&scope, bo, bo_says.id, &[fact(&bo_key, b"bo's", 0)], 10)
        .await
        .unwrap();
    store
        .record_lead(
            &scope,
            &NewLead {
                tool_call_id: ToolCallId::new(),
                chatbot_id: chatbot,
                conversation_id: ada_says.conversation_id,
                name: "Ada".into(),
                email: Some("ada@example.org".into()),
                phone: None,
                company: None,
                note: None,
            },
            &[],
        )
        .await
        .unwrap();
    let period = usage_period(now());
    let usage = store.usage(&scope, &period).await.unwrap();

    let erased = store.erase_person(&scope, ada).await.unwrap();
    assert_eq!(
        erased,
        Erased {
            keys: 1,
            facts: 1,
            messages: 3,
            conversations: 1,
            leads: 1,
            person: true,
        }
    );
    assert_not_found(store.person(&scope, ada).await, "the erased person");
    for gone in [ada_says.id, reply.id, ada_joins.id] {
        assert_not_found(store.message(&scope, gone).await, "an erased message");
    }
    assert!(store.person_keys(&scope, ada).await.unwrap().is_empty());
    assert!(store.memory(&scope, ada).await.unwrap().is_empty());
    assert_eq!(store.leads(&scope, 10, 0).await.unwrap().1, 0);
    // Everyone else's is intact, and the counters stay as totals.
    assert_eq!(
        store.message(&scope, bo_says.id).await.unwrap().text,
        "I am Bo"
    );
    assert_eq!(store.person(&scope, bo).await.unwrap().id, bo);
    assert_eq!(
        sealed_of(&store.memory(&scope, bo).await.unwrap()),
        [b"bo's".to_vec()]
    );
    assert_eq!(
        store.message(&globex, elsewhere.id).await.unwrap().text,
        "Another Ada"
    );
    assert_eq!(store.usage(&scope, &period).await.unwrap(), usage);
    let ledger = store.erasures().await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].org_id, ledger[0].person_id),
        (scope.org_id(), ada)
    );

    // Again: nothing left to erase, and one audit entry.
    assert_eq!(
        store.erase_person(&scope, ada).await.unwrap(),
        Erased::default()
    );
    let log = store.list_audit(&scope, None, 20).await.unwrap();
    let entries: Vec<&str> = log
        .iter()
        .filter(|e| e.target == format!("person:{ada}"))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(entries, ["person.erased"]);
    assert_eq!(store.erasures().await.unwrap().len(), 1);
}

pub async fn an_erasure_request_is_audited_with_its_job_within_its_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let chatbot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap()
        .id;
    let ada = written(&store, &scope, chatbot, None, "1", "hi")
        .await
        .person_id
        .unwrap();
    let job = || {
        NewJob::of(&steward_domain::jobs::EraseArgs { person_id: ada }, 3).for_org(scope.org_id())
    };
    assert_not_found(
        store.request_erasure(&globex, ada, job()).await,
        "another organization's person",
    );
    let queued = store.request_erasure(&scope, ada, job()).await.unwrap();
    assert_eq!(queued.kind, JobKind::Erase);
    let log = store.list_audit(&scope, None, 10).await.unwrap();
    assert!(log.iter().any(|e| e.action == "person.erasure_requested"));
    assert!(
        store
            .list_audit(&globex, None, 10)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.action.starts_with("person."))
    );
    assert!(
        store.erasures().await.unwrap().is_empty(),
        "requested, not yet erased"
    );
}

pub async fn conversations_past_their_retention_are_deleted_in_organizations_that_keep_them_for_a_time(
    store: S,
) {
    let ((scope, bot), (globex, theirs)) = two_organizations(&store).await;
    let days_ago = |days: i64| now() - chrono::Duration::days(days);
    // Written 40 and 10 days ago, and one 40 days ago that someone wrote in yesterday.
    let old = as_of(days_ago(40), written(&store, &scope, bot, None, "1", "old")).await;
    let recent = as_of(
        days_ago(10),
        written(&store, &scope, bot, None, "2", "recent"),
    )
    .await;
    let revived = as_of(
        days_ago(40),
        written(&store, &scope, bot, None, "3", "revived"),
    )
    .await;
    as_of(
        days_ago(1),
        written(
            &store,
            &scope,
            bot,
            Some(revived.conversation_id),
            "3",
            "again",
        ),
    )
    .await;
    let elsewhere = as_of(
        days_ago(40),
        written(&store, &globex, theirs, None, "1", "kept"),
    )
    .await;
    let usage = store
        .usage(&scope, &usage_period(days_ago(40)))
        .await
        .unwrap();

    assert_eq!(
        store.expire_conversations(now()).await.unwrap(),
        0,
        "kept for good by default"
    );
    let set = store.set_retention(&scope, Some(30)).await.unwrap();
    assert_eq!(set.retention_days, Some(30));
    store.set_retention(&scope, Some(30)).await.unwrap();
    assert_eq!(store.expire_conversations(now()).await.unwrap(), 1);
    assert_not_found(
        store.message(&scope, old.id).await,
        "a conversation past 30 days",
    );
    for kept in [recent.id, revived.id] {
        assert!(store.message(&scope, kept).await.is_ok());
    }
    assert!(
        store.message(&globex, elsewhere.id).await.is_ok(),
        "another organization keeps its own"
    );
    assert_eq!(
        store
            .usage(&scope, &usage_period(days_ago(40)))
            .await
            .unwrap(),
        usage,
        "counters stay"
    );
    assert_eq!(
        store.expire_conversations(now()).await.unwrap(),
        0,
        "nothing twice"
    );
    // A backlog longer than a sweep's batch, each expired conversation
    // started between two kept ones (started as long ago, written in
    // since): one sweep deletes all of it and nothing else.
    let mut kept = Vec::new();
    for n in 0..120 {
        let old = format!("{}", 1000 + n);
        as_of(
            days_ago(40),
            written(&store, &scope, bot, None, &old, "old"),
        )
        .await;
        let handle = format!("{}", 2000 + n);
        let first = as_of(
            days_ago(40),
            written(&store, &scope, bot, None, &handle, "kept"),
        )
        .await;
        let to = Some(first.conversation_id);
        as_of(
            days_ago(1),
            written(&store, &scope, bot, to, &handle, "again"),
        )
        .await;
        kept.push(first.id);
    }
    assert_eq!(store.expire_conversations(now()).await.unwrap(), 120);
    for id in kept {
        assert!(
            store.message(&scope, id).await.is_ok(),
            "a kept one deleted"
        );
    }
    let log = store.list_audit(&scope, None, 10).await.unwrap();
    let changes = log
        .iter()
        .filter(|e| e.action == "organization.retention_changed")
        .count();
    assert_eq!(changes, 1, "set once, audited once");
    assert_eq!(
        store
            .set_retention(&scope, None)
            .await
            .unwrap()
            .retention_days,
        None
    );
}
