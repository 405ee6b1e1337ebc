//! What every editor binding does the same way, whatever its element: keep the editor's
//! content as last synced, turn a local change into one minimal edit, route remote deltas
//! (but not its own) to the editor, publish our selection, redraw carets once per
//! microtask when presence or text changes, and undo all of it on `destroy()`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tandem_engine::{DocError, TextDelta};
use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget};

use super::carets::publish_cursor;
use super::diff::splice;
use crate::awareness::AwarenessHub;
use crate::doc::observer_key;
use crate::js::defer;
use crate::text::Text;

type Listener = (EventTarget, &'static str, Closure<dyn FnMut(Event)>);

/// A concrete binding (textarea, contenteditable) as the shared machinery sees it.
pub(crate) trait Editor: 'static {
    /// Its shared state.
    fn shared(&self) -> &Shared;
    /// Patches the element with a change that came from elsewhere (a peer, undo).
    fn apply_remote(self: &Rc<Self>, delta: &[TextDelta]);
    /// Redraws remote carets and selections.
    fn render(&self) -> Result<(), JsValue>;
}

/// The state every binding keeps.
pub(crate) struct Shared {
    /// The bound text.
    pub text: Text,
    /// The presence whose carets are drawn and where ours is published.
    pub hub: Rc<AwarenessHub>,
    /// The element's content as last synced with the document (UTF-16).
    pub value: RefCell<Vec<u16>>,
    /// Set while the binding itself edits the document (its observer skips that change).
    suppress: Cell<bool>,
    key: String,
    watch: Cell<Option<u32>>,
    listeners: RefCell<Vec<Listener>>,
    last_cursor: Cell<Option<(u32, u32)>>,
    render_scheduled: Cell<bool>,
}

/// The text as UTF-16 code units, what the DOM counts.
pub(crate) fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

impl Shared {
    /// State for a binding of `text` whose element shows `value`.
    pub fn new(text: &Text, hub: Rc<AwarenessHub>, kind: &str, value: &str) -> Shared {
        Shared {
            text: text.clone(),
            hub,
            value: RefCell::new(utf16(value)),
            suppress: Cell::new(false),
            key: observer_key(kind),
            watch: Cell::new(None),
            listeners: RefCell::new(Vec::new()),
            last_cursor: Cell::new(None),
            render_scheduled: Cell::new(false),
        }
    }

    /// Starts following the text (changes not made by this binding) and the presence.
    pub fn attach<E: Editor>(editor: &Rc<E>) {
        let me = editor.shared();
        let weak = Rc::downgrade(editor);
        me.text
            .doc
            .observe_text(&me.text.name, me.key.as_str(), move |delta, _remote| {
                if let Some(e) = weak.upgrade() {
                    if !e.shared().suppress.get() {
                        e.apply_remote(delta);
                    }
                }
            });
        let weak = Rc::downgrade(editor);
        let id = me.hub.watch(Rc::new(move || {
            if let Some(e) = weak.upgrade() {
                Shared::schedule_render(&e);
            }
        }));
        me.watch.set(Some(id));
        Shared::schedule_render(editor);
    }

    /// Calls `f(editor)` on `event` of `target`, until [`Shared::detach`].
    pub fn listen<E: Editor>(
        editor: &Rc<E>,
        target: &EventTarget,
        event: &'static str,
        f: fn(&Rc<E>),
    ) {
        let weak = Rc::downgrade(editor);
        let closure = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
            if let Some(e) = weak.upgrade() {
                f(&e);
            }
        });
        let _ = target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
        editor
            .shared()
            .listeners
            .borrow_mut()
            .push((target.clone(), event, closure));
    }

    /// Stops following the text, the presence and the element's events.
    pub fn detach(&self) {
        self.text
            .doc
            .unobserve_text(&self.text.name, self.key.as_str());
        for (target, event, f) in self.listeners.borrow_mut().drain(..) {
            let _ = target.remove_event_listener_with_callback(event, f.as_ref().unchecked_ref());
        }
        if let Some(id) = self.watch.take() {
            self.hub.unwatch(id);
        }
    }

    /// The element now holds `new` (the caret at `caret`): applies the minimal edit that
    /// makes the document say the same, as one transaction.
    pub fn local_change(&self, new: Vec<u16>, caret: Option<u32>) -> Result<(), DocError> {
        let change = splice(&self.value.borrow(), &new, caret);
        if let Some(s) = change {
            let insert = String::from_utf16_lossy(&s.insert);
            let text = &self.text.text;
            self.suppress.set(true);
            let result = self.text.doc.edit(|e| {
                e.delete(text, s.index, s.delete)?;
                if insert.is_empty() {
                    Ok(())
                } else {
                    e.insert(text, s.index, &insert)
                }
            });
            self.suppress.set(false);
            result?;
        }
        *self.value.borrow_mut() = new;
        Ok(())
    }

    /// Publishes our selection (anchor, head) if it moved.
    pub fn publish_cursor(&self, selection: (u32, u32)) {
        publish_cursor(&self.hub, &self.text, selection, &self.last_cursor);
    }

    /// Redraws the carets once, after the current task.
    pub fn schedule_render<E: Editor>(editor: &Rc<E>) {
        if editor.shared().render_scheduled.replace(true) {
            return;
        }
        let weak = Rc::downgrade(editor);
        defer(move || {
            if let Some(e) = weak.upgrade() {
                e.shared().render_scheduled.set(false);
                if let Err(err) = e.render() {
                    web_sys::console::error_1(&err);
                }
            }
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.detach();
    }
}
