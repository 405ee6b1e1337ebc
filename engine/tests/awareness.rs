//! Awareness semantics, mirroring y-protocols' awareness.js.

use tandem_engine::awareness::{OUTDATED_TIMEOUT_MS, RENEW_INTERVAL_MS};
use tandem_engine::{Awareness, Presence, Status, User};

fn presence(name: &str) -> Presence {
    Presence {
        user: User {
            name: name.into(),
            color: "#30bced".into(),
        },
        status: Status::Online,
        cursor: None,
    }
}

#[test]
fn a_state_travels_and_the_higher_clock_wins() {
    let mut alice = Awareness::new(1);
    let mut hub = Awareness::new(0);
    let u1 = alice.set_local_state(&presence("alice"), 0).unwrap();
    let c = hub.apply_update(&u1, 0);
    assert_eq!(c.added, vec![1]);
    assert_eq!(hub.state_as::<Presence>(1).unwrap().user.name, "alice");

    let mut away = presence("alice");
    away.status = Status::Away;
    let u2 = alice.set_local_state(&away, 10).unwrap();
    let c = hub.apply_update(&u2, 10);
    assert_eq!((c.updated.clone(), c.changed.clone()), (vec![1], vec![1]));
    // replaying the old update changes nothing
    assert!(hub.apply_update(&u1, 20).is_empty());
    assert_eq!(hub.state_as::<Presence>(1).unwrap().status, Status::Away);
}

#[test]
fn explicit_leave_removes_at_equal_clock() {
    let mut alice = Awareness::new(1);
    let mut bob = Awareness::new(2);
    bob.apply_update(&alice.set_local_state(&presence("alice"), 0).unwrap(), 0);
    let leave = alice.set_local_state_json(None, 5).unwrap();
    assert!(leave.entries[0].is_removal());
    let c = bob.apply_update(&leave, 5);
    assert_eq!(c.removed, vec![1]);
    assert!(bob.state(1).is_none());
}

#[test]
fn hub_removal_on_disconnect_is_relayed_with_null() {
    let mut alice = Awareness::new(1);
    let mut hub = Awareness::new(0);
    let mut bob = Awareness::new(2);
    let u = alice.set_local_state(&presence("alice"), 0).unwrap();
    hub.apply_update(&u, 0);
    bob.apply_update(&u, 0);
    let c = hub.remove_states(&[1], 1);
    let relay = hub.encode(&c.removed);
    assert_eq!(&*relay.entries[0].state, "null");
    assert_eq!(bob.apply_update(&relay, 1).removed, vec![1]);
}

#[test]
fn remote_states_time_out_after_30_s_and_local_renews_at_15_s() {
    let mut alice = Awareness::new(1);
    let mut bob = Awareness::new(2);
    bob.set_local_state(&presence("bob"), 0).unwrap();
    bob.apply_update(&alice.set_local_state(&presence("alice"), 0).unwrap(), 0);
    let (c, renewal) = bob.expire(RENEW_INTERVAL_MS - 1);
    assert!(c.is_empty() && renewal.is_none());
    let (_, renewal) = bob.expire(RENEW_INTERVAL_MS);
    let renewal = renewal.expect("local state renewed");
    assert_eq!(renewal.entries[0].client_id, 2);
    assert_eq!(renewal.entries[0].clock, 2);
    let (c, _) = bob.expire(OUTDATED_TIMEOUT_MS);
    assert_eq!(c.removed, vec![1]);
    assert!(bob.state(2).is_some(), "own state never times out");
}

#[test]
fn a_peer_claiming_we_left_is_overridden() {
    let mut alice = Awareness::new(1);
    let mut hub = Awareness::new(0);
    hub.apply_update(&alice.set_local_state(&presence("alice"), 0).unwrap(), 0);
    let c = hub.remove_states(&[1], 1);
    let claim = hub.encode(&c.removed);
    let changes = alice.apply_update(&claim, 2);
    assert!(changes.removed.is_empty());
    assert!(alice.local_state().is_some());
    assert_eq!(alice.clock(1), Some(2), "clock bumped past the claim (1)");
}

#[test]
fn invalid_local_json_is_refused() {
    let mut a = Awareness::new(1);
    assert!(a.set_local_state_json(Some("{oops"), 0).is_err());
    assert!(a.local_state().is_none());
}

/// The removal of a client never seen is ignored without a trace: a hub recording the clock
/// of every id a peer names (as y-protocols does) could be filled by one frame of made-up
/// removals, which change nothing and are relayed to nobody.
#[test]
fn removals_of_clients_never_seen_leave_nothing_behind() {
    let mut hub = Awareness::new(0);
    let update = tandem_engine::AwarenessUpdate {
        entries: (1..=1000)
            .map(|client_id| tandem_engine::AwarenessEntry {
                client_id,
                clock: 1,
                state: "null".into(),
            })
            .collect(),
    };
    assert!(hub.apply_update(&update, 0).is_empty());
    assert!((1..=1000).all(|id| hub.clock(id).is_none()));
}

/// A departed client's clock outlives its state (so that its removal can still be relayed,
/// and a late older message cannot bring it back) and is then forgotten, so a hub does not
/// keep an entry for every client it ever met.
#[test]
fn a_departed_clients_clock_is_forgotten_a_minute_after_it_was_last_heard() {
    use tandem_engine::awareness::FORGET_AFTER_MS;
    let mut alice = Awareness::new(1);
    let mut carol = Awareness::new(3);
    let mut hub = Awareness::new(0);
    hub.apply_update(&alice.set_local_state(&presence("alice"), 0).unwrap(), 0);
    hub.apply_update(&carol.set_local_state(&presence("carol"), 0).unwrap(), 0);
    // Alice leaves at 5 s; Carol goes silent and times out.
    hub.apply_update(&alice.set_local_state_json(None, 5_000).unwrap(), 5_000);
    let (c, _) = hub.expire(OUTDATED_TIMEOUT_MS);
    assert_eq!(c.removed, vec![3]);
    assert_eq!(
        &*hub.encode(&[3]).entries[0].state,
        "null",
        "removal relayable"
    );
    hub.expire(FORGET_AFTER_MS - 1);
    assert_eq!((hub.clock(1), hub.clock(3)), (Some(2), Some(1)));
    hub.expire(FORGET_AFTER_MS);
    assert_eq!(hub.clock(3), None, "timed out a minute ago: forgotten");
    assert_eq!(hub.clock(1), Some(2), "left 55 s ago: kept");
    hub.expire(5_000 + FORGET_AFTER_MS);
    assert_eq!(hub.clock(1), None);
}

/// A client whose state was removed (its connection closed) and that publishes again is an
/// arrival, so a hub counts it among the clients of its new connection.
#[test]
fn a_client_back_after_its_state_was_removed_is_added_again() {
    let mut alice = Awareness::new(1);
    let mut hub = Awareness::new(0);
    hub.apply_update(&alice.set_local_state(&presence("alice"), 0).unwrap(), 0);
    hub.remove_states(&[1], 1);
    let back = alice.set_local_state(&presence("alice"), 2).unwrap();
    let c = hub.apply_update(&back, 2);
    assert_eq!(c.added, vec![1]);
    assert!(c.updated.is_empty());
}
