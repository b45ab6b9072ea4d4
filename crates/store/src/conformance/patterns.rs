//! Patterns for insights: a message labelled and counted once, people
//! counted once per cell at every level, by week and by month; counts kept
//! as anonymous totals when a person is erased, people folded by a merge;
//! never seen from another organization. And the organization's taxonomy.

use steward_domain::taxonomy::Taxonomy;
use steward_domain::*;

use super::*;

/// A message from the person with Telegram handle `handle` (made on their
/// first message), in a conversation of its own.
async fn said(store: &S, scope: &TenantScope, bot: ChatbotId, handle: &str) -> Message {
    let mut message = user_message(bot, None, "how do I book leave?");
    message.sender = Some(Sender::new(
        Identity::parse("sender", IdentityKind::Telegram, handle).unwrap(),
    ));
    store.add_message(scope, message).await.unwrap()
}

fn label(l1: &str, l2: &str) -> (String, String) {
    (l1.to_owned(), l2.to_owned())
}

/// (l1, l2) → (interactions, people) of one period.
fn cells(counts: &[PatternCount]) -> std::collections::BTreeMap<(String, String), (i64, i64)> {
    counts
        .iter()
        .map(|c| {
            (
                (c.category_l1.clone(), c.category_l2.clone()),
                (c.interactions, c.people),
            )
        })
        .collect()
}

pub async fn patterns_are_counted_once_per_message_and_person_at_every_level(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap()
        .id;
    let ada = said(&store, &scope, bot, "1").await;
    let ada_again = said(&store, &scope, bot, "1").await;
    let bo = said(&store, &scope, bot, "2").await;
    let leave = label("HR", "Leave");
    assert!(!store.labelled(&scope, ada.id).await.unwrap());
    assert!(store.record_pattern(&scope, ada.id, &leave).await.unwrap());
    assert!(store.labelled(&scope, ada.id).await.unwrap());
    assert!(!store.labelled(&globex, ada.id).await.unwrap());
    assert!(
        !store
            .record_pattern(&scope, ada.id, &label("IT", "Devices"))
            .await
            .unwrap(),
        "a message is counted once, with its first label"
    );
    assert!(
        !store.record_pattern(&globex, bo.id, &leave).await.unwrap(),
        "another organization's message is not counted"
    );
    assert!(
        store
            .record_pattern(&scope, ada_again.id, &leave)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_pattern(&scope, bo.id, &label("HR", "Pay"))
            .await
            .unwrap()
    );
    let today = now().date_naive();
    for span in [Span::Week, Span::Month] {
        let period = span.period_of(today);
        assert!(span.first_day(period).unwrap() <= today);
        let counted = store
            .pattern_counts(&scope, span, period, period)
            .await
            .unwrap();
        let want = std::collections::BTreeMap::from([
            (label("", ""), (3, 2)),
            (label("HR", ""), (3, 2)),
            (leave.clone(), (2, 1)),
            (label("HR", "Pay"), (1, 1)),
        ]);
        assert_eq!(cells(&counted), want, "{span:?}");
        assert!(
            store
                .pattern_counts(&globex, span, period, period)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // Bo merged into Ada: one person in HR now, the interactions as they were.
    store
        .merge_people(&scope, ada.person_id.unwrap(), bo.person_id.unwrap())
        .await
        .unwrap();
    let week = Span::Week.period_of(today);
    let counted = cells(
        &store
            .pattern_counts(&scope, Span::Week, week, week)
            .await
            .unwrap(),
    );
    assert_eq!(counted[&label("HR", "")], (3, 1));
    assert_eq!(counted[&label("HR", "Pay")], (1, 1));
    // Erased: the counts stay, as anonymous totals.
    store
        .erase_person(&scope, ada.person_id.unwrap())
        .await
        .unwrap();
    let after = cells(
        &store
            .pattern_counts(&scope, Span::Week, week, week)
            .await
            .unwrap(),
    );
    assert_eq!(after, counted);
    // A new message of a new person counts them as new everywhere.
    let cy = said(&store, &scope, bot, "3").await;
    store.record_pattern(&scope, cy.id, &leave).await.unwrap();
    let last = cells(
        &store
            .pattern_counts(&scope, Span::Week, week, week)
            .await
            .unwrap(),
    );
    assert_eq!(last[&label("", "")], (4, 2));
    assert_eq!(last[&leave], (3, 2));
}

/// The taxonomy, and the tokens labelling spends.
pub async fn an_organization_keeps_its_own_taxonomy(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    // What labelling spends counts in the organization's usage, no one else's.
    let period = usage_period(now());
    store.count_tokens(&scope, 13).await.unwrap();
    store.count_tokens(&scope, 13).await.unwrap();
    assert_eq!(store.usage(&scope, &period).await.unwrap().tokens, 26);
    assert_eq!(store.usage(&globex, &period).await.unwrap().tokens, 0);
    assert_eq!(store.taxonomy(&scope).await.unwrap(), None);
    let mut own = Taxonomy::workplace();
    own.categories.truncate(2);
    store.set_taxonomy(&scope, Some(&own)).await.unwrap();
    assert_eq!(store.taxonomy(&scope).await.unwrap(), Some(own));
    assert_eq!(store.taxonomy(&globex).await.unwrap(), None);
    store.set_taxonomy(&scope, None).await.unwrap();
    assert_eq!(store.taxonomy(&scope).await.unwrap(), None);
    let audit = store.list_audit(&scope, None, 10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "insights.taxonomy_changed")
            .count(),
        2
    );
}
