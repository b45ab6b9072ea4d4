//! The `steward` binary as an operator runs it.

mod support;

use support::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn config_example_lists_every_key_with_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(steward(dir.path()).args(["config", "example"]));
    assert!(output.status.success());
    let example = text(&output.stdout);
    for needle in [
        "[database]",
        "# env: STEWARD_DATABASE__URL",
        "listen = \"127.0.0.1:8080\"",
        "registration = \"open\"",
        "[tiers.pro]",
    ] {
        assert!(example.contains(needle), "missing {needle}");
    }
}

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["api", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "create", "--help"],
        vec!["org", "set-tier", "--help"],
        vec!["org", "list", "--help"],
        vec!["users", "import", "--help"],
        vec!["users", "reset-password", "--help"],
        vec!["mcp", "--help"],
        vec!["config", "example", "--help"],
        vec!["channel", "configure", "--help"],
        vec!["channel", "list", "--help"],
        vec!["channel", "remove", "--help"],
        vec!["context", "import", "--help"],
        vec!["skills", "import", "--help"],
        vec!["backup", "create", "--help"],
        vec!["backup", "restore", "--help"],
        vec!["db", "copy", "--help"],
        vec!["secrets", "reseal", "--help"],
    ] {
        let output = run(steward(dir.path()).args(&args));
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output.stdout).len() > 40, "{args:?} says too little");
    }
    let unknown = run(steward(dir.path()).arg("frobnicate"));
    assert!(!unknown.status.success());
}

#[test]
fn production_refuses_to_start_without_secrets_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(steward(dir.path())
        .arg("serve")
        .env("STEWARD_ENV", "production"));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("auth.jwt_secret") && stderr.contains("STEWARD_AUTH__JWT_SECRET"),
        "{stderr}"
    );
    assert!(!dir.path().join("secrets").exists());
}

#[test]
fn a_bad_config_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steward.toml");
    std::fs::write(&file, "[http]\nbody_limt = 5\n").unwrap();
    let output = run(steward(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("migrate"));
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("body_limt"));
}

#[test]
fn the_operator_sets_an_organizations_tier() {
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());
    let set = run(steward(dir.path()).args(["org", "set-tier", "--org", "Acme", "--tier", "pro"]));
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        text(&set.stdout).contains(&format!("Acme ({org}) is now on the pro tier")),
        "{}",
        text(&set.stdout)
    );
    let unknown =
        run(steward(dir.path()).args(["org", "set-tier", "--org", "Acme", "--tier", "platinum"]));
    assert!(!unknown.status.success());
    let nobody =
        run(steward(dir.path()).args(["org", "set-tier", "--org", "Nobody", "--tier", "pro"]));
    assert!(text(&nobody.stderr).contains("no organization"));
}

#[test]
fn organization_names_are_taken_once_and_listed_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (acme, _) = create_acme(dir.path());
    let again = run(steward(dir.path()).args([
        "org",
        "create",
        "--name",
        "ACME",
        "--owner-email",
        "second@example.org",
    ]));
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("already named 'Acme'") && stderr.contains(&acme.to_string()),
        "{stderr}"
    );
    let listed = run(steward(dir.path()).args(["org", "list"]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let stdout = text(&listed.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 2, "a header and Acme: {stdout}");
    assert!(
        rows[1].starts_with(&acme.to_string()) && rows[1].ends_with("Acme"),
        "{stdout}"
    );
}

#[test]
fn users_import_adds_good_rows_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    create_acme(dir.path());
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "email,role,name\nada@example.org,admin,Ada Lovelace\nbad-email,member\ngrace@example.org,boss\nowner@example.org,member\n\nlin@example.org,MEMBER\n\"quoted, name\"@example.org,member,x,extra\n",
    )
    .unwrap();
    let output = run(steward(dir.path())
        .args(["users", "import", "--org", "Acme", "--file"])
        .arg(&csv));
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed row makes the exit status 1"
    );
    let stdout = text(&output.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows[0], "email,role,temporary_password");
    assert!(rows[1].starts_with("ada@example.org,admin,"));
    assert!(rows[2].starts_with("lin@example.org,member,"));
    assert_eq!(rows.len(), 3);
    let stderr = text(&output.stderr);
    for needle in [
        "line 3: email",
        "line 4: unknown role 'boss'",
        "line 5: owner@example.org",
        "line 8: email: must be an email address",
        "imported 2 into Acme, 4 failed",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }

    let nowhere = run(steward(dir.path())
        .args(["users", "import", "--org", "Nobody", "--file"])
        .arg(&csv));
    assert!(!nowhere.status.success());
    assert!(text(&nowhere.stderr).contains("no organization"));
}

