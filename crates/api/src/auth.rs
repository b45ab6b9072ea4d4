//! Who is calling: a bearer JWT (people) or API key (machines), checked against
//! the store on every request, so revocations and role changes apply at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use steward_auth::{TokenError, hash_api_key};
use steward_store::{Actor, Principal};

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, SharedState};

/// Prefix of API keys; anything else in `Authorization: Bearer` is a JWT.
const API_KEY_PREFIX: &str = "stw_";

/// Resolves the caller from the Authorization header: `None` when absent.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    let Some(token) = bearer(headers)? else {
        return Ok(None);
    };

    if token.starts_with(API_KEY_PREFIX) {
        let key = state
            .store
            .find_api_key_by_hash(&hash_api_key(token))
            .await?
            .ok_or(ApiError::Unauthorized {
                message: "invalid or revoked API key",
            })?;
        // A key acts with no more than its maker may do today, and not at
        // all once they have left the organization.
        let role = match key.created_by {
            None => key.role,
            Some(maker) => {
                let maker = state
                    .store
                    .find_user(maker)
                    .await?
                    .filter(|user| user.org_id == key.org_id)
                    .ok_or(ApiError::Unauthorized {
                        message: "invalid or revoked API key",
                    })?;
                key.role.at_most(maker.role)
            }
        };
        return Ok(Some(
            Principal::verified(key.org_id, Actor::ApiKey(key.id), role).made_by(key.created_by),
        ));
    }

    let claims = state.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::Unauthorized {
            message: "token expired; sign in again",
        },
        TokenError::Invalid => ApiError::Unauthorized {
            message: "invalid token",
        },
    })?;
    let (user, signed_out) = state
        .store
        .find_user_session(claims.sub.into(), claims.sid)
        .await?
        .filter(|(user, _)| user.org_id.as_uuid() == claims.org)
        .ok_or(ApiError::Unauthorized {
            message: "invalid token",
        })?;
    if claims.generation != user.session_generation {
        return Err(ApiError::Unauthorized {
            message: "signed out: the password was changed since; sign in again",
        });
    }
    if signed_out {
        return Err(ApiError::Unauthorized {
            message: "signed out; sign in again",
        });
    }
    Ok(Some(
        Principal::verified(user.org_id, Actor::User(user.id), user.role)
            .must_change_password(user.must_change_password),
    ))
}

/// The token of `Authorization: Bearer <token>`: `None` when there is no
/// such header.
pub fn bearer(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(ApiError::Unauthorized {
            message: "expected Authorization: Bearer <token>",
        })
}

/// An authenticated caller, required by the handler that takes it. A person
/// signed in with a one-time password is refused until they change it.
pub struct Auth(pub Principal);

impl FromRequestParts<SharedState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let SignedIn(principal) = SignedIn::from_request_parts(parts, state).await?;
        if principal.password_change_required() {
            return Err(ApiError::Forbidden {
                code: "password_change_required",
                message: "change the one-time password first: POST /api/v1/auth/password",
            });
        }
        if principal.role() == steward_domain::Role::Advisor {
            let route = parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str());
            let allowed =
                route.is_some_and(|route| ADVISOR_ROUTES.contains(&(parts.method.as_str(), route)));
            if !allowed {
                return Err(ApiError::Forbidden {
                    code: "forbidden",
                    message: "advisors see aggregates only: /api/v1/insights and /api/v1/organizations/usage",
                });
            }
        }
        Ok(Auth(principal))
    }
}

/// Every route an advisor may call with [`Auth`]: aggregates only. Their own
/// session's routes (`/auth/me`, `/auth/logout`, `/auth/password`) take
/// [`SignedIn`] and are theirs too; everything else answers them 403.
const ADVISOR_ROUTES: [(&str, &str); 4] = [
    ("GET", "/api/v1/insights/usage"),
    ("GET", "/api/v1/insights/patterns"),
    ("GET", "/api/v1/insights/taxonomy"),
    ("GET", "/api/v1/organizations/usage"),
];

/// Any authenticated caller, a person who must still change a one-time
/// password included: for the routes that let them do it.
pub struct SignedIn(pub Principal);

impl FromRequestParts<SharedState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        // The idempotency layer may have resolved the caller already.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(SignedIn(principal.clone()));
        }
        authenticate(state, &parts.headers)
            .await?
            .map(SignedIn)
            .ok_or(ApiError::Unauthorized {
                message: "sign in first: Authorization: Bearer <token>",
            })
    }
}

