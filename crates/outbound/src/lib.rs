//! The one guard on every destination a tenant can point Steward at: knowledge
//! URLs and crawls, a channel's reply URL, its IMAP and SMTP hosts, and the
//! tools and webhooks to come. Loopback, private, link-local, multicast,
//! unspecified and otherwise reserved addresses are refused however they are
//! spelled, and the check runs where the connection is made, on the resolved
//! address: the guard's resolver is the HTTP client's, so every redirect hop
//! and every DNS answer is checked, and TCP connects only to checked addresses.
//!
//! Failures are told in Steward's words (refused, timed out, TLS, HTTP
//! status), never with what the remote sent: a tenant must not read an
//! internal service's answer through Steward.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::net::TcpStream;
use url::Url;

/// A destination that may not be reached; trying again changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

/// Why a connection to a tenant-set destination failed, in words that may be
/// shown to the tenant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0} did not resolve")]
    NoSuchHost(String),
    #[error("{0} refused the connection")]
    ConnectionRefused(String),
    #[error("{0} did not answer in time")]
    TimedOut(String),
    #[error("the TLS handshake with {0} failed")]
    Tls(String),
    #[error("{0} could not be reached")]
    Network(String),
}

impl Failure {
    /// Worth another attempt later (the network, not the destination, failed).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Failure::Refused(_))
    }
}

#[derive(Clone, Debug)]
pub struct Guard {
    allow_private: bool,
    hosts: Arc<HashMap<String, IpAddr>>,
    public: Arc<Vec<IpAddr>>,
}

impl Guard {
    /// `allow_private_networks` opens loopback and private networks (tests and
    /// local development; production refuses the setting). Link-local and
    /// metadata addresses stay closed.
    pub fn new(allow_private_networks: bool) -> Self {
        Self::with_hosts(allow_private_networks, HashMap::new(), Vec::new())
    }

    /// For tests: `hosts` answers for names instead of DNS, and addresses in
    /// `public` count as public although they are not (a local server standing
    /// in for a site on the internet). Both are checked like any other.
    pub fn with_hosts(
        allow_private_networks: bool,
        hosts: HashMap<String, IpAddr>,
        public: Vec<IpAddr>,
    ) -> Self {
        Self {
            allow_private: allow_private_networks,
            hosts: Arc::new(hosts),
            public: Arc::new(public),
        }
    }

    /// Checks a URL as given: http or https, no credentials, and its address
    /// when it is one. Names are checked when they resolve, at every connection.
    pub fn check_url(&self, url: &str) -> Result<Url, Refused> {
        let url =
            Url::parse(url.trim()).map_err(|e| Refused(format!("'{url}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!(
                "only http and https URLs are allowed, not {}",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused("URLs with credentials are not allowed".into()));
        }
        match url.host() {
            None => return Err(Refused("the URL names no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// Checks a host name as given (an address literal is judged at once).
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip),
            // Spellings such as 2130706433 or 0x7f.1 are addresses too.
            Err(_) => match Url::parse(&format!("http://{host}/"))
                .map(|u| u.host().map(|h| h.to_owned()))
            {
                Ok(Some(url::Host::Ipv4(ip))) => self.check_ip(IpAddr::V4(ip)),
                Ok(Some(url::Host::Ipv6(ip))) => self.check_ip(IpAddr::V6(ip)),
                Ok(Some(url::Host::Domain(_))) => Ok(()),
                _ => Err(Refused(format!("'{host}' is not a host name"))),
            },
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        allowed(ip, self.allow_private, &self.public)
            .map_err(|why| Refused(format!("the address {ip} is {why}")))
    }

    /// An HTTP client for tenant-set URLs: names resolve through the guard, no
    /// proxy stands between, and redirects are not followed (a caller that
    /// follows them checks each hop with [`Guard::check_url`]).
    pub fn http_client(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(self.clone())
            .build()
            .expect("an HTTP client")
    }

    /// The addresses of `host` that may be connected to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
        self.check_host(host).map_err(|r| Failure::Refused(r.0))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = match (self.hosts.get(host).copied(), literal.parse()) {
            (Some(ip), _) | (None, Ok(ip)) => vec![SocketAddr::new(ip, port)],
            (None, Err(_)) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Failure::NoSuchHost(host.to_owned()))?
                .collect(),
        };
        let mut refusals = Vec::new();
        let safe: Vec<SocketAddr> = found
            .into_iter()
            .filter(
                |addr| match allowed(addr.ip(), self.allow_private, &self.public) {
                    Ok(()) => true,
                    Err(why) => {
                        refusals.push(format!("{host} resolves to {}, which is {why}", addr.ip()));
                        false
                    }
                },
            )
            .collect();
        if safe.is_empty() {
            return Err(match refusals.into_iter().next() {
                Some(why) => Failure::Refused(why),
                None => Failure::NoSuchHost(host.to_owned()),
            });
        }
        Ok(safe)
    }

    /// A TCP connection to a checked address of `host` (IMAP, SMTP).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpStream, Failure> {
        let addresses = self.resolve(host, port).await?;
        let mut last = Failure::Network(format!("{host}:{port}"));
        for address in addresses {
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Failure::ConnectionRefused(format!("{host}:{port}"));
                }
                Ok(Err(_)) => last = Failure::Network(format!("{host}:{port}")),
                Err(_) => last = Failure::TimedOut(format!("{host}:{port}")),
            }
        }
        Err(last)
    }

    /// What went wrong with a request to `host`, with the guard's refusal kept
    /// as a refusal and nothing of what the remote said.
    pub fn describe(host: &str, error: &reqwest::Error) -> Failure {
        let mut source: Option<&dyn std::error::Error> = Some(error);
        let mut tls = false;
        let mut refused_connection = false;
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<RefusedName>() {
                return Failure::Refused(refused.0.clone());
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                refused_connection |= io.kind() == std::io::ErrorKind::ConnectionRefused;
                tls |= io.kind() == std::io::ErrorKind::InvalidData;
            }
            let text = e.to_string().to_ascii_lowercase();
            tls |=
                text.contains("certificate") || text.contains("tls") || text.contains("handshake");
            source = e.source();
        }
        let host = host.to_owned();
        if error.is_timeout() {
            Failure::TimedOut(host)
        } else if refused_connection {
            Failure::ConnectionRefused(host)
        } else if tls {
            Failure::Tls(host)
        } else if error.is_connect() && is_dns_error(error) {
            Failure::NoSuchHost(host)
        } else {
            Failure::Network(host)
        }
    }
}

