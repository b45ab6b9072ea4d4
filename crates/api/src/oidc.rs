//! The OpenID Connect relying party behind single sign-on: discovery, the
//! authorization request (code flow with PKCE, state and nonce), the code
//! exchange, and the ID token checked in full (a signature by a key from the
//! issuer's JWKS, `iss`, `aud` and `azp`, `exp`, `iat`, `nonce`).
//!
//! Written on jsonwebtoken, which already checks Teams' tokens with the same
//! aws-lc-rs keys, rather than the openidconnect crate, which would bring a
//! second crypto stack (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Discovery documents and keys are fetched again after this long.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// A token naming a key not kept fetches the keys again, at most this often.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// Clock difference allowed on `exp`, `nbf` and `iat`.
const CLOCK_SKEW_SECS: u64 = 60;
/// The signatures an ID token may carry: never `none`, never a shared secret.
const SIGNATURES: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a sign-in failed, in words that may be shown to the person.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense: worth
    /// trying again later.
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    /// The provider refused (a code expired or used, a client it does not know).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// What the provider sent does not prove who signed in.
    #[error("the identity provider's answer does not hold: {0}")]
    Invalid(String),
}

/// Where a provider is and how Steward is known to it.
#[derive(Clone)]
pub struct Client {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Tenant-set issuers are reached through the outbound guard; the
    /// operator's own provider with the plain client.
    pub http: reqwest::Client,
}

/// What a provider publishes at `/.well-known/openid-configuration`.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

/// The person a provider vouches for.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The secrets of one sign-in, made when it starts.
pub struct Secrets {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

impl Secrets {
    pub fn new() -> Self {
        let random = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        Self {
            state: random(),
            nonce: random(),
            code_verifier: random(),
        }
    }
}

/// Hex SHA-256: how a state and a browser cookie are stored.
pub fn digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Single sign-on's part of the application state.
pub struct Sso {
    pub providers: Providers,
    /// Checks the issuers organizations give.
    pub guard: steward_outbound::Guard,
    /// For organizations' own providers: through the guard.
    pub tenant_http: reqwest::Client,
    /// For the operator's provider, which may be on a private network.
    pub platform_http: reqwest::Client,
}

impl Sso {
    pub fn new(guard: steward_outbound::Guard) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
        };
        Self {
            providers: Providers::default(),
            tenant_http: guard.http_client(builder()),
            platform_http: builder().build().expect("an HTTP client"),
            guard,
        }
    }
}

struct Provider {
    metadata: Metadata,
    fetched: Instant,
    keys: HashMap<String, Jwk>,
    keys_fetched: Instant,
}

/// Providers' metadata and keys, kept between sign-ins.
#[derive(Default)]
pub struct Providers {
    kept: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Provider>>>>>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ProviderError {
    error: String,
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    aud: serde_json::Value,
    azp: Option<String>,
    nonce: Option<String>,
    #[serde(flatten)]
    person: PersonClaims,
}

#[derive(Deserialize, Default)]
struct PersonClaims {
    email: Option<String>,
    #[serde(default, deserialize_with = "truthy")]
    email_verified: bool,
    name: Option<String>,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(flatten)]
    person: PersonClaims,
}

/// `email_verified` as a boolean, or as the string some providers send.
fn truthy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s == "true",
        _ => false,
    })
}

fn unreachable(what: &str, e: reqwest::Error) -> OidcError {
    let host = e
        .url()
        .and_then(|u| u.host_str())
        .unwrap_or("the provider")
        .to_owned();
    OidcError::Unreachable(format!(
        "{what}: {}",
        steward_outbound::Guard::describe(&host, &e)
    ))
}

