//! [`Map`] and [`Array`]: shared JSON-like collections (`Y.Map`, `Y.Array`) holding plain
//! values (null, booleans, numbers, strings, arrays, objects, bytes).

use tandem_engine::yrs::types::ToJson;
use tandem_engine::yrs::{Any, Array as _, ArrayRef, Map as _, MapRef, Observable};
use tandem_engine::Document;
use wasm_bindgen::prelude::*;

use crate::doc::observer_key;
use crate::js::{call, defer, from_js, js_err, to_js};

/// A shared map (`Y.Map`) of JSON-like values.
#[wasm_bindgen]
pub struct Map {
    doc: Document,
    map: MapRef,
}

impl Map {
    pub(crate) fn new(doc: Document, name: &str) -> Map {
        Map {
            map: doc.map(name),
            doc,
        }
    }
}

#[wasm_bindgen]
impl Map {
    /// Sets `key` to a JSON-like value.
    pub fn set(&self, key: &str, value: JsValue) -> Result<(), JsError> {
        let value: Any = from_js(value)?;
        self.doc.edit(|e| e.map_set(&self.map, key, value));
        Ok(())
    }

    /// The value of `key` (`undefined` if absent).
    pub fn get(&self, key: &str) -> Result<JsValue, JsError> {
        let txn = self.doc.read();
        match self.map.get(&txn, key) {
            Some(v) => to_js(&v.to_json(&txn)),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&self, key: &str) -> bool {
        self.doc.edit(|e| e.map_delete(&self.map, key))
    }

    /// Whether `key` is set.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(&self.doc.read(), key)
    }

    /// Number of keys.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.map.len(&self.doc.read())
    }

    /// The whole map as a plain object.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> Result<JsValue, JsError> {
        to_js(&self.map.to_json(&self.doc.read()))
    }

    /// Calls `f(changedKeys, isRemote)` after every change. Returns a key for
    /// [`Map::unobserve`].
    pub fn observe(&self, f: js_sys::Function) -> String {
        let key = observer_key("map");
        let remote = tandem_engine::yrs::Origin::from(tandem_engine::REMOTE_ORIGIN);
        self.map.observe(key.as_str(), move |txn, event| {
            let keys: js_sys::Array = event
                .keys(txn)
                .keys()
                .map(|k| JsValue::from_str(k))
                .collect();
            let is_remote = txn.origin() == Some(&remote);
            let f = f.clone();
            defer(move || call(&f, &[keys.into(), is_remote.into()]));
        });
        key
    }

    /// Removes an observer added by [`Map::observe`].
    pub fn unobserve(&self, key: &str) -> bool {
        self.map.unobserve(key)
    }
}

/// A shared array (`Y.Array`) of JSON-like values.
#[wasm_bindgen]
pub struct Array {
    doc: Document,
    array: ArrayRef,
}

impl Array {
    pub(crate) fn new(doc: Document, name: &str) -> Array {
        Array {
            array: doc.array(name),
            doc,
        }
    }
}

#[wasm_bindgen]
impl Array {
    /// Inserts the values of the JavaScript array `values` at `index`.
    pub fn insert(&self, index: u32, values: JsValue) -> Result<(), JsError> {
        let values: Vec<Any> = from_js(values)?;
        self.doc
            .edit(|e| {
                for (i, v) in values.into_iter().enumerate() {
                    e.array_insert(&self.array, index + i as u32, v)?;
                }
                Ok(())
            })
            .map_err(|e: tandem_engine::DocError| js_err(e))
    }

    /// Appends the values of the JavaScript array `values`.
    pub fn push(&self, values: JsValue) -> Result<(), JsError> {
        self.insert(self.length(), values)
    }

    /// Removes `length` values at `index`.
    pub fn delete(&self, index: u32, length: u32) -> Result<(), JsError> {
        self.doc
            .edit(|e| e.array_delete(&self.array, index, length))
            .map_err(js_err)
    }

    /// The value at `index` (`undefined` past the end).
    pub fn get(&self, index: u32) -> Result<JsValue, JsError> {
        let txn = self.doc.read();
        match self.array.get(&txn, index) {
            Some(v) => to_js(&v.to_json(&txn)),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Number of values.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.array.len(&self.doc.read())
    }

    /// The whole array as a plain JavaScript array.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> Result<JsValue, JsError> {
        to_js(&self.array.to_json(&self.doc.read()))
    }

    /// Calls `f(isRemote)` after every change. Returns a key for [`Array::unobserve`].
    pub fn observe(&self, f: js_sys::Function) -> String {
        let key = observer_key("array");
        let remote = tandem_engine::yrs::Origin::from(tandem_engine::REMOTE_ORIGIN);
        self.array.observe(key.as_str(), move |txn, _event| {
            let is_remote = txn.origin() == Some(&remote);
            let f = f.clone();
            defer(move || call(&f, &[is_remote.into()]));
        });
        key
    }

    /// Removes an observer added by [`Array::observe`].
    pub fn unobserve(&self, key: &str) -> bool {
        self.array.unobserve(key)
    }
}
