//! Document behaviour a caller relies on.

use std::sync::Arc;

use tandem_engine::yrs::Any;
use tandem_engine::{DocError, Document, TextDelta};

#[test]
fn out_of_bounds_edits_are_errors_not_panics() {
    let doc = Document::new("d");
    let text = doc.text("content");
    doc.edit(|e| e.insert(&text, 0, "abc")).unwrap();
    assert!(matches!(
        doc.edit(|e| e.insert(&text, 4, "x")),
        Err(DocError::OutOfBounds { index: 4, .. })
    ));
    assert!(doc.edit(|e| e.delete(&text, 2, 2)).is_err());
    assert!(doc.edit(|e| e.delete(&text, u32::MAX, 2)).is_err());
    assert!(doc
        .edit(|e| e.format(&text, 1, 5, Default::default()))
        .is_err());
    let arr = doc.array("a");
    assert!(doc.edit(|e| e.array_insert(&arr, 1, 1.0)).is_err());
    assert_eq!(doc.text_string("content"), "abc");
}

#[test]
fn offsets_are_utf16() {
    let doc = Document::new("d");
    let text = doc.text("content");
    doc.edit(|e| e.insert(&text, 0, "a😀b")).unwrap();
    doc.edit(|e| e.insert(&text, 3, "X")).unwrap();
    assert_eq!(doc.text_string("content"), "a😀Xb");
}

#[test]
fn observers_see_deltas_of_remote_changes() {
    let a = Document::new("d");
    let b = Document::new("d");
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = seen.clone();
    b.observe_text("content", "test", move |d, _remote| {
        sink.borrow_mut().push(d.to_vec())
    });
    let text = a.text("content");
    let ((), u1) = a.edit_with_update(|e| e.insert(&text, 0, "hello").unwrap());
    b.apply_update_v1(&u1.unwrap()).unwrap();
    let bold: tandem_engine::Attributes = [(Arc::from("bold"), Any::Bool(true))].into();
    let ((), u2) = a.edit_with_update(|e| e.format(&text, 1, 2, bold.clone()).unwrap());
    b.apply_update_v1(&u2.unwrap()).unwrap();
    let seen = seen.borrow();
    assert_eq!(
        seen[0],
        vec![TextDelta::Insert {
            insert: Any::from("hello"),
            attributes: None
        }]
    );
    assert_eq!(
        seen[1],
        vec![
            TextDelta::Retain {
                retain: 1,
                attributes: None
            },
            TextDelta::Retain {
                retain: 2,
                attributes: Some(bold)
            }
        ]
    );
    assert!(b.unobserve_text("content", "test"));
}

#[test]
fn missing_dependencies_are_reported_then_resolved() {
    let a = Document::with_client_id("d", 1);
    let text = a.text("content");
    let (_, u1) = a.edit_with_update(|e| e.insert(&text, 0, "one "));
    let (_, u2) = a.edit_with_update(|e| e.insert(&text, 4, "two"));
    let b = Document::with_client_id("d", 2);
    let applied = b.apply_update_v1(&u2.unwrap()).unwrap();
    assert!(applied.missing && b.has_missing_updates());
    assert_eq!(b.text_string("content"), "");
    let applied = b.apply_update_v1(&u1.unwrap()).unwrap();
    assert!(!applied.missing && !b.has_missing_updates());
    assert_eq!(b.text_string("content"), "one two");
}

/// Two replicas that both edited while apart: each is behind the other, and once one has
/// applied the other's diff it no longer is (so asking back ends instead of ping-ponging).
#[test]
fn is_behind_tells_when_a_step1_must_be_answered_both_ways() {
    use tandem_engine::yrs::updates::decoder::Decode;
    use tandem_engine::yrs::StateVector;
    let sv_of = |d: &Document| StateVector::decode_v1(&d.state_vector_v1()).unwrap();
    let a = Document::with_client_id("d", 1);
    let b = Document::with_client_id("d", 2);
    let (text_a, text_b) = (a.text("content"), b.text("content"));
    let (_, ua) = a.edit_with_update(|e| e.insert(&text_a, 0, "a"));
    assert!(b.is_behind(&sv_of(&a)) && !a.is_behind(&sv_of(&b)));
    let (inserted, _) = b.edit_with_update(|e| e.insert(&text_b, 0, "b"));
    inserted.unwrap();
    assert!(b.is_behind(&sv_of(&a)) && a.is_behind(&sv_of(&b)));
    b.apply_update_v1(&ua.unwrap()).unwrap();
    assert!(!b.is_behind(&sv_of(&a)), "b has everything a has");
    assert!(a.is_behind(&sv_of(&b)), "a still lacks b's edit");
}

#[test]
fn duplicate_updates_report_nothing_new() {
    let a = Document::new("d");
    let text = a.text("content");
    let (_, u) = a.edit_with_update(|e| e.insert(&text, 0, "x"));
    let u = u.unwrap();
    let b = Document::new("d");
    assert!(b.apply_update_v1(&u).unwrap().update.is_some());
    assert_eq!(b.apply_update_v1(&u).unwrap().update, None);
}