/// The JSON document at `url`; a provider's error status is `Unreachable`.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    what: &str,
    url: &str,
) -> Result<T, OidcError> {
    let response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| unreachable(what, e))?;
    if !response.status().is_success() {
        return Err(OidcError::Unreachable(format!(
            "{what} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    response
        .json()
        .await
        .map_err(|_| OidcError::Unreachable(format!("{what} is not the JSON expected")))
}

impl Providers {
    /// The provider's metadata, fetched when not kept or an hour old. Its
    /// `issuer` must be the one configured, exactly (OpenID Discovery 4.3).
    pub async fn metadata(&self, client: &Client) -> Result<Metadata, OidcError> {
        let slot = self.slot(&client.issuer).await;
        let mut kept = slot.lock().await;
        if let Some(p) = kept
            .as_ref()
            .filter(|p| p.fetched.elapsed() < REFRESH_EVERY)
        {
            return Ok(p.metadata.clone());
        }
        let metadata = discover(client).await?;
        let keys = fetch_keys(client, &metadata).await?;
        *kept = Some(Provider {
            metadata: metadata.clone(),
            fetched: Instant::now(),
            keys,
            keys_fetched: Instant::now(),
        });
        Ok(metadata)
    }

    async fn slot(&self, issuer: &str) -> Arc<tokio::sync::Mutex<Option<Provider>>> {
        self.kept
            .lock()
            .await
            .entry(issuer.to_owned())
            .or_default()
            .clone()
    }

    /// The key `kid` (or the only key, when the token names none), fetching
    /// the keys again when it is not kept: the provider rotated them.
    async fn key(&self, client: &Client, kid: Option<&str>) -> Result<Jwk, OidcError> {
        self.metadata(client).await?;
        let slot = self.slot(&client.issuer).await;
        let mut kept = slot.lock().await;
        let provider = kept
            .as_mut()
            .ok_or_else(|| OidcError::Unreachable("the provider's keys".into()))?;
        let find = |keys: &HashMap<String, Jwk>| match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        };
        if let Some(key) = find(&provider.keys) {
            return Ok(key);
        }
        if provider.keys_fetched.elapsed() >= REFETCH_AT_MOST_EVERY {
            provider.keys = fetch_keys(client, &provider.metadata).await?;
            provider.keys_fetched = Instant::now();
        }
        find(&provider.keys)
            .ok_or_else(|| OidcError::Invalid("signed by a key the issuer does not publish".into()))
    }

    /// Where to send the browser: the provider's authorization endpoint with
    /// the code flow's parameters.
    pub async fn authorization_url(
        &self,
        client: &Client,
        redirect_uri: &str,
        secrets: &Secrets,
        login_hint: Option<&str>,
    ) -> Result<String, OidcError> {
        let metadata = self.metadata(client).await?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(secrets.code_verifier.as_bytes()));
        let mut url = url::Url::parse(&metadata.authorization_endpoint).map_err(|_| {
            OidcError::Unreachable("the authorization endpoint is not a URL".into())
        })?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", "openid email profile")
                .append_pair("state", &secrets.state)
                .append_pair("nonce", &secrets.nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(url.into())
    }

    /// Exchanges `code` for tokens and returns the person the ID token names,
    /// with their address from the userinfo endpoint when the ID token
    /// carries none (providers may keep it there when an access token is
    /// issued too).
    pub async fn sign_in(
        &self,
        client: &Client,
        redirect_uri: &str,
        code: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, OidcError> {
        let metadata = self.metadata(client).await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        // client_secret_basic unless the provider takes only client_secret_post.
        let methods = &metadata.token_endpoint_auth_methods_supported;
        let post_only = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        let request = http_form(&client.http, &metadata.token_endpoint, &form);
        let request = if post_only {
            http_form(
                &client.http,
                &metadata.token_endpoint,
                &[
                    &form[..],
                    &[
                        ("client_id", client.client_id.as_str()),
                        ("client_secret", client.client_secret.as_str()),
                    ],
                ]
                .concat(),
            )
        } else {
            request.basic_auth(
                form_encode(&client.client_id),
                Some(form_encode(&client.client_secret)),
            )
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable("the token endpoint", e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable("the token endpoint", e))?;
        if status.is_client_error() {
            let code = serde_json::from_slice::<ProviderError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
            return Err(OidcError::Refused(safe_code(&code)));
        }
        if !status.is_success() {
            return Err(OidcError::Unreachable(format!(
                "the token endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        let tokens: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Invalid("the token endpoint's answer is not JSON".into()))?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| OidcError::Invalid("no ID token".into()))?;
        let claims = self.verify(client, &metadata, &id_token, nonce).await?;
        let mut person = claims.person;
        if person.email.is_none()
            && let (Some(endpoint), Some(access)) =
                (&metadata.userinfo_endpoint, &tokens.access_token)
        {
            let info = userinfo(&client.http, endpoint, access).await?;
            if info.sub != claims.sub {
                return Err(OidcError::Invalid(
                    "userinfo names another subject than the ID token".into(),
                ));
            }
            person = info.person;
        }
        Ok(SignedIn {
            subject: claims.sub,
            email: person.email,
            email_verified: person.email_verified,
            name: person.name,
        })
    }

    async fn verify(
        &self,
        client: &Client,
        metadata: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<IdClaims, OidcError> {
        let invalid = |why: &str| OidcError::Invalid(why.to_owned());
        let head = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        if !SIGNATURES.contains(&head.alg) {
            return Err(invalid("signed with an algorithm Steward does not accept"));
        }
        let jwk = self.key(client, head.kid.as_deref()).await?;
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|_| invalid("the issuer's key is unusable"))?;
        let mut validation = Validation::new(head.alg);
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[&client.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_SECS;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                OidcError::Invalid(
                    match e.kind() {
                        ErrorKind::InvalidAudience => "the ID token is for another client",
                        ErrorKind::InvalidIssuer => "the ID token is from another issuer",
                        ErrorKind::ExpiredSignature => "the ID token has expired",
                        ErrorKind::ImmatureSignature => "the ID token is not valid yet",
                        ErrorKind::InvalidSignature => "the ID token's signature does not hold",
                        _ => "the ID token is malformed",
                    }
                    .into(),
                )
            })?
            .claims;
        // With several audiences, the party it was issued to must be us.
        let audiences = claims.aud.as_array().map_or(1, Vec::len);
        if (audiences > 1 || claims.azp.is_some())
            && claims.azp.as_deref() != Some(client.client_id.as_str())
        {
            return Err(invalid("the ID token was issued to another party"));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(invalid("the ID token's nonce is not this sign-in's"));
        }
        Ok(claims)
    }
}

/// A POST of `form`, URL-encoded.
fn http_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    http.post(url)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("pairs of strings encode"))
}

/// client_secret_basic encodes id and secret as form values first (RFC 6749 2.3.1).
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A provider's error code, kept to the characters RFC 6749 allows in one.
pub fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

async fn discover(client: &Client) -> Result<Metadata, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        client.issuer.trim_end_matches('/')
    );
    let metadata: Metadata = get_json(&client.http, "the discovery document", &url).await?;
    if metadata.issuer != client.issuer {
        // Not what it named: a tenant reads nothing a remote server sent.
        return Err(OidcError::Unreachable(
            "the discovery document names another issuer than the one given".into(),
        ));
    }
    Ok(metadata)
}

async fn fetch_keys(
    client: &Client,
    metadata: &Metadata,
) -> Result<HashMap<String, Jwk>, OidcError> {
    let set: KeySet = get_json(&client.http, "the issuer's keys", &metadata.jwks_uri).await?;
    // Keys Steward cannot use (encryption keys, unknown types) are skipped,
    // not fatal: providers publish several kinds.
    let keys = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .enumerate()
        .map(|(i, jwk)| {
            (
                jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}")),
                jwk,
            )
        })
        .collect();
    Ok(keys)
}

async fn userinfo(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<UserInfo, OidcError> {
    let response = http
        .get(url)
        .bearer_auth(access_token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| unreachable("the userinfo endpoint", e))?;
    if !response.status().is_success() {
        return Err(OidcError::Unreachable(format!(
            "the userinfo endpoint answered HTTP {}",
            response.status().as_u16()
        )));
    }
    response
        .json()
        .await
        .map_err(|_| OidcError::Invalid("the userinfo answer is not JSON".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_verified_is_true_only_when_the_provider_says_so() {
        let read = |json: &str| {
            serde_json::from_str::<PersonClaims>(json)
                .unwrap()
                .email_verified
        };
        assert!(read(r#"{"email_verified": true}"#));
        assert!(read(r#"{"email_verified": "true"}"#));
        assert!(!read(r#"{"email_verified": false}"#));
        assert!(!read(r#"{"email_verified": "yes"}"#));
        assert!(!read(r#"{"email_verified": 1}"#));
        assert!(!read(r#"{}"#));
    }

    #[test]
    fn a_providers_error_code_is_passed_on_without_what_else_it_said() {
        assert_eq!(safe_code("invalid_grant"), "invalid_grant");
        assert_eq!(safe_code("<script>alert(1)</script>"), "scriptalert1script");
        assert_eq!(safe_code(&"x".repeat(500)).len(), 64);
    }

    #[test]
    fn each_sign_in_has_its_own_secrets() {
        let (a, b) = (Secrets::new(), Secrets::new());
        assert_ne!(a.state, b.state);
        assert_ne!(a.nonce, a.state);
        assert_eq!(a.code_verifier.len(), 43, "RFC 7636: 43 to 128 characters");
        assert_eq!(digest("abc").len(), 64);
    }
}