#[tokio::test]
async fn users_import_links_channel_handles_so_one_person_writes_everywhere() {
    use steward_domain::{Identity, IdentityKind, MessageRole, MessageText};
    use steward_store::{AccountStore, Sender, Store, TenantScope};
    use steward_store::{ChatbotStore, ConversationChoice, MessageStore, NewMessage, PeopleStore};
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());
    let scope = TenantScope::for_operator(org);
    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let bot = store
        .create_chatbot(
            &scope,
            steward_store::NewChatbot {
                name: steward_domain::ChatbotName::parse("name", "Help").unwrap(),
                system_prompt: steward_domain::SystemPrompt::parse("p", "").unwrap(),
                temperature: steward_domain::Temperature::parse("t", 0.5).unwrap(),
                model: None,
                status: steward_domain::ChatbotStatus::Active,
            },
        )
        .await
        .unwrap();
    // What the Slack and email channels store for a message from `identity`.
    let write = |channel: &'static str, identity: Identity| NewMessage {
        id: steward_domain::MessageId::new(),
        chatbot_id: bot.id,
        conversation: ConversationChoice::Start(steward_domain::ConversationId::new()),
        role: MessageRole::User,
        text: MessageText::parse("text", "hello").unwrap(),
        channel: channel.into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: Vec::new(),
        sender: Some(Sender::new(identity)),
        forwarded: false,
        conversation_key: None,
    };
    let slack = Identity::parse("slack", IdentityKind::Slack, "U0ANA").unwrap();
    let on_slack = store
        .add_message(&scope, write("slack", slack))
        .await
        .unwrap();
    store.close().await;

    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "email,role,name,slack,teams,whatsapp\n\
         ana@example.org,member,Ana Lima,u0ana,,+1 650 555 1234\n\
         bo@example.org,member,Bo,U0ANA\n\
         cy@example.org,member,Cy,,,call me\n\
         dee@example.org,member,Dee,U0DEE,,,extra\n",
    )
    .unwrap();
    let output = run(steward(dir.path())
        .args(["users", "import", "--org", "Acme", "--file"])
        .arg(&csv));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[1].starts_with("ana@example.org,member,"), "{stdout}");
    // Bo's account is made (his password printed), his Slack id stays Ana's.
    assert!(rows[2].starts_with("bo@example.org,member,"), "{stdout}");
    assert_eq!(rows.len(), 3, "{stdout}");
    for needle in [
        "line 3: bo@example.org: handles not linked: both people have a member account",
        "line 4: whatsapp: must be a phone number",
        "line 5: expected email,role[,name][,slack][,teams][,whatsapp], got 7 fields",
        "imported 1 into Acme, 3 failed",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }

    // A row for a member already there adds handles and prints no password.
    std::fs::write(&csv, "ana@example.org,member,,,19:ana@thread.tacv2\n").unwrap();
    let again = run(steward(dir.path())
        .args(["users", "import", "--org", "Acme", "--file"])
        .arg(&csv));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).lines().nth(1),
        Some("ana@example.org,member,")
    );

    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let email = Identity::parse("email", IdentityKind::Email, "ana@example.org").unwrap();
    let by_email = store
        .add_message(&scope, write("email", email))
        .await
        .unwrap();
    let ana = store
        .find_login(&steward_domain::Email::parse("e", "ana@example.org").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    let person = store.member_person(&scope, ana.id).await.unwrap();
    let mut handles: Vec<String> = person
        .identities
        .iter()
        .map(|i| format!("{}:{}", i.identity.kind, i.identity.handle))
        .collect();
    handles.sort();
    assert_eq!(
        handles,
        [
            "email:ana@example.org".to_owned(),
            format!("member:{}", ana.id),
            "slack:U0ANA".into(),
            "teams:19:ana@thread.tacv2".into(),
            "whatsapp:16505551234".into(),
        ]
    );
    assert_eq!(person.name.as_deref(), Some("Ana Lima"));
    for message in [&on_slack, &by_email] {
        let conversation = store
            .conversation(&scope, message.conversation_id)
            .await
            .unwrap();
        assert_eq!(
            conversation.person_id,
            Some(person.id),
            "{}",
            message.channel
        );
    }
    store.close().await;
}

#[tokio::test]
async fn users_reset_password_gives_a_new_one_time_password_and_signs_out_old_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let server = Server::start(steward(dir.path()));
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    assert_eq!(
        owner.get("/api/v1/chatbots").await["chatbots"],
        serde_json::json!([])
    );

    let reset = run(steward(dir.path()).args([
        "users",
        "reset-password",
        "--org",
        "Acme",
        "--email",
        "owner@example.org",
    ]));
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let stdout = text(&reset.stdout);
    let new_password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password:"))
        .unwrap()
        .trim();
    let old = owner
        .client
        .get(format!("{}/api/v1/auth/me", server.base))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old session is signed out");
    let login = owner
        .client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&serde_json::json!({"email": "owner@example.org", "password": new_password}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(login["user"]["must_change_password"], true, "{login}");

    let nobody = run(steward(dir.path()).args([
        "users",
        "reset-password",
        "--org",
        "Acme",
        "--email",
        "nobody@example.org",
    ]));
    assert!(!nobody.status.success());
    assert!(
        text(&nobody.stderr).contains("has no member"),
        "{}",
        text(&nobody.stderr)
    );
}

