//! [`Provider`]: keeps one document in sync with a Tandem (or any y-websocket) server.
//!
//! It drives the engine's [`SyncSession`] — the same protocol code the server runs — over
//! the first transport of its list that connects (default: WebSocket, then Server-Sent
//! Events with POSTs, then long polling), reconnects with exponential backoff and jitter
//! (capped at 30 s), retries the preferred transport first after every drop, resyncs
//! periodically, treats 30 s without a message as a dead connection, keeps edits made
//! offline (they go out with the next sync), and reports `status`, `synced`, `saved` and
//! `error` events. With persistence on, the document also lives in IndexedDB; with the
//! broadcast channel on, tabs of the same browser exchange updates directly.

pub mod backoff;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use serde::Deserialize;
use tandem_engine::protocol::codec;
use tandem_engine::{Document, Message, Role, SyncSession};
use wasm_bindgen::prelude::*;

use crate::awareness::{Awareness, AwarenessHub};
use crate::channel::Channel;
use crate::doc::{observer_key, Doc};
use crate::js::{call, defer, from_js, js_err, now_ms, window, Interval, WindowListener};
use crate::storage::Storage;
use crate::transport::poll::PollTransport;
use crate::transport::sse::SseTransport;
use crate::transport::ws::WsTransport;
use crate::transport::{Sink, Target, Transport, TransportKind};

/// A connection silent for this long is considered dead.
const SILENCE_LIMIT_MS: u64 = 30_000;
/// How long connecting waits for the IndexedDB copy.
const STORAGE_WAIT_MS: i32 = 2_000;
/// How often timers look at the connection and the presence (y-protocols checks every 3 s).
const TICK_MS: i32 = 3_000;

/// Options of [`Provider::new`] (all optional).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Options {
    /// Transports to try, in order.
    transports: Vec<String>,
    /// Connect right away.
    connect: bool,
    /// Ask the server for "saved" acknowledgements (Tandem servers; off for stock ones).
    save_acks: bool,
    /// Keep the document in IndexedDB.
    persistence: bool,
    /// Exchange updates with other tabs through a BroadcastChannel.
    broadcast: bool,
    /// Milliseconds between resyncs (a step 1 the server answers with what we lack).
    resync_interval: u32,
    /// Milliseconds between background attempts at the preferred transport while a
    /// fallback is in use.
    upgrade_interval: u32,
    /// Base URL of the HTTP API (default: the WebSocket URL's origin over http/https).
    http_url: Option<String>,
    /// Access token for a server with `--auth-secret` (sent as `?token=`).
    token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transports: vec!["websocket".into(), "sse".into(), "polling".into()],
            connect: true,
            save_acks: true,
            persistence: true,
            broadcast: true,
            resync_interval: 15_000,
            upgrade_interval: 30_000,
            http_url: None,
            token: None,
        }
    }
}

struct State {
    transport: Option<Rc<dyn Transport>>,
    /// Index in `order` of the transport in use or being tried.
    kind: usize,
    /// The current attempt: reports from other attempts are ignored.
    epoch: u64,
    /// Hands out attempt numbers (regular attempts and upgrade probes).
    next_epoch: u64,
    /// A background attempt at the preferred transport while a fallback is in use.
    probe: Option<(u64, Rc<dyn Transport>)>,
    last_probe_ms: u64,
    status: &'static str,
    synced: bool,
    session: SyncSession,
    /// Attempts since the last successful sync (drives the backoff).
    failures: u32,
    should_connect: bool,
    /// Document updates sent on this connection, and how many the server says are durable.
    sent: u64,
    acked: u64,
    /// Local changes not yet handed to a connection.
    dirty: bool,
    /// Last reported saved state (events fire on change).
    saved: bool,
    /// Update-log position reached (resuming SSE and polling).
    position: Option<u64>,
    last_message_ms: u64,
    last_resync_ms: u64,
    reconnect_timer: Option<i32>,
}

