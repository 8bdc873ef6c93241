//! Bearer tokens: signed by auth at login, verified locally by the gateway and every role.
//!
//! Format: `v1.<base64url(claims JSON)>.<base64url(HMAC-SHA256 tag)>`, the same construction as
//! an HS256 JWT with a fixed header. Verification needs only the shared token key, so reads keep
//! working while auth is down.

use crate::secret::{hmac_sha256, verify_hmac_sha256, DerivedKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "v1.";

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The customer id.
    pub sub: String,
    /// The session id; step-up verification is bound to it.
    pub sid: String,
    /// Issued at, epoch milliseconds.
    pub iat: i64,
    /// Expires at, epoch milliseconds.
    pub exp: i64,
}

/// Signs and verifies tokens with one key.
#[derive(Clone, Debug)]
pub struct TokenKey(DerivedKey);

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

impl TokenKey {
    pub fn new(key: DerivedKey) -> Self {
        Self(key)
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Claims are plain strings and integers; serialising them cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let body = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac_sha256(&self.0 .0, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        if token.len() > 2048 || !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        if !verify_hmac_sha256(&self.0 .0, body.as_bytes(), &tag) {
            return Err(TokenError::Signature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(&body[PREFIX.len()..])
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::MasterSecret;

    fn key(byte: u8) -> TokenKey {
        TokenKey::new(
            MasterSecret::from_bytes(vec![byte; 32])
                .unwrap()
                .derive("token"),
        )
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "1@sk.com".into(),
            sid: "s1".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn a_signed_token_verifies() {
        let token = key(1).sign(&claims(1000));
        assert_eq!(key(1).verify(&token, 999), Ok(claims(1000)));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let token = key(1).sign(&claims(1000));
        assert_eq!(key(1).verify(&token, 1000), Err(TokenError::Expired));
        assert_eq!(key(2).verify(&token, 0), Err(TokenError::Signature));
        let (body, tag) = token.rsplit_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                sub: "admin".into(),
                ..claims(1000)
            })
            .unwrap(),
        );
        let forged = format!("v1.{forged_claims}.{tag}");
        assert_eq!(key(1).verify(&forged, 0), Err(TokenError::Signature));
        assert!(body.starts_with("v1."));
        assert_eq!(key(1).verify("garbage", 0), Err(TokenError::Malformed));
        assert_eq!(key(1).verify("v1.a.b.c", 0), Err(TokenError::Malformed));
        assert_eq!(key(1).verify("v1.a.b.AAAA", 0), Err(TokenError::Signature));
    }
}
