//! Personal memory end to end: a reply's `memory` job learns what the
//! person said about themselves, through the fake model in both provider
//! formats; later replies to that person (on any channel) are given it,
//! nobody else's are; the person forgets it through the memory tools or the
//! API, and an organization that turns memory off loses all of it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use steward_domain::jobs::RespondArgs;
use steward_domain::{ConversationId, Identity, MessageId, MessageRole, MessageText, PersonId};
use steward_pipeline::{Remembering, Responder};
use steward_store::{ConversationChoice, NewJob, NewMessage, Sender, TenantScope};
use steward_testkit::app::{Session, TestApp, spawn_app_with};
use steward_testkit::model::FakeModel;
use steward_tools::Toolbox;

use super::{Running, answered, model, send, start_worker_with};

/// A worker whose replies remember, with the organization's tools.
pub(super) fn remembering_worker(app: &TestApp, responder: Responder) -> Running {
    let toolbox: Arc<dyn Toolbox> = Arc::new(app.state.tools.clone());
    let memory = steward_tools::memory::Memory::new(app.store.clone(), app.state.sealer.clone());
    start_worker_with(app, responder, move |respond| {
        respond.toolbox = Some(toolbox);
        respond.memory = Some(Remembering {
            memory,
            recall_facts: 20,
            attempts: 3,
        });
    })
}

/// Steward with a remembering worker and a fake model, and Acme's owner
/// with a chatbot.
async fn remembering_acme() -> (TestApp, FakeModel, Running, Session, String) {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let worker = remembering_worker(&app, model(&fake));
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    (app, fake, worker, owner, bot)
}

fn scope(session: &Session) -> TenantScope {
    TenantScope::for_job(session.org_id.parse().unwrap())
}

pub(super) async fn person(app: &TestApp, session: &Session) -> PersonId {
    app.store
        .member_person(&scope(session), session.user_id.parse().unwrap())
        .await
        .unwrap()
        .id
}

