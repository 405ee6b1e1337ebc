//! [`UndoManager`]: undo and redo of this replica's own edits. Remote changes are applied
//! under the engine's remote origin, which the manager does not track, so undo never
//! reverts what a collaborator typed.

use std::collections::HashSet;
use std::sync::Arc;

use tandem_engine::yrs::undo::Options;
use wasm_bindgen::prelude::*;

use crate::text::Text;

/// Undo/redo of local edits to one text.
#[wasm_bindgen]
pub struct UndoManager {
    inner: tandem_engine::yrs::UndoManager,
}

#[wasm_bindgen]
impl UndoManager {
    /// Tracks local edits of `text`. Edits less than `captureTimeout` ms apart (default 500)
    /// form one undo step, as in Yjs.
    #[wasm_bindgen(constructor)]
    pub fn new(text: &Text, capture_timeout: Option<u32>) -> UndoManager {
        let options = Options {
            capture_timeout_millis: capture_timeout.unwrap_or(500) as u64,
            tracked_origins: HashSet::new(),
            capture_transaction: None,
            // yrs' default clock reads SystemTime, which panics in browsers.
            timestamp: Arc::new(|| js_sys::Date::now() as u64),
            init_undo_stack: Vec::new(),
            init_redo_stack: Vec::new(),
        };
        let mut inner = tandem_engine::yrs::UndoManager::with_options(options);
        inner.expand_scope(text.doc.doc(), &text.text);
        UndoManager { inner }
    }

    /// Reverts the last local step; returns whether anything changed.
    pub fn undo(&mut self) -> bool {
        self.inner.undo_blocking()
    }

    /// Re-applies the last undone step; returns whether anything changed.
    pub fn redo(&mut self) -> bool {
        self.inner.redo_blocking()
    }

    /// Whether there is a step to undo.
    #[wasm_bindgen(js_name = canUndo)]
    pub fn can_undo(&self) -> bool {
        self.inner.can_undo()
    }

    /// Whether there is a step to redo.
    #[wasm_bindgen(js_name = canRedo)]
    pub fn can_redo(&self) -> bool {
        self.inner.can_redo()
    }

    /// Ends the current step: the next edit starts a new one.
    #[wasm_bindgen(js_name = stopCapturing)]
    pub fn stop_capturing(&mut self) {
        self.inner.reset();
    }
}
