//! The one way Steward fetches a URL someone gave it (a single page, a crawl,
//! a sitemap), through the outbound guard (`steward_outbound::Guard`): only
//! http(s), never to a forbidden address however it is spelled, every redirect
//! hop checked again, and the connection made to an address that was checked.
//! Bounded in bytes, time and redirects, and only for content types Steward
//! can read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
pub use reqwest::Url;
use steward_outbound::{Failure, Guard};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Not allowed: a scheme, an address. Trying again changes nothing.
    #[error("refused: {0}")]
    Refused(String),
    /// The server answered, but not with something to read.
    #[error("{0}")]
    Unusable(String),
    /// The network failed; worth another attempt later.
    #[error("{0}")]
    Failed(String),
}

/// What may be fetched, and how much.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    pub max_bytes: usize,
    /// For the whole fetch, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl FetchPolicy {
    pub fn from_config(knowledge: &steward_config::KnowledgeConfig) -> Self {
        Self {
            max_bytes: knowledge.max_file_bytes,
            timeout: Duration::from_secs(knowledge.fetch_timeout_secs),
            max_redirects: knowledge.fetch_max_redirects,
        }
    }
}

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// Where it was found, after redirects.
    pub url: Url,
    pub content_type: String,
    pub bytes: Bytes,
}

const READABLE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
    "application/xml",
    "text/xml",
];

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
    guard: Guard,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy, guard: Guard) -> Self {
        let client = guard.http_client(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!(
                    "Steward/",
                    env!("CARGO_PKG_VERSION"),
                    " (knowledge fetcher)"
                )),
        );
        Self {
            client,
            policy,
            guard,
        }
    }

    /// Checks a URL as given, before anything is fetched: its scheme, and its
    /// address when it is one.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        self.guard
            .check_url(url)
            .map_err(|refused| FetchError::Refused(refused.0))
    }

    /// Fetches `url`, following up to `max_redirects` redirects, each checked.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let start = self.check_url(url)?;
        match tokio::time::timeout(self.policy.timeout, self.follow(start)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(FetchError::Failed(format!(
                "the fetch took longer than {} s",
                self.policy.timeout.as_secs()
            ))),
        }
    }

    async fn follow(&self, mut url: Url) -> Result<Fetched, FetchError> {
        for _ in 0..=self.policy.max_redirects {
            let response = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "text/html,text/plain,text/markdown,text/csv,application/json,application/xml;q=0.9,*/*;q=0.1")
                .send()
                .await
                .map_err(|e| describe(&url, e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        FetchError::Unusable(format!("{url} redirects without a Location"))
                    })?;
                let next = url.join(location).map_err(|_| {
                    FetchError::Unusable(format!("{url} redirects to an invalid URL"))
                })?;
                url = self.check_url(next.as_str())?;
                continue;
            }
            if !status.is_success() {
                let error = format!("{url} answered {status}");
                return Err(if status.is_server_error() || status.as_u16() == 429 {
                    FetchError::Failed(error)
                } else {
                    FetchError::Unusable(error)
                });
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            if !READABLE_TYPES.contains(&content_type.as_str()) {
                return Err(FetchError::Unusable(format!(
                    "{url} is {}, which Steward does not read",
                    if content_type.is_empty() {
                        "of no stated type"
                    } else {
                        content_type.as_str()
                    }
                )));
            }
            if response
                .content_length()
                .is_some_and(|length| length > self.policy.max_bytes as u64)
            {
                return Err(self.too_large(&url));
            }
            let mut response = response;
            let mut bytes = BytesMut::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&url, e))? {
                if bytes.len() + chunk.len() > self.policy.max_bytes {
                    return Err(self.too_large(&url));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url,
                content_type,
                bytes: bytes.freeze(),
            });
        }
        Err(FetchError::Unusable(format!(
            "more than {} redirects",
            self.policy.max_redirects
        )))
    }

    fn too_large(&self, url: &Url) -> FetchError {
        FetchError::Unusable(format!(
            "{url} is larger than {} bytes",
            self.policy.max_bytes
        ))
    }
}

/// A network error in words, with the guard's refusal kept as a refusal.
fn describe(url: &Url, error: reqwest::Error) -> FetchError {
    match Guard::describe(url.host_str().unwrap_or_default(), &error) {
        Failure::Refused(why) => FetchError::Refused(why),
        failure => FetchError::Failed(format!("{url}: {failure}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private: bool) -> Fetcher {
        Fetcher::new(
            FetchPolicy {
                max_bytes: 1024,
                timeout: Duration::from_secs(5),
                max_redirects: 3,
            },
            Guard::new(allow_private),
        )
    }

    #[test]
    fn urls_are_checked_by_the_outbound_guard() {
        for host in steward_outbound::FORBIDDEN_HOSTS
            .iter()
            .filter(|h| **h != "localhost")
        {
            let url = format!("http://{host}/");
            assert!(
                matches!(fetcher(false).check_url(&url), Err(FetchError::Refused(_))),
                "{url}"
            );
        }
        assert!(fetcher(true).check_url("http://127.0.0.1:8080/").is_ok());
        assert!(fetcher(true).check_url("http://169.254.169.254/").is_err());
        assert!(fetcher(false).check_url("file:///etc/passwd").is_err());
        assert!(fetcher(false).check_url("https://example.org/page").is_ok());
    }
}
