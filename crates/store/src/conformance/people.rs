//! People: made by their messages and by member accounts, found by their
//! handles, linked, merged, listed, within their organization only.

use steward_domain::*;

use super::*;

fn handle(kind: IdentityKind, raw: &str) -> Identity {
    Identity::parse("handle", kind, raw).unwrap()
}

/// A person's message on a new conversation, or on `conversation`.
fn message_from(
    chatbot: ChatbotId,
    conversation: Option<ConversationId>,
    identity: &Identity,
    name: Option<&str>,
) -> NewMessage {
    let mut message = user_message(chatbot, conversation, "hello");
    message.sender = Some(Sender {
        identity: identity.clone(),
        name: name.map(str::to_owned),
    });
    message
}

async fn author(store: &S, scope: &TenantScope, message: &Message) -> Option<PersonId> {
    store
        .conversation(scope, message.conversation_id)
        .await
        .unwrap()
        .person_id
}

fn kinds(person: &Person) -> Vec<(IdentityKind, String)> {
    let mut found: Vec<_> = person
        .identities
        .iter()
        .map(|i| (i.identity.kind, i.identity.handle.clone()))
        .collect();
    found.sort_by_key(|(kind, handle)| (kind.as_str(), handle.clone()));
    found
}

pub async fn people_are_made_by_their_messages_and_kept_apart_per_org(store: S) {
    let (acme, owner) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let acme_bot = store.create_chatbot(&acme, new_chatbot("A")).await.unwrap();
    let globex_bot = store
        .create_chatbot(&globex, new_chatbot("G"))
        .await
        .unwrap();
    let phone = handle(IdentityKind::Whatsapp, "+1 650 555 1234");

    // A member is a person from the start, known by account and address.
    let member = store.member_person(&acme, owner.id).await.unwrap();
    assert_eq!(
        kinds(&member),
        vec![
            (IdentityKind::Email, owner.email.clone()),
            (IdentityKind::Member, owner.id.to_string()),
        ]
    );
    assert_eq!(member.name.as_deref(), Some("Test Person"));
    assert_eq!(member.last_seen_at, None);

    let first = store
        .add_message(&acme, message_from(acme_bot.id, None, &phone, Some("Ana")))
        .await
        .unwrap();
    let person = author(&store, &acme, &first).await.expect("an author");
    let again = store
        .add_message(
            &acme,
            message_from(
                acme_bot.id,
                Some(first.conversation_id),
                &phone,
                Some("Other"),
            ),
        )
        .await
        .unwrap();
    let elsewhere = store
        .add_message(&acme, message_from(acme_bot.id, None, &phone, None))
        .await
        .unwrap();
    assert_eq!(author(&store, &acme, &elsewhere).await, Some(person));
    let found = store.person(&acme, person).await.unwrap();
    assert_eq!(
        kinds(&found),
        vec![(IdentityKind::Whatsapp, "16505551234".into())]
    );
    // The first name given stays; the sighting is the latest message.
    assert_eq!(found.name.as_deref(), Some("Ana"));
    assert_eq!(found.last_seen_at, Some(elsewhere.created_at));
    assert!(again.created_at <= elsewhere.created_at);

    // The same number in another organization is another person.
    let theirs = store
        .add_message(&globex, message_from(globex_bot.id, None, &phone, None))
        .await
        .unwrap();
    let other = author(&store, &globex, &theirs).await.unwrap();
    assert_ne!(other, person);
    assert_not_found(store.person(&globex, person).await, "another org's person");
    assert_not_found(store.person(&acme, other).await, "another org's person");

    // The member's own messages are theirs; replies have no author.
    let asked = store
        .add_message(
            &acme,
            message_from(acme_bot.id, None, &Identity::member(owner.id), None),
        )
        .await
        .unwrap();
    assert_eq!(author(&store, &acme, &asked).await, Some(member.id));
    let mut reply = user_message(acme_bot.id, Some(first.conversation_id), "an answer");
    reply.role = MessageRole::Assistant;
    reply.sender = Some(Sender::new(handle(
        IdentityKind::Whatsapp,
        "+44 20 7946 0000",
    )));
    store.add_message(&acme, reply).await.unwrap();
    let listed = store
        .people(
            &acme,
            &PeopleQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        2,
        "the owner and the WhatsApp writer: {listed:?}"
    );

    // A duplicate message makes nobody.
    let mut keyed = message_from(
        acme_bot.id,
        None,
        &handle(IdentityKind::Slack, "U0NEW"),
        None,
    );
    keyed.external_id = Some("ev-1".into());
    keyed.channel = "slack".into();
    store.add_message(&acme, keyed.clone()).await.unwrap();
    keyed.id = MessageId::new();
    keyed.sender = Some(Sender::new(handle(IdentityKind::Slack, "U0DUPLICATE")));
    assert!(store.add_message(&acme, keyed).await.is_err());
    let listed = store
        .people(
            &acme,
            &PeopleQuery {
                text: Some("u0dup".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "a duplicate's sender was kept: {listed:?}"
    );
}

pub async fn a_handle_gets_one_person_however_many_write_at_once(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("A"))
        .await
        .unwrap();
    let phone = handle(IdentityKind::Whatsapp, "+15550001111");
    let writes: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let message = message_from(bot.id, None, &phone, None);
            tokio::spawn(async move { store.add_message(&scope, message).await })
        })
        .collect();
    let mut authors = std::collections::HashSet::new();
    for write in writes {
        let message = write.await.unwrap().unwrap();
        authors.insert(author(&store, &scope, &message).await.unwrap());
    }
    assert_eq!(authors.len(), 1, "one handle became several people");
    let listed = store
        .people(
            &scope,
            &PeopleQuery {
                text: Some("5550001111".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

pub async fn linking_a_handle_merges_the_person_who_had_it(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("A"))
        .await
        .unwrap();
    let slack = handle(IdentityKind::Slack, "U0ANA");
    let email = handle(IdentityKind::Email, "ana@acme.example.org");

    // Ana writes on Slack and by email before she is a member: two people.
    let on_slack = store
        .add_message(&scope, message_from(bot.id, None, &slack, None))
        .await
        .unwrap();
    let by_email = store
        .add_message(&scope, message_from(bot.id, None, &email, Some("Ana Lima")))
        .await
        .unwrap();
    let slack_person = author(&store, &scope, &on_slack).await.unwrap();
    let email_person = author(&store, &scope, &by_email).await.unwrap();
    assert_ne!(slack_person, email_person);

    // Her account's address is the one she wrote from: the same person.
    let ana = store
        .add_member(&scope, new_user("ana@acme.example.org", Role::Member))
        .await
        .unwrap();
    let member = store.member_person(&scope, ana.id).await.unwrap();
    assert_eq!(member.id, email_person);

    // Linking her Slack id merges the Slack writer into her.
    let linked = store
        .link_identities(&scope, member.id, std::slice::from_ref(&slack))
        .await
        .unwrap();
    assert_eq!(
        kinds(&linked),
        vec![
            (IdentityKind::Email, "ana@acme.example.org".into()),
            (IdentityKind::Member, ana.id.to_string()),
            (IdentityKind::Slack, "U0ANA".into()),
        ]
    );
    assert_eq!(linked.name.as_deref(), Some("Ana Lima"));
    assert_eq!(author(&store, &scope, &on_slack).await, Some(member.id));
    assert_not_found(
        store.person(&scope, slack_person).await,
        "the merged person",
    );
    let conversations = store
        .person_conversations(&scope, member.id, 10)
        .await
        .unwrap();
    assert_eq!(conversations.len(), 2);
    // Her next Slack message is hers; linking again changes nothing.
    let next = store
        .add_message(&scope, message_from(bot.id, None, &slack, None))
        .await
        .unwrap();
    assert_eq!(author(&store, &scope, &next).await, Some(member.id));
    let again = store
        .link_identities(&scope, member.id, &[slack.clone(), email.clone()])
        .await
        .unwrap();
    assert_eq!(kinds(&again), kinds(&linked));

    // Another member's handle is not taken over.
    let bo = store
        .add_member(&scope, new_user("bo@acme.example.org", Role::Member))
        .await
        .unwrap();
    let conflict = store
        .link_identities(&scope, member.id, &[Identity::member(bo.id)])
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(Conflict::BothMembers))),
        "{conflict:?}"
    );
    // Nor is a handle given to another organization's person.
    assert_not_found(
        store
            .link_identities(&globex, member.id, &[handle(IdentityKind::Slack, "U0X")])
            .await,
        "another org's person",
    );
}

