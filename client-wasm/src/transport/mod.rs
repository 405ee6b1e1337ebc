//! The ways a provider can reach the server, behind one trait: a WebSocket (the
//! y-websocket protocol), Server-Sent Events with HTTP POSTs, and long polling. Each
//! speaks y-protocols frames to the provider, so the sync logic above them is the same.

pub mod http;
pub mod poll;
pub mod sse;
pub mod ws;

use std::rc::Rc;

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// `ws://…/ws/{doc}`.
    WebSocket,
    /// `GET …/events` plus `POST …/updates`.
    Sse,
    /// `GET …/poll` plus `POST …/updates`.
    Poll,
}

impl TransportKind {
    /// The name used in options and status events.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::WebSocket => "websocket",
            TransportKind::Sse => "sse",
            TransportKind::Poll => "polling",
        }
    }

    /// Parses an option value.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "websocket" | "ws" => Some(TransportKind::WebSocket),
            "sse" | "eventsource" => Some(TransportKind::Sse),
            "polling" | "poll" | "long-polling" => Some(TransportKind::Poll),
            _ => None,
        }
    }
}

/// A connection attempt or an open connection.
pub trait Transport {
    /// Sends one y-protocols frame (best effort: a lost frame is recovered by the next sync).
    fn send(&self, frame: &[u8]);
    /// Closes without reporting back.
    fn close(&self);
}

/// What a transport reports to its provider. Every call names the attempt (`epoch`) it
/// belongs to, so reports from an abandoned attempt are ignored.
pub trait Sink {
    /// The connection is up.
    fn opened(&self, epoch: u64);
    /// A frame arrived.
    fn frame(&self, epoch: u64, frame: &[u8]);
    /// Every presence state the server knows, replacing what we had (long polling).
    fn awareness_snapshot(&self, epoch: u64, update: &[u8]);
    /// The update-log position the client has reached (SSE ids, poll `since`).
    fn position(&self, epoch: u64, seq: u64);
    /// The connection ended (or never opened: `was_open` false) with a WebSocket-style
    /// close code and reason.
    fn closed(&self, epoch: u64, code: u16, reason: &str, was_open: bool);
}

/// Where a transport connects and reports.
#[derive(Clone)]
pub struct Target {
    /// `ws://host:port/ws` (the y-websocket base URL).
    pub ws_base: String,
    /// `http://host:port` (the HTTP API).
    pub http_base: String,
    /// The document name.
    pub name: String,
    /// Ask the server for "saved" acknowledgements.
    pub acks: bool,
    /// The access token, sent as `?token=` on every request (WebSocket and EventSource
    /// cannot set headers).
    pub token: Option<String>,
    /// The update-log position to resume from (SSE and polling).
    pub resume: Option<u64>,
    /// The attempt.
    pub epoch: u64,
    /// The provider.
    pub sink: Rc<dyn Sink>,
}

impl Target {
    /// `http_base/api/docs/{doc}/tail?params` (with the token).
    pub fn api(&self, tail: &str, params: Vec<String>) -> String {
        let base = format!(
            "{}/api/docs/{}/{}",
            self.http_base,
            js_sys::encode_uri_component(&self.name),
            tail
        );
        self.with_query(base, params)
    }

    /// `url?params&token=…` (no `?` when there is nothing to add).
    pub fn with_query(&self, mut url: String, mut params: Vec<String>) -> String {
        if let Some(token) = &self.token {
            params.push(format!("token={}", js_sys::encode_uri_component(token)));
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        url
    }
}
