//! WebSocket close codes and reasons, in one place, so every refusal tells the client
//! whether to retry: 4400–4499 are permanent (y-websocket stops reconnecting), 1013 means
//! "try again later", and every close carries a human-readable reason.

use std::borrow::Cow;

use crate::hub::command::ApiError;

/// A close frame to send before dropping a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// RFC 6455 / y-websocket close code.
    pub code: u16,
    /// Why, for the client's logs (at most 123 bytes on the wire).
    pub reason: Cow<'static, str>,
}

impl Close {
    fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        let mut reason = reason.into();
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = Cow::Owned(reason[..cut].to_owned());
        }
        Self { code, reason }
    }

    /// 1001: the server is shutting down; clients reconnect (to another node).
    pub fn going_away() -> Self {
        Self::new(1001, "server shutting down")
    }

    /// 1003: a frame of a kind y-protocols does not use (text frames, wrong sync type).
    pub fn unsupported(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(1003, reason)
    }

    /// 1007: a frame that does not decode, or an update the document rejects.
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(1007, reason)
    }

    /// 1009: a message larger than `--max-frame-bytes`.
    pub fn too_big(limit: usize) -> Self {
        Self::new(1009, format!("message larger than {limit} bytes"))
    }

    /// 1011: something broke on our side.
    pub fn internal(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(1011, reason)
    }

    /// 1013: overloaded or too slow; retry later (the client resyncs on reconnect).
    pub fn try_later(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(1013, reason)
    }

    /// 1008: a limit or policy was violated (rate, size, origin, connections per address);
    /// counted in `tandem_limit_exceeded_total` under `limit`.
    pub fn policy(limit: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        crate::limits::exceeded(limit);
        Self::new(1008, reason)
    }

    /// 1008: the document would exceed `--max-doc-bytes`.
    pub fn document_too_large(limit: usize) -> Self {
        Self::policy(
            "doc_size",
            format!("document would exceed {limit} bytes (--max-doc-bytes)"),
        )
    }

    /// 4401 (no valid token: authenticate) or 4403 (a valid token that does not cover
    /// this): permanent, the client must not retry with the same token.
    pub fn auth(error: &crate::auth::AuthError) -> Self {
        error.count();
        Self::new(error.close_code(), error.to_string())
    }

    /// 4410: the document was deleted; reconnecting would recreate it, so the client must
    /// not retry on its own.
    pub fn deleted() -> Self {
        Self::new(4410, "document deleted")
    }

    /// What an HTTP request waiting on a document gets when the document's clients are
    /// closed with this.
    pub fn api_error(&self) -> ApiError {
        match self.code {
            4410 => ApiError::Deleted,
            1001 => ApiError::Closing,
            _ => ApiError::Unavailable(self.reason.to_string()),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self.code {
            1001 => "going_away",
            1003 => "unsupported",
            1007 => "invalid",
            1009 => "too_big",
            1011 => "internal",
            1013 => "try_later",
            4410 => "deleted",
            1008 => "policy",
            4401 => "unauthorized",
            4403 => "forbidden",
            _ => "other",
        }
    }
}
