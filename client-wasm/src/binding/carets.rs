//! What both editor bindings need of presence: publishing our selection as relative
//! positions, resolving everyone else's to offsets, and the small DOM pieces that draw a
//! remote caret with its name tag.

use std::cell::Cell;
use std::rc::Rc;

use tandem_engine::Cursor;
use wasm_bindgen::prelude::*;
use web_sys::{Document, HtmlElement};

use crate::awareness::AwarenessHub;
use crate::text::Text;

/// A collaborator's selection, resolved against our replica.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCursor {
    /// Their client id.
    pub client: u64,
    /// Name shown on the tag.
    pub name: String,
    /// CSS colour of caret, tag and selection.
    pub color: String,
    /// Selection start (where it was anchored), UTF-16.
    pub anchor: u32,
    /// Caret position, UTF-16.
    pub head: u32,
}

impl RemoteCursor {
    /// The selected range, ordered.
    pub fn range(&self) -> (u32, u32) {
        (self.anchor.min(self.head), self.anchor.max(self.head))
    }
}

/// A fallback colour per client, for states that name none.
fn color_of(client: u64) -> String {
    const PALETTE: [&str; 8] = [
        "#30bced", "#6eeb83", "#ffbc42", "#ecd444", "#ee6352", "#9ac2c9", "#8acb88", "#1be7ff",
    ];
    PALETTE[(client % PALETTE.len() as u64) as usize].to_owned()
}

/// Every other client's cursor on `text`, resolved to current offsets (cursors pointing at
/// content we have not received yet are left out).
pub(crate) fn remote_cursors(hub: &AwarenessHub, text: &Text) -> Vec<RemoteCursor> {
    let aw = hub.state.borrow();
    let me = aw.client_id();
    let txn = text.doc.read();
    let mut out: Vec<RemoteCursor> = aw
        .states()
        .filter(|(id, _)| *id != me)
        .filter_map(|(client, json)| {
            let state: serde_json::Value = serde_json::from_str(json).ok()?;
            let cursor: Cursor = serde_json::from_value(state.get("cursor")?.clone()).ok()?;
            let (anchor, head) = cursor.offsets(&txn)?;
            let user = &state["user"];
            Some(RemoteCursor {
                client,
                name: user["name"].as_str().unwrap_or("anonymous").to_owned(),
                color: user["color"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| color_of(client)),
                anchor,
                head,
            })
        })
        .collect();
    out.sort_by_key(|c| c.client);
    out
}

/// Publishes our selection (`anchor`..`head`) as the `cursor` field of our presence, if it
/// moved since the last call.
pub(crate) fn publish_cursor(
    hub: &Rc<AwarenessHub>,
    text: &Text,
    sel: (u32, u32),
    last: &Cell<Option<(u32, u32)>>,
) {
    if last.get() == Some(sel) {
        return;
    }
    let cursor = match Cursor::from_offsets(&text.doc.read(), &text.text, sel.0, sel.1) {
        Ok(c) => c,
        Err(_) => return,
    };
    if let Ok(value) = serde_json::to_value(&cursor) {
        last.set(Some(sel));
        hub.set_local_field("cursor", value);
    }
}

/// A zero-width caret with a name tag, to be placed inline (textarea overlay) or
/// absolutely (contenteditable).
pub fn caret_element(document: &Document, cursor: &RemoteCursor) -> Result<HtmlElement, JsValue> {
    let caret: HtmlElement = document.create_element("span")?.unchecked_into();
    caret.set_class_name("tandem-caret");
    caret.set_attribute("data-client", &cursor.client.to_string())?;
    caret.set_attribute("data-offset", &cursor.head.to_string())?;
    caret.set_attribute("data-name", &cursor.name)?;
    let style = caret.style();
    style.set_property("border-left", &format!("2px solid {}", cursor.color))?;
    style.set_property("margin-left", "-1px")?;
    style.set_property("margin-right", "-1px")?;
    style.set_property("position", "relative")?;
    let tag: HtmlElement = document.create_element("span")?.unchecked_into();
    tag.set_class_name("tandem-caret-name");
    tag.set_text_content(Some(&cursor.name));
    let tag_style = tag.style();
    for (k, v) in [
        ("position", "absolute"),
        ("left", "-2px"),
        ("bottom", "100%"),
        ("font", "bold 11px/1.4 system-ui, sans-serif"),
        ("color", "white"),
        ("padding", "0 4px"),
        ("border-radius", "3px 3px 3px 0"),
        ("white-space", "nowrap"),
        ("user-select", "none"),
    ] {
        tag_style.set_property(k, v)?;
    }
    tag_style.set_property("background", &cursor.color)?;
    caret.append_child(&tag)?;
    Ok(caret)
}

/// A translucent version of a CSS colour for selections (`#rrggbb` gets 30 % alpha).
pub fn selection_color(color: &str) -> String {
    if color.starts_with('#') && color.len() == 7 {
        format!("{color}4d")
    } else {
        color.to_owned()
    }
}