struct Inner {
    doc: Document,
    awareness: Rc<AwarenessHub>,
    ws_base: String,
    http_base: String,
    name: String,
    order: Vec<TransportKind>,
    options: Options,
    state: RefCell<State>,
    listeners: RefCell<Vec<(String, js_sys::Function)>>,
    storage: RefCell<Option<Rc<Storage>>>,
    /// Opening the IndexedDB copy has begun / has finished (or been given up on).
    storage_started: std::cell::Cell<bool>,
    storage_done: std::cell::Cell<bool>,
    channel: RefCell<Option<Channel>>,
    update_key: String,
    timers: RefCell<Vec<Interval>>,
    /// `online` / `offline` listeners on the window.
    network: RefCell<Vec<WindowListener>>,
    weak: Weak<Inner>,
}

/// Keeps a [`Doc`] (and optionally an [`Awareness`]) in sync with a server.
#[wasm_bindgen]
pub struct Provider {
    inner: Rc<Inner>,
}

/// Routes a transport's reports to the provider without keeping it alive.
struct Link(Weak<Inner>);

impl Sink for Link {
    fn opened(&self, epoch: u64) {
        if let Some(p) = self.0.upgrade() {
            p.on_open(epoch);
        }
    }
    fn frame(&self, epoch: u64, frame: &[u8]) {
        if let Some(p) = self.0.upgrade() {
            p.on_frame(epoch, frame);
        }
    }
    fn awareness_snapshot(&self, epoch: u64, update: &[u8]) {
        if let Some(p) = self.0.upgrade() {
            p.on_awareness_snapshot(epoch, update);
        }
    }
    fn position(&self, epoch: u64, seq: u64) {
        if let Some(p) = self.0.upgrade() {
            let mut s = p.state.borrow_mut();
            if s.epoch == epoch {
                s.position = Some(seq);
            }
        }
    }
    fn closed(&self, epoch: u64, code: u16, reason: &str, was_open: bool) {
        if let Some(p) = self.0.upgrade() {
            p.on_closed(epoch, code, reason, was_open);
        }
    }
}

