//! Presence ("awareness"): who is here, their name and colour, where their cursor is.
//!
//! Semantics follow y-protocols' `awareness.js` exactly — the higher clock wins, a `null`
//! state at an equal clock removes, a client renews its own state every 15 s and a remote
//! state not renewed for 30 s is dropped — so states relay unchanged between this engine
//! and stock Yjs clients. Unlike `yrs::sync::Awareness`, time is an argument (`now_ms`)
//! rather than read from the system clock: the engine does no I/O, runs on
//! `wasm32-unknown-unknown` (where `SystemTime::now` panics) and tests can move time.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::protocol::codec::{AwarenessEntry, AwarenessUpdate};

/// A remote state not renewed for this long is considered gone (y-protocols' value).
pub const OUTDATED_TIMEOUT_MS: u64 = 30_000;

/// A peer renews its own state when it is this old, well before others time it out.
pub const RENEW_INTERVAL_MS: u64 = OUTDATED_TIMEOUT_MS / 2;

/// The clock of a client whose state is gone is forgotten once the client was last heard
/// of this long ago: at least 30 s after its state timed out, long after anyone relaying
/// its removal (which is encoded from the clock) has done so.
pub const FORGET_AFTER_MS: u64 = 2 * OUTDATED_TIMEOUT_MS;

#[derive(Debug, Clone)]
struct Meta {
    clock: u64,
    last_updated_ms: u64,
}

/// Which clients appeared, changed or left in one awareness operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwarenessChanges {
    /// Clients seen for the first time (or again after leaving).
    pub added: Vec<u64>,
    /// Clients whose state was renewed; see [`AwarenessChanges::changed`] for real changes.
    pub updated: Vec<u64>,
    /// Clients whose state changed content (a subset of `updated`).
    pub changed: Vec<u64>,
    /// Clients that left or timed out.
    pub removed: Vec<u64>,
}

impl AwarenessChanges {
    /// Whether nothing happened at all (not even a renewal).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }

    /// Every client touched, in the order y-protocols relays them (added, updated, removed).
    pub fn all(&self) -> impl Iterator<Item = u64> + '_ {
        self.added
            .iter()
            .chain(&self.updated)
            .chain(&self.removed)
            .copied()
    }
}

/// The awareness states of one document as seen by one peer.
#[derive(Debug, Clone)]
pub struct Awareness {
    client_id: u64,
    states: HashMap<u64, Arc<str>>,
    meta: HashMap<u64, Meta>,
}

impl Awareness {
    /// Awareness for the peer whose document has client id `client_id`. The local state
    /// starts empty (`null`), which is what a server keeps for itself.
    pub fn new(client_id: u64) -> Self {
        Self {
            client_id,
            states: HashMap::new(),
            meta: HashMap::new(),
        }
    }

    /// The local client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The local state as JSON text, if set.
    pub fn local_state(&self) -> Option<&str> {
        self.states.get(&self.client_id).map(|s| &**s)
    }

    /// Sets (or with `None` clears) the local state as JSON text and returns the update to
    /// send to peers. Fails if `json` is not valid JSON.
    pub fn set_local_state_json(
        &mut self,
        json: Option<&str>,
        now_ms: u64,
    ) -> Result<AwarenessUpdate, serde_json::Error> {
        if let Some(json) = json {
            serde_json::from_str::<serde::de::IgnoredAny>(json)?;
        }
        let id = self.client_id;
        // y-protocols' constructor publishes `{}` at clock 0, so a client's first real state
        // is at clock 1; peers ignore a first state at clock 0 (`0 < 0` is false).
        let clock = self.meta.get(&id).map_or(1, |m| m.clock + 1);
        match json {
            Some(json) => {
                self.states.insert(id, Arc::from(json));
            }
            None => {
                self.states.remove(&id);
            }
        }
        self.meta.insert(
            id,
            Meta {
                clock,
                last_updated_ms: now_ms,
            },
        );
        Ok(self.encode(&[id]))
    }

    /// Sets the local state from a serialisable value (usually a [`Presence`]).
    pub fn set_local_state<S: Serialize>(
        &mut self,
        state: &S,
        now_ms: u64,
    ) -> Result<AwarenessUpdate, serde_json::Error> {
        let json = serde_json::to_string(state)?;
        self.set_local_state_json(Some(&json), now_ms)
    }

    /// The state of `client_id` as JSON text, if known.
    pub fn state(&self, client_id: u64) -> Option<&str> {
        self.states.get(&client_id).map(|s| &**s)
    }

    /// The state of `client_id` parsed into `T` (e.g. [`Presence`]); `None` if absent or of
    /// another shape.
    pub fn state_as<T: for<'de> Deserialize<'de>>(&self, client_id: u64) -> Option<T> {
        self.state(client_id)
            .and_then(|s| serde_json::from_str(s).ok())
    }

    /// The clock last seen for `client_id`.
    pub fn clock(&self, client_id: u64) -> Option<u64> {
        self.meta.get(&client_id).map(|m| m.clock)
    }

    /// Every known state (client id, JSON text), the local one included.
    pub fn states(&self) -> impl Iterator<Item = (u64, &str)> {
        self.states.iter().map(|(id, s)| (*id, &**s))
    }