fn is_dns_error(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("dns")
            || text.contains("failed to lookup")
            || text.contains("name or service")
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The resolver's refusal, carried through the HTTP client's error.
#[derive(Debug)]
struct RefusedName(String);

impl std::fmt::Display for RefusedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedName {}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            match Guard::resolve(&guard, &name, 0).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as Addrs),
                Err(Failure::Refused(why)) => {
                    Err(Box::new(RefusedName(why)) as Box<dyn std::error::Error + Send + Sync>)
                }
                Err(other) => Err(Box::new(std::io::Error::other(other.to_string()))
                    as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Whether an address may be reached; `Err` says what it is.
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
    /// Never: nothing a tenant may reach lives there (metadata services, link-local).
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
        // Other IPv4-compatible forms (::a.b.c.d) are deprecated and never reached.
        0 => Class::Never("a reserved address"),
        _ => return None,
    })
}

/// Every spelling of a forbidden address the guard's tests refuse, for the
/// tests of each place a tenant sets a destination.
pub const FORBIDDEN_HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "017700000001",
    "10.0.0.1",
    "10.1.2.3",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "[fe80::1]",
    "[fd00::1]",
    "0.0.0.0",
    "0",
    "[::]",
    "224.0.0.1",
    "[ff02::1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "100.64.0.1",
    "255.255.255.255",
    "localhost",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_forbidden_address_is_refused() {
        let guard = Guard::new(false);
        for host in FORBIDDEN_HOSTS.iter().filter(|h| **h != "localhost") {
            let url = format!("http://{host}/");
            match guard.check_url(&url) {
                Err(Refused(why)) => assert!(why.contains("address"), "{url}: {why}"),
                other => panic!("{url} was not refused: {other:?}"),
            }
            assert!(guard.check_host(host).is_err(), "{host}");
        }
        for url in [
            "file:///etc/passwd",
            "gopher://x/",
            "ftp://example.org/",
            "http://user:pw@example.org/",
            "not a url",
            "http://",
        ] {
            assert!(guard.check_url(url).is_err(), "{url}");
        }
        assert!(guard.check_url("https://example.org/page").is_ok());
        assert!(guard.check_url("http://93.184.215.14/").is_ok());
        assert!(guard.check_url("http://[2606:4700::1111]/").is_ok());
        assert!(guard.check_host("mail.example.org").is_ok());
    }

    #[test]
    fn private_networks_open_only_when_allowed_and_link_local_never() {
        let guard = Guard::new(true);
        assert!(guard.check_url("http://127.0.0.1:8080/").is_ok());
        assert!(guard.check_url("http://10.1.2.3/").is_ok());
        assert!(
            guard.check_url("http://169.254.169.254/").is_err(),
            "cloud metadata stays closed"
        );
        assert!(guard.check_url("http://0.0.0.0/").is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_forbidden_address_is_refused_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let guard = Guard::new(false);
        for host in ["localhost", "127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"] {
            let failure = guard
                .connect(host, port, Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(
                matches!(failure, Failure::Refused(_)),
                "{host}: {failure:?}"
            );
        }
        let client = guard.http_client(reqwest::Client::builder());
        let error = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            Guard::describe("localhost", &error),
            Failure::Refused(_)
        ));
        // Nothing reached the listener.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a connection reached the listener");
        // Allowed, the same listener is reached.
        let open = Guard::new(true);
        assert!(
            open.connect("localhost", port, Duration::from_secs(1))
                .await
                .is_ok()
        );
    }
}