pub async fn people_merge_within_their_org_only(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let (globex, globex_owner) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("A"))
        .await
        .unwrap();
    let telegram = handle(IdentityKind::Telegram, "1111111");
    let web = handle(IdentityKind::Web, "visitor-1");
    let first = store
        .add_message(&scope, message_from(bot.id, None, &telegram, None))
        .await
        .unwrap();
    let later = store
        .add_message(&scope, message_from(bot.id, None, &web, Some("Visitor")))
        .await
        .unwrap();
    let a = author(&store, &scope, &first).await.unwrap();
    let b = author(&store, &scope, &later).await.unwrap();
    let owner_person = store.member_person(&scope, owner.id).await.unwrap().id;
    let theirs = store
        .member_person(&globex, globex_owner.id)
        .await
        .unwrap()
        .id;

    assert_not_found(
        store.merge_people(&scope, a, theirs).await,
        "from another org",
    );
    assert_not_found(
        store.merge_people(&scope, theirs, a).await,
        "into another org",
    );
    assert_not_found(
        store.merge_people(&globex, a, b).await,
        "both of another org",
    );
    assert_not_found(
        store.merge_people(&scope, a, PersonId::new()).await,
        "nobody",
    );
    assert!(matches!(
        store.merge_people(&scope, a, a).await,
        Err(StoreError::Conflict(Conflict::SamePerson))
    ));

    let counted = |store: S| async move {
        let now = now();
        let activity = store.activity(&scope, now.date_naive(), now).await.unwrap();
        (
            activity.people_today,
            activity.days.iter().map(|d| d.people).sum::<i64>(),
            activity.weeks.iter().map(|w| w.1).sum::<i64>(),
        )
    };
    assert_eq!(counted(store.clone()).await, (2, 2, 2));
    let merged = store.merge_people(&scope, a, b).await.unwrap();
    assert_eq!(
        counted(store.clone()).await,
        (1, 1, 1),
        "one person wrote today"
    );
    assert_eq!(merged.id, a);
    assert_eq!(merged.name.as_deref(), Some("Visitor"));
    assert_eq!(merged.last_seen_at, Some(later.created_at));
    assert_eq!(merged.identities.len(), 2);
    assert_eq!(author(&store, &scope, &later).await, Some(a));
    assert_not_found(store.person(&scope, b).await, "the merged person");
    assert_not_found(store.merge_people(&scope, a, b).await, "merged twice");
    let log = store.list_audit(&scope, None, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "person.merged" && e.target == format!("person:{a}")),
        "{log:?}"
    );

    // A member absorbs a person; two members do not merge.
    store.merge_people(&scope, owner_person, a).await.unwrap();
    let ana = store
        .add_member(&scope, new_user("ana@acme.example.org", Role::Member))
        .await
        .unwrap();
    let ana = store.member_person(&scope, ana.id).await.unwrap().id;
    assert!(matches!(
        store.merge_people(&scope, owner_person, ana).await,
        Err(StoreError::Conflict(Conflict::BothMembers))
    ));
}

