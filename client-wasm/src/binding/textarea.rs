//! [`TextAreaBinding`]: a `<textarea>` bound to a shared text. Typing becomes the minimal
//! edit (one transaction per input event); remote changes are patched into the field
//! without moving the local caret off its text; remote carets and selections are drawn on
//! a transparent overlay that mirrors the textarea's layout.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{EventTarget, HtmlElement, HtmlTextAreaElement};

use super::carets::{caret_element, remote_cursors, selection_color, RemoteCursor};
use super::diff::apply_delta;
use super::shared::{utf16, Editor, Shared};
use crate::awareness::Awareness;
use crate::js::{js_err, window};
use crate::text::Text;

/// Styles copied from the textarea to its overlay, so text wraps at the same places.
const MIRRORED: [&str; 21] = [
    "box-sizing",
    "width",
    "height",
    "font-family",
    "font-size",
    "font-weight",
    "font-style",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "text-indent",
    "text-transform",
    "tab-size",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border-top-width",
    "border-right-width",
    "border-bottom-width",
    "border-left-width",
];

struct Inner {
    shared: Shared,
    el: HtmlTextAreaElement,
    wrapper: HtmlElement,
    overlay: HtmlElement,
}

/// Binds a textarea to a [`Text`], drawing the remote carets of an [`Awareness`].
#[wasm_bindgen]
pub struct TextAreaBinding {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl TextAreaBinding {
    /// Binds `textarea` to `text`: the field shows the text at once and stays in sync both
    /// ways.
    #[wasm_bindgen(constructor)]
    pub fn new(
        text: &Text,
        textarea: HtmlTextAreaElement,
        awareness: &Awareness,
    ) -> Result<TextAreaBinding, JsError> {
        let document = window()?
            .document()
            .ok_or_else(|| JsError::new("no document"))?;
        let value = text.to_string_js();
        textarea.set_value(&value);
        let wrapper: HtmlElement = document
            .create_element("div")
            .map_err(|_| js_err("dom"))?
            .unchecked_into();
        wrapper.set_class_name("tandem-editor");
        let _ = wrapper.style().set_property("position", "relative");
        let overlay: HtmlElement = document
            .create_element("div")
            .map_err(|_| js_err("dom"))?
            .unchecked_into();
        overlay.set_class_name("tandem-overlay");
        for (k, v) in [
            ("position", "absolute"),
            ("top", "0"),
            ("left", "0"),
            ("pointer-events", "none"),
            ("overflow", "hidden"),
            ("white-space", "pre-wrap"),
            ("overflow-wrap", "break-word"),
            ("color", "transparent"),
            ("border-style", "solid"),
            ("border-color", "transparent"),
            ("background", "transparent"),
        ] {
            let _ = overlay.style().set_property(k, v);
        }
        if let Some(parent) = textarea.parent_node() {
            let _ = parent.insert_before(&wrapper, Some(&textarea));
        }
        let _ = wrapper.append_child(&textarea);
        let _ = wrapper.append_child(&overlay);
        let inner = Rc::new(Inner {
            shared: Shared::new(text, awareness.hub.clone(), "textarea", &value),
            el: textarea,
            wrapper,
            overlay,
        });
        inner.attach();
        crate::keepalive::hold(&inner);
        Ok(TextAreaBinding { inner })
    }

    /// Unbinds: the textarea keeps its content and stops syncing; the overlay is removed.
    pub fn destroy(&self) {
        self.inner.detach();
        crate::keepalive::release(&self.inner);
    }
}

impl Inner {
    fn attach(self: &Rc<Self>) {
        Shared::attach(self);
        let target: EventTarget = self.el.clone().unchecked_into();
        Shared::listen(self, &target, "input", Inner::on_input);
        Shared::listen(self, &target, "scroll", |b| b.sync_scroll());
        for event in ["select", "keyup", "mouseup", "focus"] {
            Shared::listen(self, &target, event, |b| {
                b.shared.publish_cursor(b.selection())
            });
        }
    }

    fn detach(&self) {
        self.shared.detach();
        self.overlay.remove();
        if let Some(parent) = self.wrapper.parent_node() {
            let _ = parent.insert_before(&self.el, Some(&self.wrapper));
        }
        self.wrapper.remove();
    }

