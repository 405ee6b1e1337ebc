//! The Server-Sent Events transport: the document streams in as events (`GET …/events`,
//! resumed from the last sequence number seen), and what the client sends goes out as
//! HTTP POSTs naming the stream's session.

use std::cell::Cell;
use std::rc::Rc;

use base64::Engine;
use tandem_engine::protocol::codec;
use wasm_bindgen::prelude::*;
use web_sys::{EventSource, MessageEvent};

use super::http::Poster;
use super::{Target, Transport};

/// One event stream (attempt).
pub struct SseTransport {
    source: EventSource,
    poster: Rc<Poster>,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

fn decode(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

impl SseTransport {
    /// Opens the stream of `target`'s document.
    pub fn connect(target: &Target) -> Result<Rc<SseTransport>, JsValue> {
        let since = target.resume.map(|seq| format!("since={seq}"));
        let url = target.api("events", since.into_iter().collect());
        let source = EventSource::new(&url)?;
        let poster = Poster::new(target.clone());
        let opened = Rc::new(Cell::new(false));
        // A resumed stream sends only the missed updates; the state-vector event that
        // follows them ends the catch-up, which the provider learns as an (empty) step 2.
        let caught_up = Rc::new(Cell::new(false));
        let epoch = target.epoch;
        let mut handlers = Vec::new();
        let mut on = |event: &str, f: Box<dyn FnMut(MessageEvent)>| {
            let mut f = f;
            let closure =
                Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| f(e.unchecked_into()));
            let _ =
                source.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
            handlers.push(closure);
        };
        let (sink, p, flag) = (target.sink.clone(), poster.clone(), opened.clone());
        on(
            "session",
            Box::new(move |e| {
                if let Some(id) = e.data().as_string().and_then(|s| s.parse().ok()) {
                    p.set_session(id);
                }
                flag.set(true);
                sink.opened(epoch);
            }),
        );
        for (event, frame_of) in [
            ("sync", codec::encode_step2 as fn(&[u8]) -> Vec<u8>),
            ("update", codec::encode_update),
            ("state-vector", codec::encode_step1),
            ("awareness", awareness_frame),
        ] {
            let sink = target.sink.clone();
            let caught_up = caught_up.clone();
            on(
                event,
                Box::new(move |e| {
                    if event == "sync" {
                        caught_up.set(true);
                    } else if event == "state-vector" && !caught_up.replace(true) {
                        sink.frame(epoch, &codec::encode_step2(EMPTY_UPDATE));
                    }
                    if let Some(bytes) = e.data().as_string().as_deref().and_then(decode) {
                        sink.frame(epoch, &frame_of(&bytes));
                    }
                    if let Ok(seq) = e.last_event_id().parse() {
                        sink.position(epoch, seq);
                    }
                }),
            );
        }
        let (sink, src, p) = (target.sink.clone(), source.clone(), poster.clone());
        on(
            "close",
            Box::new(move |e| {
                let data: serde_json::Value = e
                    .data()
                    .as_string()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                src.close();
                p.close();
                let code = data["code"].as_u64().unwrap_or(1006) as u16;
                sink.closed(epoch, code, data["reason"].as_str().unwrap_or(""), true);
            }),
        );
        // The browser would retry on its own; the provider decides instead (backoff,
        // fallback to the next transport, resuming from the last id it saw).
        let (sink, src, p) = (target.sink.clone(), source.clone(), poster.clone());
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            src.close();
            p.close();
            sink.closed(epoch, 1006, "event stream failed", opened.get());
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        handlers.push(on_error);
        Ok(Rc::new(SseTransport {
            source,
            poster,
            _handlers: handlers,
        }))
    }
}

/// A v1 update with nothing in it.
pub const EMPTY_UPDATE: &[u8] = &[0, 0];

/// An awareness frame around an awareness update payload.
fn awareness_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![codec::MSG_AWARENESS as u8];
    tandem_engine::yrs::encoding::write::Write::write_buf(&mut frame, payload);
    frame
}

impl Transport for SseTransport {
    fn send(&self, frame: &[u8]) {
        self.poster.send(frame);
    }

    fn close(&self) {
        self.poster.close();
        self.source.close();
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.close();
    }
}
