//! Insights by category with k-anonymity: an organization where one
//! category counts 4 people and the others 20 to 30. The small one is
//! suppressed, and so is whatever the numbers shown (at both levels, by week
//! and by month, and the period's total) would give it away by; advisors
//! read this and nothing else; the taxonomy is the organization's to change.

use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_domain::ChatbotId;
use steward_store::TenantScope;
use steward_testkit::app::{Session, TestApp, spawn_app};

/// (l1, l2, people): each person asks one question in their category.
const SEEDED: [(&str, &str, usize); 4] = [
    ("People & HR", "Leave & time off", 4),
    ("IT & tools", "Devices", 20),
    ("IT & tools", "Accounts & access", 20),
    ("Finance", "Expenses", 30),
];

async fn seeded() -> (TestApp, Session) {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot: ChatbotId = app.chatbot(&owner, "Helper").await.parse().unwrap();
    let scope = TenantScope::for_job(owner.org_id.parse().unwrap());
    let mut handle = 0;
    for (l1, l2, people) in SEEDED {
        for _ in 0..people {
            handle += 1;
            let said = steward_testkit::seed::telegram_message(
                app.store.as_ref(),
                &scope,
                bot,
                None,
                &handle.to_string(),
                "a question",
            )
            .await;
            let label = (l1.to_owned(), l2.to_owned());
            assert!(
                app.store
                    .record_pattern(&scope, said.id, &label)
                    .await
                    .unwrap()
            );
        }
    }
    (app, owner)
}

/// (l1, l2) → interactions, None when suppressed.
fn cells(period: &Value) -> Vec<(String, String, Option<i64>)> {
    period["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["suppressed"], c["interactions"].is_null(), "{c}");
            (
                c["category_l1"].as_str().unwrap().to_owned(),
                c["category_l2"].as_str().unwrap_or("").to_owned(),
                c["interactions"].as_i64(),
            )
        })
        .collect()
}

