//! HTTP plumbing shared by the SSE and long-polling transports: `fetch` returning JSON,
//! and the [`Poster`], which sends document updates as POSTs one batch at a time, in
//! order, and turns the server's "saved" answers into the same acknowledgement frames a
//! WebSocket delivers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tandem_engine::protocol::codec;
use tandem_engine::{Message, SyncMessage};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::Target;
use crate::js::window;

/// Why a request failed.
#[derive(Debug, Clone)]
pub struct FetchError {
    /// The HTTP status, or `None` when the request did not reach the server.
    pub status: Option<u16>,
    /// What the server or the browser said.
    pub message: String,
}

impl FetchError {
    fn network(e: JsValue) -> Self {
        FetchError {
            status: None,
            message: e.as_string().unwrap_or_else(|| format!("{e:?}")),
        }
    }
}

/// `GET url` (or `POST url` with `body`) and its JSON answer; statuses ≥ 400 are errors.
pub async fn fetch_json(url: &str, body: Option<&[u8]>) -> Result<serde_json::Value, FetchError> {
    let init = web_sys::RequestInit::new();
    if let Some(body) = body {
        init.set_method("POST");
        let bytes = js_sys::Uint8Array::from(body);
        init.set_body(&bytes.into());
    }
    let window = window().map_err(|e| FetchError::network(e.into()))?;
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(FetchError::network)?;
    let response: web_sys::Response = response.unchecked_into();
    let status = response.status();
    let json = match response.json() {
        Ok(p) => JsFuture::from(p).await.unwrap_or(JsValue::NULL),
        Err(_) => JsValue::NULL,
    };
    let value: serde_json::Value = serde_wasm_bindgen::from_value(json).unwrap_or_default();
    if status >= 400 {
        return Err(FetchError {
            status: Some(status),
            message: value["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_owned(),
        });
    }
    Ok(value)
}

/// Sends what a provider hands a HTTP transport: updates as ordered, batched POSTs (with
/// `wait=saved`), presence as POSTs of its own.
pub struct Poster {
    target: Target,
    session: RefCell<Option<u64>>,
    queue: RefCell<Vec<Vec<u8>>>,
    in_flight: Cell<bool>,
    durable: Cell<u64>,
    closed: Cell<bool>,
}

impl Poster {
    /// A poster for `target`'s document.
    pub fn new(target: Target) -> Rc<Poster> {
        Rc::new(Poster {
            target,
            session: RefCell::new(None),
            queue: RefCell::new(Vec::new()),
            in_flight: Cell::new(false),
            durable: Cell::new(0),
            closed: Cell::new(false),
        })
    }

    /// Names the SSE subscription the posts belong to.
    pub fn set_session(&self, id: u64) {
        *self.session.borrow_mut() = Some(id);
    }

    /// Stops sending (the transport closed).
    pub fn close(&self) {
        self.closed.set(true);
    }

    fn url(&self, tail: &str, wait: bool) -> String {
        let mut params = Vec::new();
        if let Some(id) = *self.session.borrow() {
            params.push(format!("session={id}"));
        }
        if wait {
            params.push("wait=saved".to_owned());
        }
        self.target.api(tail, params)
    }

    /// Sends one y-protocols frame the HTTP way (step 1 and queries need no answer here:
    /// the server's stream already carries the whole state and the presence).
    pub fn send(self: &Rc<Self>, frame: &[u8]) {
        match Message::decode(frame) {
            Ok(Message::Sync(SyncMessage::Update(u) | SyncMessage::Step2(u))) => {
                self.queue.borrow_mut().push(u.to_vec());
                self.pump();
            }
            Ok(Message::Awareness(update)) => {
                let url = self.url("awareness", false);
                let body = update.encode();
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = fetch_json(&url, Some(&body)).await;
                });
            }
            _ => {}
        }
    }

    fn pump(self: &Rc<Self>) {
        if self.in_flight.get() || self.closed.get() || self.queue.borrow().is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *self.queue.borrow_mut());
        let count = batch.len() as u64;
        let body = if batch.len() == 1 {
            batch.into_iter().next().unwrap_or_default()
        } else {
            match tandem_engine::yrs::merge_updates_v1(&batch) {
                Ok(merged) => merged,
                Err(_) => return,
            }
        };
        self.in_flight.set(true);
        let this = self.clone();
        let url = self.url("updates", true);
        wasm_bindgen_futures::spawn_local(async move {
            let result = fetch_json(&url, Some(&body)).await;
            this.in_flight.set(false);
            if this.closed.get() {
                return;
            }
            let epoch = this.target.epoch;
            match result {
                Ok(answer) => {
                    this.durable.set(this.durable.get() + count);
                    if answer["saved"].as_bool() == Some(true) {
                        let ack = codec::encode_saved(this.durable.get());
                        this.target.sink.frame(epoch, &ack);
                    }
                    this.pump();
                }
                Err(e) if e.status == Some(400) => {
                    web_sys::console::error_1(
                        &format!("tandem: update refused: {}", e.message).into(),
                    );
                    this.pump();
                }
                Err(e) => {
                    // A refusal that retrying cannot change ends the session as the
                    // WebSocket's 44xx close does: 410 above all, the document was deleted,
                    // and reconnecting would post the whole replica into a new one.
                    // Anything else (the server unreachable or busy, or 409: it lacks what
                    // this update builds on) reconnects, and the sync on reconnect sends
                    // whatever the server still lacks.
                    let code = match e.status {
                        Some(s @ (401 | 403 | 410 | 413)) => 4000 + s,
                        _ => 1006,
                    };
                    this.closed.set(true);
                    this.target.sink.closed(epoch, code, &e.message, true);
                }
            }
        });
    }
}
