//! [`TextAreaBinding`]: a `<textarea>` bound to a shared text. Typing becomes the minimal
//! edit (one transaction per input event); remote changes are patched into the field
//! without moving the local caret off its text; remote carets and selections are drawn on
//! a transparent overlay that mirrors the textarea's layout.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget, HtmlElement, HtmlTextAreaElement};

use super::carets::{caret_element, publish_cursor, remote_cursors, selection_color, RemoteCursor};
use super::diff::{apply_delta, splice};
use crate::awareness::{Awareness, AwarenessHub};
use crate::doc::observer_key;
use crate::js::{defer, js_err, window};
use crate::text::Text;

/// Styles copied from the textarea to its overlay, so text wraps at the same places.
const MIRRORED: [&str; 20] = [
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
    "border-left-width",
];

type Listener = (EventTarget, &'static str, Closure<dyn FnMut(Event)>);

struct Inner {
    text: Text,
    el: HtmlTextAreaElement,
    hub: Rc<AwarenessHub>,
    /// The field's content as last synced with the document.
    value: RefCell<Vec<u16>>,
    /// Set while the binding itself edits the document (its observer skips that change).
    suppress: Cell<bool>,
    key: String,
    watch: Cell<Option<u32>>,
    wrapper: HtmlElement,
    overlay: HtmlElement,
    listeners: RefCell<Vec<Listener>>,
    last_cursor: Cell<Option<(u32, u32)>>,
    render_scheduled: Cell<bool>,
}

/// Binds a textarea to a [`Text`], drawing the remote carets of an [`Awareness`].
#[wasm_bindgen]
pub struct TextAreaBinding {
    inner: Rc<Inner>,
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
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
            text: text.clone(),
            el: textarea,
            hub: awareness.hub.clone(),
            value: RefCell::new(utf16(&value)),
            suppress: Cell::new(false),
            key: observer_key("textarea"),
            watch: Cell::new(None),
            wrapper,
            overlay,
            listeners: RefCell::new(Vec::new()),
            last_cursor: Cell::new(None),
            render_scheduled: Cell::new(false),
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
        let weak = Rc::downgrade(self);
        self.text
            .doc
            .observe_text(&self.text.name, self.key.as_str(), move |delta, _remote| {
                if let Some(b) = weak.upgrade() {
                    if !b.suppress.get() {
                        b.apply_remote(delta);
                    }
                }
            });
        let target: EventTarget = self.el.clone().unchecked_into();
        for event in ["input", "select", "keyup", "mouseup", "focus", "scroll"] {
            let weak = Rc::downgrade(self);
            let f = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
                if let Some(b) = weak.upgrade() {
                    match event {
                        "input" => b.on_input(),
                        "scroll" => b.sync_scroll(),
                        _ => b.publish_cursor(),
                    }
                }
            });
            let _ = target.add_event_listener_with_callback(event, f.as_ref().unchecked_ref());
            self.listeners.borrow_mut().push((target.clone(), event, f));
        }
        let weak = Rc::downgrade(self);
        let id = self.hub.watch(Rc::new(move || {
            if let Some(b) = weak.upgrade() {
                b.schedule_render();
            }
        }));
        self.watch.set(Some(id));
        self.schedule_render();
    }

    fn detach(&self) {
        self.text
            .doc
            .unobserve_text(&self.text.name, self.key.as_str());
        for (target, event, f) in self.listeners.borrow_mut().drain(..) {
            let _ = target.remove_event_listener_with_callback(event, f.as_ref().unchecked_ref());
        }
        if let Some(id) = self.watch.take() {
            self.hub.unwatch(id);
        }
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
        let change = splice(&self.value.borrow(), &new, caret);
        if let Some(s) = change {
            let insert = String::from_utf16_lossy(&s.insert);
            self.suppress.set(true);
            let result = self.text.doc.edit(|e| {
                e.delete(&self.text.text, s.index, s.delete)?;
                if insert.is_empty() {
                    Ok(())
                } else {
                    e.insert(&self.text.text, s.index, &insert)
                }
            });
            self.suppress.set(false);
            if let Err(e) = result {
                web_sys::console::error_1(&format!("tandem: edit refused: {e}").into());
                // Resynchronise the field from the document rather than diverge.
                let text = self.text.to_string_js();
                self.el.set_value(&text);
                *self.value.borrow_mut() = utf16(&text);
                return;
            }
        }
        *self.value.borrow_mut() = new;
        self.publish_cursor();
        self.schedule_render();
    }

    /// A remote change: patch the field, keeping our selection on the same text.
    fn apply_remote(self: &Rc<Self>, delta: &[tandem_engine::TextDelta]) {
        let (anchor, head) = self.selection();
        let mut points = [anchor, head];
        let new = apply_delta(&self.value.borrow(), delta, &mut points);
        let focused = window()
            .ok()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element())
            .is_some_and(|a| a == **self.el);
        let scroll = self.el.scroll_top();
        self.el.set_value(&String::from_utf16_lossy(&new));
        *self.value.borrow_mut() = new;
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
        self.schedule_render();
    }

    fn publish_cursor(self: &Rc<Self>) {
        publish_cursor(&self.hub, &self.text, self.selection(), &self.last_cursor);
    }

    fn sync_scroll(&self) {
        self.overlay.set_scroll_top(self.el.scroll_top());
        self.overlay.set_scroll_left(self.el.scroll_left());
    }

    fn schedule_render(self: &Rc<Self>) {
        if self.render_scheduled.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        defer(move || {
            if let Some(b) = weak.upgrade() {
                b.render_scheduled.set(false);
                if let Err(e) = b.render() {
                    web_sys::console::error_1(&e);
                }
            }
        });
    }

    /// Redraws remote carets and selections on the overlay.
    fn render(&self) -> Result<(), JsValue> {
        let hub = &self.hub;
        let w = window().map_err(JsValue::from)?;
        let document = w.document().ok_or("no document")?;
        if let Some(computed) = w.get_computed_style(&self.el)? {
            let style = self.overlay.style();
            for prop in MIRRORED {
                style.set_property(prop, &computed.get_property_value(prop)?)?;
            }
            style.set_property(
                "border-bottom-width",
                &computed.get_property_value("border-bottom-width")?,
            )?;
        }
        let cursors = remote_cursors(hub, &self.text);
        let value = self.value.borrow();
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
        let len = self.value.borrow().len() as u32;
        for c in cursors.iter().filter(|c| c.head.min(len) == at) {
            content.append_child(&caret_element(document, c)?.into())?;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.text
            .doc
            .unobserve_text(&self.text.name, self.key.as_str());
    }
}