/// Checks, independently of how Steward decides, that no sum the numbers
/// obey leaves exactly one suppressed cell to be worked out, and that no
/// first-level cell hidden at level 1 is the sum of cells shown at level 2.
fn nothing_derivable(
    total: i64,
    level1: &[(String, String, Option<i64>)],
    level2: &[(String, String, Option<i64>)],
) {
    let hidden =
        |cells: &[(String, String, Option<i64>)]| cells.iter().filter(|c| c.2.is_none()).count();
    assert_ne!(
        hidden(level1),
        1,
        "total - shown gives the one hidden: {level1:?}"
    );
    assert_ne!(
        hidden(level2),
        1,
        "total - shown gives the one hidden: {level2:?}"
    );
    for (l1, _, value) in level1 {
        let family: Vec<_> = level2.iter().filter(|c| &c.0 == l1).cloned().collect();
        match value {
            Some(_) => assert_ne!(
                hidden(&family),
                1,
                "{l1} - shown gives the one hidden: {family:?}"
            ),
            None => assert!(hidden(&family) > 0, "{l1} is the sum of {family:?}"),
        }
    }
    // At least one interaction each: a rest equal to the number hidden pins each to 1.
    let shown: i64 = level1.iter().filter_map(|c| c.2).sum();
    if hidden(level1) > 0 {
        assert_ne!(total - shown, hidden(level1) as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_of_four_people_is_suppressed_and_nothing_shown_gives_it_away() {
    let (app, owner) = seeded().await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    for by in ["week", "month"] {
        let read = |level: u8| {
            let app = &app;
            let token = advisor.token.clone();
            async move {
                let got = app
                    .get(
                        &format!("/api/v1/insights/patterns?by={by}&level={level}"),
                        &token,
                    )
                    .await;
                assert_eq!(got.status, StatusCode::OK, "{}", got.text);
                assert_eq!(got.body["min_people"], 5);
                got.body["periods"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .clone()
            }
        };
        let (one, two) = (read(1).await, read(2).await);
        assert_eq!(one["interactions"], 74, "{one}");
        assert_eq!(one["people"], 74);
        let (level1, level2) = (cells(&one), cells(&two));
        let hr = level1.iter().find(|c| c.0 == "People & HR").unwrap();
        assert_eq!(hr.2, None, "4 people: suppressed");
        let leave = level2.iter().find(|c| c.1 == "Leave & time off").unwrap();
        assert_eq!(leave.2, None);
        nothing_derivable(74, &level1, &level2);
        // What stays shown is as counted.
        for (l1, l2, value) in level2.iter().filter(|c| c.2.is_some()) {
            let seeded = SEEDED.iter().find(|s| s.0 == l1 && s.1 == l2).unwrap();
            assert_eq!(*value, Some(seeded.2 as i64));
        }
        assert!(
            level2.iter().any(|c| c.2.is_some()),
            "not everything is hidden: {level2:?}"
        );
    }
    // Members read usage, not patterns.
    let member = app.member(&owner, "member@example.org", "member").await;
    let refused = app.get("/api/v1/insights/patterns", &member.token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Ranges past the most a query answers give the latest periods; from
    // after to gives none.
    let long = app
        .get(
            "/api/v1/insights/patterns?from=2000-01-01&to=2026-01-01",
            &owner.token,
        )
        .await;
    assert_eq!(long.body["periods"].as_array().unwrap().len(), 104);
    let none = app
        .get(
            "/api/v1/insights/patterns?from=2026-12-01&to=2026-11-01",
            &owner.token,
        )
        .await;
    assert_eq!(none.body["periods"], json!([]));
    for bad in ["by=day", "by=", "level=3", "level=0", "from=yesterday"] {
        let got = app
            .get(&format!("/api/v1/insights/patterns?{bad}"), &owner.token)
            .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}: {}", got.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_with_fewer_people_than_the_minimum_shows_nothing() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let bot: ChatbotId = app.chatbot(&owner, "Helper").await.parse().unwrap();
    let scope = TenantScope::for_job(owner.org_id.parse().unwrap());
    for handle in ["1", "2"] {
        let said = steward_testkit::seed::telegram_message(
            app.store.as_ref(),
            &scope,
            bot,
            None,
            handle,
            "hi",
        )
        .await;
        let label = ("Finance".to_owned(), "Expenses".to_owned());
        app.store
            .record_pattern(&scope, said.id, &label)
            .await
            .unwrap();
    }
    let got = app.get("/api/v1/insights/patterns", &owner.token).await;
    let last = got.body["periods"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["suppressed"], true, "{last}");
    assert!(last["interactions"].is_null() && last["people"].is_null());
    assert_eq!(last["categories"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_taxonomy_is_the_organizations_to_replace_and_reset() {
    let app = spawn_app().await;
    let owner = app.register("ada@example.org", "Acme").await;
    let shipped = app.get("/api/v1/insights/taxonomy", &owner.token).await;
    assert_eq!(shipped.status, StatusCode::OK);
    assert_eq!(shipped.body["custom"], false);
    assert!(
        shipped.body["taxonomy"]["categories"]
            .as_array()
            .unwrap()
            .len()
            > 3
    );
    let own = json!({"categories": [{"name": "Travel", "subcategories": [
        {"name": "Visas", "keywords": ["passport"]}, {"name": "Flights"}]}]});
    let put = app
        .put("/api/v1/insights/taxonomy", &owner.token, own.clone())
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let read = app.get("/api/v1/insights/taxonomy", &owner.token).await;
    assert_eq!(read.body["custom"], true);
    assert_eq!(
        read.body["taxonomy"]["categories"][0]["subcategories"][1]["name"],
        "Flights"
    );
    for bad in [
        json!({"categories": []}),
        json!({"categories": [{"name": "A", "subcategories": []}]}),
        json!({"categories": [{"name": " ", "subcategories": [{"name": "x"}]}]}),
        json!({"categories": [{"name": "A", "subcategories": [{"name": "x", "keywords": vec!["k"; 51]}]}]}),
        json!({"categories": [{"name": "A", "subcategories": [{"name": "x"}], "extra": 1}]}),
        json!(["not", "an", "object"]),
    ] {
        let refused = app
            .put("/api/v1/insights/taxonomy", &owner.token, bad.clone())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.text
        );
    }
    for role in ["member", "advisor"] {
        let who = app
            .member(&owner, &format!("{role}@example.org"), role)
            .await;
        let refused = app
            .put("/api/v1/insights/taxonomy", &who.token, own.clone())
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role}");
        let refused = app.delete("/api/v1/insights/taxonomy", &who.token).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role}");
    }
    let reset = app.delete("/api/v1/insights/taxonomy", &owner.token).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(reset.body["custom"], false);
    let audit = app
        .get("/api/v1/organizations/audit-log", &owner.token)
        .await
        .text;
    assert_eq!(
        audit.matches("insights.taxonomy_changed").count(),
        2,
        "{audit}"
    );
}

/// The last cell of the console's line named `name` (as askama escapes it).
fn last_cell<'h>(html: &'h str, name: &str) -> &'h str {
    let at = html
        .find(&format!("<tr><th scope=\"row\">{name}</th>"))
        .unwrap_or_else(|| panic!("no line {name} in {html}"));
    let line = &html[at..at + html[at..].find("</tr>").unwrap()];
    let cell = &line[line.rfind("<td>").unwrap() + 4..];
    &cell[..cell.find("</td>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_advisors_the_patterns_as_the_api_gives_them_and_nothing_else() {
    use super::console::{Console, location};
    let (app, owner) = seeded().await;
    let advisor = app.member(&owner, "advisor@example.org", "advisor").await;
    let console = Console::open(&app, &advisor).await;
    let home = console.get("/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/patterns");

    let api = app
        .get("/api/v1/insights/patterns?by=month&level=1", &advisor.token)
        .await;
    let latest = api.body["periods"].as_array().unwrap().last().unwrap();
    let page = console.get("/patterns?by=month&level=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let total = last_cell(&page.html, "All interactions");
    assert!(
        total.starts_with("74 ") && total.contains("(74 people)"),
        "{total}"
    );
    let mut hidden = 0;
    for cell in cells(latest) {
        let shown = last_cell(&page.html, &cell.0.replace('&', "&#38;"));
        match cell.2 {
            Some(n) => assert!(shown.starts_with(&format!("{n} ")), "{cell:?}: {shown}"),
            None => {
                assert!(shown.contains(">hidden<"), "{cell:?}: {shown}");
                hidden += 1;
            }
        }
    }
    assert!(hidden >= 1, "People & HR (4 people) is hidden");
    assert!(page.html.contains("The taxonomy Steward ships"));
    assert!(
        !page.html.contains("PUT /api/v1/insights/taxonomy"),
        "advisors change nothing"
    );

    // The nav offers an advisor only what answers them; the rest is refused.
    assert!(page.html.contains("href=\"/usage\""));
    for path in ["/conversations", "/chatbots", "/members", "/audit"] {
        assert!(!page.html.contains(&format!("href=\"{path}\"")), "{path}");
        assert_eq!(
            console.get(path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(console.get("/usage").await.status, StatusCode::OK);

    // Members read no patterns; owners are shown how to change the taxonomy.
    let member = app.member(&owner, "member@example.org", "member").await;
    let console = Console::open(&app, &member).await;
    assert!(!console.get("/").await.html.contains("href=\"/patterns\""));
    assert_eq!(console.get("/patterns").await.status, StatusCode::FORBIDDEN);
    let console = Console::open(&app, &owner).await;
    let page = console.get("/patterns?by=week&level=2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("PUT /api/v1/insights/taxonomy"));
    assert!(page.html.contains("Finance › Expenses"), "{}", page.html);
}
