//! JWTs for people: HS256 only, with expiry. Tokens name the user, their
//! organization and their session generation; the role and the generation
//! are read from the store on every request so that a role change, a
//! removal or a password change takes effect at once.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use steward_domain::{OrgId, UserId};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub org: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The user's session generation when issued: a password change moves
    /// it on, and tokens of an earlier one no longer sign in.
    #[serde(default)]
    pub generation: i64,
    /// The session this token is: signing out ends it alone. Absent from
    /// tokens issued before sessions were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        install_crypto_provider();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    pub fn issue(&self, user: UserId, org: OrgId, generation: i64) -> (String, DateTime<Utc>) {
        self.issue_at(user, org, generation, Utc::now())
    }

    fn issue_at(
        &self,
        user: UserId,
        org: OrgId,
        generation: i64,
        at: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let expires = at + self.ttl;
        let claims = Claims {
            sub: user.as_uuid(),
            org: org.as_uuid(),
            iat: at.timestamp(),
            exp: expires.timestamp(),
            generation,
            sid: Some(Uuid::now_v7()),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, expires)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        // Only HS256: `alg: none` and algorithm swaps are refused here.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// jsonwebtoken picks its crypto backend from a process-wide default; we build
/// with aws-lc-rs only, so installing it is idempotent.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::hours(24))
    }

    #[test]
    fn issued_tokens_verify_and_carry_user_and_org() {
        let (user, org) = (UserId::new(), OrgId::new());
        let (token, expires) = tokens().issue(user, org, 3);
        let claims = tokens().verify(&token).unwrap();
        assert_eq!((claims.sub, claims.org), (user.as_uuid(), org.as_uuid()));
        assert_eq!(claims.generation, 3);
        assert_eq!(claims.exp, expires.timestamp());
        assert_eq!(claims.exp - claims.iat, 24 * 3600);
        let again = tokens().verify(&tokens().issue(user, org, 3).0).unwrap();
        assert!(
            claims.sid.is_some() && again.sid != claims.sid,
            "each token its own session"
        );
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let (user, org) = (UserId::new(), OrgId::new());
        let (old, _) = tokens().issue_at(user, org, 0, Utc::now() - Duration::hours(25));
        assert_eq!(tokens().verify(&old), Err(TokenError::Expired));

        let (token, _) = tokens().issue(user, org, 0);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["org"] = serde_json::json!(OrgId::new().as_uuid());
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            tokens().verify(&parts.join(".")),
            Err(TokenError::Invalid),
            "payload swapped"
        );

        let other = Tokens::new(b"another secret of sufficient size!", Duration::hours(24));
        assert_eq!(
            other.verify(&token),
            Err(TokenError::Invalid),
            "signed with another key"
        );

        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{header}.{}.", parts[1]);
        assert_eq!(
            tokens().verify(&unsigned),
            Err(TokenError::Invalid),
            "alg none"
        );
        assert_eq!(tokens().verify("not.a.jwt"), Err(TokenError::Invalid));
        assert_eq!(tokens().verify(""), Err(TokenError::Invalid));
    }
}
