//! The one way Steward fetches a URL someone gave it (a single page, a crawl,
//! a sitemap): only http(s); never to loopback, private, link-local,
//! multicast, unspecified or otherwise reserved addresses, however the address
//! is spelled; every redirect hop checked again; and the connection made to an
//! address that was checked (the checking resolver is the client's resolver,
//! and no proxy stands between). Bounded in bytes, time and redirects, and
//! only for content types Steward can read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
pub use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

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
    /// Allow loopback and private addresses (tests, intranets).
    pub allow_private_networks: bool,
    pub max_bytes: usize,
    /// For the whole fetch, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl FetchPolicy {
    pub fn from_config(knowledge: &steward_config::KnowledgeConfig) -> Self {
        Self {
            allow_private_networks: knowledge.allow_private_networks,
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
    /// Addresses that count as public (tests only; see [`Fetcher::with_hosts`]).
    public: Vec<IpAddr>,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Self {
        Self::with_hosts(policy, HashMap::new(), Vec::new())
    }

    /// For tests: `hosts` answers for names instead of DNS, and addresses in
    /// `public` count as public although they are not (a local server standing
    /// in for a site on the internet). Both are checked like any other.
    pub fn with_hosts(
        policy: FetchPolicy,
        hosts: HashMap<String, IpAddr>,
        public: Vec<IpAddr>,
    ) -> Self {
        let resolver = CheckingResolver {
            allow_private: policy.allow_private_networks,
            hosts: Arc::new(hosts),
            public: Arc::new(public.clone()),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "Steward/",
                env!("CARGO_PKG_VERSION"),
                " (knowledge fetcher)"
            ))
            .build()
            .expect("an HTTP client");
        Self {
            client,
            policy,
            public,
        }
    }

    /// Checks a URL as given, before anything is fetched: its scheme, and its
    /// address when it is one.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let url = Url::parse(url.trim())
            .map_err(|e| FetchError::Refused(format!("'{url}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!(
                "only http and https URLs are fetched, not {}",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Refused(
                "URLs with credentials are not fetched".into(),
            ));
        }
        match url.host() {
            None => return Err(FetchError::Refused("the URL names no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {} // checked by the resolver, on every connection
        }
        Ok(url)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), FetchError> {
        allowed(ip, self.policy.allow_private_networks, &self.public)
            .map_err(|why| FetchError::Refused(format!("the address {ip} is {why}")))
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

/// A network error in words, with the resolver's refusal kept as a refusal.
fn describe(url: &Url, error: reqwest::Error) -> FetchError {
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refusal>() {
            return FetchError::Refused(refused.0.clone());
        }
        source = e.source();
    }
    if error.is_timeout() {
        FetchError::Failed(format!("{url} did not answer in time"))
    } else {
        FetchError::Failed(format!("{url} could not be reached"))
    }
}

#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Resolves names and hands the client only addresses that may be reached.
struct CheckingResolver {
    allow_private: bool,
    hosts: Arc<HashMap<String, IpAddr>>,
    public: Arc<Vec<IpAddr>>,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow_private, hosts, public) =
            (self.allow_private, self.hosts.clone(), self.public.clone());
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = match hosts.get(&name) {
                Some(ip) => vec![SocketAddr::new(*ip, 0)],
                None => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
            };
            let mut refusals = Vec::new();
            let safe: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match allowed(addr.ip(), allow_private, &public) {
                    Ok(()) => true,
                    Err(why) => {
                        refusals.push(format!("{name} resolves to {}, which is {why}", addr.ip()));
                        false
                    }
                })
                .collect();
            if safe.is_empty() {
                let why = refusals
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| format!("{name} has no address"));
                return Err(Box::new(Refusal(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(safe.into_iter()) as Addrs)
        })
    }
}

/// Whether an address may be fetched from; `Err` says what it is.
fn allowed(ip: IpAddr, allow_private: bool, public: &[IpAddr]) -> Result<(), &'static str> {
    if public.contains(&ip) {
        return Ok(());
    }
    let class = match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    };
    match class {
        None => Ok(()),
        Some(Class::Private(_)) if allow_private => Ok(()),
        Some(Class::Private(why) | Class::Never(why)) => Err(why),
    }
}

enum Class {
    /// Reachable when private networks are allowed.
    Private(&'static str),
    /// Never: no page lives there.
    Never(&'static str),
}

fn v4_class(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, ..) => Class::Private("a loopback address"),
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Class::Private("in a private network"),
        (100, 64..=127, _) => Class::Private("in a shared (carrier-grade NAT) network"),
        (169, 254, _) => Class::Never("a link-local address"),
        (0, ..) => Class::Never("an unspecified address"),
        (224..=239, ..) => Class::Never("a multicast address"),
        (240..=255, ..) => Class::Never("a reserved address"),
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => {
            Class::Never("a reserved address")
        }
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<Class> {
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return v4_class(Ipv4Addr::new(a, b, c, d));
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return v4_class(Ipv4Addr::new(a, b, c, d));
    }
    Some(match segments[0] {
        _ if ip.is_loopback() => Class::Private("a loopback address"),
        _ if ip.is_unspecified() => Class::Never("an unspecified address"),
        0xfc00..=0xfdff => Class::Private("in a private network"),
        0xfe80..=0xfebf => Class::Never("a link-local address"),
        0xff00..=0xffff => Class::Never("a multicast address"),
        0x2001 if segments[1] == 0x0db8 || segments[1] == 0 => Class::Never("a reserved address"),
        // Other IPv4-compatible forms (::a.b.c.d) are deprecated and never fetched.
        0 => Class::Never("a reserved address"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private: bool) -> Fetcher {
        Fetcher::new(FetchPolicy {
            allow_private_networks: allow_private,
            max_bytes: 1024,
            timeout: Duration::from_secs(5),
            max_redirects: 3,
        })
    }

    #[test]
    fn every_spelling_of_a_forbidden_address_is_refused() {
        let f = fetcher(false);
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://[ff02::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://100.64.0.1/",
            "http://255.255.255.255/",
        ] {
            match f.check_url(url) {
                Err(FetchError::Refused(why)) => assert!(why.contains("address"), "{url}: {why}"),
                other => panic!("{url} was not refused: {other:?}"),
            }
        }
        for url in [
            "file:///etc/passwd",
            "gopher://x/",
            "ftp://example.org/",
            "http://user:pw@example.org/",
            "not a url",
            "http://",
        ] {
            assert!(
                matches!(f.check_url(url), Err(FetchError::Refused(_))),
                "{url}"
            );
        }
        assert!(f.check_url("https://example.org/page").is_ok());
        assert!(f.check_url("http://93.184.215.14/").is_ok());
        assert!(f.check_url("http://[2606:4700::1111]/").is_ok());
    }

    #[test]
    fn private_networks_open_only_when_allowed_and_link_local_never() {
        let f = fetcher(true);
        assert!(f.check_url("http://127.0.0.1:8080/").is_ok());
        assert!(f.check_url("http://10.1.2.3/").is_ok());
        assert!(
            f.check_url("http://169.254.169.254/").is_err(),
            "cloud metadata stays closed"
        );
        assert!(f.check_url("http://0.0.0.0/").is_err());
    }
}
