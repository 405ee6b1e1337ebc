//! Access tokens: HMAC-SHA256 JWTs whose claims say which documents the holder may open,
//! whether they may write, who they are and until when. A JWT rather than an opaque id so
//! an application backend can mint tokens with any JWT library and the same secret, and
//! the server checks them without a database round trip.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock difference tolerated between the minting machine and this one.
const LEEWAY_SECONDS: u64 = 5;

/// What a token lets its holder do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sync, read and publish presence.
    Read,
    /// Everything, including changing the document.
    Write,
}

impl Mode {
    /// Whether a token of this mode satisfies a route needing `need`.
    pub fn allows(self, need: Mode) -> bool {
        self == Mode::Write || need == Mode::Read
    }
}

/// The claims Tandem reads. Unknown claims are ignored, so an application may add its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The document: an exact name, or a prefix ending in `*` (`*` alone: every document).
    pub doc: String,
    /// Read or write.
    pub mode: Mode,
    /// The user's display name (the origin recorded with their updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
}

impl Claims {
    /// Whether the token covers the document `name`.
    pub fn covers(&self, name: &str) -> bool {
        match self.doc.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.doc == name,
        }
    }

    /// When the token stops being valid.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp + LEEWAY_SECONDS)
    }
}

/// Why a token was not accepted (before looking at what it is for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Not a JWT, a bad signature, a wrong algorithm or missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The signing and checking halves of one secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    /// Keys for a shared secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `doc` valid for `ttl` from now.
    pub fn mint(&self, doc: &str, mode: Mode, name: Option<String>, ttl: Duration) -> String {
        let now = unix_now();
        self.sign(&Claims {
            doc: doc.to_owned(),
            mode,
            name,
            exp: now + ttl.as_secs(),
            iat: now,
        })
    }

    /// Signs arbitrary claims (tests mint expired tokens this way).
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of serializable claims cannot fail")
    }

    /// Checks the signature and expiry and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token opens what its `doc` claim names and nothing else: exact names stay
    /// exact, and only a trailing `*` widens to a prefix.
    #[test]
    fn doc_patterns_match_exactly_or_by_prefix() {
        let claims = |doc: &str| Claims {
            doc: doc.into(),
            mode: Mode::Read,
            name: None,
            exp: 0,
            iat: 0,
        };
        assert!(claims("notes").covers("notes"));
        assert!(!claims("notes").covers("notes2"));
        assert!(!claims("notes").covers("note"));
        assert!(claims("team/*").covers("team/a"));
        assert!(!claims("team/*").covers("other/a"));
        assert!(claims("*").covers("anything"));
    }

    /// Signature, expiry and secret are all checked.
    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let keys = Keys::from_secret(b"secret-one");
        let token = keys.mint(
            "d",
            Mode::Write,
            Some("Ann".into()),
            Duration::from_secs(60),
        );
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.doc.as_str(), claims.mode), ("d", Mode::Write));
        assert!(matches!(
            Keys::from_secret(b"secret-two").verify(&token),
            Err(TokenError::Invalid(_))
        ));
        let expired = keys.sign(&Claims {
            doc: "d".into(),
            mode: Mode::Write,
            name: None,
            exp: unix_now() - 60,
            iat: unix_now() - 120,
        });
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));
        assert!(matches!(
            keys.verify("not.a.jwt"),
            Err(TokenError::Invalid(_))
        ));
    }
}
