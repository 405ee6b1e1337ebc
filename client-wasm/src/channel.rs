//! Tabs of one browser exchange updates directly through a `BroadcastChannel`
//! (`tandem:{doc}`): instantly, and even while the server is unreachable. A new tab asks
//! the others for what it lacks by posting its state vector.

use tandem_engine::Document;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

/// The channel of one document in this tab.
pub struct Channel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

fn message(kind: &str, data: &[u8]) -> JsValue {
    let msg = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&msg, &"kind".into(), &kind.into());
    let _ = js_sys::Reflect::set(&msg, &"data".into(), &js_sys::Uint8Array::from(data));
    msg.into()
}

impl Channel {
    /// Joins the channel of document `name` and asks the other tabs for what `doc` lacks.
    pub fn open(name: &str, doc: Document) -> Result<Channel, JsValue> {
        let channel = BroadcastChannel::new(&format!("tandem:{name}"))?;
        let state_vector = doc.state_vector_v1();
        let reply_to = channel.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data();
            let kind = js_sys::Reflect::get(&data, &"kind".into())
                .ok()
                .and_then(|k| k.as_string());
            let Ok(bytes) = js_sys::Reflect::get(&data, &"data".into())
                .and_then(|b| b.dyn_into::<js_sys::Uint8Array>())
            else {
                return;
            };
            let bytes = bytes.to_vec();
            match kind.as_deref() {
                Some("update") => {
                    let _ = doc.apply_update_v1(&bytes);
                }
                Some("state-vector") => {
                    if let Ok(diff) = doc.diff_v1(&bytes) {
                        if diff.len() > 2 {
                            let _ = reply_to.post_message(&message("update", &diff));
                        }
                    }
                }
                _ => {}
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let _ = channel.post_message(&message("state-vector", &state_vector));
        Ok(Channel {
            channel,
            _on_message: on_message,
        })
    }

    /// Sends a local update to the other tabs.
    pub fn post(&self, update: &[u8]) {
        let _ = self.channel.post_message(&message("update", update));
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}