#[tokio::test]
async fn db_copy_refuses_a_database_a_running_steward_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(steward(dir.path()));
    server.wait_until_healthy().await;
    let from = format!("sqlite://{}", dir.path().join("steward.db").display());
    let copy = |force: bool| {
        let mut command = steward(dir.path());
        // Past the check, the copy stops at once: the target is not PostgreSQL.
        command.args(["db", "copy", "--from", &from, "--to", "mysql://elsewhere"]);
        if force {
            command.arg("--force");
        }
        let output = run(&mut command);
        assert!(!output.status.success());
        text(&output.stderr).contains("in use by a running Steward")
    };
    assert!(copy(false), "refused while steward serve runs");
    assert!(!copy(true), "--force copies anyway");
    let (status, _, _) = server.terminate();
    assert!(status.success());
    assert!(!copy(false), "stopped: no longer refused");
}

#[tokio::test]
async fn serve_answers_the_operators_owner_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = run(steward(dir.path()).arg("migrate"));
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let (_, password) = create_acme(dir.path());

    let port = free_port();
    let healthcheck = |port: u16| {
        run(steward(dir.path())
            .env("STEWARD_LISTEN", format!("0.0.0.0:{port}"))
            .arg("healthcheck"))
    };
    let down = healthcheck(port);
    assert!(!down.status.success(), "nothing listens yet");
    assert!(
        text(&down.stderr).contains("unhealthy"),
        "{}",
        text(&down.stderr)
    );
    let mut server = Server::start_on(steward(dir.path()), port);
    server.wait_until_healthy().await;
    let up = healthcheck(port);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let api = Api::sign_in(&server.base, &password).await;
    let ready = api
        .client
        .get(format!("{}/health/ready", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // serve runs a worker: a message is answered, here plainly, as no model is configured.
    let bot = api.chatbot().await;
    let (status, _) = api
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            serde_json::json!({"text": "hello"}),
        )
        .await;
    assert_eq!(status, 201);
    let replies = api.first_reply(&bot, Duration::from_secs(30)).await;
    assert!(
        replies[0]["text"]
            .as_str()
            .unwrap()
            .contains("No AI model is configured"),
        "{replies:?}"
    );

    let (status, took, stderr) = server.terminate();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    // What a newcomer needs to know, once: where the data and its secrets
    // are, the console's URL, what is not configured yet.
    for said in [
        &format!("data_dir={}", dir.path().display()),
        "generated secrets into the data folder",
        "the console is ready",
        "http.public_url is not set",
        "no model in use",
    ] {
        assert_eq!(stderr.matches(said).count(), 1, "{said}: {stderr}");
    }
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe: {stderr}"
    );
    let secret = std::fs::read_to_string(dir.path().join("secrets/jwt_secret")).unwrap();
    assert!(
        !stderr.contains(secret.trim()),
        "secrets never reach the log"
    );
    let wal = dir.path().join("steward.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "a clean stop checkpoints the WAL"
    );
}

#[test]
fn a_new_data_dir_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh/data");
    let output = run(steward(&data).arg("migrate"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(data.join("steward.db").exists());
}

#[tokio::test]
async fn production_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = steward(dir.path());
    command
        .env("STEWARD_ENV", "production")
        .env(
            "STEWARD_AUTH__JWT_SECRET",
            "a-production-secret-of-enough-length-0123",
        )
        .env(
            "STEWARD_SECRETS__MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env(
            "STEWARD_BACKUP__ENCRYPTION_KEY",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        );
    let mut server = Server::start(command);
    server.wait_until_healthy().await;
    let (status, _, stderr) = server.terminate();
    assert!(status.success());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            parsed.get("level").is_some() && parsed.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(
        !stderr.contains("a-production-secret"),
        "secrets never reach the log"
    );
}

#[tokio::test]
async fn the_worker_role_runs_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = steward(dir.path());
    command
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Server {
        child: command.spawn().unwrap(),
        base: String::new(),
    };
    // The worker has no port: wait until it says it started.
    let stderr = server.child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let started = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .any(|line| line.contains("worker started"));
    assert!(started, "the worker never said it started");
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("worker stopped")),
        "{rest:?}"
    );
}