#[test]
fn snapshot_v1_and_v2_load_to_the_same_document() {
    let a = Document::new("d");
    let text = a.text("content");
    a.edit(|e| {
        e.insert(&text, 0, "hello world")?;
        e.delete(&text, 0, 6)
    })
    .unwrap();
    let map = a.map("meta");
    a.edit(|e| e.map_set(&map, "k", "v"));
    for (snap, v2) in [(a.snapshot_v1(), false), (a.snapshot_v2(), true)] {
        let b = Document::new("d");
        if v2 {
            b.apply_update_v2(&snap).unwrap();
        } else {
            b.apply_update_v1(&snap).unwrap();
        }
        assert_eq!(b.text_string("content"), "world");
        assert_eq!(b.map_json("meta"), a.map_json("meta"));
        assert_eq!(b.state_vector_v1(), a.state_vector_v1());
    }
    // a diff against a partial state carries only what is missing
    let b = Document::new("d");
    b.apply_update_v1(&a.snapshot_v1()).unwrap();
    let sv = b.state_vector_v1();
    a.edit(|e| e.insert(&text, 0, "big ")).unwrap();
    let diff = a.diff_v1(&sv).unwrap();
    assert!(diff.len() < a.snapshot_v1().len());
    b.apply_update_v1(&diff).unwrap();
    assert_eq!(b.text_string("content"), "big world");
    assert!(a.diff_v1(&[0xff, 0xff]).is_err());
}

#[test]
fn garbage_updates_are_typed_errors() {
    let doc = Document::new("d");
    assert!(matches!(
        doc.apply_update_v1(&[1, 2, 3]),
        Err(DocError::Decode { .. } | DocError::Apply(_) | DocError::Poisoned)
    ));
    assert!(doc.apply_update_v2(&[0xff; 9]).is_err());
}

#[test]
fn update_observers_tell_local_edits_from_applied_ones() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let a = Document::new("a");
    let b = Document::new("b");
    let seen: Rc<RefCell<Vec<(usize, bool)>>> = Rc::default();
    let log = seen.clone();
    b.observe_updates("test", move |update, remote| {
        log.borrow_mut().push((update.len(), remote))
    });
    let text_remote: Rc<RefCell<Vec<bool>>> = Rc::default();
    let log = text_remote.clone();
    b.observe_text("content", "t", move |_, remote| {
        log.borrow_mut().push(remote)
    });
    let (at, bt) = (a.text("content"), b.text("content"));
    let (_, update) = a.edit_with_update(|e| e.insert(&at, 0, "remote").unwrap());
    b.apply_update_v1(&update.unwrap()).unwrap();
    b.edit(|e| e.insert(&bt, 0, "local ").unwrap());
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].1, "an applied update is remote");
    assert!(!seen[1].1, "an edit made here is local");
    assert_eq!(*text_remote.borrow(), [true, false]);
    assert!(b.unobserve_updates("test"));
}

#[test]
fn an_undo_manager_with_default_options_undoes_only_local_edits() {
    let a = Document::new("a");
    let b = Document::new("b");
    let text = b.text("content");
    let mut undo: tandem_engine::yrs::UndoManager = tandem_engine::yrs::UndoManager::new();
    undo.expand_scope(b.doc(), &text);
    b.edit(|e| e.insert(&text, 0, "mine ").unwrap());
    undo.reset();
    let at = a.text("content");
    let (_, update) = a.edit_with_update(|e| e.insert(&at, 0, "theirs").unwrap());
    b.apply_update_v1(&update.unwrap()).unwrap();
    let both = b.text_string("content");
    assert!(both == "theirsmine " || both == "mine theirs", "{both}");
    assert!(undo.undo_blocking());
    assert_eq!(
        b.text_string("content"),
        "theirs",
        "the remote insert is not undone"
    );
    assert!(!undo.undo_blocking());
}

#[test]
fn a_stored_log_applies_in_order_and_a_bad_entry_is_named_before_anything_changes() {
    let src = Document::new("src");
    let text = src.text("content");
    let updates: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            src.edit_with_update(|e| e.insert(&text, i, "x").unwrap())
                .1
                .unwrap()
        })
        .collect();
    let copy = Document::new("copy");
    let missing = copy
        .apply_updates_v1(updates.iter().map(Vec::as_slice))
        .unwrap();
    assert!(!missing);
    assert_eq!(copy.text_string("content"), src.text_string("content"));
    let mut broken = updates.clone();
    broken[7] = vec![0xff, 0xff, 0xff];
    let fresh = Document::new("fresh");
    let err = fresh
        .apply_updates_v1(broken.iter().map(Vec::as_slice))
        .unwrap_err();
    assert!(
        matches!(err, DocError::BatchEntry { index: 7, .. }),
        "{err}"
    );
    assert_eq!(fresh.text_string("content"), "", "nothing applied");
    // Entries after a gap wait, and say so.
    let later = Document::new("later");
    assert!(later
        .apply_updates_v1(updates[10..].iter().map(Vec::as_slice))
        .unwrap());
}

/// From a peer that can resend, an update that skips clocks is not parked (yrs 0.28
/// mishandles some parked ones) but reported missing, and the resent whole applies.
#[test]
fn a_peer_update_that_skips_clocks_is_reported_missing_not_parked() {
    let a = Document::with_client_id("d", 1);
    let text = a.text("content");
    a.edit(|e| e.insert(&text, 0, "one ")).unwrap();
    let (_, u2) = a.edit_with_update(|e| e.insert(&text, 4, "two"));
    let b = Document::with_client_id("d", 2);
    let applied = b.apply_peer_update_v1(&u2.unwrap()).unwrap();
    assert!(applied.missing && applied.update.is_none());
    assert!(!b.has_missing_updates(), "nothing parked");
    // what the peer sends when asked: everything from our (empty) state
    let resent = a.diff_v1(&b.state_vector_v1()).unwrap();
    let applied = b.apply_peer_update_v1(&resent).unwrap();
    assert!(!applied.missing);
    assert_eq!(b.text_string("content"), "one two");
}