    /// Number of clients with a state.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no client has a state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Applies an update received from a peer (y-protocols' `applyAwarenessUpdate`).
    pub fn apply_update(&mut self, update: &AwarenessUpdate, now_ms: u64) -> AwarenessChanges {
        let mut changes = AwarenessChanges::default();
        for entry in &update.entries {
            let id = entry.client_id;
            let current_clock = self.meta.get(&id).map_or(0, |m| m.clock);
            let known = self.states.contains_key(&id);
            let removal = entry.is_removal();
            if !(current_clock < entry.clock || (current_clock == entry.clock && removal && known))
            {
                continue;
            }
            let mut clock = entry.clock;
            let had_meta = self.meta.contains_key(&id);
            if removal && !had_meta {
                // The removal of a client never seen changes nothing. y-protocols records
                // its clock all the same; a hub that did would keep an entry for every id a
                // peer names, so one frame of made-up removals (nine bytes each, relayed to
                // nobody) could fill its memory.
                continue;
            }
            if removal {
                if id == self.client_id && self.local_state().is_some() {
                    // Someone claims we left; we did not: override with a higher clock.
                    clock += 1;
                } else {
                    self.states.remove(&id);
                    if had_meta {
                        changes.removed.push(id);
                    }
                }
            } else {
                let previous = self.states.insert(id, entry.state.clone());
                // A state for a client whose state is gone (it left or timed out, and came
                // back with a newer clock: its renewal after a reconnect) is an arrival,
                // as for a client never seen. y-protocols calls it an update, so a hub
                // would not count it among the clients the connection controls, and
                // never remove it when that connection closes.
                if !had_meta || previous.is_none() {
                    changes.added.push(id);
                } else {
                    changes.updated.push(id);
                    if previous.as_ref() != Some(&entry.state) {
                        changes.changed.push(id);
                    }
                }
            }
            self.meta.insert(
                id,
                Meta {
                    clock,
                    last_updated_ms: now_ms,
                },
            );
        }
        changes
    }

    /// Removes the states of `clients` (they disconnected) and returns what changed. The
    /// update announcing it is [`Awareness::encode`] of `changes.removed`.
    pub fn remove_states(&mut self, clients: &[u64], now_ms: u64) -> AwarenessChanges {
        let mut changes = AwarenessChanges::default();
        for &id in clients {
            if self.states.remove(&id).is_some() {
                if id == self.client_id {
                    if let Some(meta) = self.meta.get_mut(&id) {
                        meta.clock += 1;
                        meta.last_updated_ms = now_ms;
                    }
                }
                changes.removed.push(id);
            }
        }
        changes
    }

    /// Periodic housekeeping (y-protocols runs it every 3 s): drops remote states older
    /// than 30 s and renews the local state when it is 15 s old. Returns what was removed
    /// and, if the local state was renewed, the update to send.
    ///
    /// It also forgets the clocks of clients whose state is gone and that were last heard
    /// of [`FORGET_AFTER_MS`] ago (y-protocols keeps them for ever). A clock outlives its
    /// state so that a late, older message cannot bring a departed client back, and so
    /// that the removal can still be encoded; a minute later neither is pending, and a hub
    /// meeting thousands of clients over its life must not keep an entry for each. A
    /// client returning after that is seen as new.
    pub fn expire(&mut self, now_ms: u64) -> (AwarenessChanges, Option<AwarenessUpdate>) {
        let mut renewal = None;
        let local = self.client_id;
        if let (Some(state), Some(meta)) = (self.states.get(&local), self.meta.get(&local)) {
            if now_ms.saturating_sub(meta.last_updated_ms) >= RENEW_INTERVAL_MS {
                let state = state.clone();
                renewal = self.set_local_state_json(Some(&state), now_ms).ok();
            }
        }
        let outdated: Vec<u64> = self
            .meta
            .iter()
            .filter(|(id, m)| {
                **id != local
                    && now_ms.saturating_sub(m.last_updated_ms) >= OUTDATED_TIMEOUT_MS
                    && self.states.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        let changes = self.remove_states(&outdated, now_ms);
        // Not the clocks of states removed just now: their removal is encoded from them,
        // perhaps later (a hub batches presence).
        let states = &self.states;
        self.meta.retain(|id, m| {
            *id == local
                || states.contains_key(id)
                || changes.removed.contains(id)
                || now_ms.saturating_sub(m.last_updated_ms) < FORGET_AFTER_MS
        });
        (changes, renewal)
    }

    /// The update describing `clients` as currently known (state `null` for removed ones),
    /// in the given order — what y-protocols' `encodeAwarenessUpdate` produces.
    pub fn encode(&self, clients: &[u64]) -> AwarenessUpdate {
        AwarenessUpdate {
            entries: clients
                .iter()
                .filter_map(|id| {
                    let meta = self.meta.get(id)?;
                    Some(AwarenessEntry {
                        client_id: *id,
                        clock: meta.clock,
                        state: self
                            .states
                            .get(id)
                            .cloned()
                            .unwrap_or_else(|| Arc::from("null")),
                    })
                })
                .collect(),
        }
    }

    /// The update holding every known state: what a new peer is sent on connect.
    pub fn encode_all(&self) -> AwarenessUpdate {
        let mut ids: Vec<u64> = self.states.keys().copied().collect();
        ids.sort_unstable();
        self.encode(&ids)
    }
}

/// The presence state Tandem clients publish, in the shape y-websocket-based editors use
/// (`user: {name, color}`, plus a `cursor` with relative positions as y-codemirror and
/// y-prosemirror do), so stock editors show Tandem users and vice versa.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// Who this is.
    pub user: User,
    /// Online or away.
    #[serde(default)]
    pub status: Status,
    /// The caret and selection, as relative positions (JSON of [`crate::cursor::Cursor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Value>,
}

/// A user as shown next to their caret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Display name.
    pub name: String,
    /// CSS colour of the caret and name tag.
    pub color: String,
}

/// Whether the user is at the keyboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Active in the document.
    #[default]
    Online,
    /// Tab hidden or idle.
    Away,
}
