//! The WebSocket transport: the y-websocket protocol, one frame per message.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::{Target, Transport};

/// One WebSocket connection (attempt).
pub struct WsTransport {
    ws: WebSocket,
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
}

impl WsTransport {
    /// Starts connecting to `ws_base/{doc}` (with `?acks=1` when asked).
    pub fn connect(target: &Target) -> Result<Rc<WsTransport>, JsValue> {
        let base = format!(
            "{}/{}",
            target.ws_base.trim_end_matches('/'),
            js_sys::encode_uri_component(&target.name)
        );
        let acks = target.acks.then(|| "acks=1".to_owned());
        let url = target.with_query(base, acks.into_iter().collect());
        let ws = WebSocket::new(&url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let opened = Rc::new(Cell::new(false));
        let epoch = target.epoch;
        let (sink, flag) = (target.sink.clone(), opened.clone());
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            flag.set(true);
            sink.opened(epoch);
        });
        let sink = target.sink.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: MessageEvent = e.unchecked_into();
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                sink.frame(epoch, &js_sys::Uint8Array::new(&buf).to_vec());
            }
        });
        let sink = target.sink.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: CloseEvent = e.unchecked_into();
            sink.closed(epoch, e.code(), &e.reason(), opened.get());
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Rc::new(WsTransport {
            ws,
            _handlers: [on_open, on_message, on_close],
        }))
    }
}

impl Transport for WsTransport {
    fn send(&self, frame: &[u8]) {
        if self.ws.ready_state() == WebSocket::OPEN {
            let _ = self.ws.send_with_u8_array(frame);
        }
    }

    fn close(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.close();
    }
}
