//! y-protocols frames <-> typed [`Message`]s, byte-compatible with the `y-protocols` npm
//! package (checked against fixtures made by the real library: `tests/fixtures/`).
//!
//! Layout of one frame (lib0 encoding: varUint = 7 bits per byte, little end first):
//!
//! ```text
//! sync       varUint 0, varUint sub (0 step1 | 1 step2 | 2 update), varUint8Array payload
//! awareness  varUint 1, varUint8Array( varUint n, n × (varUint client, varUint clock, varString json) )
//! auth       varUint 2, varUint 0 (permission denied), varString reason
//!            varUint 2, varUint 1 (token), varString token   (Tandem extension, client → server)
//! query      varUint 3
//! saved      varUint 100, varUint n          (Tandem extension, only to clients that opt in)
//! ```
//!
//! Why not `yrs::sync::Message`: it keeps awareness entries in a `HashMap` (re-encoding
//! changes their order, so frames are not byte-identical to what y-protocols sends), caps
//! clocks at u32, and copies every payload; decoding here borrows the update bytes straight
//! from the frame and reports exactly what was wrong with a bad one.

use std::sync::Arc;

use yrs::encoding::read::{Cursor, Error as ReadError, Read};
use yrs::encoding::write::Write;
use yrs::updates::encoder::Encode;
use yrs::StateVector;

use crate::error::CodecError;

/// Outer message type: document sync.
pub const MSG_SYNC: u64 = 0;
/// Outer message type: awareness (presence) update.
pub const MSG_AWARENESS: u64 = 1;
/// Outer message type: authentication.
pub const MSG_AUTH: u64 = 2;
/// Outer message type: ask the peer for its full awareness.
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// Outer message type of Tandem's one extension: "the first `n` document updates you sent
/// on this connection are durable". Stock y-websocket clients log an error for an unknown
/// type, so a server sends it only to clients that asked for it.
pub const MSG_SAVED: u64 = 100;
/// Sync sub-type: state vector of the sender ("what do you have that I lack?").
pub const SYNC_STEP1: u64 = 0;
/// Sync sub-type: the answer to a step 1.
pub const SYNC_STEP2: u64 = 1;
/// Sync sub-type: a live update.
pub const SYNC_UPDATE: u64 = 2;
/// Auth sub-type: permission denied, followed by a reason.
pub const AUTH_PERMISSION_DENIED: u64 = 0;
/// Auth sub-type of Tandem's extension: the client's access token, followed by the token.
/// A client that cannot put the token in the URL or a header (it would land in proxy
/// logs) sends it as its first frame instead.
pub const AUTH_TOKEN: u64 = 1;

/// lib0 numbers are JavaScript numbers: varUints beyond 2^53 cannot come from a real peer.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One y-protocols message. Sync payloads borrow from the decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// Document sync (step 1, step 2 or update).
    Sync(SyncMessage<'a>),
    /// Presence states of one or more clients.
    Awareness(AwarenessUpdate),
    /// Authentication outcome.
    Auth(AuthMessage),
    /// "Send me every awareness state you know."
    QueryAwareness,
    /// Tandem extension: the first `updates` sync step 2 / update messages the client sent
    /// on this connection are stored durably.
    Saved {
        /// How many of the client's document updates the acknowledgement covers.
        updates: u64,
    },
}

/// The three sync messages of y-protocols' sync protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncMessage<'a> {
    /// The sender's state vector; the receiver answers with a step 2.
    Step1(StateVector),
    /// A v1 update holding everything the step-1 sender lacked.
    Step2(&'a [u8]),
    /// A v1 update made after the initial exchange.
    Update(&'a [u8]),
}

/// An authentication message. y-protocols defines only "permission denied".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMessage {
    /// Access refused; the reason is meant for the user.
    PermissionDenied {
        /// Human-readable reason.
        reason: String,
    },
    /// The client's access token (Tandem extension, see [`AUTH_TOKEN`]).
    Token {
        /// The token as sent (a signed JWT).
        token: String,
    },
    /// An auth sub-type y-protocols does not define; carried so a caller can log it.
    Other(u64),
}

/// A set of awareness entries, in wire order (order matters for byte-identical frames).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwarenessUpdate {
    /// The entries, one per client.
    pub entries: Vec<AwarenessEntry>,
}

