//! [`ContentEditableBinding`]: a plain-text `contenteditable` element bound to a shared
//! text. The element holds one text node; typing becomes the minimal edit, remote changes
//! rewrite the node and restore the local selection on the same text, and remote carets
//! and selections are absolutely positioned boxes measured with DOM ranges.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{EventTarget, HtmlElement, Node};

use super::carets::{caret_element, remote_cursors, selection_color};
use super::diff::apply_delta;
use super::shared::{utf16, Editor, Shared};
use crate::awareness::Awareness;
use crate::js::window;
use crate::text::Text;

struct Inner {
    shared: Shared,
    el: HtmlElement,
    layer: HtmlElement,
}

/// Binds a contenteditable element to a [`Text`] as plain text.
#[wasm_bindgen]
pub struct ContentEditableBinding {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl ContentEditableBinding {
    /// Makes `element` a plain-text editor of `text`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        text: &Text,
        element: HtmlElement,
        awareness: &Awareness,
    ) -> Result<ContentEditableBinding, JsError> {
        let document = window()?
            .document()
            .ok_or_else(|| JsError::new("no document"))?;
        let _ = element.set_attribute("contenteditable", "plaintext-only");
        let _ = element.style().set_property("white-space", "pre-wrap");
        let value = text.to_string_js();
        element.set_text_content(Some(&value));
        let layer: HtmlElement = document
            .create_element("div")
            .map_err(|_| JsError::new("dom"))?
            .unchecked_into();
        layer.set_class_name("tandem-carets");
        for (k, v) in [
            ("position", "absolute"),
            ("top", "0"),
            ("left", "0"),
            ("pointer-events", "none"),
        ] {
            let _ = layer.style().set_property(k, v);
        }
        let _ = document.body().map(|b| b.append_child(&layer));
        let inner = Rc::new(Inner {
            shared: Shared::new(text, awareness.hub.clone(), "contenteditable", &value),
            el: element,
            layer,
        });
        inner.attach();
        crate::keepalive::hold(&inner);
        Ok(ContentEditableBinding { inner })
    }

    /// Unbinds: the element keeps its content and stops syncing.
    pub fn destroy(&self) {
        self.inner.detach();
        crate::keepalive::release(&self.inner);
    }
}

impl Inner {
    fn attach(self: &Rc<Self>) {
        Shared::attach(self);
        let Ok(w) = window() else { return };
        let Some(document) = w.document() else { return };
        let el: EventTarget = self.el.clone().unchecked_into();
        let doc: EventTarget = document.unchecked_into();
        let win: EventTarget = w.unchecked_into();
        Shared::listen(self, &el, "input", Inner::on_input);
        Shared::listen(self, &doc, "selectionchange", |b| {
            if let Some(sel) = b.selection() {
                b.shared.publish_cursor(sel);
            }
        });
        for event in ["resize", "scroll"] {
            Shared::listen(self, &win, event, Shared::schedule_render);
        }
    }

    fn detach(&self) {
        self.shared.detach();
        self.layer.remove();
    }

    /// The element's one text node (created if the element was emptied).
    fn text_node(&self) -> Option<Node> {
        let node = self.el.first_child();
        match node {
            Some(n) if n.node_type() == Node::TEXT_NODE && self.el.child_nodes().length() == 1 => {
                Some(n)
            }
            _ => {
                // Typing can leave several nodes (or none): fold them into one.
                let text = self.el.text_content().unwrap_or_default();
                let document = window().ok()?.document()?;
                let node: Node = document.create_text_node(&text).unchecked_into();
                self.el.set_text_content(None);
                self.el.append_child(&node).ok()?;
                Some(node)
            }
        }
    }

    /// The selection as (anchor, head) offsets in the text, if it is inside the element.
    fn selection(&self) -> Option<(u32, u32)> {
        let sel = window().ok()?.get_selection().ok()??;
        let offset = |node: Option<Node>, off: u32| -> Option<u32> {
            let node = node?;
            if !self.el.contains(Some(&node)) {
                return None;
            }
            let range = window().ok()?.document()?.create_range().ok()?;
            range.set_start(&self.el, 0).ok()?;
            range.set_end(&node, off).ok()?;
            Some(String::from(range.to_string()).encode_utf16().count() as u32)
        };
        Some((
            offset(sel.anchor_node(), sel.anchor_offset())?,
            offset(sel.focus_node(), sel.focus_offset())?,
        ))
    }

