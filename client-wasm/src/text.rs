//! [`Text`]: a shared text root, with Quill-style deltas, formatting and relative cursors.

use tandem_engine::yrs::TextRef;
use tandem_engine::{Attributes, Cursor, Document};
use wasm_bindgen::prelude::*;

use crate::doc::observer_key;
use crate::js::{call, defer, from_js, js_err, to_js};

/// A shared text (`Y.Text`). Offsets and lengths are UTF-16 code units.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Text {
    pub(crate) doc: Document,
    pub(crate) name: String,
    pub(crate) text: TextRef,
}

impl Text {
    pub(crate) fn new(doc: Document, name: &str) -> Text {
        Text {
            text: doc.text(name),
            name: name.to_owned(),
            doc,
        }
    }
}

fn attributes(value: JsValue) -> Result<Option<Attributes>, JsError> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    from_js(value).map(Some)
}

#[wasm_bindgen]
impl Text {
    /// Inserts `chunk` at `index`, formatted with `attributes` if given (`{bold: true}`).
    pub fn insert(&self, index: u32, chunk: &str, attributes: JsValue) -> Result<(), JsError> {
        let attrs = self::attributes(attributes)?;
        self.doc
            .edit(|e| match attrs {
                Some(a) => e.insert_formatted(&self.text, index, chunk, a),
                None => e.insert(&self.text, index, chunk),
            })
            .map_err(js_err)
    }

    /// Deletes `length` code units at `index`.
    pub fn delete(&self, index: u32, length: u32) -> Result<(), JsError> {
        self.doc
            .edit(|e| e.delete(&self.text, index, length))
            .map_err(js_err)
    }

    /// Formats `length` code units at `index` (`null` removes an attribute).
    pub fn format(&self, index: u32, length: u32, attributes: JsValue) -> Result<(), JsError> {
        let attrs = self::attributes(attributes)?.unwrap_or_default();
        self.doc
            .edit(|e| e.format(&self.text, index, length, attrs))
            .map_err(js_err)
    }

    /// Replaces `length` code units at `index` with `chunk` in one change (one undo step,
    /// one update on the wire): what an editor binding sends for a keystroke over a
    /// selection.
    pub fn replace(&self, index: u32, length: u32, chunk: &str) -> Result<(), JsError> {
        self.doc
            .edit(|e| {
                e.delete(&self.text, index, length)?;
                if chunk.is_empty() {
                    Ok(())
                } else {
                    e.insert(&self.text, index, chunk)
                }
            })
            .map_err(js_err)
    }

    /// The plain content.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_string_js(&self) -> String {
        self.doc.text_string(&self.name)
    }

    /// The content with formatting, as delta operations (`[{insert, attributes}]`).
    #[wasm_bindgen(js_name = toDelta)]
    pub fn to_delta(&self) -> Result<JsValue, JsError> {
        to_js(&self.doc.text_delta(&self.name))
    }

    /// Length in UTF-16 code units.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        use tandem_engine::yrs::Text as _;
        self.text.len(&self.doc.read())
    }

    /// Calls `f(delta, isRemote)` after every change (local or remote). Returns a key for
    /// [`Text::unobserve`].
    pub fn observe(&self, f: js_sys::Function) -> String {
        let key = observer_key("text");
        self.doc
            .observe_text(&self.name, key.as_str(), move |deltas, remote| {
                let f = f.clone();
                match to_js(deltas) {
                    Ok(delta) => defer(move || call(&f, &[delta, remote.into()])),
                    Err(e) => web_sys::console::error_1(&JsValue::from(e)),
                }
            });
        key
    }

    /// Removes an observer added by [`Text::observe`].
    pub fn unobserve(&self, key: &str) -> bool {
        self.doc.unobserve_text(&self.name, key)
    }

    /// A selection from `anchor` to `head` (a caret when `head` is omitted) as relative
    /// positions that survive concurrent edits (Yjs' `relativePositionToJSON` shape, the
    /// `cursor` field editors put in awareness).
    #[wasm_bindgen(js_name = relativeCursor)]
    pub fn relative_cursor(&self, anchor: u32, head: Option<u32>) -> Result<JsValue, JsError> {
        let cursor =
            Cursor::from_offsets(&self.doc.read(), &self.text, anchor, head.unwrap_or(anchor))
                .map_err(js_err)?;
        to_js(&cursor)
    }

    /// The current `[anchor, head]` offsets of a relative cursor, or `undefined` if it
    /// points at content this replica has not received yet.
    #[wasm_bindgen(js_name = cursorOffsets)]
    pub fn cursor_offsets(&self, cursor: JsValue) -> Result<Option<Vec<u32>>, JsError> {
        let cursor: Cursor = from_js(cursor)?;
        Ok(cursor.offsets(&self.doc.read()).map(|(a, h)| vec![a, h]))
    }
}
