//! The email channel against a real IMAP server (Dovecot) and a real SMTP
//! server (OpenSMTPD), started by `scripts/mail-servers` (CI runs it and sets
//! STEWARD_TEST_IMAP and STEWARD_TEST_SMTP).

use futures::TryStreamExt;
use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use serde_json::json;
use steward_domain::JobKind;
use steward_jobs::JobHandler;
use steward_store::NewJob;

use crate::*;

const PASSWORD: &str = "test-password";

/// The test's mail servers listen on loopback, which the API's outbound
/// guard refuses unless told otherwise (as for local development).
fn mail_on_loopback(config: &mut Config) {
    config.outbound.allow_private_networks = true;
}

pub(crate) struct Mail {
    imap: (String, u16),
    pub(crate) smtp: (String, u16),
    bot: String,
    pub(crate) alice: String,
}

pub(crate) fn servers() -> Option<Mail> {
    let split = |var: &str| {
        let value = std::env::var(var).ok()?;
        let (host, port) = value.rsplit_once(':')?;
        Some((host.to_owned(), port.parse().ok()?))
    };
    let (Some(imap), Some(smtp)) = (split("STEWARD_TEST_IMAP"), split("STEWARD_TEST_SMTP")) else {
        eprintln!(
            "skipped: backend not configured (STEWARD_TEST_IMAP, STEWARD_TEST_SMTP: run scripts/mail-servers)"
        );
        return None;
    };
    // Fresh mailboxes for each test: the servers take any address @example.test.
    let tag = uuid::Uuid::now_v7().simple().to_string();
    Some(Mail {
        imap,
        smtp,
        bot: format!("bot-{tag}@example.test"),
        alice: format!("alice-{tag}@example.test"),
    })
}

impl Mail {
    async fn channel(&self, h: &Harness) -> String {
        let config = json!({
            "imap_host": self.imap.0, "imap_port": self.imap.1,
            "smtp_host": self.smtp.0, "smtp_port": self.smtp.1,
            "username": self.bot, "password": PASSWORD, "address": self.bot, "tls": false,
        });
        h.channel("email", config).await.0
    }

    /// Sends a raw message over SMTP, as a person's mail client would.
    async fn send(&self, from: &str, to: &str, raw: String) {
        let hello = ClientId::Domain("client.example.test".into());
        let mut smtp = AsyncSmtpConnection::connect_tokio1(
            (self.smtp.0.as_str(), self.smtp.1),
            Some(Duration::from_secs(10)),
            &hello,
            None,
            None,
        )
        .await
        .unwrap();
        let envelope =
            Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
        smtp.send(&envelope, raw.replace('\n', "\r\n").as_bytes())
            .await
            .unwrap();
        smtp.quit().await.unwrap();
    }

    /// Every message in `user`'s inbox, raw.
    async fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let tcp = tokio::net::TcpStream::connect((self.imap.0.as_str(), self.imap.1))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        let mut session = client
            .login(user, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        let mailbox = session.select("INBOX").await.unwrap();
        if mailbox.exists == 0 {
            return Vec::new();
        }
        let fetched: Vec<_> = session
            .uid_fetch("1:*", "(UID BODY.PEEK[])")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let _ = session.logout().await;
        fetched
            .iter()
            .filter_map(|f| f.body().map(<[u8]>::to_vec))
            .collect()
    }

