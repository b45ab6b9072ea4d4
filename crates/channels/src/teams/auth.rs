//! Who may post to a Teams channel's webhook: the Bot Framework, proving it
//! with a bearer token it signed. Checked in full, as Microsoft documents
//! for bots: an RS256 signature by a key from the Bot Framework's OpenID
//! metadata (fetched, kept, and fetched again when a token names a key not
//! kept, or after a day), that key endorsing the activity's channel, the
//! metadata's issuer, the bot's app id as audience, expiry and not-before
//! with five minutes of clock skew, and the token's `serviceurl` claim
//! equal to the activity's `serviceUrl` (where the reply will go).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Config;
use crate::signature::{Unauthorized, header};

/// Keys are fetched again after this long, even if none is missing.
const REFRESH_EVERY: Duration = Duration::from_secs(24 * 3600);

/// A token naming a key not kept fetches the keys again, but not more
/// often than this: a stream of made-up key ids costs one fetch a second.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Clock difference allowed on expiry and not-before (Microsoft's figure).
const CLOCK_SKEW_SECS: u64 = 300;

/// The Bot Framework's signing keys, kept between webhooks.
pub struct BotFrameworkKeys {
    http: reqwest::Client,
    /// `channels.teams_openid_url`.
    metadata_url: String,
    kept: tokio::sync::Mutex<Option<Kept>>,
}

struct Kept {
    issuer: String,
    keys: HashMap<String, Key>,
    fetched: Instant,
}

#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    /// The channels the key may sign for (`msteams`…); none said: any.
    endorsements: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
    endorsements: Option<Vec<String>>,
}

/// What the check reads of the activity itself.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Addressed {
    service_url: Option<String>,
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(alias = "serviceUrl")]
    serviceurl: Option<String>,
}

fn refused(why: impl Into<String>) -> Unauthorized {
    Unauthorized::Token(why.into())
}

impl BotFrameworkKeys {
    pub fn new(http: reqwest::Client, metadata_url: impl Into<String>) -> Self {
        Self {
            http,
            metadata_url: metadata_url.into(),
            kept: Default::default(),
        }
    }

    /// Checks a Teams webhook's `Authorization: Bearer` token against the
    /// channel `c` and the raw activity `body`.
    pub async fn verify(
        &self,
        c: &Config,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Unauthorized> {
        let token = header(headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Unauthorized::Missing)?;
        let head = jsonwebtoken::decode_header(token).map_err(|_| refused("not a JWT"))?;
        if head.alg != Algorithm::RS256 {
            return Err(refused("not signed with RS256"));
        }
        let kid = head.kid.ok_or_else(|| refused("names no key"))?;
        let addressed: Addressed =
            serde_json::from_slice(body).map_err(|_| refused("the body is not an activity"))?;
        let (issuer, key) = self.key(&kid).await?;
        let channel = addressed.channel_id.unwrap_or_default();
        if key
            .endorsements
            .as_ref()
            .is_some_and(|endorsed| !endorsed.contains(&channel))
        {
            return Err(refused(format!(
                "the key does not endorse channel '{channel}'"
            )));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&c.app_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_SECS;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| refused(e.to_string()))?
            .claims;
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        match (claims.serviceurl, addressed.service_url) {
            (Some(claimed), Some(given)) if same(&claimed, &given) => Ok(()),
            _ => Err(refused("its serviceurl is not the activity's serviceUrl")),
        }
    }

    /// The issuer and the key `kid`, fetching the keys again when it is
    /// not kept (a rotation) or they are a day old.
    async fn key(&self, kid: &str) -> Result<(String, Key), Unauthorized> {
        let mut kept = self.kept.lock().await;
        let found = |kept: &Option<Kept>| {
            kept.as_ref()
                .filter(|k| k.fetched.elapsed() < REFRESH_EVERY)
                .and_then(|k| Some((k.issuer.clone(), k.keys.get(kid)?.clone())))
        };
        if let Some(found) = found(&kept) {
            return Ok(found);
        }
        let recently = kept
            .as_ref()
            .is_some_and(|k| k.fetched.elapsed() < REFETCH_AT_MOST_EVERY);
        if !recently {
            *kept = Some(self.fetch().await?);
        }
        found(&kept).ok_or_else(|| refused("signed by a key the Bot Framework does not publish"))
    }

    /// The JSON document at `url` (`what` it is, for the error).
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<T, Unauthorized> {
        let unreachable =
            |e: reqwest::Error| Unauthorized::Unverifiable(format!("{what}: {}", e.without_url()));
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        let response = response.error_for_status().map_err(unreachable)?;
        response.json().await.map_err(unreachable)
    }

    async fn fetch(&self) -> Result<Kept, Unauthorized> {
        let metadata: Metadata = self.get("the OpenID metadata", &self.metadata_url).await?;
        let published: KeySet = self.get("the signing keys", &metadata.jwks_uri).await?;
        let keys = published
            .keys
            .into_iter()
            .filter(|k| k.kty == "RSA")
            .filter_map(|k| {
                let decoding = DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?);
                let key = Key {
                    decoding: decoding.ok()?,
                    endorsements: k.endorsements,
                };
                Some((k.kid?, key))
            })
            .collect();
        Ok(Kept {
            issuer: metadata.issuer,
            keys,
            fetched: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the keys cannot be fetched, the token is neither accepted nor
    /// refused: the webhook answers 503 and Teams sends it again.
    #[tokio::test]
    async fn keys_out_of_reach_leave_a_token_unverifiable_not_refused() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let keys = BotFrameworkKeys::new(
            reqwest::Client::new(),
            format!("http://127.0.0.1:{port}/openid"),
        );
        let config = Config {
            app_id: "app".into(),
            app_password: crate::config::SecretText::from("secret"),
            tenant_id: "tenant".into(),
            greeting: None,
        };
        let mut headers = HeaderMap::new();
        // {"alg":"RS256","kid":"k1"} . {} . a signature nobody checks
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln";
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let body =
            br#"{"type":"message","serviceUrl":"https://smba.example/","channelId":"msteams"}"#;
        let checked = keys.verify(&config, &headers, body).await;
        assert!(
            matches!(checked, Err(Unauthorized::Unverifiable(_))),
            "{checked:?}"
        );
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(
            keys.verify(&config, &headers, body).await,
            Err(Unauthorized::Missing)
        );
    }
}
