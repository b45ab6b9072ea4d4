//! The console in a real browser: headless Chromium driven through
//! chromedriver against `steward serve`, a model replaced by the local fake.
//! Each test saves a screenshot of its final page (see `support::browser`).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::{Browser, Driver, chromedriver};
use support::{Api, Server, create_acme, create_org_with, steward};

const NEW_PASSWORD: &str = "correct horse battery";

/// `steward serve` answering with the fake model, its replies paced so that
/// streaming can be seen.
async fn serve(dir: &std::path::Path) -> (Server, steward_testkit::model::FakeModel) {
    let fake = steward_testkit::model::FakeModel::start().await;
    fake.pace(Duration::from_millis(120));
    let mut command = steward(dir);
    command
        .env("STEWARD_LLM__PRIMARY__KIND", "openai")
        .env("STEWARD_LLM__PRIMARY__BASE_URL", &fake.base_url)
        .env("STEWARD_LLM__PRIMARY__MODEL", "fake-model")
        .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50");
    let server = Server::start(command);
    server.wait_until_healthy().await;
    (server, fake)
}

/// The browser tests need Debian's chromium and chromium-driver. `.ci/run`
/// installs them and sets `STEWARD_TEST_BROWSER_REQUIRED`, so that there a
/// missing browser fails instead of skipping.
fn driver_or_skip() -> Option<std::path::PathBuf> {
    let found = chromedriver();
    if found.is_none() {
        assert!(
            std::env::var_os("STEWARD_TEST_BROWSER_REQUIRED").is_none(),
            "no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: backend not configured (chromium and chromium-driver)");
    }
    found
}

