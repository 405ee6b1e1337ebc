//! The sync state machine: what each message produces, for both roles.

use tandem_engine::protocol::codec;
use tandem_engine::{
    Access, Awareness, Document, Message, Outcome, Role, SessionError, SyncMessage, SyncSession,
};

fn decode(frame: &[u8]) -> Message<'_> {
    Message::decode(frame).unwrap()
}

#[test]
fn step1_is_answered_with_exactly_the_missing_part() {
    let server = Document::with_client_id("d", 1);
    let text = server.text("content");
    server.edit(|e| e.insert(&text, 0, "hello")).unwrap();
    let client = Document::with_client_id("d", 2);
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server);
    let step1 = codec::encode_step1(&client.state_vector_v1());
    let out = s.handle(&server, &mut aw, &decode(&step1), 0).unwrap();
    assert_eq!(out.reply.len(), 1);
    let Message::Sync(SyncMessage::Step2(update)) = decode(&out.reply[0]) else {
        panic!("expected step 2")
    };
    client.apply_update_v1(update).unwrap();
    assert_eq!(client.text_string("content"), "hello");
}

#[test]
fn with_a_cache_an_empty_step1_asks_the_caller_for_the_full_state() {
    let server = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server).with_full_state_cache();
    let empty = codec::encode_step1(&Document::new("x").state_vector_v1());
    let out = s.handle(&server, &mut aw, &decode(&empty), 0).unwrap();
    assert!(out.full_state && out.reply.is_empty());
    // a non-empty state vector is still answered directly
    let other = Document::new("x");
    let t = other.text("content");
    other.edit(|e| e.insert(&t, 0, "a")).unwrap();
    let out = s
        .handle(
            &server,
            &mut aw,
            &decode(&codec::encode_step1(&other.state_vector_v1())),
            0,
        )
        .unwrap();
    assert!(!out.full_state && out.reply.len() == 1);
}

#[test]
fn server_relays_new_updates_to_everyone_and_duplicates_to_no_one() {
    let server = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server);
    let client = Document::new("d");
    let text = client.text("content");
    let (_, u) = client.edit_with_update(|e| e.insert(&text, 0, "x"));
    let frame = codec::encode_update(&u.unwrap());
    let out = s.handle(&server, &mut aw, &decode(&frame), 0).unwrap();
    assert_eq!(out.broadcast.len(), 1, "echo includes the sender");
    assert!(out.applied.is_some());
    let again = s.handle(&server, &mut aw, &decode(&frame), 0).unwrap();
    assert!(again.broadcast.is_empty() && again.applied.is_none());
    // A client session applies but relays nothing.
    let mut c = SyncSession::new(Role::Client);
    let other = Document::new("d");
    let out = c
        .handle(&other, &mut Awareness::new(9), &decode(&frame), 0)
        .unwrap();
    assert!(out.broadcast.is_empty() && out.applied.is_some());
}

#[test]
fn first_step2_marks_synced() {
    let doc = Document::new("d");
    let mut c = SyncSession::new(Role::Client);
    assert!(!c.is_synced());
    let frame = codec::encode_step2(&Document::new("s").snapshot_v1());
    let out = c
        .handle(&doc, &mut Awareness::new(1), &decode(&frame), 0)
        .unwrap();
    assert!(out.synced && c.is_synced());
    let out = c
        .handle(&doc, &mut Awareness::new(1), &decode(&frame), 0)
        .unwrap();
    assert!(!out.synced, "only the first step 2 completes the sync");
}

#[test]
fn a_gap_triggers_one_resync_request() {
    let a = Document::with_client_id("d", 1);
    let t = a.text("content");
    let (_, u1) = a.edit_with_update(|e| e.insert(&t, 0, "1"));
    let (_, u2) = a.edit_with_update(|e| e.insert(&t, 1, "2"));
    let (_, u3) = a.edit_with_update(|e| e.insert(&t, 2, "3"));
    let b = Document::with_client_id("d", 2);
    let mut aw = Awareness::new(2);
    let mut s = SyncSession::new(Role::Client);
    let out = s
        .handle(&b, &mut aw, &decode(&codec::encode_update(&u2.unwrap())), 0)
        .unwrap();
    assert!(out.missing);
    assert!(matches!(
        decode(&out.reply[0]),
        Message::Sync(SyncMessage::Step1(_))
    ));
    let out = s
        .handle(&b, &mut aw, &decode(&codec::encode_update(&u3.unwrap())), 0)
        .unwrap();
    assert!(out.missing && out.reply.is_empty(), "asked once per gap");
    let out = s
        .handle(&b, &mut aw, &decode(&codec::encode_update(&u1.unwrap())), 0)
        .unwrap();
    assert!(!out.missing);
    assert_eq!(b.text_string("content"), "123");
}