/// One client's presence at one clock. `state` is the JSON text exactly as sent
/// (`"null"` means the client left), kept verbatim so relaying it is byte-exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    /// The client (Yjs `doc.clientID`) the state belongs to.
    pub client_id: u64,
    /// Increases with every change of that client's state; the higher clock wins.
    pub clock: u64,
    /// The state as JSON text; `null` for "gone".
    pub state: Arc<str>,
}

impl AwarenessEntry {
    /// Whether this entry announces that the client left (state `null`).
    pub fn is_removal(&self) -> bool {
        &*self.state == "null"
    }
}

impl<'a> Message<'a> {
    /// Decodes exactly one message from `frame`. Never panics: every malformed input gives
    /// a [`CodecError`] saying what was wrong.
    pub fn decode(frame: &'a [u8]) -> Result<Self, CodecError> {
        let mut cur = Cursor::new(frame);
        let msg = Self::decode_from(&mut cur)?;
        let rest = frame.len() - cur.next;
        if rest > 0 {
            return Err(CodecError::TrailingBytes(rest));
        }
        Ok(msg)
    }

    fn decode_from(cur: &mut Cursor<'a>) -> Result<Self, CodecError> {
        match read_uint(cur, "message type")? {
            MSG_SYNC => {
                let sub = read_uint(cur, "sync type")?;
                let payload = read_bytes(cur, "sync payload")?;
                Ok(Message::Sync(match sub {
                    SYNC_STEP1 => Message::step1_payload(payload)?,
                    SYNC_STEP2 => SyncMessage::Step2(payload),
                    SYNC_UPDATE => SyncMessage::Update(payload),
                    other => return Err(CodecError::UnknownSyncType(other)),
                }))
            }
            MSG_AWARENESS => {
                let payload = read_bytes(cur, "awareness payload")?;
                Ok(Message::Awareness(AwarenessUpdate::decode(payload)?))
            }
            MSG_AUTH => match read_uint(cur, "auth type")? {
                AUTH_PERMISSION_DENIED => Ok(Message::Auth(AuthMessage::PermissionDenied {
                    reason: read_string(cur, "auth reason")?.to_owned(),
                })),
                AUTH_TOKEN => Ok(Message::Auth(AuthMessage::Token {
                    token: read_string(cur, "auth token")?.to_owned(),
                })),
                other => Ok(Message::Auth(AuthMessage::Other(other))),
            },
            MSG_QUERY_AWARENESS => Ok(Message::QueryAwareness),
            MSG_SAVED => Ok(Message::Saved {
                updates: read_uint(cur, "saved count")?,
            }),
            other => Err(CodecError::UnknownMessageType(other)),
        }
    }

    fn step1_payload(payload: &[u8]) -> Result<SyncMessage<'a>, CodecError> {
        crate::untrusted::state_vector_v1(payload)
            .map(SyncMessage::Step1)
            .map_err(|_| CodecError::InvalidStateVector)
    }

    /// Encodes the message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Sync(SyncMessage::Step1(sv)) => encode_sync(SYNC_STEP1, &sv.encode_v1()),
            Message::Sync(SyncMessage::Step2(update)) => encode_sync(SYNC_STEP2, update),
            Message::Sync(SyncMessage::Update(update)) => encode_sync(SYNC_UPDATE, update),
            Message::Awareness(update) => update.encode_frame(),
            Message::Auth(AuthMessage::PermissionDenied { reason }) => {
                encode_permission_denied(reason)
            }
            Message::Auth(AuthMessage::Token { token }) => encode_auth_token(token),
            Message::Auth(AuthMessage::Other(code)) => {
                let mut buf = Vec::with_capacity(4);
                buf.write_var(MSG_AUTH);
                buf.write_var(*code);
                buf
            }
            Message::QueryAwareness => vec![MSG_QUERY_AWARENESS as u8],
            Message::Saved { updates } => encode_saved(*updates),
        }
    }
}

/// Frames a sync message of sub-type `sub` around an already encoded payload without an
/// intermediate [`Message`] (the hot path: one update fanned out to every connection).
pub fn encode_sync(sub: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(payload.len() + 8);
    buf.write_var(MSG_SYNC);
    buf.write_var(sub);
    buf.write_buf(payload);
    buf
}

