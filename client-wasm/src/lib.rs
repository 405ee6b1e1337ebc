//! # tandem-client
//!
//! Tandem's engine compiled to WebAssembly for browsers. This first cut exposes a shared
//! text document with the same UTF-16 offsets as `Y.Text`, and its sync primitives (state
//! vector, diff, apply), so a page can already hold a replica; the provider and editor
//! bindings build on it.

use tandem_engine::Document;
use wasm_bindgen::prelude::*;

/// A replica of one shared document, as seen from JavaScript.
#[wasm_bindgen]
pub struct Doc {
    inner: Document,
}

#[wasm_bindgen]
impl Doc {
    /// A new, empty replica of the document called `name`.
    #[wasm_bindgen(constructor)]
    pub fn new(name: &str) -> Doc {
        Doc {
            inner: Document::new(name),
        }
    }

    /// Inserts `chunk` into text root `root` at UTF-16 offset `index`.
    pub fn insert(&self, root: &str, index: u32, chunk: &str) -> Result<(), JsError> {
        let text = self.inner.text(root);
        self.inner
            .edit(|e| e.insert(&text, index, chunk))
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Deletes `len` UTF-16 code units of text root `root` at `index`.
    pub fn delete(&self, root: &str, index: u32, len: u32) -> Result<(), JsError> {
        let text = self.inner.text(root);
        self.inner
            .edit(|e| e.delete(&text, index, len))
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The plain content of text root `root`.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_string(&self, root: &str) -> String {
        self.inner.text_string(root)
    }

    /// This replica's state vector (v1), to ask a peer for what is missing.
    #[wasm_bindgen(js_name = encodeStateVector)]
    pub fn encode_state_vector(&self) -> Vec<u8> {
        self.inner.state_vector_v1()
    }

    /// Everything the peer with `state_vector` lacks, as a v1 update.
    #[wasm_bindgen(js_name = encodeDiff)]
    pub fn encode_diff(&self, state_vector: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inner
            .diff_v1(state_vector)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Applies a v1 update from a peer.
    #[wasm_bindgen(js_name = applyUpdate)]
    pub fn apply_update(&self, update: &[u8]) -> Result<(), JsError> {
        self.inner
            .apply_update_v1(update)
            .map(|_| ())
            .map_err(|e| JsError::new(&e.to_string()))
    }
}