    pub(crate) async fn wait_inbox(&self, user: &str, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let inbox = self.inbox(user).await;
            if inbox.len() >= count {
                return inbox
                    .into_iter()
                    .map(|m| String::from_utf8_lossy(&m).into_owned())
                    .collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} has {} of {count} messages",
                inbox.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the scheduler does every `scheduler.mailbox_poll_cron`.
async fn poll(h: &Harness) {
    h.app
        .store
        .enqueue(NewJob::of(&steward_domain::jobs::PollArgs {}, 1))
        .await
        .unwrap();
    h.app.state.jobs_enqueued.notify_one();
    // Platform jobs have no org: wait on the store for every poll job to finish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = h.app.store.queue_stats().await.unwrap();
        let pending = stats
            .iter()
            .filter(|s| {
                s.kind == JobKind::Poll && !matches!(s.state, JobState::Succeeded | JobState::Dead)
            })
            .map(|s| s.count)
            .sum::<i64>();
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poll job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l[name.len()..].starts_with(':')
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[tokio::test]
async fn email_end_to_end_replies_in_the_thread_and_reads_each_message_once() {
    let Some(mail) = servers() else { return };
    let h = Harness::start_with(mail_on_loopback).await;
    mail.channel(&h).await;

    let question = format!(
        "From: Alice <{alice}>\nTo: {bot}\nSubject: Order 42\nMessage-ID: <q1@client.example.test>\nDate: Sun, 22 Nov 2026 08:00:00 +0000\n\nWhere is my order?\n\n-- \nAlice\nExample Corp\n",
        alice = mail.alice,
        bot = mail.bot
    );
    mail.send(&mail.alice, &mail.bot, question).await;
    mail.wait_inbox(&mail.bot, 1).await;
    poll(&h).await;

    let replies = mail.wait_inbox(&mail.alice, 1).await;
    let reply = &replies[0];
    assert_eq!(
        header(reply, "In-Reply-To"),
        Some("<q1@client.example.test>"),
        "{reply}"
    );
    assert!(
        header(reply, "References")
            .unwrap()
            .contains("<q1@client.example.test>")
    );
    assert_eq!(header(reply, "Subject"), Some("Re: Order 42"));
    assert!(header(reply, "From").unwrap().contains(&mail.bot));
    assert!(
        reply.contains("echo: Where is my order?"),
        "the signature was stripped: {reply}"
    );
    let reply_id = header(reply, "Message-ID").unwrap().to_owned();

    // Alice answers in the thread; polling again reads only what is new.
    let follow_up = format!(
        "From: {alice}\nTo: {bot}\nSubject: Re: Order 42\nMessage-ID: <q2@client.example.test>\nIn-Reply-To: {reply_id}\nReferences: <q1@client.example.test> {reply_id}\n\nThanks, and the invoice?\n\nOn Sun, 22 Nov 2026, Steward wrote:\n> echo: Where is my order?\n",
        alice = mail.alice,
        bot = mail.bot
    );
    mail.send(&mail.alice, &mail.bot, follow_up).await;
    mail.wait_inbox(&mail.bot, 2).await;
    poll(&h).await;
    poll(&h).await;
    let replies = mail.wait_inbox(&mail.alice, 2).await;
    assert!(
        replies[1].contains("echo: Thanks, and the invoice?"),
        "{}",
        replies[1]
    );
    assert_eq!(
        header(&replies[1], "In-Reply-To"),
        Some("<q2@client.example.test>")
    );

    let users = h.user_messages().await;
    assert_eq!(users.len(), 2, "each message stored once");
    assert_eq!(
        users[0].conversation_id, users[1].conversation_id,
        "one thread, one conversation"
    );
    assert_eq!(users[1].text, "Thanks, and the invoice?");
    h.settled(JobKind::Deliver).await;
    assert_eq!(
        mail.inbox(&mail.alice).await.len(),
        2,
        "no reply sent twice"
    );
}

#[tokio::test]
async fn a_message_delivered_twice_is_stored_once_and_automatic_mail_is_not_answered() {
    let Some(mail) = servers() else { return };
    let h = Harness::start_with(mail_on_loopback).await;
    mail.channel(&h).await;
    let message = format!(
        "From: {alice}\nTo: {bot}\nSubject: Hello\nMessage-ID: <dup@client.example.test>\n\nHello there\n",
        alice = mail.alice,
        bot = mail.bot
    );
    mail.send(&mail.alice, &mail.bot, message.clone()).await;
    mail.send(&mail.alice, &mail.bot, message).await;
    let vacation = format!(
        "From: {alice}\nTo: {bot}\nSubject: Out of office\nMessage-ID: <ooo@client.example.test>\nAuto-Submitted: auto-replied\n\nI am away.\n",
        alice = mail.alice,
        bot = mail.bot
    );
    mail.send(&mail.alice, &mail.bot, vacation).await;
    mail.wait_inbox(&mail.bot, 3).await;
    poll(&h).await;
    mail.wait_inbox(&mail.alice, 1).await;
    h.settled(JobKind::Deliver).await;
    assert_eq!(h.user_messages().await.len(), 1);
    assert_eq!(mail.inbox(&mail.alice).await.len(), 1);
}

#[tokio::test]
async fn a_wrong_password_shows_on_the_channel_and_other_mailboxes_are_still_read() {
    let Some(mail) = servers() else { return };
    let h = Harness::start_with(mail_on_loopback).await;
    // Dovecot here takes one password for every mailbox: a wrong one fails,
    // first when the channel is saved (the mailbox is signed in to)...
    let broken = json!({
        "kind": "email", "name": "broken",
        "config": {
            "imap_host": mail.imap.0, "imap_port": mail.imap.1,
            "smtp_host": mail.smtp.0, "smtp_port": mail.smtp.1,
            "username": "nobody@example.test", "password": "wrong", "address": "nobody@example.test", "tls": false,
        },
    });
    let path = format!("/api/v1/chatbots/{}/channels", h.bot);
    let refused = h.app.post(&path, &h.owner.token, broken.clone()).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.code(), "channel_check_failed");
    assert!(refused.text.contains("IMAP login"), "{}", refused.text);
    assert!(
        !refused.text.contains("wrong\""),
        "the password is never shown"
    );
    // ...then, saved without the check, at every poll.
    let saved = h
        .app
        .post(&format!("{path}?check=false"), &h.owner.token, broken)
        .await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.text);
    let broken = saved.body["id"].as_str().unwrap().to_owned();
    mail.channel(&h).await;
    let message = format!(
        "From: {}\nTo: {}\nSubject: Hi\nMessage-ID: <w1@client.example.test>\n\nAre you there?\n",
        mail.alice, mail.bot
    );
    mail.send(&mail.alice, &mail.bot, message).await;
    mail.wait_inbox(&mail.bot, 1).await;
    poll(&h).await;
    mail.wait_inbox(&mail.alice, 1).await;

    let listed = h
        .app
        .get(
            &format!("/api/v1/chatbots/{}/channels", h.bot),
            &h.owner.token,
        )
        .await;
    let channel = listed.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == broken.as_str())
        .unwrap();
    assert_eq!(channel["health"]["status"], "failing", "{channel}");
    assert!(
        channel["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("IMAP login")
    );
    assert_eq!(channel["webhook_url"], serde_json::Value::Null);
    assert!(
        !listed.text.contains("wrong\""),
        "the password is never shown"
    );
}

/// Registration answers the same whether or not an address has an account;
/// the address's owner hears of the attempt by mail, once an hour at most.
#[tokio::test]
async fn an_address_owner_hears_when_someone_registers_it_again() {
    let Some(mail) = servers() else { return };
    let smtp = mail.smtp.clone();
    let mut h = Harness::start_with(|c| {
        c.mail.smtp_host = smtp.0;
        c.mail.smtp_port = smtp.1;
        c.mail.from = "steward@example.test".into();
        c.mail.tls = false;
    })
    .await;
    // The notice is claimed and sent below, not by the harness's worker.
    h.stop_worker().await;
    h.app.register(&mail.alice, "Alice Co").await;
    for organization in ["Impostor", "Impostor again"] {
        let again = h
            .app
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({ "email": mail.alice, "password": "Another-Pass-1", "organization_name": organization })),
            )
            .await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    }
    // A new address gets its account and no notice.
    h.app.register(&mail.bot, "Bot Co").await;

    let jobs = h
        .app
        .store
        .claim(
            "test",
            &[JobKind::Notice],
            10,
            chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one notice per address per hour: {jobs:?}");
    let notices = steward_channels::SendNotices {
        server: steward_channels::SmtpServer {
            host: mail.smtp.0.clone(),
            port: mail.smtp.1,
            username: String::new(),
            password: String::new(),
            from: "steward@example.test".into(),
            tls: false,
        },
        timeout: Duration::from_secs(10),
    };
    notices.run(&jobs[0]).await.unwrap();
    let inbox = mail.wait_inbox(&mail.alice, 1).await;
    assert_eq!(
        header(&inbox[0], "Subject"),
        Some("Someone tried to register your address")
    );
    assert!(inbox[0].contains("nothing was created"), "{}", inbox[0]);
    assert!(mail.inbox(&mail.bot).await.is_empty());
}
