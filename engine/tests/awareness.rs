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