#[tokio::test]
async fn dead_jobs_are_listed_retried_and_discarded_from_the_command_line() {
    use steward_store::{JobFailure, JobQueue, NewJob, Store};
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());

    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..2 {
        let kind = steward_domain::JobKind::Deliver;
        let job = NewJob {
            org_id: Some(org),
            ..NewJob::raw(kind, serde_json::json!({}), 1)
        };
        let job = store.enqueue(job).await.unwrap().unwrap();
        store
            .claim("w", &[kind], 1, chrono::Duration::seconds(30))
            .await
            .unwrap();
        store
            .fail(job.id, "w", "channel said 410\ngone", JobFailure::Permanent)
            .await
            .unwrap();
        dead.push(job.id.to_string());
    }
    store.close().await;

    let listed =
        run(steward(dir.path()).args(["jobs", "list", "--org", "Acme", "--state", "dead"]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert!(
        table.contains(&dead[0]) && table.contains(&dead[1]),
        "{table}"
    );
    assert!(
        table.contains("channel said 410 gone"),
        "errors on one line: {table}"
    );

    let retried = run(steward(dir.path()).args(["jobs", "retry", "--org", "Acme", &dead[0]]));
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let twice = run(steward(dir.path()).args(["jobs", "retry", "--org", "Acme", &dead[0]]));
    assert!(!twice.status.success());
    assert!(text(&twice.stderr).contains("no dead job"));
    let discarded = run(steward(dir.path()).args(["jobs", "discard", "--org", "Acme", &dead[1]]));
    assert!(discarded.status.success());
    let left = text(&run(steward(dir.path()).args(["jobs", "list", "--org", "Acme"])).stdout);
    assert!(left.contains(&dead[0]) && left.contains("queued") && !left.contains(&dead[1]));

    for bad in [
        vec!["jobs", "retry", "--org", "Acme", "not-a-uuid"],
        vec!["jobs", "list", "--org", "Acme", "--state", "buried"],
        vec!["jobs", "list", "--org", "Nobody"],
    ] {
        assert!(
            !run(steward(dir.path()).args(&bad)).status.success(),
            "{bad:?}"
        );
    }
}

/// Reads (dedupe key, state) of every maintenance job straight from the database.
async fn maintenance_jobs(database_url: &str) -> Vec<(String, String)> {
    let query = "SELECT dedupe_key, state FROM jobs WHERE kind = 'maintenance' ORDER BY dedupe_key";
    if database_url.starts_with("postgres") {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
    }
}

/// Two scheduler processes and a worker process on one database (PostgreSQL when
/// STEWARD_TEST_POSTGRES_URL is set), for about a minute of per-second firings:
/// the leading scheduler is killed with SIGKILL half-way; the other takes over;
/// every firing is enqueued once, none missed, and the worker runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_and_worker_processes_share_one_database_through_a_leader_crash() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = steward_testkit::PostgresDatabase::create().await;
    let database_url = match &postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("steward.db").display()),
    };
    let role = |name: &str| {
        let mut command = steward(dir.path());
        command
            .arg(name)
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_SCHEDULER__MAINTENANCE_CRON", "* * * * * *")
            .env("STEWARD_SCHEDULER__LEASE_SECS", "2")
            // Short, so that the firings counted below are live ones, not a catch-up burst.
            .env("STEWARD_SCHEDULER__CATCH_UP_SECS", "10")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50");
        Server::spawn(command)
    };
    migrate(dir.path(), &database_url);

    let wait_for = |at_least: usize| {
        let url = database_url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let jobs = maintenance_jobs(&url).await;
                if jobs.len() >= at_least {
                    return jobs.len();
                }
                assert!(Instant::now() < deadline, "only {} firings", jobs.len());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut first = role("scheduler");
    let led = wait_for(1).await;
    let mut second = role("scheduler");
    let mut worker = role("worker");
    // About a minute in all, as the issue asks: half under each leader.
    let before = wait_for(led + 30).await;
    first.child.kill().unwrap(); // SIGKILL: no resignation, no cleanup
    first.child.wait().unwrap();
    wait_for(before + 30).await;
    let (status, _, _) = second.terminate();
    assert!(status.success());

    // The worker runs what was enqueued.
    let deadline = Instant::now() + Duration::from_secs(60);
    while maintenance_jobs(&database_url)
        .await
        .iter()
        .any(|(_, state)| state != "succeeded")
    {
        assert!(
            Instant::now() < deadline,
            "the worker did not run every firing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = worker.terminate();
    assert!(status.success());

    let mut fired: Vec<chrono::DateTime<chrono::Utc>> = maintenance_jobs(&database_url)
        .await
        .iter()
        .map(|(key, _)| {
            chrono::DateTime::parse_from_rfc3339(key.strip_prefix("schedule:maintenance:").unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    fired.sort();
    for pair in fired.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "missed or repeated between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

/// A worker process killed with SIGKILL while waiting for the model: once its
/// lease expires another worker produces the reply, and the conversation holds
/// exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_reply_is_replaced_and_the_reply_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = steward_testkit::PostgresDatabase::create().await;
    let database_url = match &postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("steward.db").display()),
    };
    let fake = steward_testkit::model::FakeModel::start().await;
    fake.hang_next(1);
    let role = |args: &[&str]| {
        let mut command = steward(dir.path());
        command
            .args(args)
            .env("STEWARD_DATABASE__URL", &database_url)
            .env("STEWARD_LLM__PRIMARY__KIND", "openai")
            .env("STEWARD_LLM__PRIMARY__BASE_URL", &fake.base_url)
            .env("STEWARD_LLM__PRIMARY__MODEL", "fake-model")
            .env("STEWARD_JOBS__LEASE_SECS", "3")
            .env("STEWARD_JOBS__POLL_INTERVAL_MS", "50");
        Server::spawn(command)
    };
    let (_, password) = create_acme_with({
        let mut command = steward(dir.path());
        command.env("STEWARD_DATABASE__URL", &database_url);
        command
    });

    let port = free_port();
    let mut api = role(&["api", "--listen", &format!("127.0.0.1:{port}")]);
    api.base = format!("http://127.0.0.1:{port}");
    api.wait_until_healthy().await;
    let owner = Api::sign_in(&api.base, &password).await;
    let bot = owner.chatbot().await;

    let mut first = role(&["worker"]);
    let (status, _) = owner
        .post(
            &format!("/api/v1/chatbots/{bot}/messages"),
            serde_json::json!({"text": "are you there?"}),
        )
        .await;
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.calls() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first worker never called the model"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap(); // SIGKILL, mid-reply
    first.child.wait().unwrap();
    let _second = role(&["worker"]);

    let replies = owner.first_reply(&bot, Duration::from_secs(60)).await;
    // Once the job is done nothing else can write: count again then.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = owner.get("/api/v1/jobs").await;
        let states: Vec<&str> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["kind"] == "respond")
            .map(|j| j["state"].as_str().unwrap())
            .collect();
        if states == ["succeeded"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the respond job did not finish: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (replies.len(), owner.replies(&bot).await.len()),
        (1, 1),
        "exactly one reply"
    );
    assert_eq!(replies[0]["text"], "echo: are you there?");
    assert_eq!(
        fake.calls() - fake.extractions(),
        2,
        "the second worker called the model once more, and only once"
    );
}

// Two threads: the command runs blocking on one while the fake provider
// answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_configured_listed_and_removed_from_the_command_line() {
    use steward_store::{ChatbotStore, NewChatbot, Store, TenantScope};
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());
    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let chatbot = store
        .create_chatbot(
            &TenantScope::for_operator(org),
            NewChatbot {
                name: steward_domain::ChatbotName::parse("name", "Desk").unwrap(),
                system_prompt: steward_domain::SystemPrompt::parse("p", "").unwrap(),
                temperature: steward_domain::Temperature::parse("t", 0.5).unwrap(),
                model: None,
                status: steward_domain::ChatbotStatus::Active,
            },
        )
        .await
        .unwrap()
        .id
        .to_string();
    store.close().await;

    let config = dir.path().join("telegram.json");
    std::fs::write(
        &config,
        r#"{"bot_token": "123:SECRET-BOT-TOKEN", "secret_token": "hook_secret"}"#,
    )
    .unwrap();
    let at_config = format!("@{}", config.display());
    // Telegram is asked (getMe) whether the token works before it is saved.
    let telegram = steward_testkit::providers::FakeProviders::start().await;
    let configure = |name: &str, channel_config: &str, check: bool| {
        let mut command = steward(dir.path());
        command
            .env("STEWARD_HTTP__PUBLIC_URL", "https://steward.example.org")
            .env(
                "STEWARD_CHANNELS__TELEGRAM_API_URL",
                telegram.telegram_api(),
            )
            .args([
                "channel",
                "configure",
                "--org",
                "Acme",
                "--chatbot",
                &chatbot,
                "--kind",
                "telegram",
                "--name",
                name,
                "--channel-config",
                channel_config,
            ]);
        if !check {
            command.arg("--no-check");
        }
        run(&mut command)
    };
    let refused_token = r#"{"bot_token": "123:refused", "secret_token": "hook_secret"}"#;
    let refused = configure("Refused bot", refused_token, true);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Telegram refused it: HTTP 401: Unauthorized"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(telegram.checks("telegram"), 1);
    let configured = configure("Support bot", &at_config, true);
    assert!(configured.status.success(), "{}", text(&configured.stderr));
    assert_eq!(telegram.checks("telegram"), 2);
    let out = text(&configured.stdout);
    assert!(
        out.contains("webhook URL: https://steward.example.org/webhooks/telegram/"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let both = format!("{out}{}", text(&configured.stderr));
    assert!(!both.contains("SECRET-BOT-TOKEN") && !both.contains("hook_secret"));

    let listed =
        run(steward(dir.path()).args(["channel", "list", "--org", "Acme", "--chatbot", &chatbot]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert!(
        table.contains(&id) && table.contains("telegram") && table.contains("waiting"),
        "{table}"
    );

    // Rotating the master key: every process gets the new key and the old
    // one, then `secrets reseal` moves the channel's secrets to the new key.
    let old_key = std::fs::read_to_string(dir.path().join("secrets/master_key")).unwrap();
    let new_key = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
    let resealed = run(steward(dir.path())
        .env("STEWARD_SECRETS__MASTER_KEY", new_key)
        .env("STEWARD_SECRETS__PREVIOUS_MASTER_KEY", old_key.trim())
        .args(["secrets", "reseal"]));
    assert!(resealed.status.success(), "{}", text(&resealed.stderr));
    assert!(
        text(&resealed.stdout).contains("1 sealed again under the master key"),
        "{}",
        text(&resealed.stdout)
    );
    let again = run(steward(dir.path())
        .env("STEWARD_SECRETS__MASTER_KEY", new_key)
        .args(["secrets", "reseal"]));
    assert!(
        text(&again.stdout).contains("0 sealed again under the master key, 1 already under it"),
        "{}",
        text(&again.stdout)
    );
    // The old key alone no longer opens them, and says which channel.
    let stale = run(steward(dir.path()).args(["secrets", "reseal"]));
    assert!(!stale.status.success());
    assert!(
        text(&stale.stderr).contains(&format!("channel {id}: its secrets open with neither key")),
        "{}",
        text(&stale.stderr)
    );

    for bad in [
        vec![
            "channel",
            "configure",
            "--org",
            "Acme",
            "--chatbot",
            &chatbot,
            "--kind",
            "telegram",
            "--name",
            "x",
            "--channel-config",
            "{\"bot_token\": \"1:x\"}",
        ],
        vec![
            "channel",
            "configure",
            "--org",
            "Acme",
            "--chatbot",
            &chatbot,
            "--kind",
            "pager",
            "--name",
            "x",
            "--channel-config",
            "{}",
        ],
        vec![
            "channel",
            "configure",
            "--org",
            "Acme",
            "--chatbot",
            &chatbot,
            "--kind",
            "generic",
            "--name",
            "x",
            "--channel-config",
            "not json",
        ],
        vec![
            "channel",
            "list",
            "--org",
            "Acme",
            "--chatbot",
            "0190aaaa-0000-7000-8000-000000000000",
        ],
    ] {
        let output = run(steward(dir.path()).args(&bad));
        assert!(!output.status.success(), "{bad:?}");
        assert!(!text(&output.stderr).is_empty(), "{bad:?} says why");
    }

    let removed = run(steward(dir.path()).args([
        "channel",
        "remove",
        "--org",
        "Acme",
        "--chatbot",
        &chatbot,
        &id,
    ]));
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let again = run(steward(dir.path()).args([
        "channel",
        "remove",
        "--org",
        "Acme",
        "--chatbot",
        &chatbot,
        &id,
    ]));
    assert!(!again.status.success());
}

#[tokio::test]
async fn skills_import_stores_each_skill_of_a_folder_once_and_reports_bad_ones() {
    use steward_store::{SkillStore, TenantScope};
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());
    let skills = dir.path().join("skills");
    let write = |path: &str, text: &str| {
        let path = skills.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let skill_md = |name: &str, description: &str| {
        format!("---\nname: {name}\ndescription: {description}\n---\n# {name}\n\nSteps.\n")
    };
    write(
        "expense-report/SKILL.md",
        &skill_md("expense-report", "Files expenses."),
    );
    write("expense-report/reference/rates.md", "Taxis: 40 EUR.");
    write("travel/SKILL.md", &skill_md("travel", "Books trips."));
    write("Bad Name/SKILL.md", &skill_md("Bad Name", "x"));
    write("notes/README.md", "not a skill");
    write(".git/config", "hidden");
    let zipped = steward_testkit::docx::archive(&[(
        "onboarding/SKILL.md",
        skill_md("onboarding", "Welcomes new staff.").as_bytes(),
    )]);
    std::fs::write(skills.join("onboarding.zip"), zipped).unwrap();

    let import = || {
        run(steward(dir.path())
            .args(["skills", "import", "--org", "Acme", "--dir"])
            .arg(&skills))
    };
    let first = import();
    assert_eq!(first.status.code(), Some(1), "two folders are not skills");
    let stdout = text(&first.stdout);
    for needle in [
        "expense-report  version 1  imported (1 files,",
        "onboarding  version 1  imported (0 files,",
        "travel  version 1  imported",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in {stdout}");
    }
    let stderr = text(&first.stderr);
    for needle in [
        "Bad Name: name must be",
        "notes: the skill's folder holds no SKILL.md",
        "3 imported into Acme, 0 unchanged, 2 failed",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
    assert!(!stderr.contains(".git"));

    // Again, with one skill changed: only it gets a new version.
    std::fs::remove_dir_all(skills.join("Bad Name")).unwrap();
    std::fs::remove_dir_all(skills.join("notes")).unwrap();
    write("expense-report/reference/rates.md", "Taxis: 45 EUR.");
    let second = import();
    assert!(second.status.success(), "{}", text(&second.stderr));
    let stdout = text(&second.stdout);
    assert!(
        stdout.contains("expense-report  version 2  imported"),
        "{stdout}"
    );
    assert!(stdout.contains("travel  version 1  unchanged"), "{stdout}");
    assert!(text(&second.stderr).contains("1 imported into Acme, 2 unchanged, 0 failed"));

    // One skill's own folder; no skills; no such organization.
    let one = run(steward(dir.path())
        .args(["skills", "import", "--org", "Acme", "--dir"])
        .arg(skills.join("travel")));
    assert!(text(&one.stdout).contains("travel  version 1  unchanged"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = run(steward(dir.path())
        .args(["skills", "import", "--org", "Acme", "--dir"])
        .arg(&empty));
    assert!(!none.status.success());
    assert!(text(&none.stderr).contains("holds no skills"));
    let nobody = run(steward(dir.path())
        .args(["skills", "import", "--org", "Nobody", "--dir"])
        .arg(&skills));
    assert!(!nobody.status.success());
    assert!(text(&nobody.stderr).contains("no organization"));

    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let scope = TenantScope::for_operator(org);
    let stored: Vec<(String, i64)> = store
        .skills(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.version))
        .collect();
    assert_eq!(
        stored,
        [
            ("expense-report".to_owned(), 2),
            ("onboarding".to_owned(), 1),
            ("travel".to_owned(), 1)
        ]
    );
    let expense = store
        .skill_versions(&scope, "expense-report")
        .await
        .unwrap();
    assert_eq!(
        store
            .skill_file(&scope, expense[0].id, "reference/rates.md")
            .await
            .unwrap(),
        b"Taxis: 45 EUR."
    );
}

#[tokio::test]
async fn context_import_queues_a_document_for_every_chatbot_of_the_org() {
    use steward_store::{KnowledgeStore, Store, TenantScope};
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = create_acme(dir.path());
    let file = dir.path().join("strategy.md");
    std::fs::write(&file, "# Priorities\n\nOpen the Lisbon office in spring.").unwrap();
    let imported = run(steward(dir.path())
        .args(["context", "import", "--org", "Acme", "--file"])
        .arg(&file));
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stdout).contains("('strategy.md') queued"),
        "{}",
        text(&imported.stdout)
    );
    let titled = run(steward(dir.path())
        .args([
            "context",
            "import",
            "--org",
            "Acme",
            "--title",
            "Strategy 2027",
            "--file",
        ])
        .arg(&file));
    assert!(titled.status.success());

    let binary = dir.path().join("logo.md");
    std::fs::write(&binary, b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    let refused = run(steward(dir.path())
        .args(["context", "import", "--org", "Acme", "--file"])
        .arg(&binary));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is not text"),
        "{}",
        text(&refused.stderr)
    );
    let nobody = run(steward(dir.path())
        .args(["context", "import", "--org", "Nobody", "--file"])
        .arg(&file));
    assert!(!nobody.status.success());

    let store = steward_store_sqlite::SqliteStore::open_file(&dir.path().join("steward.db"), 1)
        .await
        .unwrap();
    let documents = store
        .documents(&TenantScope::for_operator(org), None)
        .await
        .unwrap();
    let labels: Vec<&str> = documents.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, vec!["Strategy 2027", "strategy.md"]);
    assert!(
        documents
            .iter()
            .all(|d| d.status == steward_domain::DocumentStatus::Queued)
    );
    let key = documents[0].blob_key.as_ref().unwrap();
    assert!(
        dir.path().join("blobs").join(key).is_file(),
        "the original is kept"
    );
    store.close().await;
}

/// `steward serve`'s worker reads PDFs in a limited child process (`steward
/// pdf-text`): a good PDF's pages become passages citing their page; a
/// damaged PDF, one with too many pages and one that inflates past the
/// memory limit each fail with a reason, and the worker reads on.
#[tokio::test]
async fn pdfs_are_read_in_a_limited_child_and_hostile_ones_fail_with_a_reason() {
    use steward_testkit::pdf;

    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let good = pdf::document(&[
        "Returns\nRefunds take five working days.",
        "Opening hours\nNine to five.",
    ]);
    let truncated = good[..good.len() / 2].to_vec();
    let pages: Vec<String> = (0..1500).map(|i| format!("Page text {i}")).collect();
    let long = pdf::document(&pages.iter().map(String::as_str).collect::<Vec<_>>());
    let bomb = pdf::deflate_bomb(256 << 20);
    let files: [(&str, &[u8]); 5] = [
        ("policy.pdf", &good),
        ("truncated.pdf", &truncated),
        ("long.pdf", &long),
        ("bomb.pdf", &bomb),
        (
            "after.txt",
            b"The worker still reads files after hostile PDFs.",
        ),
    ];
    let mut command = steward(dir.path());
    command
        .env("STEWARD_KNOWLEDGE__PDF_MEMORY_MB", "64")
        .env("STEWARD_KNOWLEDGE__PDF_MAX_PAGES", "1000");
    let mut server = Server::start(command);
    server.wait_until_healthy().await;
    let api = Api::sign_in(&server.base, &password).await;
    let bot = api.chatbot().await;

    let (content_type, body) = steward_testkit::app::multipart(&files);
    let uploaded = api
        .client
        .post(format!(
            "{}/api/v1/chatbots/{bot}/knowledge/upload",
            server.base
        ))
        .bearer_auth(&api.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201, "{}", uploaded.text().await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(60);
    let documents = loop {
        let listed = api.get(&format!("/api/v1/chatbots/{bot}/knowledge")).await;
        let documents = listed["documents"].as_array().unwrap().clone();
        if documents
            .iter()
            .all(|d| d["status"] == "ready" || d["status"] == "failed")
        {
            break documents;
        }
        assert!(
            Instant::now() < deadline,
            "documents still pending: {documents:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name = |name: &str| {
        documents
            .iter()
            .find(|d| d["label"] == name)
            .unwrap_or_else(|| panic!("{name} in {documents:?}"))
    };
    assert_eq!(by_name("policy.pdf")["status"], "ready", "{documents:?}");
    assert_eq!(by_name("after.txt")["status"], "ready", "{documents:?}");
    for (name, reason) in [
        ("truncated.pdf", "damaged"),
        ("long.pdf", "1500 pages"),
        ("bomb.pdf", "more than 64 MB of memory"),
    ] {
        let document = by_name(name);
        assert_eq!(document["status"], "failed", "{document}");
        let error = document["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{name}: {error}");
    }

    let found = api
        .get(&format!(
            "/api/v1/chatbots/{bot}/knowledge/search?q=refunds"
        ))
        .await;
    let first = &found["passages"][0];
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .contains("five working days"),
        "{found}"
    );
    assert_eq!(first["heading"], "Page 1", "{found}");

    let (status, _, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// The owner's person as `GET /api/v1/people` lists it (they are the only one).
async fn only_person(owner: &Api) -> String {
    let people = owner.get("/api/v1/people").await;
    let people = people["people"].as_array().unwrap();
    assert_eq!(people.len(), 1, "{people:?}");
    people[0]["id"].as_str().unwrap().to_owned()
}

/// Polls until `GET path` answers 404.
async fn gone(owner: &Api, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while owner.get(path).await["error"]["code"] != "not_found" {
        assert!(Instant::now() < deadline, "{path} is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_are_erased_through_the_api_and_the_command_line_and_recorded_beside_the_backups() {
    let dir = tempfile::tempdir().unwrap();
    let (_, password) = create_acme(dir.path());
    let server = Server::start(steward(dir.path()));
    server.wait_until_healthy().await;
    let owner = Api::sign_in(&server.base, &password).await;
    let bot = owner.chatbot().await;
    owner.message(&bot, "my first message").await;
    owner.first_reply(&bot, Duration::from_secs(30)).await;
    let first = only_person(&owner).await;

    let (status, queued) = owner.delete(&format!("/api/v1/people/{first}")).await;
    assert_eq!(status, 202, "{queued}");
    assert!(queued["job_id"].is_string());
    gone(&owner, &format!("/api/v1/people/{first}")).await;
    let history = owner.get(&format!("/api/v1/chatbots/{bot}/history")).await;
    assert_eq!(history["messages"], serde_json::json!([]), "{history}");
    let audit = owner
        .get("/api/v1/organizations/audit-log")
        .await
        .to_string();
    assert!(
        audit.contains("person.erasure_requested") && audit.contains("person.erased"),
        "{audit}"
    );
    let (status, _) = owner.delete(&format!("/api/v1/people/{first}")).await;
    assert_eq!(status, 404, "erased already");

    // Writing again makes a new person, whom the command line erases.
    owner.message(&bot, "back again").await;
    owner.first_reply(&bot, Duration::from_secs(30)).await;
    let second = only_person(&owner).await;
    assert_ne!(second, first);
    let erase = |person: &str| {
        run(steward(dir.path()).args(["people", "erase", "--org", "Acme", "--person", person]))
    };
    let erased = erase(&second);
    assert!(erased.status.success(), "{}", text(&erased.stderr));
    assert!(
        text(&erased.stdout).contains("2 messages, 1 conversations"),
        "{}",
        text(&erased.stdout)
    );
    gone(&owner, &format!("/api/v1/people/{second}")).await;
    let again = erase(&second);
    assert!(
        again.status.success(),
        "finishing an erasure is allowed: {}",
        text(&again.stderr)
    );
    assert!(
        text(&again.stdout).contains("0 messages"),
        "{}",
        text(&again.stdout)
    );
    let unknown = erase("0193a4f0-0000-7000-8000-000000000000");
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("has no person"),
        "{}",
        text(&unknown.stderr)
    );

    // Both are in the ledger beside the backups, outside the backed-up data.
    let ledger = std::fs::read_dir(dir.path().join("backups/.erasures"))
        .unwrap()
        .count();
    assert_eq!(ledger, 2);
}

#[test]
fn backups_are_sealed_under_a_key_of_their_own_and_need_it_to_be_read() {
    let dir = tempfile::tempdir().unwrap();
    create_acme(dir.path());
    let made = run(steward(dir.path()).args(["backup", "create"]));
    assert!(made.status.success(), "{}", text(&made.stderr));
    let key_file = dir.path().join("secrets/backup_key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(
        key,
        std::fs::read_to_string(dir.path().join("secrets/master_key")).unwrap(),
        "not the master key"
    );
    let listed = run(steward(dir.path()).args(["backup", "list"]));
    let listing = text(&listed.stdout);
    assert!(listing.contains("key"), "{listing}");
    let verified = run(steward(dir.path()).args(["backup", "verify", "--latest"]));
    assert!(verified.status.success(), "{}", text(&verified.stderr));

    // Another Steward (a data folder with keys of its own) reading these
    // backups: refused, naming the key it needs, until that key is given.
    let elsewhere = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let read_elsewhere = |previous: Option<&str>| {
        let mut command = steward(elsewhere.path());
        command
            .env("STEWARD_BACKUP__DIR", &backups)
            .args(["backup", "verify", "--latest"]);
        if let Some(key) = previous {
            command.env(
                "STEWARD_BACKUP__PREVIOUS_ENCRYPTION_KEYS",
                format!("[\"{}\"]", key.trim()),
            );
        }
        run(&mut command)
    };
    let refused = read_elsewhere(None);
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.contains("backup key") && said.contains("backup.previous_encryption_keys"),
        "{said}"
    );
    let opened = read_elsewhere(Some(&key));
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let restored = run(steward(elsewhere.path())
        .env("STEWARD_BACKUP__DIR", &backups)
        .env(
            "STEWARD_BACKUP__PREVIOUS_ENCRYPTION_KEYS",
            format!("[\"{}\"]", key.trim()),
        )
        .args(["backup", "restore", "--latest", "--yes", "--into"])
        .arg(format!(
            "sqlite://{}/restored.db",
            elsewhere.path().display()
        )));
    assert!(restored.status.success(), "{}", text(&restored.stderr));
}