    fn set_selection(&self, anchor: u32, head: u32) {
        let Some(node) = self.text_node() else { return };
        let Some(sel) = window().ok().and_then(|w| w.get_selection().ok().flatten()) else {
            return;
        };
        let _ = sel.set_base_and_extent(&node, anchor, &node, head);
    }

    fn on_input(self: &Rc<Self>) {
        let new = utf16(&self.el.text_content().unwrap_or_default());
        let caret = self.selection().map(|(_, h)| h);
        if let Err(e) = self.shared.local_change(new, caret) {
            web_sys::console::error_1(&format!("tandem: edit refused: {e}").into());
        }
        // Keep one text node, and the caret where it was.
        if let Some((a, h)) = self.selection() {
            self.text_node();
            self.set_selection(a, h);
            self.shared.publish_cursor((a, h));
        }
        Shared::schedule_render(self);
    }

    fn patch(self: &Rc<Self>, delta: &[tandem_engine::TextDelta]) {
        let sel = self.selection();
        let mut points = match sel {
            Some((a, h)) => [a, h],
            None => [0, 0],
        };
        let new = apply_delta(&self.shared.value.borrow(), delta, &mut points);
        let text = String::from_utf16_lossy(&new);
        match self.text_node() {
            Some(node) => node.set_text_content(Some(&text)),
            None => self.el.set_text_content(Some(&text)),
        }
        *self.shared.value.borrow_mut() = new;
        if sel.is_some() {
            self.set_selection(points[0], points[1]);
        }
        Shared::schedule_render(self);
    }

    fn draw(&self) -> Result<(), JsValue> {
        let w = window().map_err(JsValue::from)?;
        let document = w.document().ok_or("no document")?;
        self.layer.set_text_content(None);
        let Some(node) = self.text_node() else {
            return Ok(());
        };
        let len = self.shared.value.borrow().len() as u32;
        let (sx, sy) = (w.scroll_x()?, w.scroll_y()?);
        for c in remote_cursors(&self.shared.hub, &self.shared.text) {
            let range = document.create_range()?;
            let (s, e) = c.range();
            range.set_start(&node, s.min(len))?;
            range.set_end(&node, e.min(len))?;
            if s < e {
                let rects = range.get_client_rects().ok_or("no rects")?;
                for i in 0..rects.length() {
                    let Some(r) = rects.get(i) else { continue };
                    let mark: HtmlElement = document.create_element("div")?.unchecked_into();
                    mark.set_class_name("tandem-selection");
                    let st = mark.style();
                    st.set_property("position", "absolute")?;
                    st.set_property("left", &format!("{}px", r.left() + sx))?;
                    st.set_property("top", &format!("{}px", r.top() + sy))?;
                    st.set_property("width", &format!("{}px", r.width()))?;
                    st.set_property("height", &format!("{}px", r.height()))?;
                    st.set_property("background", &selection_color(&c.color))?;
                    self.layer.append_child(&mark)?;
                }
            }
            range.set_start(&node, c.head.min(len))?;
            range.collapse_with_to_start(true);
            let rect = range.get_bounding_client_rect();
            let caret = caret_element(&document, &c)?;
            let st = caret.style();
            st.set_property("position", "absolute")?;
            st.set_property("left", &format!("{}px", rect.left() + sx))?;
            st.set_property("top", &format!("{}px", rect.top() + sy))?;
            st.set_property("height", &format!("{}px", rect.height().max(16.0)))?;
            self.layer.append_child(&caret)?;
        }
        Ok(())
    }
}

impl Editor for Inner {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn apply_remote(self: &Rc<Self>, delta: &[tandem_engine::TextDelta]) {
        self.patch(delta);
    }

    fn render(&self) -> Result<(), JsValue> {
        self.draw()
    }
}
