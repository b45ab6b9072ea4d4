//! The `notice` job: a notice to an account holder, mailed from the
//! operator's SMTP server (`mail.*`), not from any channel. The operator's
//! server is configuration, never a tenant's, so no outbound guard stands in
//! between. A notice's Message-ID comes from its job, so a notice sent again
//! after a crash carries the same one and mail clients show it once.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use steward_domain::jobs::NoticeArgs;
use steward_jobs::{JobError, JobHandler};
use steward_store::Job;

/// The operator's SMTP server.
#[derive(Clone, Debug)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// Empty: no login.
    pub username: String,
    pub password: String,
    pub from: String,
    /// STARTTLS, or TLS from the start on port 465.
    pub tls: bool,
}

pub struct SendNotices {
    pub server: SmtpServer,
    pub timeout: Duration,
}

#[async_trait]
impl JobHandler for SendNotices {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let notice = job.args::<NoticeArgs>()?;
        let server = &self.server;
        let domain = server
            .from
            .rsplit_once('@')
            .map_or("steward.invalid", |(_, d)| d);
        let permanent =
            |what: &str, e: &dyn std::fmt::Display| JobError::Permanent(format!("{what}: {e}"));
        let message = lettre::Message::builder()
            .from(
                server
                    .from
                    .parse()
                    .map_err(|e| permanent("mail.from", &e))?,
            )
            .to(notice
                .to
                .parse()
                .map_err(|e| permanent("the notice's address", &e))?)
            .subject(notice.subject)
            .message_id(Some(format!("<notice.{}@{domain}>", job.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(notice.text)
            .map_err(|e| permanent("building the notice", &e))?;
        let builder = match (server.tls, server.port) {
            (true, 465) => AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host),
            (true, _) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host),
            (false, _) => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &server.host,
            )),
        }
        .map_err(|e| permanent("mail.smtp_host", &e))?
        .port(server.port)
        .timeout(Some(self.timeout));
        let builder = if server.username.is_empty() {
            builder
        } else {
            builder.credentials(Credentials::new(
                server.username.clone(),
                server.password.clone(),
            ))
        };
        match builder.build().send(message).await {
            Ok(_) => Ok(()),
            // The operator's own server: its answer goes to the operator's
            // job list as it is.
            Err(e) if e.is_permanent() => Err(JobError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(JobError::Retryable(format!("SMTP: {e}"))),
        }
    }
}
