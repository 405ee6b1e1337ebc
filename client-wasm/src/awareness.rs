//! [`Awareness`]: presence (who is here, their name, colour and cursor), shared between the
//! page and the provider. States are JSON, exactly as y-protocols relays them, so Tandem
//! clients and stock Yjs clients see each other.

use std::cell::RefCell;
use std::rc::Rc;

use tandem_engine::{AwarenessChanges, AwarenessUpdate};
use wasm_bindgen::prelude::*;

use crate::doc::Doc;
use crate::js::{call, defer, js_err, now_ms, to_js};

type Outgoing = Box<dyn Fn(&AwarenessUpdate)>;
type Watcher = Rc<dyn Fn()>;

/// The state behind every handle on one replica's presence.
pub(crate) struct AwarenessHub {
    pub(crate) state: RefCell<tandem_engine::Awareness>,
    listeners: RefCell<Vec<(u32, js_sys::Function)>>,
    next_listener: std::cell::Cell<u32>,
    /// Where local changes go (the provider, once connected).
    outgoing: RefCell<Option<Outgoing>>,
    /// Rust-side listeners (editor bindings redrawing carets).
    watchers: RefCell<Vec<(u32, Watcher)>>,
}

impl AwarenessHub {
    /// Tells listeners what changed (`origin` is `"local"` or `"remote"`).
    pub(crate) fn notify(self: &Rc<Self>, changes: &AwarenessChanges, origin: &'static str) {
        if changes.is_empty() {
            return;
        }
        let payload = js_sys::Object::new();
        for (key, ids) in [
            ("added", &changes.added),
            ("updated", &changes.updated),
            ("removed", &changes.removed),
        ] {
            let array: js_sys::Array = ids.iter().map(|id| JsValue::from(*id as f64)).collect();
            let _ = js_sys::Reflect::set(&payload, &key.into(), &array);
        }
        let listeners: Vec<js_sys::Function> = self
            .listeners
            .borrow()
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        let watchers: Vec<Watcher> = self
            .watchers
            .borrow()
            .iter()
            .map(|(_, w)| w.clone())
            .collect();
        defer(move || {
            for f in listeners {
                call(&f, &[payload.clone().into(), origin.into()]);
            }
            for w in watchers {
                w();
            }
        });
    }

    /// Calls `f` (in a microtask) after every change; returns a key for [`Self::unwatch`].
    pub(crate) fn watch(&self, f: Watcher) -> u32 {
        let id = self.next_listener.get();
        self.next_listener.set(id + 1);
        self.watchers.borrow_mut().push((id, f));
        id
    }

    /// Removes a watcher added by [`Self::watch`].
    pub(crate) fn unwatch(&self, key: u32) {
        self.watchers.borrow_mut().retain(|(id, _)| *id != key);
    }

    /// Changes one field of our state (a JSON object), publishing the result.
    pub(crate) fn set_local_field(self: &Rc<Self>, field: &str, value: serde_json::Value) {
        let (update, changes) = {
            let mut aw = self.state.borrow_mut();
            let id = aw.client_id();
            let mut state: serde_json::Map<String, serde_json::Value> = aw
                .local_state()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let existed = aw.local_state().is_some();
            if state.get(field) == Some(&value) {
                return;
            }
            state.insert(field.to_owned(), value);
            let json = serde_json::Value::Object(state).to_string();
            let Ok(update) = aw.set_local_state_json(Some(&json), now_ms()) else {
                return;
            };
            let mut changes = AwarenessChanges::default();
            if existed {
                changes.updated.push(id);
                changes.changed.push(id);
            } else {
                changes.added.push(id);
            }
            (update, changes)
        };
        self.publish(update, changes);
    }

    /// Sets where local changes are sent (the provider), or stops sending them.
    pub(crate) fn set_outgoing(&self, outgoing: Option<Outgoing>) {
        *self.outgoing.borrow_mut() = outgoing;
    }

    /// Publishes a local change: to the provider and to listeners.
    pub(crate) fn publish(self: &Rc<Self>, update: AwarenessUpdate, changes: AwarenessChanges) {
        if let Some(out) = self.outgoing.borrow().as_ref() {
            out(&update);
        }
        self.notify(&changes, "local");
    }
}