/// A sync step 1 frame carrying an encoded (v1) state vector.
pub fn encode_step1(state_vector_v1: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_STEP1, state_vector_v1)
}

/// A sync step 2 frame carrying a v1 update.
pub fn encode_step2(update_v1: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_STEP2, update_v1)
}

/// A sync update frame carrying a v1 update.
pub fn encode_update(update_v1: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_UPDATE, update_v1)
}

/// A Tandem "saved" frame: the first `updates` document updates of the client are durable.
pub fn encode_saved(updates: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8);
    buf.write_var(MSG_SAVED);
    buf.write_var(updates);
    buf
}

/// An auth "permission denied" frame.
pub fn encode_permission_denied(reason: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(reason.len() + 4);
    buf.write_var(MSG_AUTH);
    buf.write_var(AUTH_PERMISSION_DENIED);
    buf.write_string(reason);
    buf
}

/// An auth "token" frame (Tandem extension): what a client sends first when its token
/// is not in the URL or an `Authorization` header.
pub fn encode_auth_token(token: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(token.len() + 4);
    buf.write_var(MSG_AUTH);
    buf.write_var(AUTH_TOKEN);
    buf.write_string(token);
    buf
}

impl AwarenessUpdate {
    /// Decodes the inner awareness payload (what y-protocols' `encodeAwarenessUpdate`
    /// returns), validating every state as JSON like `applyAwarenessUpdate` would.
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut cur = Cursor::new(payload);
        let count = read_uint(&mut cur, "awareness count")?;
        // Each entry takes at least 3 bytes: a lying count cannot make us allocate more
        // than the payload could hold.
        let mut entries = Vec::with_capacity((count as usize).min(payload.len() / 3));
        for _ in 0..count {
            let client_id = read_uint(&mut cur, "awareness client id")?;
            let clock = read_uint(&mut cur, "awareness clock")?;
            let state = read_string(&mut cur, "awareness state")?;
            if serde_json::from_str::<serde::de::IgnoredAny>(state).is_err() {
                return Err(CodecError::InvalidJson { client_id });
            }
            entries.push(AwarenessEntry {
                client_id,
                clock,
                state: Arc::from(state),
            });
        }
        let rest = payload.len() - cur.next;
        if rest > 0 {
            return Err(CodecError::TrailingBytes(rest));
        }
        Ok(Self { entries })
    }

    /// Encodes the inner awareness payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(
            4 + self
                .entries
                .iter()
                .map(|e| e.state.len() + 16)
                .sum::<usize>(),
        );
        buf.write_var(self.entries.len() as u64);
        for e in &self.entries {
            buf.write_var(e.client_id);
            buf.write_var(e.clock);
            buf.write_string(&e.state);
        }
        buf
    }

    /// Encodes a whole awareness frame (outer type 1 around [`AwarenessUpdate::encode`]).
    pub fn encode_frame(&self) -> Vec<u8> {
        let inner = self.encode();
        let mut buf = Vec::with_capacity(inner.len() + 6);
        buf.write_var(MSG_AWARENESS);
        buf.write_buf(&inner);
        buf
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn read_uint(cur: &mut Cursor<'_>, what: &'static str) -> Result<u64, CodecError> {
    match cur.read_var::<u64>() {
        Ok(v) if v <= MAX_SAFE_INTEGER => Ok(v),
        Ok(_) => Err(CodecError::InvalidVarInt(what)),
        Err(ReadError::EndOfBuffer(_)) => Err(CodecError::Truncated(what)),
        Err(_) => Err(CodecError::InvalidVarInt(what)),
    }
}

fn read_bytes<'a>(cur: &mut Cursor<'a>, what: &'static str) -> Result<&'a [u8], CodecError> {
    let len = read_uint(cur, what)?;
    let remaining = (cur.buf.len() - cur.next) as u64;
    if len > remaining {
        return Err(CodecError::Truncated(what));
    }
    let start = cur.next;
    cur.next += len as usize;
    Ok(&cur.buf[start..cur.next])
}

fn read_string<'a>(cur: &mut Cursor<'a>, what: &'static str) -> Result<&'a str, CodecError> {
    let bytes = read_bytes(cur, what)?;
    std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8(what))
}
