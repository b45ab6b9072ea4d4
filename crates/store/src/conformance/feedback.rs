//! Ratings of replies: one per person and reply, within the organization.

use steward_domain::*;

use super::*;

/// The chatbot's counted ratings equal the ratings its reply holds.
async fn counters_hold(store: &S, scope: &TenantScope, bot: ChatbotId, reply: MessageId) {
    let held = store.reply_feedback(scope, reply).await.unwrap();
    let count = |rating| held.iter().filter(|f| f.rating == rating).count() as i64;
    let now = now();
    let activity = store
        .activity(scope, (now - chrono::Duration::days(1)).date_naive(), now)
        .await
        .unwrap();
    let counted = activity
        .chatbots
        .iter()
        .find(|c| c.chatbot_id == bot)
        .unwrap();
    assert_eq!(
        (counted.rated_up, counted.rated_down),
        (count(Rating::Up), count(Rating::Down)),
        "{held:?}"
    );
}

fn rater(handle: &str) -> Sender {
    Sender::new(Identity::parse("handle", IdentityKind::Slack, handle).unwrap())
}

pub async fn a_reply_has_one_rating_per_person_which_a_second_replaces(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("A"))
        .await
        .unwrap();
    let channel = new_channel(&store, &scope, bot.id, "Slack").await;
    let asked = store
        .add_message(&scope, user_message(bot.id, None, "hello"))
        .await
        .unwrap();
    let mut reply = user_message(bot.id, Some(asked.conversation_id), "hi there");
    reply.role = MessageRole::Assistant;
    reply.channel_id = Some(channel.id);
    let reply = store.add_message(&scope, reply).await.unwrap();
    let ana = rater("U0ANA");

    let (first, rated) = store
        .rate_reply(&scope, reply.id, &ana, Rating::Up, Some("clear".into()))
        .await
        .unwrap();
    assert_eq!(rated, Rated::New);
    assert_eq!((first.rating, first.chatbot_id), (Rating::Up, bot.id));
    let (_, rated) = store
        .rate_reply(&scope, reply.id, &ana, Rating::Up, None)
        .await
        .unwrap();
    assert_eq!(rated, Rated::Same, "a replayed rating counts once");
    counters_hold(&store, &scope, bot.id, reply.id).await;
    let (changed, rated) = store
        .rate_reply(&scope, reply.id, &ana, Rating::Down, Some("wrong".into()))
        .await
        .unwrap();
    assert_eq!(rated, Rated::Changed);
    assert_eq!(changed.comment.as_deref(), Some("wrong"));
    assert_eq!(changed.created_at, first.created_at);
    assert_eq!(changed.person_id, first.person_id);
    let (_, rated) = store
        .rate_reply(&scope, reply.id, &rater("U0BO"), Rating::Up, None)
        .await
        .unwrap();
    assert_eq!(rated, Rated::New, "another person's rating is their own");
    counters_hold(&store, &scope, bot.id, reply.id).await;

    assert!(matches!(
        store
            .rate_reply(&scope, asked.id, &ana, Rating::Up, None)
            .await,
        Err(StoreError::Conflict(Conflict::NotAReply))
    ));
    assert_not_found(
        store
            .rate_reply(&globex, reply.id, &ana, Rating::Up, None)
            .await,
        "another org's reply",
    );
    assert_not_found(
        store
            .rate_reply(&scope, MessageId::new(), &ana, Rating::Up, None)
            .await,
        "no message",
    );

    // A reaction finds the reply by the provider's id for what was sent.
    store
        .record_delivery(&scope, reply.id, 0, Some("1700000000.000100".into()))
        .await
        .unwrap();
    assert_eq!(
        store
            .delivered_reply(&scope, channel.id, "1700000000.000100")
            .await
            .unwrap(),
        Some(reply.id)
    );
    let elsewhere = new_channel(&store, &scope, bot.id, "Other").await;
    for (scope, channel) in [(&scope, elsewhere.id), (&globex, channel.id)] {
        assert_eq!(
            store
                .delivered_reply(scope, channel, "1700000000.000100")
                .await
                .unwrap(),
            None
        );
    }

    // Taking back a reaction removes only the rating it gave.
    assert!(
        !store
            .withdraw_rating(&scope, reply.id, &ana, Some(Rating::Up))
            .await
            .unwrap()
    );
    assert!(
        !store
            .withdraw_rating(&globex, reply.id, &ana, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .withdraw_rating(&scope, reply.id, &ana, Some(Rating::Down))
            .await
            .unwrap()
    );
    assert!(
        !store
            .withdraw_rating(&scope, reply.id, &ana, None)
            .await
            .unwrap()
    );
    counters_hold(&store, &scope, bot.id, reply.id).await;
    let (_, rated) = store
        .rate_reply(&scope, reply.id, &ana, Rating::Down, None)
        .await
        .unwrap();
    assert_eq!(rated, Rated::New);

    // Merged people keep the rating of the one merged into.
    let bo = store
        .rate_reply(&scope, reply.id, &rater("U0BO"), Rating::Up, None)
        .await
        .unwrap()
        .0;
    let ana_person = store
        .rate_reply(&scope, reply.id, &ana, Rating::Down, None)
        .await
        .unwrap()
        .0;
    store
        .merge_people(&scope, bo.person_id, ana_person.person_id)
        .await
        .unwrap();
    let (kept, rated) = store
        .rate_reply(&scope, reply.id, &ana, Rating::Up, None)
        .await
        .unwrap();
    assert_eq!((kept.person_id, rated), (bo.person_id, Rated::Same));
    counters_hold(&store, &scope, bot.id, reply.id).await;
}
