//! Who may open which document, and whether they may change it.
//!
//! With `--auth-secret` every document route needs a token (see [`token`]); without one the
//! server is open, but a token signed by its per-process dev key is still honoured, so the
//! demo's read-only links work on a development server. Other tokens are ignored there.

pub mod token;

use std::sync::Arc;
use std::time::SystemTime;

use tandem_engine::Access;

pub use token::{Claims, Keys, Mode, TokenError};

/// What a request or connection is allowed, once its token (if any) checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Read-only or read-write.
    pub access: Access,
    /// The user's display name from the token.
    pub name: Option<Arc<str>>,
    /// When the token expires (connections are closed then); `None` on an open server
    /// without a token.
    pub expires: Option<SystemTime>,
}

impl Grant {
    /// Full access (an open server, no token).
    pub fn open() -> Self {
        Self {
            access: Access::ReadWrite,
            name: None,
            expires: None,
        }
    }
}

/// Why access was refused. Each maps to an HTTP status and a WebSocket close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, and the server requires one.
    #[error("access token required (?token=, Authorization: Bearer, or an auth message)")]
    Missing,
    /// The token does not verify or has expired.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The token is for other documents.
    #[error("token does not grant access to this document")]
    OtherDocument,
    /// A read-only token on a route that writes.
    #[error("read-only token: document changes are not allowed")]
    ReadOnly,
}

impl AuthError {
    /// 401 when the caller must (re)authenticate, 403 when its identity is known but not
    /// enough.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Token(_) => 401,
            AuthError::OtherDocument | AuthError::ReadOnly => 403,
        }
    }

    /// The WebSocket twin of [`AuthError::status`]: 4401 and 4403 (permanent, so
    /// y-websocket-style clients do not hammer the server with the same bad token).
    pub fn close_code(&self) -> u16 {
        4000 + self.status()
    }

    /// Counts the refusal in `tandem_auth_refused_total`.
    pub fn count(&self) {
        metrics::counter!("tandem_auth_refused_total", "reason" => self.label()).increment(1);
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Token(TokenError::Expired) => "expired",
            AuthError::Token(TokenError::Invalid(_)) => "invalid",
            AuthError::OtherDocument => "other_document",
            AuthError::ReadOnly => "read_only",
        }
    }
}

/// The server's token policy. Cheap to clone: every warp filter and every connection's
/// state holds one, and a deep copy of the keys (secrets, validation sets) cost about a
/// kilobyte per connection.
#[derive(Clone)]
pub struct Auth {
    keys: Arc<Keys>,
    required: bool,
}

impl Auth {
    /// With `secret`, tokens are required; without, the server is open and tokens are
    /// checked against a random key only this process knows (see [`Auth::dev_keys`]).
    pub fn new(secret: Option<&str>) -> Self {
        match secret {
            Some(secret) => Self {
                keys: Arc::new(Keys::from_secret(secret.as_bytes())),
                required: true,
            },
            None => {
                let dev = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
                Self {
                    keys: Arc::new(Keys::from_secret(dev.as_bytes())),
                    required: false,
                }
            }
        }
    }

    /// Whether every document route needs a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The keys of an open server, for its dev-only token endpoint; `None` when a secret
    /// is configured (tokens then come from the application's backend or
    /// `tandem-server token`).
    pub fn dev_keys(&self) -> Option<&Keys> {
        (!self.required).then_some(&self.keys)
    }

    /// Checks `token` for document `doc` on a route that needs `need`.
    /// The caller counts a refusal ([`AuthError::count`]) once per request: an HTTP
    /// request may be checked by several routes before one answers.
    pub fn check(&self, token: Option<&str>, doc: &str, need: Mode) -> Result<Grant, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if self.required {
                Err(AuthError::Missing)
            } else {
                Ok(Grant::open())
            };
        };
        let claims = match self.keys.verify(token) {
            Ok(claims) => claims,
            // An open server lets anyone write, so a token it cannot verify (one meant for
            // the application's own auth layer, say) costs nothing to ignore.
            Err(_) if !self.required => return Ok(Grant::open()),
            Err(e) => return Err(e.into()),
        };
        if !claims.covers(doc) {
            return Err(AuthError::OtherDocument);
        }
        if !claims.mode.allows(need) {
            return Err(AuthError::ReadOnly);
        }
        Ok(Grant {
            access: match claims.mode {
                Mode::Read => Access::ReadOnly,
                Mode::Write => Access::ReadWrite,
            },
            expires: Some(claims.expires_at()),
            name: claims.name.as_deref().map(display_name),
        })
    }

    /// Whether a token lets its holder see `doc` at all (listing documents).
    pub fn may_list(&self, token: Option<&str>, doc: &str) -> bool {
        self.check(token, doc, Mode::Read).is_ok()
    }
}

/// Longest display name kept from a token, in characters.
const MAX_NAME_CHARS: usize = 128;

/// The token's display name as it goes into logs and into every stored update's origin:
/// without control characters, whose NUL Postgres refuses in text (every update of the
/// user's documents would be refused), and cut to a length a log line can carry.
fn display_name(name: &str) -> Arc<str> {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .into()
}
