//! Codec behaviour on good and hostile input.

use proptest::prelude::*;
use tandem_engine::protocol::codec::{self, encode_update};
use tandem_engine::{AwarenessEntry, AwarenessUpdate, CodecError, Document, Message, SyncMessage};

fn sample_frames() -> Vec<Vec<u8>> {
    let doc = Document::with_client_id("d", 7);
    let text = doc.text("content");
    doc.edit(|e| e.insert(&text, 0, "hello wörld")).unwrap();
    let aw = AwarenessUpdate {
        entries: vec![AwarenessEntry {
            client_id: 7,
            clock: 300,
            state: r#"{"user":{"name":"a"}}"#.into(),
        }],
    };
    vec![
        codec::encode_step1(&doc.state_vector_v1()),
        codec::encode_step2(&doc.snapshot_v1()),
        encode_update(&doc.snapshot_v1()),
        aw.encode_frame(),
        codec::encode_permission_denied("no"),
        Message::QueryAwareness.encode(),
    ]
}

#[test]
fn every_strict_prefix_of_a_valid_frame_is_a_typed_error() {
    for frame in sample_frames() {
        assert!(Message::decode(&frame).is_ok());
        for cut in 0..frame.len() {
            let r = Message::decode(&frame[..cut]);
            assert!(r.is_err(), "prefix {cut} of {frame:?} decoded as {r:?}");
        }
    }
}

#[test]
fn specific_malformations_are_named() {
    assert_eq!(
        Message::decode(&[]),
        Err(CodecError::Truncated("message type"))
    );
    assert_eq!(
        Message::decode(&[9]),
        Err(CodecError::UnknownMessageType(9))
    );
    assert_eq!(
        Message::decode(&[0, 5, 0]),
        Err(CodecError::UnknownSyncType(5))
    );
    // 11 continuation bytes: not a varint any peer can produce.
    assert!(matches!(
        Message::decode(&[0xff; 12]),
        Err(CodecError::InvalidVarInt(_))
    ));
    // a length prefix far beyond the frame
    assert_eq!(
        Message::decode(&[0, 2, 0xff, 0xff, 0x03, 1]),
        Err(CodecError::Truncated("sync payload"))
    );
    assert_eq!(Message::decode(&[3, 0]), Err(CodecError::TrailingBytes(1)));
    // awareness whose state is not JSON
    let bad = AwarenessUpdate {
        entries: vec![AwarenessEntry {
            client_id: 3,
            clock: 1,
            state: "{not json".into(),
        }],
    };
    assert_eq!(
        Message::decode(&bad.encode_frame()),
        Err(CodecError::InvalidJson { client_id: 3 })
    );
    // a state vector that is garbage
    assert_eq!(
        Message::decode(&[0, 0, 2, 0xff, 0xff]),
        Err(CodecError::InvalidStateVector)
    );
    // invalid UTF-8 in the auth reason
    assert_eq!(
        Message::decode(&[2, 0, 2, 0xc3, 0x28]),
        Err(CodecError::InvalidUtf8("auth reason"))
    );
}

#[test]
fn awareness_count_cannot_force_a_huge_allocation() {
    // Claims 2^50 entries in a 10-byte payload: must fail fast, not allocate.
    let mut inner = vec![];
    yrs_write_var(&mut inner, 1 << 50);
    inner.extend_from_slice(&[1, 1, 2, b'{', b'}']);
    let mut frame = vec![1];
    yrs_write_var(&mut frame, inner.len() as u64);
    frame.extend_from_slice(&inner);
    assert!(matches!(
        Message::decode(&frame),
        Err(CodecError::Truncated(_))
    ));
}

fn yrs_write_var(buf: &mut Vec<u8>, v: u64) {
    use tandem_engine::yrs::encoding::write::Write;
    buf.write_var(v);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic_and_update_payloads_never_panic_the_document(
        which in 0usize..6, pos in any::<usize>(), byte in any::<u8>()
    ) {
        let mut frame = sample_frames()[which].clone();
        let at = pos % frame.len();
        frame[at] = byte;
        if let Ok(Message::Sync(SyncMessage::Update(u) | SyncMessage::Step2(u))) = Message::decode(&frame) {
            let doc = Document::new("victim");
            let _ = doc.apply_update_v1(u);
        }
    }

    #[test]
    fn awareness_roundtrips(entries in proptest::collection::vec(
        (0u64..(1 << 53), 0u64..(1 << 53), "[a-zA-Z0-9 ]{0,20}"), 0..8)
    ) {
        let update = AwarenessUpdate { entries: entries.into_iter().map(|(client_id, clock, s)| AwarenessEntry {
            client_id, clock, state: serde_json::to_string(&s).unwrap().into()
        }).collect() };
        let frame = update.encode_frame();
        prop_assert_eq!(Message::decode(&frame).unwrap(), Message::Awareness(update));
    }
}

#[test]
fn the_saved_extension_round_trips_and_only_clients_act_on_it() {
    use tandem_engine::{Awareness, Document, Message, Role, SyncSession};
    let frame = tandem_engine::protocol::codec::encode_saved(300);
    assert_eq!(frame[0], 100);
    let msg = Message::decode(&frame).unwrap();
    assert_eq!(msg, Message::Saved { updates: 300 });
    assert_eq!(msg.encode(), frame);
    let doc = Document::new("d");
    let mut aw = Awareness::new(1);
    let mut client = SyncSession::new(Role::Client);
    assert_eq!(
        client.handle(&doc, &mut aw, &msg, 0).unwrap().saved,
        Some(300)
    );
    let mut server = SyncSession::new(Role::Server);
    let out = server.handle(&doc, &mut aw, &msg, 0).unwrap();
    assert_eq!(out.saved, None);
    assert!(out.reply.is_empty() && out.broadcast.is_empty());
}

/// Tandem's auth token frame (a client's first frame when its token is not in the URL)
/// round-trips, and a truncated one is a typed error.
#[test]
fn the_auth_token_extension_round_trips() {
    let frame = codec::encode_auth_token("eyJ.abc.def");
    let msg = Message::decode(&frame).unwrap();
    assert_eq!(
        msg,
        Message::Auth(tandem_engine::AuthMessage::Token {
            token: "eyJ.abc.def".into()
        })
    );
    assert_eq!(msg.encode(), frame);
    assert_eq!(
        Message::decode(&frame[..frame.len() - 1]),
        Err(CodecError::Truncated("auth token"))
    );
}

/// Regression: these bytes make yrs' update decoder assert (block.rs, "value & MASK");
/// found by the server's hostile-frame test, where the panic killed the document's actor.
/// Decoding untrusted updates must report an error and leave the document usable.
#[test]
fn an_update_that_panics_the_yrs_decoder_is_an_error_not_a_crash() {
    let bytes = [
        17u8, 138, 252, 13, 237, 181, 185, 248, 222, 163, 152, 178, 215, 100, 188, 166, 141, 252,
        2, 58, 152, 33, 147,
    ];
    let doc = Document::new("d");
    let t = doc.text("content");
    doc.edit(|e| e.insert(&t, 0, "intact")).unwrap();
    assert!(matches!(
        doc.apply_update_v1(&bytes),
        Err(tandem_engine::DocError::Decode { .. })
    ));
    assert!(matches!(
        doc.apply_updates_v1([&bytes[..]]),
        Err(tandem_engine::DocError::BatchEntry { index: 0, .. })
    ));
    assert!(doc.would_change_v1(&bytes).is_err());
    doc.edit(|e| e.insert(&t, 0, "still ")).unwrap();
    assert_eq!(doc.text_string("content"), "still intact");
}