/// The person's facts as the API shows them, once there are `count`.
pub(super) async fn facts(
    app: &TestApp,
    session: &Session,
    person: PersonId,
    count: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read = app
            .get(&format!("/api/v1/people/{person}/memory"), &session.token)
            .await;
        assert_eq!(read.status, 200, "{}", read.text);
        let facts = read.body["facts"].as_array().unwrap().clone();
        if facts.len() == count {
            return facts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {count} facts: {facts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn telegram_again() -> Identity {
    Identity::parse("sender", steward_domain::IdentityKind::Telegram, "4242").unwrap()
}

fn texts(facts: &[Value]) -> Vec<&str> {
    facts.iter().map(|f| f["text"].as_str().unwrap()).collect()
}

/// The system prompt of the model request that answered `text`.
fn prompt_for(fake: &FakeModel, text: &str) -> String {
    fake.requests()
        .iter()
        .rev()
        .find(|r| r["messages"].to_string().contains(text) && !is_extraction(r))
        .unwrap_or_else(|| panic!("no request answered {text}"))["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn is_extraction(request: &Value) -> bool {
    request
        .to_string()
        .contains(steward_pipeline::EXTRACTION_TASK)
}

/// A message from `identity` on a channel (no webhook: stored as a channel
/// would store it) in `conversation` (else a new one), answered by a
/// `respond` job.
async fn message_on_channel(
    app: &TestApp,
    owner: &Session,
    bot: &str,
    identity: Identity,
    text: &str,
    conversation: Option<ConversationId>,
) -> (ConversationId, MessageId) {
    let scope = scope(owner);
    let (id, choice) = match conversation {
        Some(id) => (id, ConversationChoice::Existing(id)),
        None => {
            let id = ConversationId::new();
            (id, ConversationChoice::Start(id))
        }
    };
    let stored = app
        .store
        .add_message(
            &scope,
            NewMessage {
                id: MessageId::new(),
                chatbot_id: bot.parse().unwrap(),
                conversation: choice,
                role: MessageRole::User,
                text: MessageText::parse("text", text).unwrap(),
                channel: "telegram".into(),
                external_id: Some(format!("tg-{}", MessageId::new())),
                answers: None,
                channel_id: None,
                channel_secrets: None,
                meta: None,
                tokens: 0,
                then: vec![
                    NewJob::of(
                        &RespondArgs {
                            chatbot_id: bot.parse().unwrap(),
                            conversation_id: id,
                        },
                        3,
                    )
                    .for_org(scope.org_id()),
                ],
                sender: Some(Sender::new(identity)),
                forwarded: false,
                conversation_key: None,
            },
        )
        .await
        .unwrap();
    (id, stored.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_person_says_of_themself_is_learnt_sealed_and_recalled_on_another_channel_only_for_them()
 {
    let (app, fake, worker, owner, bot) = remembering_acme().await;
    let ada = person(&app, &owner).await;

    let (_, asked) = send(
        &app,
        &owner,
        &bot,
        "I work in the finance team. My manager is Ana. What is the travel policy?",
        None,
    )
    .await;
    answered(&app, &owner, &bot, &asked).await;
    let learnt = facts(&app, &owner, ada, 2).await;
    assert_eq!(
        texts(&learnt),
        ["I work in the finance team", "My manager is Ana"]
    );
    // Stored sealed: neither the facts nor the person's key read in clear.
    let sealed = app.store.memory(&scope(&owner), ada).await.unwrap();
    assert_eq!(sealed.len(), 2);
    assert!(
        sealed
            .iter()
            .all(|f| !String::from_utf8_lossy(&f.sealed).contains("finance"))
    );
    let keys = app.store.person_keys(&scope(&owner), ada).await.unwrap();
    assert_eq!(keys.len(), 1, "one key for the person");
    assert!(
        keys[0].sealed.len() > 32,
        "the key is stored sealed (nonce and tag around it)"
    );

    // The same person on Telegram, in a new conversation: remembered.
    let telegram =
        Identity::parse("sender", steward_domain::IdentityKind::Telegram, "4242").unwrap();
    app.store
        .link_identities(&scope(&owner), ada, std::slice::from_ref(&telegram))
        .await
        .unwrap();
    let (group, on_telegram) = message_on_channel(
        &app,
        &owner,
        &bot,
        telegram,
        "Which hotel may I book? I live in Porto.",
        None,
    )
    .await;
    answered(&app, &owner, &bot, &on_telegram.to_string()).await;
    let system = prompt_for(&fake, "Which hotel may I book?");
    assert!(
        system.contains("What you remember about the person"),
        "{system}"
    );
    assert!(
        system.contains("- I work in the finance team\n- My manager is Ana"),
        "{system}"
    );
    // And learnt from there too, without repeating what was known.
    let learnt = facts(&app, &owner, ada, 3).await;
    assert_eq!(texts(&learnt)[2], "I live in Porto");
    let extraction = fake
        .requests()
        .into_iter()
        .rfind(is_extraction)
        .unwrap()
        .to_string();
    assert!(extraction.contains("Already noted"), "{extraction}");

    // Someone else joins that conversation: Ada's memory stays out of it.
    let stranger =
        Identity::parse("sender", steward_domain::IdentityKind::Telegram, "5151").unwrap();
    let (_, hello) = message_on_channel(&app, &owner, &bot, stranger, "Hi all", Some(group)).await;
    answered(&app, &owner, &bot, &hello.to_string()).await;
    let (_, trains) = message_on_channel(
        &app,
        &owner,
        &bot,
        telegram_again(),
        "What about trains?",
        Some(group),
    )
    .await;
    answered(&app, &owner, &bot, &trains.to_string()).await;
    let system = prompt_for(&fake, "What about trains?");
    assert!(!system.contains("finance"), "{system}");

    // Another person of the organization, and another organization: nothing of Ada's.
    let member = app.member(&owner, "bo@example.org", "member").await;
    let (_, theirs) = send(
        &app,
        &member,
        &bot,
        "What is the travel policy for me?",
        None,
    )
    .await;
    answered(&app, &member, &bot, &theirs).await;
    let other = app.register("cy@example.org", "Globex").await;
    let other_bot = app.chatbot(&other, "Helper").await;
    let (_, elsewhere) = send(&app, &other, &other_bot, "Who is my manager, Globex?", None).await;
    answered(&app, &other, &other_bot, &elsewhere).await;
    worker.stop().await;
    for text in [
        "What is the travel policy for me?",
        "Who is my manager, Globex?",
    ] {
        let system = prompt_for(&fake, text);
        assert!(!system.contains("finance"), "{system}");
        assert!(!system.contains("What you remember"), "{system}");
    }
    // A member reads their own memory, never another's; advisors none.
    let bo = person(&app, &member).await;
    assert_eq!(
        app.get(&format!("/api/v1/people/{bo}/memory"), &member.token)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/v1/people/{ada}/memory"), &member.token)
            .await
            .status,
        403
    );
    let advisor = app.member(&owner, "di@example.org", "advisor").await;
    assert_eq!(
        app.get(&format!("/api/v1/people/{ada}/memory"), &advisor.token)
            .await
            .status,
        403
    );
    assert_eq!(
        app.get(&format!("/api/v1/people/{ada}/memory"), &other.token)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_are_learnt_through_anthropics_format_too() {
    let app = spawn_app_with(|_| {}).await;
    let fake = FakeModel::start().await;
    let anthropic = Responder::Model(Arc::new(steward_llm::Anthropic::new(
        reqwest::Client::new(),
        &fake.anthropic_base_url(),
        "test-key".into(),
        "fake-model",
        Duration::from_secs(5),
    )));
    let worker = remembering_worker(&app, anthropic);
    let owner = app.register("ada@example.org", "Acme").await;
    let bot = app.chatbot(&owner, "Helper").await;
    let ada = person(&app, &owner).await;
    let (conversation, asked) =
        send(&app, &owner, &bot, "I prefer short answers. Hello!", None).await;
    answered(&app, &owner, &bot, &asked).await;
    assert_eq!(
        texts(&facts(&app, &owner, ada, 1).await),
        ["I prefer short answers"]
    );
    let (_, again) = send(&app, &owner, &bot, "And again?", Some(&conversation)).await;
    answered(&app, &owner, &bot, &again).await;
    worker.stop().await;
    let last = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| !is_extraction(r))
        .unwrap();
    assert!(
        last["system"]
            .to_string()
            .contains("- I prefer short answers"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_recalls_and_forgets_and_memory_turned_off_forgets_everyone() {
    let (app, fake, worker, owner, bot) = remembering_acme().await;
    let ada = person(&app, &owner).await;
    let (conversation, asked) = send(
        &app,
        &owner,
        &bot,
        "I work in sales. I use Salesforce.",
        None,
    )
    .await;
    answered(&app, &owner, &bot, &asked).await;
    let learnt = facts(&app, &owner, ada, 2).await;
    let sales = learnt[0]["id"].as_str().unwrap().to_owned();

    // "What do you remember about me?" then "forget that I work in sales".
    fake.call_tools(vec![vec![("memory__recall", "{}")]]);
    let (_, recall) = send(
        &app,
        &owner,
        &bot,
        "what do you remember about me?",
        Some(&conversation),
    )
    .await;
    let messages = answered(&app, &owner, &bot, &recall).await;
    let reply = messages
        .iter()
        .rfind(|m| m["answers"] == recall.as_str())
        .unwrap();
    let said = reply["text"].as_str().unwrap();
    assert!(
        said.contains(&format!("{sales}: I work in sales")),
        "{said}"
    );
    assert!(said.contains(": I use Salesforce"), "{said}");
    let forget = json!({ "fact_ids": [sales, "not-an-id"] }).to_string();
    fake.call_tools(vec![vec![("memory__forget", forget.as_str())]]);
    let (_, asked) = send(
        &app,
        &owner,
        &bot,
        "please forget where I work",
        Some(&conversation),
    )
    .await;
    let messages = answered(&app, &owner, &bot, &asked).await;
    let reply = messages
        .iter()
        .rfind(|m| m["answers"] == asked.as_str())
        .unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Forgot 1 facts. Not remembered"),
        "{reply}"
    );
    assert_eq!(
        texts(&facts(&app, &owner, ada, 1).await),
        ["I use Salesforce"]
    );

    // Through the API: one fact, then the rest.
    let salesforce = facts(&app, &owner, ada, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("/api/v1/people/{ada}/memory/{salesforce}");
    assert_eq!(app.delete(&one, &owner.token).await.status, 204);
    assert_eq!(
        app.delete(&one, &owner.token).await.status,
        404,
        "forgotten already"
    );
    let (_, asked) = send(&app, &owner, &bot, "I live in Porto.", Some(&conversation)).await;
    answered(&app, &owner, &bot, &asked).await;
    facts(&app, &owner, ada, 1).await;
    let all = app
        .delete(&format!("/api/v1/people/{ada}/memory"), &owner.token)
        .await;
    assert_eq!(all.body["forgotten"], 1, "{}", all.text);
    facts(&app, &owner, ada, 0).await;

    // Learn again, then the organization turns memory off: everything goes,
    // nothing is learnt or offered any more.
    let (_, asked) = send(
        &app,
        &owner,
        &bot,
        "I am based in Lisbon.",
        Some(&conversation),
    )
    .await;
    answered(&app, &owner, &bot, &asked).await;
    facts(&app, &owner, ada, 1).await;
    let member = app.member(&owner, "bo@example.org", "member").await;
    let refused = app
        .put(
            "/api/v1/organizations/settings",
            &member.token,
            json!({"memory": false}),
        )
        .await;
    assert_eq!(refused.status, 403);
    let bad = app
        .put(
            "/api/v1/organizations/settings",
            &owner.token,
            json!({"memory": "no"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let off = app
        .put(
            "/api/v1/organizations/settings",
            &owner.token,
            json!({"memory": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    assert_eq!(off.body["memory"], false);
    assert_eq!(
        app.get("/api/v1/organizations/settings", &member.token)
            .await
            .body["memory"],
        false
    );
    facts(&app, &owner, ada, 0).await;
    assert!(
        app.store
            .memory(&scope(&owner), ada)
            .await
            .unwrap()
            .is_empty()
    );
    let (_, asked) = send(
        &app,
        &owner,
        &bot,
        "I moved to Madrid.",
        Some(&conversation),
    )
    .await;
    answered(&app, &owner, &bot, &asked).await;
    worker.stop().await;
    let last = fake.requests().last().unwrap().clone();
    assert!(!is_extraction(&last), "nothing learnt with memory off");
    assert!(
        !last.to_string().contains("memory__recall"),
        "no memory tools offered"
    );
    facts(&app, &owner, ada, 0).await;
}

#[tokio::test]
async fn a_master_key_rotation_reseals_peoples_keys_and_audits_each() {
    use steward_auth::Sealer;
    let (store, _guard) = steward_testkit::sqlite_store().await.unwrap();
    let (scope, bot) = steward_testkit::seed::organization_with_chatbot(
        store.as_ref(),
        "Acme",
        steward_domain::Tier::Free,
    )
    .await;
    let said =
        steward_testkit::seed::telegram_message(store.as_ref(), &scope, bot.id, None, "1", "Hi")
            .await;
    let ada = said.person_id.unwrap();
    let (old, new) = ([7; 32], [9; 32]);
    let before = steward_tools::memory::Memory::new(store.clone(), Arc::new(Sealer::new(&old)));
    before
        .remember(
            &scope,
            ada,
            said.id,
            Default::default(),
            &["Works in finance".to_owned()],
            10,
        )
        .await
        .unwrap();

    let rotating = Sealer::new(&new).with_previous(Some(&old));
    let resealed = steward_tools::memory::reseal(store.as_ref(), &rotating)
        .await
        .unwrap();
    assert_eq!((resealed.resealed, resealed.current), (1, 0));
    let again = steward_tools::memory::reseal(store.as_ref(), &rotating)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 1), "once");

    // The new key alone opens Ada's memory; the old one no longer does.
    let after = steward_tools::memory::Memory::new(store.clone(), Arc::new(Sealer::new(&new)));
    assert_eq!(
        after.facts(&scope, ada).await.unwrap()[0].text,
        "Works in finance"
    );
    assert!(before.facts(&scope, ada).await.unwrap().is_empty());
    let key = &store.person_keys(&scope, ada).await.unwrap()[0];
    let rotations: Vec<_> = store
        .list_audit(&scope, None, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == steward_store::PERSON_KEY_RESEALED)
        .map(|e| e.target)
        .collect();
    assert_eq!(rotations, [format!("person_key:{}", key.id)]);
}
