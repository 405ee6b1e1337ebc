//! Small bridges between Rust and JavaScript used across the crate: the clock, JSON-like
//! values both ways, error conversion, and deferring work to a microtask (callbacks into
//! JavaScript must not run while a yrs transaction is being committed).

use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Milliseconds since the epoch from the browser's clock (`SystemTime` panics on
/// `wasm32-unknown-unknown`).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A Rust value as a plain JavaScript value (objects, not `Map`s).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// A JavaScript value as a Rust value.
pub fn from_js<T: serde::de::DeserializeOwned>(value: JsValue) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&e.to_string()))
}

/// Any displayable error as a JavaScript `Error`.
pub fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Runs `f` in a microtask: after the current transaction and call stack, before the
/// browser handles the next event.
pub fn defer(f: impl FnOnce() + 'static) {
    wasm_bindgen_futures::spawn_local(async move { f() });
}

/// Calls a JavaScript callback, logging (not propagating) what it throws: one broken
/// listener must not stop the others or the sync loop.
pub fn call(f: &js_sys::Function, args: &[JsValue]) {
    let array: js_sys::Array = args.iter().collect();
    if let Err(e) = f.apply(&JsValue::NULL, &array) {
        web_sys::console::error_2(&"tandem: listener threw".into(), &e);
    }
}

/// The page's `window`; every browser entry point has one.
pub fn window() -> Result<web_sys::Window, JsError> {
    web_sys::window().ok_or_else(|| JsError::new("no window: tandem-client runs in a browser page"))
}

/// A `setInterval` id with the closure it runs (dropping the closure would free what the
/// browser still calls).
pub type Interval = (i32, Closure<dyn FnMut()>);

/// A window event listener: the event name and the closure registered for it.
pub type WindowListener = (&'static str, Closure<dyn FnMut()>);