/// Signs in through the form; a one-time password is changed on the way.
async fn sign_in(browser: &Browser, base: &str, email: &str, password: &str) {
    browser.goto(&format!("{base}/login")).await;
    browser
        .fill(
            "form[action=\"/login\"]",
            &[("email", email), ("password", password)],
        )
        .await;
    browser.submit("form[action=\"/login\"]").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = browser.url().await;
        if url.ends_with("/password") {
            browser
                .fill(
                    "form[action=\"/password\"]",
                    &[
                        ("current_password", password),
                        ("new_password", NEW_PASSWORD),
                    ],
                )
                .await;
            browser.submit("form[action=\"/password\"]").await;
        } else if !url.contains("/login") {
            browser.find("nav.side").await;
            return;
        }
        assert!(Instant::now() < deadline, "sign-in never finished: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_signs_in_teaches_a_chatbot_and_tries_it() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let (server, _fake) = serve(dir.path()).await;
    let driver = Driver::start(&driver).await;
    let browser = driver.browser(&dir.path().join("owner-profile")).await;

    // The console's address leads to the sign-in page first.
    browser.goto(&format!("{}/", server.base)).await;
    browser.find("form[action=\"/login\"]").await;
    browser.screenshot("sign-in").await;
    sign_in(&browser, &server.base, "owner@example.org", &password).await;
    browser.wait_for_text("This month").await;

    // A chatbot, created from its form.
    browser.goto(&format!("{}/chatbots", server.base)).await;
    browser
        .fill(
            "form[action=\"/chatbots\"]",
            &[
                ("name", "Helpdesk"),
                ("system_prompt", "Answer from the handbook."),
            ],
        )
        .await;
    browser.submit("form[action=\"/chatbots\"]").await;
    browser.wait_for_text("Try it").await;
    let chatbot_url = browser.url().await;
    let chatbot_id = chatbot_url.rsplit('/').next().unwrap().to_owned();

    // A Markdown file, uploaded, becomes ready.
    let handbook = dir.path().join("handbook.md");
    std::fs::write(
        &handbook,
        "# Opening hours\n\nThe front desk of Acme opens at nine and closes at five, Monday to Friday.\n",
    )
    .unwrap();
    browser
        .goto(&format!("{}/chatbots/{chatbot_id}/knowledge", server.base))
        .await;
    browser
        .find("form.upload input[type=\"file\"]")
        .await
        .type_text(&handbook.display().to_string())
        .await;
    browser.wait_for_text("handbook.md").await;
    wait_for(&browser, "table.documents td.state-ready").await;
    // The search box shows what retrieval finds.
    browser
        .fill("form[method=\"get\"]", &[("q", "front desk opening hours")])
        .await;
    browser.submit("form[method=\"get\"]").await;
    browser.wait_for_text("Monday to Friday").await;
    browser.screenshot("knowledge").await;

    // "Try it": the answer streams in, then shows its source.
    browser.goto(&chatbot_url).await;
    browser
        .find(".try input[name=\"text\"]")
        .await
        .type_text("When does the front desk open?")
        .await;
    browser.submit(".try form.ask").await;
    let mut partial_seen = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = browser
            .run("const a = document.querySelector('.chat li.assistant'); return a ? a.textContent : null;")
            .await;
        if let Some(text) = shown.as_str() {
            if text.contains("Sources:") {
                assert!(
                    text.contains("echo: When does the front desk open?"),
                    "{text}"
                );
                assert!(text.contains("handbook.md"), "the source is named: {text}");
                break;
            }
            if !text.is_empty() && !text.contains("open?") {
                partial_seen = true;
            }
        }
        assert!(Instant::now() < deadline, "no answer in the try-it chat");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        partial_seen,
        "the reply was shown piece by piece as it was written"
    );
    browser.screenshot("chatbot").await;

    // The conversation is listed, and its page follows it live: a message
    // sent through the API appears, then its reply as it is written.
    browser
        .goto(&format!("{}/conversations", server.base))
        .await;
    browser
        .wait_for_text("When does the front desk open?")
        .await;
    browser.screenshot("conversations").await;
    browser.find("table.conversations a").await.click().await;
    browser.wait_for_text("Conversation with Helpdesk").await;
    let conversation = browser.url().await.rsplit('/').next().unwrap().to_owned();
    let api = Api::sign_in_as(&server.base, "owner@example.org", NEW_PASSWORD).await;
    let (status, sent) = api
        .post(
            &format!("/api/v1/chatbots/{chatbot_id}/messages"),
            json!({"text": "And on Saturdays?", "conversation_id": conversation}),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    browser.wait_for_text("echo: And on Saturdays?").await;
    browser.screenshot("conversation").await;

    // The organization's strategic context, written on its page, is read.
    browser.goto(&format!("{}/context", server.base)).await;
    browser
        .fill(
            "form[action=\"/context\"]",
            &[
                ("title", "Our priorities"),
                (
                    "text",
                    "# 2027\n\nEvery visitor leaves with an answer or a person to ask.",
                ),
            ],
        )
        .await;
    browser.submit("form[action=\"/context\"]").await;
    browser.wait_for_text("Our priorities").await;
    wait_for(&browser, "table.documents td.state-ready").await;
    browser.screenshot("context").await;
    browser.goto(&format!("{}/tools", server.base)).await;
    browser.wait_for_text("MCP servers").await;
    browser.screenshot("tools").await;

    browser.goto(&format!("{}/", server.base)).await;
    browser.wait_for_text("Helpdesk").await;
    browser.screenshot("overview").await;
    browser.close().await;
}

/// Waits for an element matching `css`.
async fn wait_for(browser: &Browser, css: &str) {
    browser.find(css).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_sees_what_the_api_lets_a_member_see_and_no_more() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let (server, _fake) = serve(dir.path()).await;
    let owner = Api::sign_in(&server.base, &password).await;
    let (status, invited) = owner
        .post(
            "/api/v1/organizations/members",
            json!({"email": "member@example.org", "role": "member"}),
        )
        .await;
    assert_eq!(status, 201, "{invited}");
    let member_password = invited["temporary_password"].as_str().unwrap().to_owned();
    let chatbot = owner.chatbot().await;

    let driver = Driver::start(&driver).await;
    let browser = driver.browser(&dir.path().join("member-profile")).await;
    sign_in(
        &browser,
        &server.base,
        "member@example.org",
        &member_password,
    )
    .await;

    // No admin entries in the nav, and their pages refuse.
    let nav = browser.find("nav.side").await.text().await;
    assert!(
        !nav.contains("API keys") && !nav.contains("Audit log"),
        "{nav}"
    );
    for page in ["/api-keys", "/audit", "/jobs"] {
        browser.goto(&format!("{}{page}", server.base)).await;
        browser.wait_for_text("Not allowed").await;
    }
    // A chatbot's settings are shown, not editable.
    browser
        .goto(&format!("{}/chatbots/{chatbot}", server.base))
        .await;
    browser.wait_for_text("Try it").await;
    assert!(
        browser
            .try_find(&format!("form[action=\"/chatbots/{chatbot}\"]"))
            .await
            .is_none(),
        "a member gets no settings form"
    );
    browser.goto(&format!("{}/api-keys", server.base)).await;
    browser.wait_for_text("Not allowed").await;
    browser.screenshot("member-refused").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_organizations_pages_are_not_found_and_forms_need_their_token() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let (_, other_password) =
        create_org_with(steward(dir.path()), "Globex", "owner@globex.example");
    let (server, _fake) = serve(dir.path()).await;
    let globex = Api::sign_in_as(&server.base, "owner@globex.example", &other_password).await;
    let theirs = globex.chatbot().await;

    let driver = Driver::start(&driver).await;
    let browser = driver.browser(&dir.path().join("acme-profile")).await;
    sign_in(&browser, &server.base, "owner@example.org", &password).await;
    for page in [
        format!("/chatbots/{theirs}"),
        format!("/chatbots/{theirs}/knowledge"),
        "/chatbots/not-an-id".to_owned(),
    ] {
        browser.goto(&format!("{}{page}", server.base)).await;
        browser.wait_for_text("Not found").await;
    }

    // A form whose CSRF token is taken away is refused, and changes nothing.
    browser.goto(&format!("{}/chatbots", server.base)).await;
    browser
        .fill("form[action=\"/chatbots\"]", &[("name", "Forged")])
        .await;
    browser
        .run("document.querySelector('form[action=\"/chatbots\"] input[name=\"csrf\"]').remove(); return null;")
        .await;
    browser.submit("form[action=\"/chatbots\"]").await;
    browser.wait_for_text("Form refused").await;
    browser.screenshot("form-refused").await;
    browser.goto(&format!("{}/chatbots", server.base)).await;
    browser.wait_for_text("No chatbot yet").await;
    browser.close().await;
}

/// Serves one HTML page at every path of `127.0.0.1:port`, which a browser
/// also reaches as `localhost:port` (another site, as far as it is concerned).
async fn host_page_on(port: u16, html: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_chats_on_the_web_channel_and_the_console_follows() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let (server, _fake) = serve(dir.path()).await;
    let shop_page = |steward: &str| {
        format!(
            "<!doctype html><html><head><title>Shop</title></head><body><h1>The shop</h1><script src=\"{steward}/widget.js\" async></script></body></html>"
        )
    };
    let driver = Driver::start(&driver).await;
    let owner = driver.browser(&dir.path().join("owner-profile")).await;
    sign_in(&owner, &server.base, "owner@example.org", &password).await;

    // A chatbot and its web channel, connected from the console; the shop's
    // site is listed, so the chat may appear in its pages.
    owner.goto(&format!("{}/chatbots", server.base)).await;
    owner
        .fill("form[action=\"/chatbots\"]", &[("name", "Shop assistant")])
        .await;
    owner.submit("form[action=\"/chatbots\"]").await;
    owner.wait_for_text("Try it").await;
    let chatbot = owner.url().await.rsplit('/').next().unwrap().to_owned();
    // The shop's pages are served only once we know the chat's address.
    let listed_port = support::free_port();
    let unlisted_port = support::free_port();
    owner
        .goto(&format!("{}/chatbots/{chatbot}/channels", server.base))
        .await;
    let web_form = "form[data-kind=\"web\"]";
    owner
        .fill(
            web_form,
            &[
                ("name", "Website"),
                (
                    "config.allowed_origins",
                    &format!("http://127.0.0.1:{listed_port}"),
                ),
                ("config.greeting", "Hello! How can we help?"),
            ],
        )
        .await;
    owner.submit(web_form).await;
    owner.wait_for_text("Chat page:").await;
    owner.screenshot("channels").await;
    let chat_url = owner
        .find("table.channels a[id^=\"chat-\"]")
        .await
        .text()
        .await;
    let chat = format!("{}{chat_url}", server.base);

    // A visitor, in a browser of their own, on the chat page.
    let visitor = driver.browser(&dir.path().join("visitor-profile")).await;
    visitor.goto(&chat).await;
    visitor.wait_for_text("Hello! How can we help?").await;
    visitor
        .find("form.compose textarea")
        .await
        .type_text("Do you ship to Norway?")
        .await;
    visitor.submit("form.compose").await;
    visitor.wait_for_text("echo: Do you ship to Norway?").await;
    // The visitor rates the reply; the button shows it once Steward took it.
    visitor
        .find("li.assistant .rating button[data-rating=\"up\"]")
        .await
        .click()
        .await;
    visitor
        .find("li.assistant .rating button[data-rating=\"up\"][aria-pressed=\"true\"]")
        .await;
    visitor.screenshot("web-chat").await;

    // The console shows that conversation, and follows it live.
    owner
        .goto(&format!("{}/conversations?channel=web", server.base))
        .await;
    owner.wait_for_text("Do you ship to Norway?").await;
    owner.find("table.conversations a").await.click().await;
    owner
        .wait_for_text("Conversation with Shop assistant")
        .await;
    visitor
        .find("form.compose textarea")
        .await
        .type_text("And to Iceland?")
        .await;
    visitor.submit("form.compose").await;
    owner.wait_for_text("echo: And to Iceland?").await;

    // Another visitor sees nothing of it.
    let stranger = driver.browser(&dir.path().join("stranger-profile")).await;
    stranger.goto(&chat).await;
    stranger.wait_for_text("Hello! How can we help?").await;
    stranger
        .find("form.compose textarea")
        .await
        .type_text("Hello from elsewhere")
        .await;
    stranger.submit("form.compose").await;
    stranger.wait_for_text("echo: Hello from elsewhere").await;
    let seen = stranger.text().await;
    assert!(
        !seen.contains("Norway") && !seen.contains("Iceland"),
        "{seen}"
    );
    stranger.close().await;

    // The bubble on the listed site opens the chat; on another site the
    // browser refuses to show it.
    let listed = host_page_on(listed_port, shop_page(&chat)).await;
    let unlisted = host_page_on(unlisted_port, shop_page(&chat)).await;
    let shopper = driver.browser(&dir.path().join("shopper-profile")).await;
    shopper.goto(&format!("http://127.0.0.1:{listed}/")).await;
    shopper
        .find("button[aria-label=\"Open the chat\"]")
        .await
        .click()
        .await;
    let frame = shopper.find("iframe[title=\"Chat\"]").await;
    shopper.enter_frame(&frame).await;
    shopper.wait_for_text("Hello! How can we help?").await;
    shopper
        .find("form.compose textarea")
        .await
        .type_text("Is the widget working?")
        .await;
    shopper.submit("form.compose").await;
    shopper.wait_for_text("echo: Is the widget working?").await;
    shopper.leave_frame().await;
    shopper.screenshot("widget").await;

    shopper.goto(&format!("http://localhost:{unlisted}/")).await;
    shopper
        .find("button[aria-label=\"Open the chat\"]")
        .await
        .click()
        .await;
    let frame = shopper.find("iframe[title=\"Chat\"]").await;
    // Until the frame has loaded what the browser makes of the chat page
    // (an error page, when refused), it is an empty about:blank.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        shopper.enter_frame(&frame).await;
        let loaded = shopper
            .run("return document.readyState === 'complete' && location.href !== 'about:blank';")
            .await;
        if loaded == serde_json::Value::Bool(true) {
            break;
        }
        shopper.leave_frame().await;
        assert!(Instant::now() < deadline, "the frame never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = shopper
        .run("return document.querySelector('main.visitor') === null;")
        .await;
    assert_eq!(
        refused,
        serde_json::Value::Bool(true),
        "the chat shown on an unlisted site"
    );
    shopper.leave_frame().await;
    shopper.close().await;
    visitor.close().await;
    owner.close().await;
}