/// `http(s)://host:port` of a `ws(s)://host:port/…` URL.
fn http_origin(ws_url: &str) -> String {
    let (scheme, rest) = match ws_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", ws_url),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

#[wasm_bindgen]
impl Provider {
    /// Syncs `doc` as document `name` of the server at `url` (a y-websocket base URL such
    /// as `ws://127.0.0.1:8080/ws`), sharing the presence `awareness`. `options`:
    /// `{transports, connect, saveAcks, persistence, broadcast, resyncInterval,
    /// upgradeInterval, httpUrl, token}`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        name: &str,
        doc: &Doc,
        awareness: &Awareness,
        options: JsValue,
    ) -> Result<Provider, JsError> {
        let options: Options = if options.is_object() {
            from_js(options)?
        } else {
            Options::default()
        };
        let awareness = awareness.hub.clone();
        let order: Vec<TransportKind> = options
            .transports
            .iter()
            .map(|t| {
                TransportKind::parse(t).ok_or_else(|| js_err(format!("unknown transport {t:?}")))
            })
            .collect::<Result<_, _>>()?;
        if order.is_empty() {
            return Err(JsError::new("at least one transport is needed"));
        }
        let http_base = options
            .http_url
            .clone()
            .unwrap_or_else(|| http_origin(url))
            .trim_end_matches('/')
            .to_owned();
        let connect = options.connect;
        let inner = Rc::new_cyclic(|weak| Inner {
            doc: doc.inner.clone(),
            awareness,
            ws_base: url.trim_end_matches('/').to_owned(),
            http_base,
            name: name.to_owned(),
            order,
            options,
            state: RefCell::new(State {
                transport: None,
                kind: 0,
                epoch: 0,
                next_epoch: 0,
                probe: None,
                last_probe_ms: 0,
                status: "disconnected",
                synced: false,
                session: SyncSession::new(Role::Client),
                failures: 0,
                should_connect: false,
                sent: 0,
                acked: 0,
                dirty: false,
                saved: true,
                position: None,
                last_message_ms: 0,
                last_resync_ms: 0,
                reconnect_timer: None,
            }),
            listeners: RefCell::new(Vec::new()),
            storage: RefCell::new(None),
            storage_started: std::cell::Cell::new(false),
            storage_done: std::cell::Cell::new(false),
            channel: RefCell::new(None),
            update_key: observer_key("provider"),
            timers: RefCell::new(Vec::new()),
            network: RefCell::new(Vec::new()),
            weak: weak.clone(),
        });
        inner.start()?;
        crate::keepalive::hold(&inner);
        if connect {
            inner.connect_after_storage();
        }
        Ok(Provider { inner })
    }

    /// Connects (or reconnects now, resetting the backoff).
    pub fn connect(&self) {
        self.inner.connect_after_storage();
    }

    /// Disconnects and stays disconnected until [`Provider::connect`].
    pub fn disconnect(&self) {
        self.inner.disconnect();
    }

    /// Disconnects for good, withdraws our presence and stops every timer and listener.
    pub fn destroy(&self) {
        self.inner.destroy();
        crate::keepalive::release(&self.inner);
    }

    /// Calls `f(value)` on `event`: `status` (`{status, transport}`), `synced` (bool),
    /// `saved` (bool) or `error` (`{code, reason}`: the server refused us for good).
    pub fn on(&self, event: &str, f: js_sys::Function) {
        self.inner
            .listeners
            .borrow_mut()
            .push((event.to_owned(), f));
    }

    /// Removes a listener added by [`Provider::on`].
    pub fn off(&self, event: &str, f: &js_sys::Function) {
        self.inner
            .listeners
            .borrow_mut()
            .retain(|(e, g)| !(e == event && g == f));
    }

    /// `connecting`, `connected` or `disconnected`.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> String {
        self.inner.state.borrow().status.to_owned()
    }

    /// The transport in use (`websocket`, `sse`, `polling`), if connected.
    #[wasm_bindgen(getter)]
    pub fn transport(&self) -> Option<String> {
        let s = self.inner.state.borrow();
        s.transport
            .as_ref()
            .map(|_| self.inner.order[s.kind].name().to_owned())
    }

    /// Whether the first sync with the server has completed on this connection.
    #[wasm_bindgen(getter)]
    pub fn synced(&self) -> bool {
        self.inner.state.borrow().synced
    }

    /// Whether every local change is known to be durable on the server.
    #[wasm_bindgen(getter)]
    pub fn saved(&self) -> bool {
        self.inner.state.borrow().saved
    }
}

impl Inner {
    /// Observers, storage, channel and timers.
    fn start(self: &Rc<Self>) -> Result<(), JsError> {
        let weak = self.weak.clone();
        self.doc
            .observe_updates(self.update_key.as_str(), move |update, remote| {
                if remote {
                    return;
                }
                if let Some(p) = weak.upgrade() {
                    p.on_local_update(update);
                }
            });
        {
            let hub = &self.awareness;
            let weak = self.weak.clone();
            hub.set_outgoing(Some(Box::new(move |update| {
                if let Some(p) = weak.upgrade() {
                    p.send(&update.encode_frame());
                }
            })));
        }
        if self.options.broadcast {
            *self.channel.borrow_mut() = Channel::open(&self.name, self.doc.clone()).ok();
        }
        let weak = self.weak.clone();
        self.every(TICK_MS, move || {
            if let Some(p) = weak.upgrade() {
                p.tick();
            }
        })?;
        for event in ["online", "offline"] {
            let weak = self.weak.clone();
            let online = event == "online";
            let f = Closure::<dyn FnMut()>::new(move || {
                if let Some(p) = weak.upgrade() {
                    p.on_network(online);
                }
            });
            window()?
                .add_event_listener_with_callback(event, f.as_ref().unchecked_ref())
                .map_err(|_| JsError::new("cannot listen to online/offline"))?;
            self.network.borrow_mut().push((event, f));
        }
        Ok(())
    }