/// The presence of everyone on one document, as seen by this replica.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Awareness {
    pub(crate) hub: Rc<AwarenessHub>,
}

#[wasm_bindgen]
impl Awareness {
    /// Presence for the replica `doc` (its client id identifies our state).
    #[wasm_bindgen(constructor)]
    pub fn new(doc: &Doc) -> Awareness {
        Awareness {
            hub: Rc::new(AwarenessHub {
                state: RefCell::new(tandem_engine::Awareness::new(doc.inner.client_id())),
                listeners: RefCell::new(Vec::new()),
                next_listener: std::cell::Cell::new(1),
                outgoing: RefCell::new(None),
                watchers: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Our client id.
    #[wasm_bindgen(getter, js_name = clientID)]
    pub fn client_id(&self) -> f64 {
        self.hub.state.borrow().client_id() as f64
    }

    /// Sets our state (any JSON-serialisable object), or clears it with `null`.
    #[wasm_bindgen(js_name = setLocalState)]
    pub fn set_local_state(&self, state: JsValue) -> Result<(), JsError> {
        let json = if state.is_null() || state.is_undefined() {
            None
        } else {
            Some(String::from(
                js_sys::JSON::stringify(&state).map_err(|_| JsError::new("state is not JSON"))?,
            ))
        };
        let (update, changes) = {
            let mut aw = self.hub.state.borrow_mut();
            let id = aw.client_id();
            let existed = aw.local_state().is_some();
            let update = aw
                .set_local_state_json(json.as_deref(), now_ms())
                .map_err(js_err)?;
            let mut changes = AwarenessChanges::default();
            match (existed, json.is_some()) {
                (false, true) => changes.added.push(id),
                (true, true) => {
                    changes.updated.push(id);
                    changes.changed.push(id);
                }
                (true, false) => changes.removed.push(id),
                (false, false) => {}
            }
            (update, changes)
        };
        self.hub.publish(update, changes);
        Ok(())
    }

    /// Sets one field of our state (`setLocalStateField('cursor', …)`).
    #[wasm_bindgen(js_name = setLocalStateField)]
    pub fn set_local_state_field(&self, field: &str, value: JsValue) -> Result<(), JsError> {
        let state = match self.get_local_state()? {
            s if s.is_object() => s,
            _ => js_sys::Object::new().into(),
        };
        js_sys::Reflect::set(&state, &field.into(), &value)
            .map_err(|_| JsError::new("cannot set field"))?;
        self.set_local_state(state)
    }

    /// Our state (`null` if none).
    #[wasm_bindgen(js_name = getLocalState)]
    pub fn get_local_state(&self) -> Result<JsValue, JsError> {
        match self.hub.state.borrow().local_state() {
            Some(json) => js_sys::JSON::parse(json).map_err(|_| JsError::new("corrupt state")),
            None => Ok(JsValue::NULL),
        }
    }

    /// Every known state: a `Map` from client id to state object (ours included).
    #[wasm_bindgen(js_name = getStates)]
    pub fn get_states(&self) -> js_sys::Map {
        let map = js_sys::Map::new();
        for (id, json) in self.hub.state.borrow().states() {
            if let Ok(value) = js_sys::JSON::parse(json) {
                map.set(&JsValue::from(id as f64), &value);
            }
        }
        map
    }

    /// Calls `f({added, updated, removed}, origin)` after every change (`origin` is
    /// `"local"` or `"remote"`). Returns a key for [`Awareness::off`].
    pub fn on(&self, f: js_sys::Function) -> u32 {
        let id = self.hub.next_listener.get();
        self.hub.next_listener.set(id + 1);
        self.hub.listeners.borrow_mut().push((id, f));
        id
    }

    /// Removes a listener added by [`Awareness::on`].
    pub fn off(&self, key: u32) {
        self.hub.listeners.borrow_mut().retain(|(id, _)| *id != key);
    }

    /// The ids of every client with a state, for tests and presence lists.
    #[wasm_bindgen(js_name = clientIds)]
    pub fn client_ids(&self) -> Result<JsValue, JsError> {
        let ids: Vec<u64> = self.hub.state.borrow().states().map(|(id, _)| id).collect();
        to_js(&ids)
    }
}