    fn selection(&self) -> (u32, u32) {
        let start = self.el.selection_start().ok().flatten().unwrap_or(0);
        let end = self.el.selection_end().ok().flatten().unwrap_or(start);
        let backward = self.el.selection_direction().ok().flatten().as_deref() == Some("backward");
        if backward {
            (end, start)
        } else {
            (start, end)
        }
    }

    /// Local typing: one minimal edit for what changed in the field.
    fn on_input(self: &Rc<Self>) {
        let new = utf16(&self.el.value());
        let caret = self.el.selection_end().ok().flatten();
        if let Err(e) = self.shared.local_change(new, caret) {
            web_sys::console::error_1(&format!("tandem: edit refused: {e}").into());
            // Resynchronise the field from the document rather than diverge.
            let text = self.shared.text.to_string_js();
            self.el.set_value(&text);
            *self.shared.value.borrow_mut() = utf16(&text);
            return;
        }
        self.shared.publish_cursor(self.selection());
        Shared::schedule_render(self);
    }

    /// A remote change: patch the field, keeping our selection on the same text.
    fn patch(self: &Rc<Self>, delta: &[tandem_engine::TextDelta]) {
        let (anchor, head) = self.selection();
        let mut points = [anchor, head];
        let new = apply_delta(&self.shared.value.borrow(), delta, &mut points);
        let focused = window()
            .ok()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element())
            .is_some_and(|a| a == **self.el);
        let scroll = self.el.scroll_top();
        self.el.set_value(&String::from_utf16_lossy(&new));
        *self.shared.value.borrow_mut() = new;
        let (start, end, dir) = if points[0] <= points[1] {
            (points[0], points[1], "forward")
        } else {
            (points[1], points[0], "backward")
        };
        if focused {
            let _ = self.el.set_selection_range_with_direction(start, end, dir);
        } else {
            let _ = self.el.set_selection_range(start, end);
        }
        self.el.set_scroll_top(scroll);
        Shared::schedule_render(self);
    }

    fn sync_scroll(&self) {
        self.overlay.set_scroll_top(self.el.scroll_top());
        self.overlay.set_scroll_left(self.el.scroll_left());
    }

    /// Redraws remote carets and selections on the overlay.
    fn draw(&self) -> Result<(), JsValue> {
        let w = window().map_err(JsValue::from)?;
        let document = w.document().ok_or("no document")?;
        if let Some(computed) = w.get_computed_style(&self.el)? {
            let style = self.overlay.style();
            for prop in MIRRORED {
                style.set_property(prop, &computed.get_property_value(prop)?)?;
            }
        }
        let cursors = remote_cursors(&self.shared.hub, &self.shared.text);
        let value = self.shared.value.borrow();
        self.overlay.set_text_content(None);
        let content: HtmlElement = document.create_element("div")?.unchecked_into();
        // Cut the text at every selection boundary and caret.
        let mut cuts: Vec<u32> = vec![0, value.len() as u32];
        for c in &cursors {
            let (s, e) = c.range();
            cuts.extend([s.min(value.len() as u32), e.min(value.len() as u32)]);
        }
        cuts.sort_unstable();
        cuts.dedup();
        for pair in cuts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            self.add_carets(&document, &content, &cursors, from)?;
            let chunk = String::from_utf16_lossy(&value[from as usize..to as usize]);
            let covering: Option<&RemoteCursor> = cursors.iter().find(|c| {
                let (s, e) = c.range();
                s <= from && to <= e && s < e
            });
            match covering {
                Some(c) => {
                    let mark: HtmlElement = document.create_element("span")?.unchecked_into();
                    mark.set_class_name("tandem-selection");
                    mark.style()
                        .set_property("background", &selection_color(&c.color))?;
                    mark.set_text_content(Some(&chunk));
                    content.append_child(&mark)?;
                }
                None => {
                    content.append_child(&document.create_text_node(&chunk))?;
                }
            }
        }
        self.add_carets(&document, &content, &cursors, value.len() as u32)?;
        // A trailing newline needs a character after it to take up a line.
        content.append_child(&document.create_text_node("\u{200b}"))?;
        self.overlay.append_child(&content)?;
        self.sync_scroll();
        Ok(())
    }

    fn add_carets(
        &self,
        document: &web_sys::Document,
        content: &HtmlElement,
        cursors: &[RemoteCursor],
        at: u32,
    ) -> Result<(), JsValue> {
        let len = self.shared.value.borrow().len() as u32;
        for c in cursors.iter().filter(|c| c.head.min(len) == at) {
            content.append_child(&caret_element(document, c)?.into())?;
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