    fn every(&self, ms: i32, f: impl FnMut() + 'static) -> Result<(), JsError> {
        let f = Closure::<dyn FnMut()>::new(f);
        let id = window()?
            .set_interval_with_callback_and_timeout_and_arguments_0(f.as_ref().unchecked_ref(), ms)
            .map_err(|_| JsError::new("setInterval failed"))?;
        self.timers.borrow_mut().push((id, f));
        Ok(())
    }

    /// Loads the IndexedDB copy first (so our first sync carries offline edits), then
    /// connects. A browser that keeps the database from opening (some privacy modes,
    /// third-party frames) gets [`STORAGE_WAIT_MS`] before we connect without it; if the
    /// copy arrives later, its content is sent as one update.
    fn connect_after_storage(self: &Rc<Self>) {
        self.state.borrow_mut().should_connect = true;
        if !self.options.persistence || self.storage_done.get() {
            self.reconnect_now();
            return;
        }
        if self.storage_started.replace(true) {
            return;
        }
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match Storage::open(&me.name, me.doc.clone()).await {
                Ok(storage) => *me.storage.borrow_mut() = Some(storage),
                Err(e) => web_sys::console::warn_2(&"tandem: no offline persistence:".into(), &e),
            }
            let late = me.storage_done.replace(true);
            me.emit("loaded", JsValue::TRUE);
            if late {
                me.send(&codec::encode_update(&me.doc.snapshot_v1()));
            } else if me.state.borrow().should_connect {
                me.reconnect_now();
            }
        });
        let weak = self.weak.clone();
        let give_up = Closure::once_into_js(move || {
            if let Some(p) = weak.upgrade() {
                if !p.storage_done.replace(true) && p.state.borrow().should_connect {
                    web_sys::console::warn_1(
                        &"tandem: IndexedDB is slow to open; connecting without it".into(),
                    );
                    p.reconnect_now();
                }
            }
        });
        if let Ok(w) = window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                give_up.unchecked_ref(),
                STORAGE_WAIT_MS,
            );
        }
    }

    fn reconnect_now(self: &Rc<Self>) {
        {
            let mut s = self.state.borrow_mut();
            s.failures = 0;
            s.kind = 0;
            if let Some(t) = s.reconnect_timer.take() {
                if let Ok(w) = window() {
                    w.clear_timeout_with_handle(t);
                }
            }
        }
        self.close_transport();
        self.open();
    }

    /// Starts an attempt with the current transport kind.
    fn open(self: &Rc<Self>) {
        let (kind, epoch, resume) = {
            let mut s = self.state.borrow_mut();
            if !s.should_connect || s.transport.is_some() {
                return;
            }
            s.next_epoch += 1;
            s.epoch = s.next_epoch;
            s.status = "connecting";
            (self.order[s.kind], s.epoch, s.position)
        };
        self.emit_status();
        match self.start_transport(kind, epoch, resume) {
            Ok(t) => self.state.borrow_mut().transport = Some(t),
            Err(_) => {
                let me = self.clone();
                defer(move || me.on_closed(epoch, 1006, "cannot open transport", false));
            }
        }
    }

    fn start_transport(
        self: &Rc<Self>,
        kind: TransportKind,
        epoch: u64,
        resume: Option<u64>,
    ) -> Result<Rc<dyn Transport>, JsValue> {
        let target = Target {
            ws_base: self.ws_base.clone(),
            http_base: self.http_base.clone(),
            name: self.name.clone(),
            acks: self.options.save_acks,
            token: self.options.token.clone(),
            resume,
            epoch,
            sink: Rc::new(Link(self.weak.clone())),
        };
        match kind {
            TransportKind::WebSocket => {
                WsTransport::connect(&target).map(|t| t as Rc<dyn Transport>)
            }
            TransportKind::Sse => SseTransport::connect(&target).map(|t| t as Rc<dyn Transport>),
            TransportKind::Poll => Ok(PollTransport::connect(&target) as Rc<dyn Transport>),
        }
    }

    /// While on a fallback, tries the preferred transport in the background every
    /// `upgradeInterval` ms; if it opens, the provider switches to it (socket.io's upgrade).
    fn probe_upgrade(self: &Rc<Self>, now: u64) {
        let epoch = {
            let mut s = self.state.borrow_mut();
            let on_fallback = s.status == "connected" && self.order[s.kind] != self.order[0];
            let due = now.saturating_sub(s.last_probe_ms) >= self.options.upgrade_interval as u64;
            if !on_fallback || s.probe.is_some() || !due {
                return;
            }
            s.last_probe_ms = now;
            s.next_epoch += 1;
            s.next_epoch
        };
        if let Ok(t) = self.start_transport(self.order[0], epoch, None) {
            self.state.borrow_mut().probe = Some((epoch, t));
        }
    }

    /// The upgrade probe opened: it becomes the connection.
    fn adopt_probe(&self, epoch: u64) -> bool {
        let old = {
            let mut s = self.state.borrow_mut();
            match s.probe.take() {
                Some((e, t)) if e == epoch => {
                    s.epoch = epoch;
                    s.kind = 0;
                    s.transport.replace(t)
                }
                other => {
                    s.probe = other;
                    return false;
                }
            }
        };
        if let Some(old) = old {
            old.close();
        }
        true
    }

    fn on_open(self: &Rc<Self>, epoch: u64) {
        if self.state.borrow().epoch != epoch && !self.adopt_probe(epoch) {
            return;
        }
        let hello = {
            let mut s = self.state.borrow_mut();
            if s.epoch != epoch {
                return;
            }
            s.status = "connected";
            s.session = SyncSession::new(Role::Client);
            s.synced = false;
            s.sent = 0;
            s.acked = 0;
            s.last_message_ms = now_ms();
            s.last_resync_ms = now_ms();
            s.last_probe_ms = now_ms();
            let mut frames = vec![codec::encode_step1(&self.doc.state_vector_v1())];
            {
                let hub = &self.awareness;
                let aw = hub.state.borrow();
                if aw.local_state().is_some() {
                    frames.push(aw.encode(&[aw.client_id()]).encode_frame());
                }
            }
            frames
        };
        self.emit_status();
        for frame in hello {
            self.send(&frame);
        }
    }

    fn on_frame(self: &Rc<Self>, epoch: u64, frame: &[u8]) {
        let message = match Message::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                web_sys::console::warn_1(
                    &format!("tandem: ignoring undecodable frame: {e}").into(),
                );
                return;
            }
        };
        let outcome = {
            let mut s = self.state.borrow_mut();
            if s.epoch != epoch {
                return;
            }
            s.last_message_ms = now_ms();
            let mut awareness = self.awareness.state.borrow_mut();
            match s
                .session
                .handle(&self.doc, &mut awareness, &message, now_ms())
            {
                Ok(o) => o,
                Err(e) => {
                    web_sys::console::warn_1(&format!("tandem: {e}").into());
                    return;
                }
            }
        };
        for reply in &outcome.reply {
            self.send(reply);
        }
        {
            let hub = &self.awareness;
            hub.notify(&outcome.awareness, "remote");
        }
        if outcome.synced {
            {
                let mut s = self.state.borrow_mut();
                s.synced = true;
                s.failures = 0;
            }
            self.emit("synced", JsValue::TRUE);
        }
        if let Some(n) = outcome.saved {
            self.state.borrow_mut().acked = n;
        }
        self.update_saved();
    }

    fn on_awareness_snapshot(self: &Rc<Self>, epoch: u64, update: &[u8]) {
        if self.state.borrow().epoch != epoch {
            return;
        }
        let hub = &self.awareness;
        let Ok(update) = tandem_engine::AwarenessUpdate::decode(update) else {
            return;
        };
        let changes = {
            let mut aw = hub.state.borrow_mut();
            let me = aw.client_id();
            let listed: std::collections::HashSet<u64> =
                update.entries.iter().map(|e| e.client_id).collect();
            let gone: Vec<u64> = aw
                .states()
                .map(|(id, _)| id)
                .filter(|id| *id != me && !listed.contains(id))
                .collect();
            let mut changes = aw.apply_update(&update, now_ms());
            changes
                .removed
                .extend(aw.remove_states(&gone, now_ms()).removed);
            changes
        };
        hub.notify(&changes, "remote");
    }

    fn on_closed(self: &Rc<Self>, epoch: u64, code: u16, reason: &str, was_open: bool) {
        let delay = {
            let mut s = self.state.borrow_mut();
            if s.probe.as_ref().is_some_and(|(e, _)| *e == epoch) {
                s.probe = None; // the preferred transport still cannot connect
                return;
            }
            if s.epoch != epoch {
                return;
            }
            s.transport = None;
            s.synced = false;
            s.status = "disconnected";
            if (4000..5000).contains(&code) {
                s.should_connect = false;
            }
            if !s.should_connect {
                None
            } else if !was_open && s.kind + 1 < self.order.len() {
                // This transport cannot connect: fall back to the next one at once.
                s.kind += 1;
                Some(0)
            } else {
                // A full round failed, or a working connection dropped: start again from
                // the preferred transport after a backoff.
                s.kind = 0;
                let delay = backoff::delay_ms(s.failures, js_sys::Math::random());
                s.failures += 1;
                Some(delay)
            }
        };
        self.forget_remote_presence();
        self.emit_status();
        self.update_saved();
        if (4000..5000).contains(&code) {
            let detail = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&detail, &"code".into(), &code.into());
            let _ = js_sys::Reflect::set(&detail, &"reason".into(), &reason.into());
            self.emit("error", detail.into());
        }
        if let Some(delay) = delay {
            self.schedule(delay);
        }
    }

    fn schedule(self: &Rc<Self>, delay_ms: u32) {
        let weak = self.weak.clone();
        let f = Closure::once_into_js(move || {
            if let Some(p) = weak.upgrade() {
                p.state.borrow_mut().reconnect_timer = None;
                p.open();
            }
        });
        if let Ok(w) = window() {
            if let Ok(id) = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                f.unchecked_ref(),
                delay_ms as i32,
            ) {
                self.state.borrow_mut().reconnect_timer = Some(id);
            }
        }
    }

    /// Hands a frame to the open connection, counting document updates for acks.
    fn send(&self, frame: &[u8]) {
        let transport = {
            let mut s = self.state.borrow_mut();
            let Some(t) = s.transport.clone() else { return };
            if s.status != "connected" {
                return;
            }
            if frame.starts_with(&[codec::MSG_SYNC as u8, codec::SYNC_STEP2 as u8]) {
                // Our answer to the server's step 1 carries everything it lacked.
                s.dirty = false;
                s.sent += 1;
            } else if frame.starts_with(&[codec::MSG_SYNC as u8, codec::SYNC_UPDATE as u8]) {
                s.sent += 1;
            }
            t
        };
        transport.send(frame);
    }

    fn on_local_update(self: &Rc<Self>, update: &[u8]) {
        if let Some(channel) = self.channel.borrow().as_ref() {
            channel.post(update);
        }
        let connected = match self.state.try_borrow_mut() {
            Ok(mut s) => {
                let connected = s.status == "connected" && s.synced;
                if !connected {
                    s.dirty = true;
                }
                connected
            }
            Err(_) => false,
        };
        if connected {
            self.send(&codec::encode_update(update));
        }
        let me = self.clone();
        defer(move || me.update_saved());
    }

    fn tick(self: &Rc<Self>) {
        let now = now_ms();
        let (silent, resync, epoch) = {
            let s = self.state.borrow();
            let connected = s.status == "connected";
            (
                connected && now.saturating_sub(s.last_message_ms) > SILENCE_LIMIT_MS,
                connected
                    && s.synced
                    && now.saturating_sub(s.last_resync_ms) >= self.options.resync_interval as u64,
                s.epoch,
            )
        };
        if silent {
            self.close_transport();
            self.on_closed(epoch, 1006, "no message for 30 s", true);
            return;
        }
        if resync {
            self.state.borrow_mut().last_resync_ms = now;
            self.send(&codec::encode_step1(&self.doc.state_vector_v1()));
        }
        self.probe_upgrade(now);
        {
            let hub = &self.awareness;
            let (changes, renewal) = hub.state.borrow_mut().expire(now);
            if let Some(update) = renewal {
                self.send(&update.encode_frame());
            }
            hub.notify(&changes, "remote");
        }
    }

    fn on_network(self: &Rc<Self>, online: bool) {
        if online {
            if self.state.borrow().should_connect {
                self.reconnect_now();
            }
        } else {
            let epoch = self.state.borrow().epoch;
            self.close_transport();
            self.on_closed(epoch, 1006, "browser offline", true);
        }
    }

    fn close_transport(&self) {
        let (t, probe) = {
            let mut s = self.state.borrow_mut();
            (s.transport.take(), s.probe.take())
        };
        for t in t.into_iter().chain(probe.map(|(_, p)| p)) {
            t.close();
        }
    }

    fn disconnect(self: &Rc<Self>) {
        let epoch = {
            let mut s = self.state.borrow_mut();
            s.should_connect = false;
            if let Some(t) = s.reconnect_timer.take() {
                if let Ok(w) = window() {
                    w.clear_timeout_with_handle(t);
                }
            }
            s.epoch
        };
        self.close_transport();
        self.on_closed(epoch, 1000, "disconnect", true);
    }

    fn destroy(self: &Rc<Self>) {
        {
            let hub = &self.awareness;
            let update = {
                let mut aw = hub.state.borrow_mut();
                let me = aw.client_id();
                aw.remove_states(&[me], now_ms());
                aw.encode(&[me])
            };
            self.send(&update.encode_frame());
            hub.set_outgoing(None);
        }
        self.disconnect();
        self.doc.unobserve_updates(self.update_key.as_str());
        if let Ok(w) = window() {
            for (id, f) in self.timers.borrow_mut().drain(..) {
                if id >= 0 {
                    w.clear_interval_with_handle(id);
                } else {
                    for event in ["online", "offline"] {
                        let _ = w
                            .remove_event_listener_with_callback(event, f.as_ref().unchecked_ref());
                    }
                }
            }
        }
        self.channel.borrow_mut().take();
        if let Some(storage) = self.storage.borrow_mut().take() {
            storage.close();
        }
        self.listeners.borrow_mut().clear();
    }

    /// Drops every remote presence state: with no connection we cannot know who is here.
    fn forget_remote_presence(&self) {
        let hub = &self.awareness;
        let changes = {
            let mut aw = hub.state.borrow_mut();
            let me = aw.client_id();
            let others: Vec<u64> = aw
                .states()
                .map(|(id, _)| id)
                .filter(|id| *id != me)
                .collect();
            aw.remove_states(&others, now_ms())
        };
        hub.notify(&changes, "remote");
    }

    fn update_saved(&self) {
        let changed = {
            let mut s = self.state.borrow_mut();
            let saved = if self.options.save_acks {
                !s.dirty && s.acked >= s.sent
            } else {
                !s.dirty && s.synced
            };
            let changed = saved != s.saved;
            s.saved = saved;
            changed.then_some(saved)
        };
        if let Some(saved) = changed {
            self.emit("saved", saved.into());
        }
    }

    fn emit_status(&self) {
        let (status, transport) = {
            let s = self.state.borrow();
            (s.status, self.order[s.kind].name())
        };
        let detail = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&detail, &"status".into(), &status.into());
        let _ = js_sys::Reflect::set(&detail, &"transport".into(), &transport.into());
        self.emit("status", detail.into());
    }

    fn emit(&self, event: &str, value: JsValue) {
        let listeners: Vec<js_sys::Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, f)| f.clone())
            .collect();
        for f in listeners {
            call(&f, std::slice::from_ref(&value));
        }
    }
}
