//! Skills: versions, deletion, files, activations and their ratings,
//! within their organization.

use steward_domain::*;

use super::*;

fn skill(name: &str, description: &str, files: &[(&str, &[u8])]) -> NewSkill {
    NewSkill {
        name: name.into(),
        description: description.into(),
        body: format!("# {name}\n\nDo it well."),
        skill_md: format!("---\nname: {name}\ndescription: {description}\n---\n# {name}\n"),
        files: files
            .iter()
            .map(|(path, bytes)| ((*path).to_owned(), bytes.to_vec()))
            .collect(),
    }
}

pub async fn skills_keep_their_versions_and_are_deleted_for_good_within_their_org(store: S) {
    let (scope, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let first = store
        .add_skill(
            &scope,
            skill("expenses", "Files expenses.", &[("policy.md", b"50 a day")]),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.version, first.files.clone()),
        (1, vec!["policy.md".to_owned()])
    );
    assert_eq!(first.bytes, (first.skill_md.len() + 8) as i64);
    let second = store
        .add_skill(&scope, skill("expenses", "Files expense reports.", &[]))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    store
        .add_skill(&scope, skill("travel", "Books trips.", &[]))
        .await
        .unwrap();
    store
        .add_skill(&globex, skill("expenses", "Theirs.", &[]))
        .await
        .unwrap();

    let current = store.skills(&scope).await.unwrap();
    let names: Vec<(&str, i64)> = current
        .iter()
        .map(|s| (s.name.as_str(), s.version))
        .collect();
    assert_eq!(names, [("expenses", 2), ("travel", 1)]);
    assert_eq!(current[0].description, "Files expense reports.");
    let versions = store.skill_versions(&scope, "expenses").await.unwrap();
    assert_eq!(
        versions.iter().map(|s| s.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_not_found(
        store.skill_versions(&scope, "nothing").await,
        "no such skill",
    );
    // The earlier version's file stays readable; another org's is not found.
    assert_eq!(
        store
            .skill_file(&scope, first.id, "policy.md")
            .await
            .unwrap(),
        b"50 a day"
    );
    assert_not_found(
        store.skill_file(&globex, first.id, "policy.md").await,
        "another org's file",
    );
    assert_not_found(
        store.skill_file(&scope, first.id, "other.md").await,
        "no such file",
    );
    let chosen = store
        .offered_skills(&scope, &["travel".into(), "nothing".into()], None)
        .await
        .unwrap();
    assert_eq!(chosen.len(), 1);

    // Deleting takes it off chatbots; its versions stay for history.
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let patch = ChatbotPatch {
        skills: Some(vec!["expenses".into(), "travel".into()]),
        ..Default::default()
    };
    store.update_chatbot(&scope, bot.id, patch).await.unwrap();
    assert_not_found(
        store.delete_skill(&globex, "travel").await,
        "another org's skill",
    );
    store.delete_skill(&scope, "expenses").await.unwrap();
    assert_not_found(
        store.delete_skill(&scope, "expenses").await,
        "deleted twice",
    );
    assert_eq!(
        store.chatbot(&scope, bot.id).await.unwrap().skills,
        ["travel"]
    );
    assert_eq!(store.skills(&scope).await.unwrap().len(), 1);
    let kept = store.skill_versions(&scope, "expenses").await.unwrap();
    assert!(kept.iter().all(|s| s.deleted_at.is_some()));
    assert_eq!(store.skills(&globex).await.unwrap()[0].name, "expenses");
    // Uploaded again, it continues its versions.
    let again = store
        .add_skill(&scope, skill("expenses", "Back.", &[]))
        .await
        .unwrap();
    assert_eq!(again.version, 3);
    let log = store.list_audit(&scope, None, 20).await.unwrap();
    for action in ["skill.uploaded", "skill.deleted"] {
        assert!(log.iter().any(|e| e.action == action), "{action}: {log:?}");
    }
}

pub async fn activations_count_once_per_call_with_the_ratings_of_their_replies(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    let expenses = store
        .add_skill(&scope, skill("expenses", "Files expenses.", &[]))
        .await
        .unwrap();
    let travel = store
        .add_skill(&scope, skill("travel", "Books trips.", &[]))
        .await
        .unwrap();
    let member = Sender::member(owner.id);
    // Three replies: two load expenses (one of them twice), one travel.
    let mut replies = Vec::new();
    for loaded in [vec![&expenses, &expenses], vec![&expenses], vec![&travel]] {
        let mut asked = user_message(bot.id, None, "help");
        asked.sender = Some(member.clone());
        let asked = store.add_message(&scope, asked).await.unwrap();
        let mut reply = user_message(bot.id, Some(asked.conversation_id), "done");
        reply.role = MessageRole::Assistant;
        let reply = store.add_message(&scope, reply).await.unwrap();
        for skill in loaded {
            let activation = NewActivation {
                tool_call_id: ToolCallId::new(),
                skill_id: skill.id,
                chatbot_id: bot.id,
                conversation_id: asked.conversation_id,
                reply_id: reply.id,
            };
            assert!(store.record_activation(&scope, &activation).await.unwrap());
            // A retried job records the same call again: nothing changes.
            assert!(!store.record_activation(&scope, &activation).await.unwrap());
            // Another organization cannot record one on this conversation.
            let theirs = NewActivation {
                tool_call_id: ToolCallId::new(),
                ..activation.clone()
            };
            assert!(!store.record_activation(&globex, &theirs).await.unwrap());
        }
        replies.push(reply);
    }
    // Ratings: the first reply up by two people, the second down, the third unrated.
    store
        .rate_reply(&scope, replies[0].id, &member, Rating::Up, None)
        .await
        .unwrap();
    let other = Sender::new(Identity::parse("x", IdentityKind::Slack, "U0RATER").unwrap());
    store
        .rate_reply(&scope, replies[0].id, &other, Rating::Up, None)
        .await
        .unwrap();
    store
        .rate_reply(&scope, replies[1].id, &member, Rating::Down, None)
        .await
        .unwrap();

    let yesterday = (now() - chrono::Duration::days(1)).date_naive();
    let used = store.skill_use(&scope, yesterday).await.unwrap();
    assert_eq!(
        used,
        vec![
            SkillUse {
                name: "expenses".into(),
                activations: 3,
                rated_up: 2,
                rated_down: 1
            },
            SkillUse {
                name: "travel".into(),
                activations: 1,
                rated_up: 0,
                rated_down: 0
            },
        ]
    );
    assert!(
        store
            .skill_use(&globex, yesterday)
            .await
            .unwrap()
            .is_empty()
    );
    // Replies that loaded any skill, counted once each, on the day's counters.
    let with_skills = async |scope: &TenantScope| -> i64 {
        let activity = store.activity(scope, yesterday, now()).await.unwrap();
        activity.days.iter().map(|d| d.with_skills).sum()
    };
    assert_eq!(with_skills(&scope).await, 3);
    assert_eq!(with_skills(&globex).await, 0);
    // The operator's metrics read the same counters.
    let orgs = store
        .org_activity(
            now() - chrono::Duration::days(7),
            &usage_period(now()),
            now().date_naive(),
        )
        .await
        .unwrap();
    let acme = orgs.iter().find(|o| o.org_id == scope.org_id()).unwrap();
    assert_eq!(acme.replies_with_skills, 3);
    assert_eq!(
        acme.skill_activations,
        [("expenses".to_owned(), 3), ("travel".to_owned(), 1)]
    );
    let theirs = orgs.iter().find(|o| o.org_id == globex.org_id()).unwrap();
    assert_eq!(
        (theirs.replies_with_skills, theirs.skill_activations.len()),
        (0, 0)
    );
    let tomorrow = (now() + chrono::Duration::days(1)).date_naive();
    assert!(store.skill_use(&scope, tomorrow).await.unwrap().is_empty());

    // A rating taken back, or changed, moves the skill's counts with it.
    store
        .withdraw_rating(&scope, replies[1].id, &member, None)
        .await
        .unwrap();
    store
        .rate_reply(&scope, replies[2].id, &member, Rating::Down, None)
        .await
        .unwrap();
    store
        .rate_reply(&scope, replies[2].id, &member, Rating::Up, None)
        .await
        .unwrap();
    let used = store.skill_use(&scope, yesterday).await.unwrap();
    let counts: Vec<(&str, i64, i64, i64)> = used
        .iter()
        .map(|u| (u.name.as_str(), u.activations, u.rated_up, u.rated_down))
        .collect();
    assert_eq!(counts, [("expenses", 3, 2, 0), ("travel", 1, 1, 0)]);
}

pub async fn skills_assigned_to_people_or_roles_are_offered_to_them_only(store: S) {
    let (scope, owner) = org(&store, "Acme").await;
    let (globex, globex_owner) = org(&store, "Globex").await;
    let bot = store
        .create_chatbot(&scope, new_chatbot("Helper"))
        .await
        .unwrap();
    for (name, description) in [
        ("expenses", "Files expenses."),
        ("payroll", "Runs payroll."),
        ("travel", "Books trips."),
    ] {
        store
            .add_skill(&scope, skill(name, description, &[]))
            .await
            .unwrap();
    }
    let ada = store
        .add_member(&scope, new_user("ada@acme.example.org", Role::Member))
        .await
        .unwrap();
    let ada = store.member_person(&scope, ada.id).await.unwrap().id;
    let owner = store.member_person(&scope, owner.id).await.unwrap().id;
    let theirs = store
        .member_person(&globex, globex_owner.id)
        .await
        .unwrap()
        .id;
    let mut customers = Vec::new();
    for number in ["+1 650 555 0001", "+1 650 555 0002"] {
        let mut message = user_message(bot.id, None, "hello");
        message.sender = Some(Sender {
            identity: Identity::parse("from", IdentityKind::Whatsapp, number).unwrap(),
            name: None,
        });
        let stored = store.add_message(&scope, message).await.unwrap();
        let person = store
            .conversation(&scope, stored.conversation_id)
            .await
            .unwrap()
            .person_id;
        assert!(person.is_some());
        assert_eq!(stored.person_id, person, "the message names its author");
        customers.push(person.unwrap());
    }
    let all: Vec<String> = ["expenses", "payroll", "travel"].map(String::from).into();
    let offered_to = async |person: Option<PersonId>| -> Vec<String> {
        store
            .offered_skills(&scope, &all, person)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(
        offered_to(Some(ada)).await,
        all,
        "no one assigned: everyone"
    );

    let expenses = SkillAssignees {
        people: vec![customers[0], customers[0]],
        roles: vec![Role::Member],
    };
    store
        .assign_skill(&scope, "expenses", &expenses)
        .await
        .unwrap();
    let admins = SkillAssignees {
        people: Vec::new(),
        roles: vec![Role::Admin, Role::Owner],
    };
    store
        .assign_skill(&scope, "payroll", &admins)
        .await
        .unwrap();
    assert_eq!(
        store.skill_assignees(&scope, "expenses").await.unwrap(),
        SkillAssignees {
            people: vec![customers[0]],
            roles: vec![Role::Member],
        }
    );
    assert_eq!(
        store.skill_assignees(&scope, "travel").await.unwrap(),
        SkillAssignees::default(),
        "kept to no one in particular: everyone"
    );
    assert_eq!(offered_to(Some(ada)).await, ["expenses", "travel"]);
    assert_eq!(offered_to(Some(owner)).await, ["payroll", "travel"]);
    assert_eq!(offered_to(Some(customers[0])).await, ["expenses", "travel"]);
    assert_eq!(offered_to(Some(customers[1])).await, ["travel"]);
    assert_eq!(offered_to(None).await, ["travel"], "no one in particular");
    assert_eq!(offered_to(Some(theirs)).await, ["travel"]);

    // A role is read when the reply is written: a promoted member gets the
    // admins' skills and loses the members'.
    let ada_user = store.list_members(&scope).await.unwrap();
    let ada_user = ada_user
        .iter()
        .find(|u| u.email.as_str() == "ada@acme.example.org")
        .unwrap();
    store
        .set_member_role(&scope, ada_user.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(offered_to(Some(ada)).await, ["payroll", "travel"]);

    // Another organization's person, or its skill, is not assignable; a
    // refused assignment leaves the one before.
    assert_conflict(
        store
            .assign_skill(
                &scope,
                "expenses",
                &SkillAssignees {
                    people: vec![customers[1], theirs],
                    roles: Vec::new(),
                },
            )
            .await,
        "unknown_person",
    );
    assert_eq!(offered_to(Some(customers[1])).await, ["travel"]);
    assert_eq!(offered_to(Some(customers[0])).await, ["expenses", "travel"]);
    assert_not_found(
        store.assign_skill(&globex, "expenses", &expenses).await,
        "another org's skill",
    );
    assert_not_found(
        store.skill_assignees(&globex, "expenses").await,
        "another org's skill",
    );

    // A merge keeps what either person was given.
    store
        .merge_people(&scope, customers[1], customers[0])
        .await
        .unwrap();
    assert_eq!(offered_to(Some(customers[1])).await, ["expenses", "travel"]);
    assert_eq!(
        store
            .skill_assignees(&scope, "expenses")
            .await
            .unwrap()
            .people,
        [customers[1]]
    );

    // Everyone again; deleted and uploaded anew, it starts unassigned.
    store
        .assign_skill(&scope, "payroll", &SkillAssignees::default())
        .await
        .unwrap();
    assert_eq!(offered_to(None).await, ["payroll", "travel"]);
    store.delete_skill(&scope, "expenses").await.unwrap();
    assert_not_found(
        store.assign_skill(&scope, "expenses", &expenses).await,
        "a deleted skill",
    );
    store
        .add_skill(&scope, skill("expenses", "Back.", &[]))
        .await
        .unwrap();
    assert_eq!(offered_to(None).await, all);
    let log = store.list_audit(&scope, None, 50).await.unwrap();
    assert!(log.iter().any(|e| e.action == "skill.assigned"), "{log:?}");
}
