//! The usage insights of a month written through the store's own write path
//! (its clock set back to each moment with `as_of`): people on several
//! channels, direct and forwarded messages, replies, ratings given, changed
//! and taken back, skills loaded, and a merge of two people at the end. Every
//! figure is counted again here from what was written, and must be what
//! `GET /api/v1/insights/usage` says.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use steward_domain::*;
use steward_store::{
    ConversationChoice, NewActivation, NewMessage, NewSkill, Sender, TenantScope, as_of,
};
use steward_testkit::app::spawn_app;

/// A small deterministic generator, so that a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % sides
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.roll(100) < percent
    }
}

/// A person's message, as written.
struct Asked {
    at: DateTime<Utc>,
    /// The writer: an index into the senders (after the merge, see `person`).
    who: usize,
    chatbot: usize,
    forwarded: bool,
    /// Whether it opened its conversation.
    started: bool,
}

/// A reply, as written, and what happened to it.
struct Answered {
    at: DateTime<Utc>,
    chatbot: usize,
    /// The rating left on it, and when it was first given.
    rating: Option<(Rating, DateTime<Utc>)>,
    /// The skills it loaded, and when.
    loaded: Vec<(usize, DateTime<Utc>)>,
}

fn message(
    chatbot: ChatbotId,
    conversation: ConversationChoice,
    role: MessageRole,
    text: &str,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        chatbot_id: chatbot,
        conversation,
        role,
        text: MessageText::parse("text", text).unwrap(),
        channel: "api".into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: Vec::new(),
        sender: None,
        forwarded: false,
        conversation_key: None,
    }
}

fn share(part: i64, whole: i64) -> Value {
    match whole {
        0 => Value::Null,
        _ => (part as f64 / whole as f64).into(),
    }
}

