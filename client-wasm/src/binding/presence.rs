//! [`PresenceList`]: who is on the document — name, colour and whether they are online,
//! away (tab hidden) or idle (no input for a minute) — kept up to date from awareness.
//! It also publishes our own status from the page's visibility and activity.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget, HtmlElement};

use crate::awareness::{Awareness, AwarenessHub};
use crate::js::{defer, now_ms, window, Interval};

/// No input for this long makes us idle.
const IDLE_MS: u64 = 60_000;

type Listener = (EventTarget, &'static str, Closure<dyn FnMut(Event)>);

struct Inner {
    hub: Rc<AwarenessHub>,
    el: HtmlElement,
    watch: Cell<Option<u32>>,
    last_active: Cell<u64>,
    listeners: RefCell<Vec<Listener>>,
    timer: Cell<Option<Interval>>,
}

/// Renders the people on a document into an element.
#[wasm_bindgen]
pub struct PresenceList {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl PresenceList {
    /// Shows `awareness` in `element` (its content is replaced) and publishes our status.
    #[wasm_bindgen(constructor)]
    pub fn new(awareness: &Awareness, element: HtmlElement) -> Result<PresenceList, JsError> {
        let inner = Rc::new(Inner {
            hub: awareness.hub.clone(),
            el: element,
            watch: Cell::new(None),
            last_active: Cell::new(now_ms()),
            listeners: RefCell::new(Vec::new()),
            timer: Cell::new(None),
        });
        let weak = Rc::downgrade(&inner);
        let id = inner.hub.watch(Rc::new(move || {
            if let Some(p) = weak.upgrade() {
                p.render();
            }
        }));
        inner.watch.set(Some(id));
        let w = window()?;
        let document: EventTarget = w
            .document()
            .ok_or_else(|| JsError::new("no document"))?
            .unchecked_into();
        for event in ["visibilitychange", "keydown", "pointerdown", "pointermove"] {
            let weak = Rc::downgrade(&inner);
            let f = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
                if let Some(p) = weak.upgrade() {
                    if event != "visibilitychange" {
                        p.last_active.set(now_ms());
                    }
                    p.publish_status();
                }
            });
            let _ = document.add_event_listener_with_callback(event, f.as_ref().unchecked_ref());
            inner
                .listeners
                .borrow_mut()
                .push((document.clone(), event, f));
        }
        let weak = Rc::downgrade(&inner);
        let tick = Closure::<dyn FnMut()>::new(move || {
            if let Some(p) = weak.upgrade() {
                p.publish_status();
            }
        });
        let id = w
            .set_interval_with_callback_and_timeout_and_arguments_0(
                tick.as_ref().unchecked_ref(),
                10_000,
            )
            .map_err(|_| JsError::new("setInterval failed"))?;
        inner.timer.set(Some((id, tick)));
        inner.publish_status();
        let me = inner.clone();
        defer(move || me.render());
        crate::keepalive::hold(&inner);
        Ok(PresenceList { inner })
    }

    /// Stops rendering and tracking activity.
    pub fn destroy(&self) {
        let inner = &self.inner;
        if let Some(id) = inner.watch.take() {
            inner.hub.unwatch(id);
        }
        for (target, event, f) in inner.listeners.borrow_mut().drain(..) {
            let _ = target.remove_event_listener_with_callback(event, f.as_ref().unchecked_ref());
        }
        if let (Some((id, _)), Ok(w)) = (inner.timer.take(), window()) {
            w.clear_interval_with_handle(id);
        }
        crate::keepalive::release(inner);
    }
}

impl Inner {
    /// `away` while the tab is hidden, `idle` after a minute without input, else `online`.
    fn publish_status(self: &Rc<Self>) {
        let hidden = window()
            .ok()
            .and_then(|w| w.document())
            .is_some_and(|d| d.hidden());
        let status = if hidden {
            "away"
        } else if now_ms().saturating_sub(self.last_active.get()) > IDLE_MS {
            "idle"
        } else {
            "online"
        };
        if self.hub.state.borrow().local_state().is_some() {
            self.hub.set_local_field("status", status.into());
        }
    }

    fn render(&self) {
        let Some(document) = window().ok().and_then(|w| w.document()) else {
            return;
        };
        let me = self.hub.state.borrow().client_id();
        let mut people: Vec<(u64, serde_json::Value)> = self
            .hub
            .state
            .borrow()
            .states()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(json).ok()?)))
            .collect();
        people.sort_by_key(|(id, _)| (*id != me, *id));
        self.el.set_text_content(None);
        for (id, state) in people {
            let user = &state["user"];
            let name = user["name"].as_str().unwrap_or("anonymous");
            let color = user["color"].as_str().unwrap_or("#999");
            let status = state["status"].as_str().unwrap_or("online");
            let Ok(item) = document.create_element("li") else {
                continue;
            };
            let _ = item.set_attribute("data-client", &id.to_string());
            let _ = item.set_attribute("data-status", status);
            item.set_class_name(&format!("tandem-person tandem-{status}"));
            let Ok(dot) = document.create_element("span") else {
                continue;
            };
            dot.set_class_name("tandem-dot");
            let _ = dot.set_attribute("style", &format!("background:{color}"));
            let _ = item.append_child(&dot);
            let label = if id == me {
                format!("{name} (you)")
            } else {
                name.to_owned()
            };
            let _ = item.append_child(&document.create_text_node(&format!(" {label} · {status}")));
            let _ = self.el.append_child(&item);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let (Some((id, _)), Ok(w)) = (self.timer.take(), window()) {
            w.clear_interval_with_handle(id);
        }
    }
}
