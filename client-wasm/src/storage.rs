//! Offline persistence: every update of the document (local or remote) is appended to an
//! IndexedDB store (`tandem:{doc}`), batched per 100 ms; on open the stored updates are
//! applied before the provider connects, so a reload while offline loses nothing. The
//! store is folded into one snapshot when it grows past [`COMPACT_AFTER`] entries.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use tandem_engine::Document;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbObjectStoreParameters, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::doc::observer_key;
use crate::js::window;

/// Stored updates that trigger folding them into one snapshot.
pub const COMPACT_AFTER: u32 = 200;
const STORE: &str = "updates";
const FLUSH_MS: i32 = 100;

/// Resolves with a request's result once it succeeds (one closure serves success and
/// error: a request fires exactly one of them, and the closure is freed after the call).
fn request(req: &IdbRequest) -> JsFuture {
    let req = req.clone();
    JsFuture::from(Promise::new(&mut |resolve, reject| {
        let r = req.clone();
        let done = Closure::once_into_js(move |e: web_sys::Event| {
            if e.type_() == "success" {
                let _ = resolve.call1(&JsValue::NULL, &r.result().unwrap_or(JsValue::UNDEFINED));
            } else {
                let _ = reject.call1(
                    &JsValue::NULL,
                    &JsValue::from_str("IndexedDB request failed"),
                );
            }
        });
        req.set_onsuccess(Some(done.unchecked_ref()));
        req.set_onerror(Some(done.unchecked_ref()));
    }))
}

/// Resolves once a transaction has committed.
fn committed(tx: &IdbTransaction) -> JsFuture {
    let tx = tx.clone();
    JsFuture::from(Promise::new(&mut |resolve, reject| {
        let done = Closure::once_into_js(move |e: web_sys::Event| {
            if e.type_() == "complete" {
                let _ = resolve.call0(&JsValue::NULL);
            } else {
                let _ = reject.call1(
                    &JsValue::NULL,
                    &JsValue::from_str("IndexedDB transaction failed"),
                );
            }
        });
        tx.set_oncomplete(Some(done.unchecked_ref()));
        tx.set_onerror(Some(done.unchecked_ref()));
        tx.set_onabort(Some(done.unchecked_ref()));
    }))
}

/// The IndexedDB copy of one document.
pub struct Storage {
    db: IdbDatabase,
    doc: Document,
    key: String,
    pending: RefCell<Vec<Vec<u8>>>,
    scheduled: Cell<bool>,
    stored: Cell<u32>,
    closed: Cell<bool>,
}

impl Storage {
    /// Opens (creating) the store of document `name`, applies what it holds to `doc`, and
    /// from then on records every update of `doc`.
    pub async fn open(name: &str, doc: Document) -> Result<Rc<Storage>, JsValue> {
        let factory = window()
            .map_err(JsValue::from)?
            .indexed_db()?
            .ok_or_else(|| JsValue::from_str("IndexedDB unavailable"))?;
        let open = factory.open_with_u32(&format!("tandem:{name}"), 1)?;
        let on_upgrade = {
            let open = open.clone();
            Closure::once_into_js(move |_e: web_sys::Event| {
                if let Ok(db) = open.result() {
                    let db: IdbDatabase = db.unchecked_into();
                    let params = IdbObjectStoreParameters::new();
                    params.set_auto_increment(true);
                    let _ = db.create_object_store_with_optional_parameters(STORE, &params);
                }
            })
        };
        open.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
        let db: IdbDatabase = request(&open).await?.unchecked_into();
        let tx = db.transaction_with_str(STORE)?;
        let all: Array = request(&tx.object_store(STORE)?.get_all()?)
            .await?
            .unchecked_into();
        let updates: Vec<Vec<u8>> = all
            .iter()
            .map(|u| u.unchecked_into::<Uint8Array>().to_vec())
            .collect();
        if let Err(e) = doc.apply_updates_v1(updates.iter().map(|u| &u[..])) {
            web_sys::console::warn_1(
                &format!("tandem: ignoring a corrupt offline copy: {e}").into(),
            );
        }
        let storage = Rc::new(Storage {
            db,
            key: observer_key("storage"),
            doc,
            pending: RefCell::new(Vec::new()),
            scheduled: Cell::new(false),
            stored: Cell::new(updates.len() as u32),
            closed: Cell::new(false),
        });
        if storage.stored.get() > COMPACT_AFTER {
            storage.compact().await?;
        }
        let weak = Rc::downgrade(&storage);
        storage
            .doc
            .observe_updates(storage.key.as_str(), move |update, _remote| {
                if let Some(s) = weak.upgrade() {
                    s.pending.borrow_mut().push(update.to_vec());
                    s.schedule();
                }
            });
        Ok(storage)
    }

    fn schedule(self: &Rc<Self>) {
        if self.scheduled.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        let f = Closure::once_into_js(move || {
            if let Some(s) = weak.upgrade() {
                wasm_bindgen_futures::spawn_local(async move {
                    s.scheduled.set(false);
                    if let Err(e) = s.flush().await {
                        web_sys::console::warn_2(&"tandem: offline copy not written:".into(), &e);
                    }
                });
            }
        });
        if let Ok(w) = window() {
            let _ = w
                .set_timeout_with_callback_and_timeout_and_arguments_0(f.unchecked_ref(), FLUSH_MS);
        }
    }

    /// Writes the pending updates in one transaction.
    async fn flush(self: &Rc<Self>) -> Result<(), JsValue> {
        let batch = std::mem::take(&mut *self.pending.borrow_mut());
        if batch.is_empty() || self.closed.get() {
            return Ok(());
        }
        let tx = self
            .db
            .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)?;
        let store = tx.object_store(STORE)?;
        for update in &batch {
            store.add(&Uint8Array::from(&update[..]))?;
        }
        committed(&tx).await?;
        self.stored.set(self.stored.get() + batch.len() as u32);
        if self.stored.get() > COMPACT_AFTER {
            self.compact().await?;
        }
        Ok(())
    }

    /// Replaces every stored update with one snapshot of the document.
    async fn compact(&self) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)?;
        let store = tx.object_store(STORE)?;
        store.clear()?;
        store.add(&Uint8Array::from(&self.doc.snapshot_v1()[..]))?;
        committed(&tx).await?;
        self.stored.set(1);
        Ok(())
    }

    /// Stops recording and closes the database (pending updates are still written).
    pub fn close(self: &Rc<Self>) {
        self.doc.unobserve_updates(self.key.as_str());
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = me.flush().await;
            me.closed.set(true);
            me.db.close();
        });
    }
}
