//! Test harness: starts the real `tandem-server` binary on a free loopback port and drives
//! it with real WebSocket clients built on the engine's client-role sync session.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tandem_engine::{Awareness, Document, Message, Role, SyncSession};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// Starts the server with extra flags and waits until it answers `/healthz`.
    pub fn start(args: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tandem-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    pub fn url(&self, doc: &str) -> String {
        format!("ws://127.0.0.1:{}/ws/{}", self.port, doc)
    }

    pub fn http(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Opens a raw WebSocket to `url`.
pub async fn raw(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// Reads until the server closes; returns its close frame (code, reason).
pub async fn close_of(ws: &mut Socket) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Ws::Close(Some(CloseFrame { code, reason }))))) => {
                return Some((code.into(), reason.to_string()))
            }
            Ok(Some(Ok(Ws::Close(None)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("server did not close the connection"),
        }
    }
}

struct Shared {
    doc: Document,
    awareness: Awareness,
    session: SyncSession,
    synced: bool,
    closed: Option<(u16, String)>,
}

/// A y-websocket client: a document replica synced through the engine's session.
pub struct Client {
    shared: Arc<Mutex<Shared>>,
    out: mpsc::UnboundedSender<Ws>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let ws = raw(url).await;
        let doc = Document::new("client");
        let awareness = Awareness::new(doc.client_id());
        let shared = Arc::new(Mutex::new(Shared {
            session: SyncSession::new(Role::Client),
            synced: false,
            closed: None,
            doc,
            awareness,
        }));
        let (out, mut out_rx) = mpsc::unbounded_channel::<Ws>();
        let (mut sink, mut stream) = ws.split();
        {
            // Like y-websocket: send step 1 right away.
            let s = shared.lock().unwrap();
            let hello = tandem_engine::protocol::codec::encode_step1(&s.doc.state_vector_v1());
            out.send(Ws::Binary(hello.into())).unwrap();
        }
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, Ws::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        let reader_shared = shared.clone();
        let reply = out.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Ws::Binary(frame)) => {
                        let mut guard = reader_shared.lock().unwrap();
                        let s = &mut *guard;
                        let msg = Message::decode(&frame).expect("server frames decode");
                        let out = s
                            .session
                            .handle(&s.doc, &mut s.awareness, &msg, now_ms())
                            .expect("server frames apply");
                        if out.synced {
                            s.synced = true;
                        }
                        for r in out.reply {
                            let _ = reply.send(Ws::Binary(r.into()));
                        }
                    }
                    Ok(Ws::Close(frame)) => {
                        reader_shared.lock().unwrap().closed =
                            Some(frame.map_or((1005, String::new()), |f| {
                                (f.code.into(), f.reason.to_string())
                            }));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let c = Client { shared, out };
        c.wait(|s| s.synced, "initial sync").await;
        c
    }

    async fn wait(&self, cond: impl Fn(&Shared) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if cond(&self.shared.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Inserts `s` at `pos` (clamped) and sends the update, as a provider would.
    pub fn insert(&self, pos: u32, s: &str) {
        let guard = self.shared.lock().unwrap();
        let text = guard.doc.text("content");
        let (_, update) = guard.doc.edit_with_update(|e| {
            let pos = pos.min(e.text_len(&text));
            e.insert(&text, pos, s).unwrap()
        });
        let frame = tandem_engine::protocol::codec::encode_update(&update.unwrap());
        self.out.send(Ws::Binary(frame.into())).unwrap();
    }

    pub fn text(&self) -> String {
        self.shared.lock().unwrap().doc.text_string("content")
    }

    /// The state vector as client → clock (the encoding's entry order is unspecified).
    pub fn state_vector(&self) -> std::collections::BTreeMap<u64, u32> {
        use tandem_engine::yrs::ReadTxn;
        let s = self.shared.lock().unwrap();
        let txn = s.doc.read();
        txn.state_vector()
            .iter()
            .map(|(c, k)| (c.get(), *k))
            .collect()
    }

    pub fn client_id(&self) -> u64 {
        self.shared.lock().unwrap().doc.client_id()
    }

    /// Publishes a presence state.
    pub fn set_presence(&self, json: &str) {
        let mut s = self.shared.lock().unwrap();
        let update = s
            .awareness
            .set_local_state_json(Some(json), now_ms())
            .unwrap();
        self.out
            .send(Ws::Binary(update.encode_frame().into()))
            .unwrap();
    }

    pub fn presence_of(&self, client: u64) -> Option<String> {
        self.shared
            .lock()
            .unwrap()
            .awareness
            .state(client)
            .map(str::to_owned)
    }

    pub async fn wait_text(&self, cond: impl Fn(&str) -> bool, what: &str) {
        self.wait(|s| cond(&s.doc.text_string("content")), what)
            .await
    }

    pub async fn wait_presence(&self, client: u64, present: bool) {
        self.wait(
            |s| s.awareness.state(client).is_some() == present,
            "presence change",
        )
        .await
    }

    pub fn closed(&self) -> Option<(u16, String)> {
        self.shared.lock().unwrap().closed.clone()
    }

    pub async fn wait_closed(&self) -> (u16, String) {
        self.wait(|s| s.closed.is_some(), "close").await;
        self.closed().unwrap()
    }

    /// Sends raw bytes as one binary frame.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.out.send(Ws::Binary(bytes.into())).unwrap();
    }

    pub fn disconnect(&self) {
        let _ = self.out.send(Ws::Close(None));
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