/// `value` with every fraction rounded to nine places: the client's JSON
/// reader may differ from the server's writer in the last bit.
fn rounded(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            ((f * 1e9).round() / 1e9).into()
        }
        Value::Array(items) => Value::Array(items.iter().map(rounded).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), rounded(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn ratings(up: i64, down: i64) -> Value {
    serde_json::json!({"up": up, "down": down, "score": share(up, up + down)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_months_insights_are_the_figures_counted_from_what_was_written() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.org", "Acme").await;
    let org: OrgId = owner.org_id.parse().unwrap();
    let scope = TenantScope::for_job(org);
    let chatbots: Vec<ChatbotId> = [
        app.chatbot(&owner, "Front desk").await,
        app.chatbot(&owner, "Finance").await,
    ]
    .iter()
    .map(|id| id.parse().unwrap())
    .collect();
    let mut skills = Vec::new();
    for name in ["expenses", "travel"] {
        let skill = NewSkill {
            name: name.into(),
            description: format!("Does {name}."),
            body: "Steps.".into(),
            skill_md: format!("---\nname: {name}\ndescription: Does {name}.\n---\nSteps."),
            files: Vec::new(),
        };
        skills.push(app.store.add_skill(&scope, skill).await.unwrap());
    }
    let handle = |kind, raw: &str| Sender::new(Identity::parse("from", kind, raw).unwrap());
    let senders = [
        handle(IdentityKind::Whatsapp, "+1 650 555 0100"),
        handle(IdentityKind::Slack, "U0AAA1"),
        handle(IdentityKind::Email, "grace@example.org"),
        handle(IdentityKind::Telegram, "777001"),
        handle(IdentityKind::Whatsapp, "+44 20 7946 0000"),
        handle(IdentityKind::Email, "lin@example.org"),
        Sender::new(Identity::member(owner.user_id.parse().unwrap())),
    ];
    // The last sender but one is merged into the first at the end: from then
    // on every message either wrote is one person's.
    let (merged, kept) = (5, 0);
    let person = |who: usize| if who == merged { kept } else { who };

    let mut dice = Dice(20261203);
    let now = Utc::now();
    let mut asked: Vec<Asked> = Vec::new();
    let mut answered: Vec<Answered> = Vec::new();
    let mut open: HashMap<(usize, usize), ConversationId> = HashMap::new();
    // Each sender's person, as the store made them.
    let mut people: HashMap<usize, PersonId> = HashMap::new();
    // Thirty-five days: the first five lie before the period read, and
    // count only in the people of the week they belong to.
    for days_ago in (0..35).rev() {
        for (who, sender) in senders.iter().enumerate() {
            if !dice.chance(40) {
                continue;
            }
            for _ in 0..=dice.roll(3) {
                // Some minutes to ten hours back from this time of day: never
                // after now, sometimes the day before.
                let at =
                    now - Duration::days(days_ago) - Duration::minutes(5 + dice.roll(600) as i64);
                let chatbot = dice.roll(2) as usize;
                let conversation = match open.get(&(who, chatbot)) {
                    Some(id) if !dice.chance(20) => ConversationChoice::Existing(*id),
                    _ => ConversationChoice::Start(ConversationId::new()),
                };
                open.insert((who, chatbot), conversation.id());
                let forwarded = dice.chance(25);
                let mut new = message(chatbots[chatbot], conversation, MessageRole::User, "Hello");
                new.sender = Some(sender.clone());
                new.forwarded = forwarded;
                let written = as_of(at, app.store.add_message(&scope, new)).await.unwrap();
                people.insert(who, written.person_id.expect("a person's message"));
                asked.push(Asked {
                    at,
                    who,
                    chatbot,
                    forwarded,
                    started: matches!(conversation, ConversationChoice::Start(_)),
                });
                if !dice.chance(75) {
                    continue;
                }
                let reply_id = MessageId::new();
                let mut loaded = Vec::new();
                for (index, skill) in skills.iter().enumerate() {
                    if dice.chance(30) {
                        let when = at + Duration::seconds(30);
                        let activation = NewActivation {
                            tool_call_id: ToolCallId::new(),
                            skill_id: skill.id,
                            chatbot_id: chatbots[chatbot],
                            conversation_id: conversation.id(),
                            reply_id,
                        };
                        as_of(when, app.store.record_activation(&scope, &activation))
                            .await
                            .unwrap();
                        loaded.push((index, when));
                    }
                }
                let mut reply = message(
                    chatbots[chatbot],
                    ConversationChoice::Existing(conversation.id()),
                    MessageRole::Assistant,
                    "Hi",
                );
                reply.id = reply_id;
                reply.answers = Some(written.id);
                let reply_at = at + Duration::minutes(1);
                as_of(reply_at, app.store.add_message(&scope, reply))
                    .await
                    .unwrap();
                let mut rating = None;
                if dice.chance(45) {
                    let first = if dice.chance(60) {
                        Rating::Up
                    } else {
                        Rating::Down
                    };
                    let given = at + Duration::minutes(2);
                    as_of(
                        given,
                        app.store.rate_reply(&scope, reply_id, sender, first, None),
                    )
                    .await
                    .unwrap();
                    rating = Some((first, given));
                    if dice.chance(15) {
                        let other = match first {
                            Rating::Up => Rating::Down,
                            Rating::Down => Rating::Up,
                        };
                        let later = at + Duration::minutes(3);
                        as_of(
                            later,
                            app.store.rate_reply(&scope, reply_id, sender, other, None),
                        )
                        .await
                        .unwrap();
                        rating = Some((other, given));
                    } else if dice.chance(10) {
                        let taken = app.store.withdraw_rating(&scope, reply_id, sender, None);
                        assert!(as_of(at + Duration::minutes(3), taken).await.unwrap());
                        rating = None;
                    }
                }
                answered.push(Answered {
                    at: reply_at,
                    chatbot,
                    rating,
                    loaded,
                });
            }
        }
    }
    let (into, from) = (people[&kept], people[&merged]);
    app.store.merge_people(&scope, into, from).await.unwrap();

    let read = app
        .get("/api/v1/insights/usage?days=30", &owner.token)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let insights = read.body;

    // The period as the answer gives it (a midnight may have passed since
    // the month was written).
    let dates: Vec<NaiveDate> = insights["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(dates.len(), 30);
    let (first, today) = (dates[0], *dates.last().unwrap());
    let in_period = |at: &DateTime<Utc>| at.date_naive() >= first;
    let monday =
        |date: NaiveDate| date - Duration::days(date.weekday().num_days_from_monday() as i64);

    // Skill loads, replies that loaded one, ratings and each skill's use
    // over the days `counted` keeps: a load on its day, a reply among those
    // that loaded a skill on the day of its first load, a rating on the day
    // it was first given, and a skill's share of the ratings on the day its
    // reply first loaded one.
    let skill_figures = |counted: &dyn Fn(NaiveDate) -> bool| {
        let mut activations = 0;
        let mut with_skills = 0;
        let (mut up, mut down) = (0, 0);
        let mut per_skill: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for reply in &answered {
            for (skill, at) in &reply.loaded {
                if counted(at.date_naive()) {
                    activations += 1;
                    per_skill.entry(skills[*skill].name.as_str()).or_default().0 += 1;
                }
            }
            let first_load = reply.loaded.iter().map(|(_, at)| *at).min();
            if first_load.is_some_and(|at| counted(at.date_naive())) {
                with_skills += 1;
                if let Some((rating, _)) = reply.rating {
                    for (skill, _) in &reply.loaded {
                        let entry = per_skill.entry(skills[*skill].name.as_str()).or_default();
                        match rating {
                            Rating::Up => entry.1 += 1,
                            Rating::Down => entry.2 += 1,
                        }
                    }
                }
            }
            if let Some((rating, given)) = reply.rating
                && counted(given.date_naive())
            {
                match rating {
                    Rating::Up => up += 1,
                    Rating::Down => down += 1,
                }
            }
        }
        let per_skill: Vec<Value> = per_skill
            .into_iter()
            .map(|(name, (loads, up, down))| {
                serde_json::json!({"name": name, "activations": loads, "feedback": ratings(up, down)})
            })
            .collect();
        (
            activations,
            with_skills,
            ratings(up, down),
            Value::Array(per_skill),
        )
    };

    // The figures of the days `counted` keeps, with the people of the days
    // `people_of` keeps (a week's people include its days before the period).
    let span = |counted: &dyn Fn(NaiveDate) -> bool, people_of: &dyn Fn(NaiveDate) -> bool| {
        let kept: Vec<&Asked> = asked
            .iter()
            .filter(|a| counted(a.at.date_naive()))
            .collect();
        let messages = kept.len() as i64;
        let forwarded = kept.iter().filter(|a| a.forwarded).count() as i64;
        let people: BTreeSet<usize> = asked
            .iter()
            .filter(|a| people_of(a.at.date_naive()))
            .map(|a| person(a.who))
            .collect();
        let replies = answered
            .iter()
            .filter(|r| counted(r.at.date_naive()))
            .count() as i64;
        let (activations, with_skills, feedback, used) = skill_figures(counted);
        serde_json::json!({
            "messages": messages,
            "direct": messages - forwarded,
            "forwarded": forwarded,
            "replies": replies,
            "people": people.len(),
            "messages_per_person": share(messages, people.len() as i64),
            "activations": activations,
            "activation_rate": share(with_skills, replies),
            "feedback": feedback,
            "skills": used,
        })
    };

    // Each day.
    for (day, shown) in dates.iter().zip(insights["days"].as_array().unwrap()) {
        let that_day = |date: NaiveDate| date == *day;
        let mut expected = span(&that_day, &that_day);
        expected["date"] = day.to_string().into();
        assert_eq!(rounded(shown), rounded(&expected), "{day}");
    }

    // Each week: the figures of the period's days; people of all its days.
    let weeks: BTreeSet<NaiveDate> = dates.iter().map(|d| monday(*d)).collect();
    let shown_weeks = insights["weeks"].as_array().unwrap();
    assert_eq!(shown_weeks.len(), weeks.len());
    for (starts, shown) in weeks.iter().zip(shown_weeks) {
        let in_week = |date: NaiveDate| monday(date) == *starts;
        let mut expected = span(&|date| in_week(date) && date >= first, &in_week);
        expected["starts"] = starts.to_string().into();
        assert_eq!(rounded(shown), rounded(&expected), "the week of {starts}");
    }

    // People active today and in the last seven days.
    let active = |since: NaiveDate| {
        let people: BTreeSet<usize> = asked
            .iter()
            .filter(|a| a.at.date_naive() >= since)
            .map(|a| person(a.who))
            .collect();
        people.len()
    };
    assert_eq!(
        insights["active_people"],
        serde_json::json!({"today": active(today), "week": active(today - Duration::days(6))})
    );

    // Each chatbot, and the ratings first given in the period.
    let mut per_chatbot: BTreeMap<String, Value> = BTreeMap::new();
    let (mut all_up, mut all_down) = (0, 0);
    for (index, id) in chatbots.iter().enumerate() {
        let mine: Vec<&Asked> = asked
            .iter()
            .filter(|a| a.chatbot == index && in_period(&a.at))
            .collect();
        let given = |wanted: Rating| {
            answered
                .iter()
                .filter(|r| r.chatbot == index)
                .filter(|r| {
                    r.rating
                        .is_some_and(|(rating, at)| rating == wanted && in_period(&at))
                })
                .count() as i64
        };
        let (up, down) = (given(Rating::Up), given(Rating::Down));
        all_up += up;
        all_down += down;
        per_chatbot.insert(
            id.to_string(),
            serde_json::json!({
                "chatbot_id": id.to_string(),
                "messages": mine.len(),
                "conversations": mine.iter().filter(|a| a.started).count(),
                "feedback": ratings(up, down),
            }),
        );
    }
    let shown: BTreeMap<String, Value> = insights["chatbots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["chatbot_id"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    assert_eq!(
        rounded(&serde_json::to_value(&shown).unwrap()),
        rounded(&serde_json::to_value(&per_chatbot).unwrap())
    );
    assert_eq!(
        rounded(&insights["feedback"]),
        rounded(&ratings(all_up, all_down))
    );

    // Each skill over the period; the share of the period's replies that
    // loaded any.
    let (_, loaded_any, _, used) = skill_figures(&|date| date >= first);
    assert_eq!(rounded(&insights["skills"]), rounded(&used));
    let replies = answered.iter().filter(|r| in_period(&r.at)).count() as i64;
    assert_eq!(
        rounded(&insights["activation_rate"]),
        rounded(&share(loaded_any, replies))
    );
    assert!(replies > 100 && loaded_any > 20, "a month worth checking");
}
