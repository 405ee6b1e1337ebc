//! [`Doc`]: one replica of a shared document in the page, and the observer keys every
//! listener registers under.

use std::cell::Cell;

use tandem_engine::Document;
use wasm_bindgen::prelude::*;

use crate::collections::{Array, Map};
use crate::js::{call, defer, js_err};
use crate::text::Text;

thread_local! {
    static NEXT_KEY: Cell<u64> = const { Cell::new(1) };
}

/// A process-unique observer key (`prefix-N`), so listeners can be removed one by one.
pub(crate) fn observer_key(prefix: &str) -> String {
    let n = NEXT_KEY.with(|k| {
        let n = k.get();
        k.set(n + 1);
        n
    });
    format!("{prefix}-{n}")
}

/// A replica of one shared document. Text offsets are UTF-16 code units, as in `Y.Text`
/// and the DOM.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Doc {
    pub(crate) inner: Document,
}

#[wasm_bindgen]
impl Doc {
    /// A new, empty replica (the name is informative: the provider decides which document
    /// it syncs with).
    #[wasm_bindgen(constructor)]
    pub fn new(name: Option<String>) -> Doc {
        Doc {
            inner: Document::new(name.unwrap_or_default()),
        }
    }

    /// This replica's client id, as it appears in updates and awareness.
    #[wasm_bindgen(getter, js_name = clientID)]
    pub fn client_id(&self) -> f64 {
        self.inner.client_id() as f64
    }

    /// The shared text root `name` (`ydoc.getText(name)`).
    #[wasm_bindgen(js_name = getText)]
    pub fn get_text(&self, name: &str) -> Text {
        Text::new(self.inner.clone(), name)
    }

    /// The shared map root `name` (`ydoc.getMap(name)`).
    #[wasm_bindgen(js_name = getMap)]
    pub fn get_map(&self, name: &str) -> Map {
        Map::new(self.inner.clone(), name)
    }

    /// The shared array root `name` (`ydoc.getArray(name)`).
    #[wasm_bindgen(js_name = getArray)]
    pub fn get_array(&self, name: &str) -> Array {
        Array::new(self.inner.clone(), name)
    }

    /// The state vector (v1): what this replica has seen.
    #[wasm_bindgen(js_name = encodeStateVector)]
    pub fn encode_state_vector(&self) -> Vec<u8> {
        self.inner.state_vector_v1()
    }

    /// Everything the replica with `state_vector` lacks (everything, without one), as one
    /// v1 update.
    #[wasm_bindgen(js_name = encodeStateAsUpdate)]
    pub fn encode_state_as_update(
        &self,
        state_vector: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, JsError> {
        match state_vector {
            Some(sv) => self.inner.diff_v1(&sv).map_err(js_err),
            None => Ok(self.inner.snapshot_v1()),
        }
    }

    /// Applies a v1 update from a peer.
    #[wasm_bindgen(js_name = applyUpdate)]
    pub fn apply_update(&self, update: &[u8]) -> Result<(), JsError> {
        self.inner
            .apply_update_v1(update)
            .map(|_| ())
            .map_err(js_err)
    }

    /// Calls `f(update, isRemote)` after every change, with its v1 update. Returns a key for
    /// [`Doc::off_update`].
    #[wasm_bindgen(js_name = onUpdate)]
    pub fn on_update(&self, f: js_sys::Function) -> String {
        let key = observer_key("update");
        self.inner
            .observe_updates(key.as_str(), move |update, remote| {
                let update = js_sys::Uint8Array::from(update);
                let f = f.clone();
                defer(move || call(&f, &[update.into(), remote.into()]));
            });
        key
    }

    /// Removes a listener added by [`Doc::on_update`].
    #[wasm_bindgen(js_name = offUpdate)]
    pub fn off_update(&self, key: &str) -> bool {
        self.inner.unobserve_updates(key)
    }
}