impl Auth {
    /// Owners and admins only.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.0.role().can_administer() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Everyone but advisors, who see aggregates only.
    pub fn require_conversations(&self) -> ApiResult<()> {
        if self.0.role().can_read_conversations() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// The TCP peer of a connection, set by the server for every request.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub fn client_ip(
    parts_ext: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> IpAddr {
    let peer = parts_ext
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !trusted.contains(&peer) {
        return peer;
    }
    // The rightmost address a trusted proxy did not add is the client.
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// The client's address, as [`client_ip`] determines it.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<SharedState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(
            &parts.extensions,
            &parts.headers,
            &state.config.http.trusted_proxies,
        )))
    }
}

/// Login attempts per client address and per account, in process.
/// Login attempts, limited per address over all accounts, per account from
/// one address, and per account from all addresses at a ceiling ten times
/// higher. Someone guessing a password from one address is slowed long
/// before the account itself is: the owner, signing in from elsewhere, is not
/// locked out by them.
pub struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account_from_ip: DefaultKeyedRateLimiter<(String, IpAddr)>,
    per_account: DefaultKeyedRateLimiter<String>,
}

/// How many times more attempts an account takes from all addresses together
/// than from one.
const ACCOUNT_CEILING: u32 = 10;

impl LoginLimiter {
    pub fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> Result<Self, String> {
        let quota = |n: u32| {
            NonZeroU32::new(n)
                .map(Quota::per_minute)
                .ok_or("login limits must be above 0")
        };
        Ok(Self {
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)?),
            per_account_from_ip: RateLimiter::keyed(quota(per_account_per_minute)?),
            per_account: RateLimiter::keyed(quota(
                per_account_per_minute.saturating_mul(ACCOUNT_CEILING),
            )?),
        })
    }

    /// One attempt from `ip`, optionally for `account`; 429 with the wait when over.
    pub fn check(&self, ip: IpAddr, account: Option<&str>) -> ApiResult<()> {
        // Forget idle keys now and then so memory stays bounded.
        if self.per_ip.len() > 10_000 {
            self.per_ip.retain_recent();
        }
        if self.per_account.len() > 10_000 {
            self.per_account.retain_recent();
        }
        if self.per_account_from_ip.len() > 10_000 {
            self.per_account_from_ip.retain_recent();
        }
        let now = DefaultClock::default().now();
        let wait = |not_until: governor::NotUntil<_>| ApiError::RateLimited {
            retry_after_secs: not_until.wait_time_from(now).as_secs().max(1),
        };
        self.per_ip.check_key(&ip).map_err(wait)?;
        if let Some(account) = account {
            let account = account.to_lowercase();
            self.per_account_from_ip
                .check_key(&(account.clone(), ip))
                .map_err(wait)?;
            self.per_account.check_key(&account).map_err(wait)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_over_the_limit_are_refused_per_account_and_per_address() {
        let limiter = LoginLimiter::new(100, 2).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(ip, Some("a@example.org")).is_ok());
        assert!(limiter.check(ip, Some("A@example.org")).is_ok());
        match limiter.check(ip, Some("a@example.org")) {
            Err(ApiError::RateLimited { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs))
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(
            limiter.check(ip, Some("b@example.org")).is_ok(),
            "other accounts are unaffected"
        );
        let elsewhere: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(
            limiter.check(elsewhere, Some("a@example.org")).is_ok(),
            "the account is not locked for its owner elsewhere"
        );
        // From many addresses together, the account's own ceiling holds.
        let spread = LoginLimiter::new(1000, 1).unwrap();
        let refused = (0..=ACCOUNT_CEILING)
            .filter(|i| {
                let ip = IpAddr::from([203, 0, 113, *i as u8]);
                spread.check(ip, Some("a@example.org")).is_err()
            })
            .count();
        assert_eq!(refused, 1, "the eleventh address is refused");

        let limiter = LoginLimiter::new(1, 100).unwrap();
        assert!(limiter.check(ip, None).is_ok());
        assert!(limiter.check(ip, None).is_err());
        assert!(limiter.check("192.0.2.2".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let mut ext = axum::http::Extensions::new();
        ext.insert(PeerAddr("10.0.0.5:4000".parse().unwrap()));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.9".parse().unwrap());
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(
            client_ip(&ext, &headers, &[]),
            proxy,
            "untrusted peer: header ignored"
        );
        let trusted = [proxy, "10.0.0.9".parse().unwrap()];
        assert_eq!(
            client_ip(&ext, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