/// Client 77 ("a") announces its presence through `conn`.
fn announce_alice(doc: &Document, hub: &mut Awareness, conn: &mut SyncSession) -> Outcome {
    let update = Awareness::new(77)
        .set_local_state_json(Some(r#"{"user":{"name":"a"}}"#), 0)
        .unwrap();
    conn.handle(doc, hub, &Message::Awareness(update), 0)
        .unwrap()
}

#[test]
fn awareness_ownership_is_tracked_and_released_on_close() {
    let doc = Document::new("d");
    let mut hub = Awareness::new(0);
    let mut conn = SyncSession::new(Role::Server);
    let out = announce_alice(&doc, &mut hub, &mut conn);
    assert_eq!(out.awareness.added, vec![77]);
    assert_eq!(out.broadcast.len(), 1, "awareness is relayed");
    assert_eq!(conn.controlled_clients().collect::<Vec<_>>(), vec![77]);
    let removal = conn.close(&mut hub, 1).expect("removal frame");
    let Message::Awareness(u) = decode(&removal) else {
        panic!()
    };
    assert!(u.entries[0].is_removal() && u.entries[0].client_id == 77);
    assert!(hub.state(77).is_none());
}

#[test]
fn a_batching_session_reports_presence_and_leaves_relaying_to_the_caller() {
    let doc = Document::new("d");
    let mut hub = Awareness::new(0);
    let mut conn = SyncSession::new(Role::Server).with_presence_batching();
    let out = announce_alice(&doc, &mut hub, &mut conn);
    assert_eq!(out.awareness.added, vec![77]);
    assert!(out.broadcast.is_empty(), "the caller relays presence");
    assert_eq!(hub.state(77), Some(r#"{"user":{"name":"a"}}"#));
    // Document updates are still relayed by the session.
    let edit = Document::with_client_id("d", 5);
    let text = edit.text("content");
    edit.edit(|e| e.insert(&text, 0, "x")).unwrap();
    let update = edit.snapshot_v1();
    let out = conn
        .handle(
            &doc,
            &mut hub,
            &Message::Sync(SyncMessage::Update(&update)),
            1,
        )
        .unwrap();
    assert_eq!(out.broadcast.len(), 1);
    assert_eq!(conn.release(&mut hub, 2), vec![77]);
    assert!(hub.state(77).is_none());
    assert!(conn.release(&mut hub, 3).is_empty(), "released once");
}

#[test]
fn greeting_is_step1_then_awareness_if_any() {
    let doc = Document::new("d");
    let mut aw = Awareness::new(0);
    let s = SyncSession::new(Role::Server);
    assert_eq!(s.greeting(&doc, &aw).len(), 1);
    let mut peer = Awareness::new(5);
    aw.apply_update(&peer.set_local_state_json(Some("{}"), 0).unwrap(), 0);
    let g = s.greeting(&doc, &aw);
    assert!(matches!(
        decode(&g[0]),
        Message::Sync(SyncMessage::Step1(_))
    ));
    assert!(matches!(decode(&g[1]), Message::Awareness(_)));
}

#[test]
fn permission_denied_surfaces_as_an_error() {
    let doc = Document::new("d");
    let mut s = SyncSession::new(Role::Client);
    let frame = codec::encode_permission_denied("nope");
    let err = s
        .handle(&doc, &mut Awareness::new(1), &decode(&frame), 0)
        .unwrap_err();
    assert!(matches!(err, SessionError::PermissionDenied(r) if r == "nope"));
}

/// A viewer (read-only token) must be able to sync: its step 2 carries its whole delete
/// set even when it edited nothing, and that must not be mistaken for an edit.
#[test]
fn a_read_only_peer_syncs_without_refusals_when_it_changed_nothing() {
    let server = Document::with_client_id("d", 1);
    let text = server.text("content");
    server.edit(|e| e.insert(&text, 0, "hello world")).unwrap();
    server.edit(|e| e.delete(&text, 0, 6)).unwrap();
    let viewer = Document::with_client_id("d", 2);
    viewer.apply_update_v1(&server.snapshot_v1()).unwrap();
    let before = server.snapshot_v1();
    let mut s = SyncSession::new(Role::Server).with_access(Access::ReadOnly);
    // what y-websocket sends after the server's step 1: everything the server lacks
    let step2 = codec::encode_step2(&viewer.diff_v1(&server.state_vector_v1()).unwrap());
    let out = s
        .handle(&server, &mut Awareness::new(0), &decode(&step2), 0)
        .unwrap();
    assert!(!out.refused && out.reply.is_empty() && out.applied.is_none());
    assert_eq!(server.snapshot_v1(), before);
}

/// The heart of read-only access: an edit is answered with y-protocols' permission-denied
/// message, and neither applied nor relayed.
#[test]
fn a_read_only_peer_edit_is_refused_with_permission_denied_and_not_applied() {
    let server = Document::with_client_id("d", 1);
    let text = server.text("content");
    server.edit(|e| e.insert(&text, 0, "hello")).unwrap();
    let viewer = Document::with_client_id("d", 2);
    viewer.apply_update_v1(&server.snapshot_v1()).unwrap();
    let vt = viewer.text("content");
    let (_, insert) = viewer.edit_with_update(|e| e.insert(&vt, 5, "!").unwrap());
    let (_, delete) = viewer.edit_with_update(|e| e.delete(&vt, 0, 1).unwrap());
    let before = server.snapshot_v1();
    let mut s = SyncSession::new(Role::Server).with_access(Access::ReadOnly);
    for update in [insert.unwrap(), delete.unwrap()] {
        for frame in [codec::encode_update(&update), codec::encode_step2(&update)] {
            let out = s
                .handle(&server, &mut Awareness::new(0), &decode(&frame), 0)
                .unwrap();
            assert!(out.refused && out.applied.is_none() && out.broadcast.is_empty());
            assert!(matches!(
                decode(&out.reply[0]),
                Message::Auth(tandem_engine::AuthMessage::PermissionDenied { .. })
            ));
        }
    }
    assert_eq!(server.snapshot_v1(), before);
    assert_eq!(server.text_string("content"), "hello");
}

/// Presence stays open to viewers: a read-only peer's awareness is applied and relayed.
#[test]
fn a_read_only_peer_may_publish_presence() {
    let doc = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server).with_access(Access::ReadOnly);
    let frame = tandem_engine::AwarenessUpdate {
        entries: vec![tandem_engine::AwarenessEntry {
            client_id: 7,
            clock: 1,
            state: r#"{"user":{"name":"viewer"}}"#.into(),
        }],
    }
    .encode_frame();
    let out = s.handle(&doc, &mut aw, &decode(&frame), 0).unwrap();
    assert_eq!(out.broadcast.len(), 1);
    assert!(!aw.is_empty());
}

/// One client must not make everybody's presence huge: an oversized state is an error and
/// is not applied.
#[test]
fn an_awareness_state_over_the_limit_is_refused_and_not_applied() {
    let doc = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server).with_max_awareness_state(64);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
    let frame = tandem_engine::AwarenessUpdate {
        entries: vec![tandem_engine::AwarenessEntry {
            client_id: 7,
            clock: 1,
            state: big.into(),
        }],
    }
    .encode_frame();
    let err = s.handle(&doc, &mut aw, &decode(&frame), 0).unwrap_err();
    assert!(matches!(
        err,
        SessionError::AwarenessStateTooLarge {
            client_id: 7,
            limit: 64,
            ..
        }
    ));
    assert!(aw.is_empty());
}

/// A presence frame giving each of `ids` the state `state` (`null`: a removal) at `clock`.
fn presence_frame(ids: &[u64], clock: u64, state: &str) -> Vec<u8> {
    tandem_engine::AwarenessUpdate {
        entries: ids
            .iter()
            .map(|&client_id| tandem_engine::AwarenessEntry {
                client_id,
                clock,
                state: state.into(),
            })
            .collect(),
    }
    .encode_frame()
}

/// One connection may publish presence for only so many client ids: a frame that would give
/// it more is an error and is not applied, while its own states keep being renewed.
#[test]
fn presence_for_more_client_ids_than_allowed_is_refused_and_not_applied() {
    let doc = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server).with_max_awareness_clients(2);
    let frame = |ids: &[u64], clock: u64| presence_frame(ids, clock, "{}");
    let err = s
        .handle(&doc, &mut aw, &decode(&frame(&[1, 2, 3], 1)), 0)
        .unwrap_err();
    assert!(matches!(
        err,
        SessionError::TooManyAwarenessClients { limit: 2 }
    ));
    assert!(aw.is_empty(), "nothing applied");
    s.handle(&doc, &mut aw, &decode(&frame(&[1, 2], 1)), 0)
        .unwrap();
    assert_eq!(s.controlled_clients().collect::<Vec<_>>(), vec![1, 2]);
    // Renewing its own two is fine; a third is not.
    s.handle(&doc, &mut aw, &decode(&frame(&[1, 2], 2)), 1)
        .unwrap();
    let err = s
        .handle(&doc, &mut aw, &decode(&frame(&[3], 1)), 2)
        .unwrap_err();
    assert!(matches!(err, SessionError::TooManyAwarenessClients { .. }));
    assert_eq!(aw.len(), 2);
}

/// Client ids whose state another peer removed no longer count against the peer that
/// published them: anyone may publish a removal, and counting them would lock that peer
/// out of presence for the document's life.
#[test]
fn ids_removed_by_another_peer_free_their_place() {
    let doc = Document::new("d");
    let mut aw = Awareness::new(0);
    let mut s = SyncSession::new(Role::Server).with_max_awareness_clients(2);
    let mut other = SyncSession::new(Role::Server);
    let frame = presence_frame;
    s.handle(&doc, &mut aw, &decode(&frame(&[1, 2], 1, "{}")), 0)
        .unwrap();
    other
        .handle(&doc, &mut aw, &decode(&frame(&[1, 2], 2, "null")), 1)
        .unwrap();
    assert!(aw.is_empty());
    s.handle(&doc, &mut aw, &decode(&frame(&[3, 4], 1, "{}")), 2)
        .unwrap();
    assert_eq!(s.controlled_clients().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(aw.len(), 2);
}
