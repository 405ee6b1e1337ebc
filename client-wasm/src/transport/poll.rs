//! The long-polling transport, for networks that pass neither WebSockets nor streaming
//! responses: `GET …/poll` waits for the next change (the first asks for the server's
//! state vector too, so local edits the server lacks are posted at once), and what the
//! client sends goes out as HTTP POSTs.

use std::cell::Cell;
use std::rc::Rc;

use base64::Engine;
use tandem_engine::protocol::codec;

use super::http::{fetch_json, Poster};
use super::sse::EMPTY_UPDATE;
use super::{Target, Transport};

/// Seconds each poll may wait on the server.
const POLL_SECONDS: u32 = 25;

/// One polling loop (attempt).
pub struct PollTransport {
    poster: Rc<Poster>,
    stopped: Rc<Cell<bool>>,
}

fn b64(value: &serde_json::Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str()?)
        .ok()
}

impl PollTransport {
    /// Starts polling `target`'s document.
    pub fn connect(target: &Target) -> Rc<PollTransport> {
        let poster = Poster::new(target.clone());
        let stopped = Rc::new(Cell::new(false));
        let (target, stop, p) = (target.clone(), stopped.clone(), poster.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let (epoch, sink) = (target.epoch, target.sink.clone());
            let mut since = target.resume.unwrap_or(0);
            let mut aw = 0u64;
            let mut opened = false;
            loop {
                let mut params = vec![
                    format!("since={since}"),
                    format!("aw={aw}"),
                    format!("timeout={POLL_SECONDS}"),
                ];
                if !opened {
                    params.push("sv=1".to_owned());
                }
                let url = target.api("poll", params);
                let answer = fetch_json(&url, None).await;
                if stop.get() {
                    return;
                }
                let batch = match answer {
                    Ok(batch) => batch,
                    Err(e) => {
                        p.close();
                        let code = match e.status {
                            Some(s) if (400..500).contains(&s) => 4000 + s,
                            _ => 1006,
                        };
                        sink.closed(epoch, code, &e.message, opened);
                        return;
                    }
                };
                let first = !opened;
                if first {
                    opened = true;
                    sink.opened(epoch);
                }
                let state = b64(&batch["state"]);
                if let Some(state) = &state {
                    sink.frame(epoch, &codec::encode_step2(state));
                }
                for update in batch["updates"].as_array().into_iter().flatten() {
                    if let Some(update) = b64(update) {
                        sink.frame(epoch, &codec::encode_update(&update));
                    }
                }
                if first && state.is_none() {
                    // The first answer carried everything missed as updates: caught up.
                    sink.frame(epoch, &codec::encode_step2(EMPTY_UPDATE));
                }
                if let Some(sv) = b64(&batch["state_vector"]) {
                    sink.frame(epoch, &codec::encode_step1(&sv));
                }
                if let Some(states) = b64(&batch["awareness"]) {
                    sink.awareness_snapshot(epoch, &states);
                }
                since = batch["since"].as_u64().unwrap_or(since);
                aw = batch["aw"].as_u64().unwrap_or(aw);
                sink.position(epoch, since);
            }
        });
        Rc::new(PollTransport { poster, stopped })
    }
}

impl Transport for PollTransport {
    fn send(&self, frame: &[u8]) {
        self.poster.send(frame);
    }

    fn close(&self) {
        self.stopped.set(true);
        self.poster.close();
    }
}

impl Drop for PollTransport {
    fn drop(&mut self) {
        self.close();
    }
}
