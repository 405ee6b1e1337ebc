//! What travels on a document channel: the publishing node's id (16 bytes), then one
//! y-protocols frame exactly as the node relayed it to its own clients. Reusing the wire
//! format means a receiving node handles it with the same protocol session code as a
//! client's frame. One frame is the cluster's own: [`DELETED`].

use bytes::Bytes;
use uuid::Uuid;

/// "This document was deleted": the other nodes close their clients of it and drop their
/// copies. Its outer message type (100) is none of y-protocols' (0–3), so it can never be
/// a client's frame relayed.
pub const DELETED: &[u8] = &[100];

/// Prefixes `frame` with `node`.
pub fn encode(node: Uuid, frame: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(16 + frame.len());
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(frame);
    out.into()
}

/// Splits a message into the publishing node and its frame; `None` if it is too short to
/// be one of ours.
pub fn decode(message: &[u8]) -> Option<(Uuid, &[u8])> {
    if message.len() <= 16 {
        return None;
    }
    let node = Uuid::from_slice(&message[..16]).ok()?;
    Some((node, &message[16..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node id comes back, the frame is byte-identical, and garbage is refused.
    #[test]
    fn round_trips_and_refuses_short_messages() {
        let node = Uuid::new_v4();
        let msg = encode(node, &[0, 2, 1, 9]);
        assert_eq!(decode(&msg), Some((node, &[0u8, 2, 1, 9][..])));
        assert_eq!(decode(&[1, 2, 3]), None);
        assert_eq!(decode(node.as_bytes()), None);
    }
}
