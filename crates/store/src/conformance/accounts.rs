//! Organizations, people, keys, chatbots, integrations, the audit log and idempotency.

use chrono::Duration;
use serde_json::json;
use steward_domain::*;

use super::*;

pub async fn organizations_are_created_with_their_owner(store: S) {
    assert!(
        !store.any_organization().await.unwrap(),
        "a fresh store has none"
    );
    let (scope, owner) = org(&store, "Acme").await;
    assert!(store.any_organization().await.unwrap());
    let organization = store.organization(&scope).await.unwrap();
    assert_eq!(organization.name, "Acme");
    assert_eq!(organization.tier, Tier::Free);
    assert_eq!(owner.org_id, organization.id);
    assert_eq!(owner.role, Role::Owner);

    let (found, hash) = store
        .find_login(&Email::parse("e", "OWNER@acme.example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, owner);
    assert!(hash.starts_with("$argon2id$"));
    assert_eq!(
        store.find_user(owner.id).await.unwrap(),
        Some(owner.clone())
    );
    assert_eq!(store.find_user(UserId::new()).await.unwrap(), None);
    assert_eq!(
        store.find_organizations("Acme").await.unwrap(),
        vec![organization.clone()]
    );
    assert_eq!(
        store
            .find_organizations(&organization.id.to_string())
            .await
            .unwrap(),
        vec![organization.clone()]
    );
    assert!(store.find_organizations("Nobody").await.unwrap().is_empty());
    let (later, _) = org(&store, "Beta").await;
    let listed: Vec<OrgId> = store
        .list_organizations()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, [organization.id, later.org_id()], "oldest first");
}

pub async fn emails_are_unique_across_organizations(store: S) {
    let (a, _) = org(&store, "Alpha").await;
    let taken = store
        .create_organization(
            NewOrganization {
                name: OrganizationName::parse("name", "Beta").unwrap(),
                tier: Tier::Free,
            },
            new_user("owner@alpha.example.org", Role::Owner),
        )
        .await;
    assert_conflict(taken, "email_taken");
    assert!(
        store.find_organizations("Beta").await.unwrap().is_empty(),
        "a failed registration leaves no organization behind"
    );
    assert_conflict(
        store
            .add_member(&a, new_user("Owner@Alpha.example.org", Role::Member))
            .await,
        "email_taken",
    );
}

pub async fn another_organizations_rows_are_not_found(store: S) {
    let (a, a_owner) = org(&store, "Alpha").await;
    let (b, _) = org(&store, "Beta").await;
    let bot = store
        .create_chatbot(&a, new_chatbot("Alpha bot"))
        .await
        .unwrap();
    let message = store
        .add_message(&a, user_message(bot.id, None, "hello"))
        .await
        .unwrap();
    let key = store
        .create_api_key(
            &a,
            NewApiKey {
                name: "ci".into(),
                prefix: "stw_a".into(),
                role: Role::Admin,
                created_by: None,
                key_hash: "h-a".into(),
            },
        )
        .await
        .unwrap();
    store
        .enable_integration(
            &a,
            "lead-capture",
            json!({"email": "sales@alpha.example.org"}),
        )
        .await
        .unwrap();

    assert_not_found(store.chatbot(&b, bot.id).await, "chatbot");
    assert_not_found(
        store
            .update_chatbot(
                &b,
                bot.id,
                ChatbotPatch {
                    name: Some(ChatbotName::parse("n", "stolen").unwrap()),
                    ..Default::default()
                },
            )
            .await,
        "update",
    );
    assert_not_found(store.delete_chatbot(&b, bot.id).await, "delete");
    assert_not_found(
        store
            .add_message(&b, user_message(bot.id, None, "hi"))
            .await,
        "message to another org's chatbot",
    );
    assert_not_found(
        store.message_thread(&b, bot.id, message.id, 5).await,
        "thread",
    );
    assert_not_found(
        store.set_member_role(&b, a_owner.id, Role::Member).await,
        "role change",
    );
    assert_not_found(store.remove_member(&b, a_owner.id).await, "member removal");
    assert_not_found(store.revoke_api_key(&b, key.id).await, "key revocation");
    assert_not_found(
        store.disable_integration(&b, "lead-capture").await,
        "integration",
    );
    let query = HistoryQuery {
        chatbot_id: bot.id,
        limit: 50,
        before: None,
        from: None,
        to: None,
    };
    assert!(store.history(&b, &query).await.unwrap().is_empty());
    assert_eq!(store.list_chatbots(&b, 50, 0).await.unwrap().1, 0);
    assert!(store.list_api_keys(&b).await.unwrap().is_empty());
    assert!(
        store
            .integrations(&b)
            .await
            .unwrap()
            .iter()
            .all(|i| !i.enabled)
    );
    assert_eq!(store.list_members(&b).await.unwrap().len(), 1);
    assert_eq!(
        store
            .usage(&b, &usage_period(now()))
            .await
            .unwrap()
            .messages,
        0
    );

    // And nothing of A changed.
    assert_eq!(store.chatbot(&a, bot.id).await.unwrap(), bot);
    assert_eq!(store.history(&a, &query).await.unwrap(), vec![message]);
    assert!(store.find_api_key_by_hash("h-a").await.unwrap().is_some());
}

pub async fn chatbots_are_created_listed_patched_and_deleted(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            store
                .create_chatbot(&scope, new_chatbot(&format!("Bot {i}")))
                .await
                .unwrap(),
        );
    }
    let (page, total) = store.list_chatbots(&scope, 2, 1).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(page, created[1..3].to_vec());
    assert!(
        store
            .list_chatbots(&scope, 2, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );

    let bot = &created[0];
    assert_eq!(store.chatbot(&scope, bot.id).await.unwrap(), *bot);
    let patched = store
        .update_chatbot(
            &scope,
            bot.id,
            ChatbotPatch {
                temperature: Some(Temperature::parse("t", 1.5).unwrap()),
                model: Some(Some(ModelName::parse("m", "claude-sonnet-4-5").unwrap())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.temperature, 1.5);
    assert_eq!(patched.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        patched.name, bot.name,
        "fields not named by the patch are kept"
    );
    assert_eq!(patched.system_prompt, bot.system_prompt);
    assert!(patched.updated_at >= bot.updated_at);
    let cleared = store
        .update_chatbot(
            &scope,
            bot.id,
            ChatbotPatch {
                model: Some(None),
                status: Some(ChatbotStatus::Paused),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.model, None);
    assert_eq!(cleared.status, ChatbotStatus::Paused);
    assert_eq!(cleared.temperature, 1.5);

    store
        .add_message(
            &scope,
            user_message(created[1].id, None, "kept until the chatbot goes"),
        )
        .await
        .unwrap();
    store.delete_chatbot(&scope, created[1].id).await.unwrap();
    assert_not_found(
        store.chatbot(&scope, created[1].id).await,
        "deleted chatbot",
    );
    assert_not_found(
        store.delete_chatbot(&scope, created[1].id).await,
        "second delete",
    );
    assert_eq!(store.list_chatbots(&scope, 50, 0).await.unwrap().1, 4);
}

pub async fn members_change_roles_but_the_last_owner_stays(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let member = store
        .add_member(&scope, new_user("member@acme.example.org", Role::Member))
        .await
        .unwrap();
    assert_eq!(store.list_members(&scope).await.unwrap().len(), 2);

    assert_conflict(
        store.set_member_role(&scope, owner.id, Role::Admin).await,
        "last_owner",
    );
    assert_conflict(store.remove_member(&scope, owner.id).await, "last_owner");

    let promoted = store
        .set_member_role(&scope, member.id, Role::Owner)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Owner);
    let demoted = store
        .set_member_role(&scope, owner.id, Role::Advisor)
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::Advisor);
    assert_eq!(
        store.find_user(owner.id).await.unwrap().unwrap().role,
        Role::Advisor
    );

    store.remove_member(&scope, owner.id).await.unwrap();
    assert_eq!(store.find_user(owner.id).await.unwrap(), None);
    assert_not_found(
        store.remove_member(&scope, owner.id).await,
        "second removal",
    );
}

pub async fn passwords_are_replaced_within_their_org_and_sign_out_older_tokens(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let mut handed_over = new_user("member@acme.example.org", Role::Member);
    handed_over.must_change_password = true;
    let member = store.add_member(&scope, handed_over).await.unwrap();
    assert!(member.must_change_password);
    assert_eq!(member.session_generation, 0);

    let chosen = store
        .set_password(&scope, member.id, "$argon2id$chosen", false)
        .await
        .unwrap();
    assert!(!chosen.must_change_password, "changed by its owner");
    assert_eq!(chosen.session_generation, 1, "earlier tokens signed out");
    let (found, hash) = store
        .find_login(&Email::parse("email", "member@acme.example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash, "$argon2id$chosen");
    assert_eq!(found, chosen);

    let reset = store
        .set_password(&scope, member.id, "$argon2id$one-time", true)
        .await
        .unwrap();
    assert!(reset.must_change_password, "an admin's reset is one-time");
    assert_eq!(reset.session_generation, 2);
    assert_not_found(
        store
            .set_password(&other, member.id, "$argon2id$theirs", false)
            .await,
        "another org's member",
    );
    let audit = store.list_audit(&scope, None, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"member.password_changed") && actions.contains(&"member.password_reset"),
        "{actions:?}"
    );
}

pub async fn a_signed_out_session_stays_signed_out_until_its_token_expires(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let (other, _) = org(&store, "Other").await;
    let (session, kept) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let expires = now() + Duration::hours(1);
    let signed_out = |session| {
        let (store, owner) = (store.clone(), owner.clone());
        async move {
            let (user, signed_out) = store
                .find_user_session(owner.id, Some(session))
                .await
                .unwrap()
                .expect("the user is found with the session");
            assert_eq!(user, owner);
            signed_out
        }
    };
    assert!(!signed_out(session).await);
    assert_not_found(
        store
            .sign_out_session(&other, owner.id, session, expires)
            .await,
        "another org's member",
    );
    assert!(!signed_out(session).await);
    store
        .sign_out_session(&scope, owner.id, session, expires)
        .await
        .unwrap();
    store
        .sign_out_session(&scope, owner.id, session, expires)
        .await
        .expect("signing out twice is no error");
    assert!(signed_out(session).await);
    assert!(!signed_out(kept).await, "the person's other sessions go on");
    assert_eq!(store.prune_signed_out_sessions(now()).await.unwrap(), 0);
    assert!(signed_out(session).await);
    assert_eq!(
        store
            .prune_signed_out_sessions(expires + Duration::seconds(1))
            .await
            .unwrap(),
        1,
        "forgotten once its token has expired anyway"
    );
    assert!(!signed_out(session).await);
    assert_eq!(
        store.find_user_session(owner.id, None).await.unwrap(),
        Some((owner.clone(), false)),
        "a token naming no session"
    );
}

pub async fn api_keys_are_found_by_hash_until_revoked(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let key = store
        .create_api_key(
            &scope,
            NewApiKey {
                name: "deploy".into(),
                prefix: "stw_abc".into(),
                role: Role::Member,
                created_by: Some(owner.id),
                key_hash: "hash-1".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(key.role, Role::Member);
    assert_eq!(key.created_by, Some(owner.id));
    assert_eq!(key.revoked_at, None);
    assert_eq!(
        store.find_api_key_by_hash("hash-1").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.find_api_key_by_hash("hash-2").await.unwrap(), None);

    store.revoke_api_key(&scope, key.id).await.unwrap();
    assert_eq!(store.find_api_key_by_hash("hash-1").await.unwrap(), None);
    assert_not_found(
        store.revoke_api_key(&scope, key.id).await,
        "second revocation",
    );
    let listed = store.list_api_keys(&scope).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());

    // A member's keys are revoked when the member is removed; others' stay.
    let admin = store
        .add_member(&scope, new_user("admin@acme.example.org", Role::Admin))
        .await
        .unwrap();
    let theirs = |hash: &str, created_by| NewApiKey {
        name: "k".into(),
        prefix: "stw_k".into(),
        role: Role::Admin,
        created_by,
        key_hash: hash.into(),
    };
    store
        .create_api_key(&scope, theirs("admin-key", Some(admin.id)))
        .await
        .unwrap();
    store
        .create_api_key(&scope, theirs("owner-key", Some(owner.id)))
        .await
        .unwrap();
    store.remove_member(&scope, admin.id).await.unwrap();
    assert_eq!(store.find_api_key_by_hash("admin-key").await.unwrap(), None);
    assert!(
        store
            .find_api_key_by_hash("owner-key")
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn integrations_are_enabled_per_organization(store: S) {
    let (a, _) = org(&store, "Alpha").await;
    let (b, _) = org(&store, "Beta").await;
    let catalogue = store.integrations(&a).await.unwrap();
    let ids: Vec<_> = catalogue
        .iter()
        .map(|i| i.integration.id.as_str())
        .collect();
    assert_eq!(ids, ["pricing-calculator", "lead-capture", "contact-owner"]);
    assert!(catalogue.iter().all(|i| !i.enabled && i.config.is_none()));

    let enabled = store
        .enable_integration(&a, "pricing-calculator", json!({"currency": "EUR"}))
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.config, Some(json!({"currency": "EUR"})));
    let reconfigured = store
        .enable_integration(&a, "pricing-calculator", json!({"currency": "USD"}))
        .await
        .unwrap();
    assert_eq!(reconfigured.config, Some(json!({"currency": "USD"})));
    assert_eq!(
        reconfigured.enabled_at, enabled.enabled_at,
        "reconfiguring keeps the enable time"
    );

    assert!(
        store
            .integrations(&b)
            .await
            .unwrap()
            .iter()
            .all(|i| !i.enabled)
    );
    assert_not_found(
        store
            .enable_integration(&a, "no-such-integration", json!({}))
            .await,
        "unknown integration",
    );

    store
        .disable_integration(&a, "pricing-calculator")
        .await
        .unwrap();
    assert!(
        store
            .integrations(&a)
            .await
            .unwrap()
            .iter()
            .all(|i| !i.enabled)
    );
    assert_not_found(
        store.disable_integration(&a, "pricing-calculator").await,
        "second disable",
    );
}

pub async fn admin_actions_write_the_audit_log(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    // A request leaves the tier as it is; the operator's change sets it.
    let asked = store.request_tier(&scope, Tier::Enterprise).await.unwrap();
    assert_eq!(asked.tier, Tier::Free);
    store.set_tier(&scope, Tier::Pro).await.unwrap();
    let member = store
        .add_member(&scope, new_user("m@acme.example.org", Role::Member))
        .await
        .unwrap();
    store
        .set_member_role(&scope, member.id, Role::Admin)
        .await
        .unwrap();
    let key = store
        .create_api_key(
            &scope,
            NewApiKey {
                name: "k".into(),
                prefix: "p".into(),
                role: Role::Admin,
                created_by: None,
                key_hash: "h".into(),
            },
        )
        .await
        .unwrap();
    store.revoke_api_key(&scope, key.id).await.unwrap();
    store
        .enable_integration(&scope, "contact-owner", json!({}))
        .await
        .unwrap();
    store
        .disable_integration(&scope, "contact-owner")
        .await
        .unwrap();

    let log = store.list_audit(&scope, None, 100).await.unwrap();
    let actions: Vec<_> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "billing.change_requested",
            "billing.tier_changed",
            "member.added",
            "member.role_changed",
            "api_key.created",
            "api_key.revoked",
            "integration.enabled",
            "integration.disabled"
        ]
    );
    assert!(log.iter().all(|e| e.actor == format!("user:{}", owner.id)));
    let tier = log
        .iter()
        .find(|e| e.action == "billing.tier_changed")
        .unwrap();
    assert_eq!(tier.details, json!({"from": "free", "to": "pro"}));
    let asked = log
        .iter()
        .find(|e| e.action == "billing.change_requested")
        .unwrap();
    assert_eq!(asked.details, json!({"from": "free", "to": "enterprise"}));
    assert_eq!(store.organization(&scope).await.unwrap().tier, Tier::Pro);

    // Pages of three, each after the last entry of the one before, walk the
    // same log; another organization's entry is no cursor.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(&scope, before, 3).await.unwrap();
        walked.extend(page.iter().map(|e| e.id));
        if page.len() < 3 {
            break;
        }
        before = page.last().map(|e| e.id);
    }
    assert_eq!(walked, log.iter().map(|e| e.id).collect::<Vec<_>>());
    let (other, _) = org(&store, "Other").await;
    assert!(matches!(
        store.list_audit(&other, Some(log[0].id), 3).await,
        Err(StoreError::NotFound)
    ));
}

fn started(outcome: StoreResult<IdempotencyStart>) -> String {
    match outcome.unwrap() {
        IdempotencyStart::Started(token) => token,
        other => panic!("expected the claim, got {other:?}"),
    }
}

pub(super) fn idem(key: &str, hash: &str) -> IdempotencyKey {
    IdempotencyKey {
        caller: "user:test".into(),
        key: key.into(),
        org_id: None,
        request_hash: hash.into(),
    }
}

pub async fn idempotency_keys_start_replay_and_refuse_other_requests(store: S) {
    let long_ago = now() - Duration::hours(1);
    let ancient = now() - Duration::days(2);
    let first = idem("k1", "hash-a");
    let first_token = started(store.idempotency_start(&first, long_ago, ancient).await);
    assert_eq!(
        store
            .idempotency_start(&first, long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::InProgress
    );
    assert_eq!(
        store
            .idempotency_start(&idem("k1", "hash-b"), long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Mismatch
    );

    let response = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: b"{\"ok\":true}".to_vec(),
    };
    store
        .idempotency_complete(&first, &first_token, &response)
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_start(&first, long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Replay(response.clone())
    );
    assert_eq!(
        store
            .idempotency_start(&idem("k1", "hash-b"), long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Mismatch
    );

    // Another caller's identical key is a different key.
    let other_caller = IdempotencyKey {
        caller: "user:other".into(),
        ..first.clone()
    };
    assert!(matches!(
        store
            .idempotency_start(&other_caller, long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Started(_)
    ));

    // An abandoned claim can be retried.
    let second = idem("k2", "hash-c");
    let second_token = started(store.idempotency_start(&second, long_ago, ancient).await);
    store
        .idempotency_abandon(&second, &second_token)
        .await
        .unwrap();
    assert!(matches!(
        store
            .idempotency_start(&second, long_ago, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Started(_)
    ));

    // A claim whose request died is taken over once stale; an expired response is forgotten.
    let in_the_future = now() + Duration::hours(1);
    assert!(matches!(
        store
            .idempotency_start(&second, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Started(_)
    ));
    assert!(matches!(
        store
            .idempotency_start(&first, long_ago, in_the_future)
            .await
            .unwrap(),
        IdempotencyStart::Started(_)
    ));
}

pub async fn idempotency_keys_are_claimed_once_under_concurrency(store: S) {
    let long_ago = now() - Duration::hours(1);
    let ancient = now() - Duration::days(2);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .idempotency_start(&idem("race", "same"), long_ago, ancient)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            IdempotencyStart::Started(_) => started += 1,
            IdempotencyStart::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
}

/// The promise behind `Idempotency-Key` across crashes: a write of a keyed
/// request commits only while its claim holds its token, marks the claim as
/// having taken effect (with the answer set before it), and a claim that took
/// effect is never run again.
pub async fn keyed_writes_are_fenced_by_their_claim(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let long_ago = now() - Duration::hours(1);
    let ancient = now() - Duration::days(2);
    let in_the_future = now() + Duration::hours(1);
    let answer = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: b"{\"id\":1}".to_vec(),
    };

    // The answer set before the write commits with it: a replay needs no completion.
    let key = idem("fenced", "h");
    let token = started(store.idempotency_start(&key, long_ago, ancient).await);
    let keyed = KeyedRequest::new(&key, token);
    keyed
        .run(async {
            answer_keyed_request(answer.clone());
            store
                .create_chatbot(&scope, new_chatbot("One"))
                .await
                .unwrap();
        })
        .await;
    assert_eq!(
        store
            .idempotency_start(&key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Replay(answer.clone())
    );

    // An answer built from the record the write commits commits with it too,
    // for every kind of record a keyed route creates.
    let built = |name: &str| StoredResponse {
        status: 201,
        content_type: None,
        body: name.as_bytes().to_vec(),
    };
    let key = idem("built", "h");
    let token = started(store.idempotency_start(&key, long_ago, ancient).await);
    KeyedRequest::new(&key, token)
        .run(async {
            answer_keyed_request_from(|c: &Chatbot| StoredResponse {
                status: 201,
                content_type: None,
                body: c.name.as_bytes().to_vec(),
            });
            store
                .create_chatbot(&scope, new_chatbot("Built"))
                .await
                .unwrap();
        })
        .await;
    assert_eq!(
        store
            .idempotency_start(&key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Replay(built("Built"))
    );

    // A request whose claim was taken over commits nothing.
    let key = idem("taken-over", "h");
    let old = started(store.idempotency_start(&key, long_ago, ancient).await);
    let new = started(store.idempotency_start(&key, in_the_future, ancient).await);
    assert_ne!(old, new);
    let refused = KeyedRequest::new(&key, old)
        .run(store.create_chatbot(&scope, new_chatbot("Two")))
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Conflict(Conflict::IdempotencyClaimLost))
    ));
    let (names, _) = store.list_chatbots(&scope, 10, 0).await.unwrap();
    assert_eq!(
        names.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["One", "Built"]
    );

    // A message (PostgreSQL stores it in one call, fence and all) likewise:
    // committed with the answer set before it, refused once taken over.
    let bot = store
        .create_chatbot(&scope, new_chatbot("Messages"))
        .await
        .unwrap();
    let kept = idem("message", "h");
    let token = started(store.idempotency_start(&kept, long_ago, ancient).await);
    let sent = KeyedRequest::new(&kept, token)
        .run(async {
            answer_keyed_request(answer.clone());
            store
                .add_message(&scope, user_message(bot.id, None, "kept"))
                .await
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_start(&kept, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Replay(answer.clone())
    );
    let lost = idem("message-taken-over", "h");
    let stale = started(store.idempotency_start(&lost, long_ago, ancient).await);
    started(store.idempotency_start(&lost, in_the_future, ancient).await);
    let refused = KeyedRequest::new(&lost, stale)
        .run(store.add_message(
            &scope,
            user_message(bot.id, Some(sent.conversation_id), "refused"),
        ))
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Conflict(Conflict::IdempotencyClaimLost))
    ));
    let texts: Vec<String> = store
        .conversation_messages(&scope, sent.conversation_id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["kept"]);
    // A message its checks refuse (a paused chatbot) leaves its claim as it
    // was: without an effect, a retry may take it over.
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
    let refused_key = idem("message-refused", "h");
    let token = started(
        store
            .idempotency_start(&refused_key, long_ago, ancient)
            .await,
    );
    let refused = KeyedRequest::new(&refused_key, token)
        .run(store.add_message(&scope, user_message(paused.id, None, "paused")))
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Conflict(Conflict::ChatbotPaused))
    ));
    assert!(matches!(
        store
            .idempotency_start(&refused_key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Started(_)
    ));

    // An effect without its answer (the process stopped between them) is never
    // taken over, however stale; completing it later keeps the first answer.
    KeyedRequest::new(&key, new.clone())
        .run(store.create_chatbot(&scope, new_chatbot("Three")))
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_start(&key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::ResponseLost
    );
    store.idempotency_abandon(&key, &new).await.unwrap();
    assert_eq!(
        store
            .idempotency_start(&key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::ResponseLost,
        "abandoning a claim that took effect changes nothing"
    );
    store
        .idempotency_complete(&key, &new, &answer)
        .await
        .unwrap();
    let later = StoredResponse {
        status: 500,
        ..answer.clone()
    };
    store
        .idempotency_complete(&key, &new, &later)
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_start(&key, in_the_future, ancient)
            .await
            .unwrap(),
        IdempotencyStart::Replay(answer)
    );
}