pub async fn people_are_listed_newest_first_searched_and_paged(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("A"))
        .await
        .unwrap();
    let globex_bot = store
        .create_chatbot(&globex, new_chatbot("G"))
        .await
        .unwrap();
    let mut made = Vec::new();
    for (n, name) in ["Ana Lima", "Bo 100%", "Cy", "Dee Lima"].iter().enumerate() {
        let phone = handle(IdentityKind::Whatsapp, &format!("+4420794600{n:02}"));
        let message = store
            .add_message(&scope, message_from(bot.id, None, &phone, Some(name)))
            .await
            .unwrap();
        made.push(author(&store, &scope, &message).await.unwrap());
    }
    store
        .add_message(
            &globex,
            message_from(
                globex_bot.id,
                None,
                &handle(IdentityKind::Whatsapp, "+442079460000"),
                Some("Ana Lima"),
            ),
        )
        .await
        .unwrap();

    let query = |text: Option<&str>, before: Option<PersonId>, limit: u32| PeopleQuery {
        text: text.map(str::to_owned),
        before,
        limit,
    };
    // Newest first, in pages, the owner (made first) last.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.people(&scope, &query(None, before, 2)).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|p| p.id);
        seen.extend(page.into_iter().map(|p| p.id));
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        &seen[..4],
        &made.iter().rev().copied().collect::<Vec<_>>()[..]
    );

    let ids = |found: Vec<Person>| found.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let lima = store
        .people(&scope, &query(Some("LIMA"), None, 10))
        .await
        .unwrap();
    assert_eq!(ids(lima), vec![made[3], made[0]]);
    let percent = store
        .people(&scope, &query(Some("100%"), None, 10))
        .await
        .unwrap();
    assert_eq!(ids(percent), vec![made[1]]);
    let wildcard = store
        .people(&scope, &query(Some("%"), None, 10))
        .await
        .unwrap();
    assert_eq!(
        ids(wildcard),
        vec![made[1]],
        "% is a character, not a wildcard"
    );
    let by_number = store
        .people(&scope, &query(Some("2079460002"), None, 10))
        .await
        .unwrap();
    assert_eq!(ids(by_number), vec![made[2]]);
    let by_address = store
        .people(&scope, &query(Some("owner@acme"), None, 10))
        .await
        .unwrap();
    assert_eq!(by_address.len(), 1);
    assert_eq!(by_address[0].identities.len(), 2);
}
