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
    /// The database it stores documents in.
    pub db_url: String,
    args: Vec<String>,
    /// Holds the SQLite file of a server started with [`Server::start`].
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server with extra flags on a fresh SQLite database of its own.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/tandem.db", dir.path().display());
        let mut server = Server::start_with_db(&url, args);
        server._dir = Some(dir);
        server
    }

    /// Starts the server on the database `db_url` and waits until it accepts connections.
    pub fn start_with_db(db_url: &str, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let port = free_port();
        let child = spawn_server(port, db_url, &args);
        Server {
            child,
            port,
            db_url: db_url.to_owned(),
            args,
            _dir: None,
        }
    }

    /// Whether the server process is still running.
    pub fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (no shutdown, no flush) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the server to shut down gracefully (SIGTERM), as a process manager does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status:?}");
    }

    /// Starts the server again on the same port, database and flags.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_server(self.port, &self.db_url, &self.args);
    }

    /// Sends an HTTP request and returns (status, body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.request_with(method, path, &[], body)
    }

    /// [`Server::request`] with extra headers (`Authorization`, `Origin`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let out = http_exchange(self.port, method, path, headers, body).unwrap();
        let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
        let head_end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers")
            + 4;
        let head = String::from_utf8_lossy(&out[..head_end]).to_lowercase();
        let mut body = out[head_end..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body)
    }

    /// Imports into `doc` (through `POST /api/docs/{doc}/state`) a document whose text
    /// `content` is `text`; returns the update imported.
    pub fn import_text(&self, doc: &str, text: &str) -> Vec<u8> {
        let source = Document::new(doc);
        let content = source.text("content");
        let update = source
            .edit_with_update(|e| e.insert(&content, 0, text).unwrap())
            .1
            .unwrap();
        let (status, body) = self.request("POST", &format!("/api/docs/{doc}/state"), &update);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        update
    }

    /// `request` with a JSON answer.
    pub fn json(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (status, body) = self.request(method, path, body);
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
        (status, value)
    }

    pub fn url(&self, doc: &str) -> String {
        format!("ws://127.0.0.1:{}/ws/{}", self.port, doc)
    }

    /// The URL of a client that asks for "saved" acknowledgements.
    pub fn acks_url(&self, doc: &str) -> String {
        format!("{}?acks=1", self.url(doc))
    }

    pub fn http(&self, path: &str) -> (u16, String) {
        let (status, body) = self.request("GET", path, b"");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn spawn_server(port: u16, db_url: &str, args: &[String]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem-server"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--database-url")
        .arg(db_url)
        .args(args)
        // TEST_SERVER_LOG=debug shows the server's log (it writes to stdout).
        .env(
            "RUST_LOG",
            std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(if std::env::var_os("TEST_SERVER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tandem-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_healthz(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tandem-server exited while starting: {status}");
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Whether a tandem-server answers `/healthz` on `port`. A bare TCP connect is not proof:
/// the probe's own socket can be given `port` as its source port and connect to itself
/// (TCP simultaneous open), and then the first client finds nobody listening.
fn answers_healthz(port: u16) -> bool {
    http_exchange(port, "GET", "/healthz", &[], b"")
        .is_ok_and(|response| response.starts_with(b"HTTP/1.1 200"))
}

/// One HTTP/1.1 request on a fresh connection; the whole raw response.
pub fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 4 + size..];
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on, never handed out before in this process: the kernel may
/// give a just-released port to the next `bind(0)`, and two test servers racing for one
/// port make the loser's clients talk to the winner.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Opens a raw WebSocket to `url`.
pub async fn raw(url: &str) -> Socket {
    // TCP_NODELAY as browsers do: without it a frame sent right after another waits ~40 ms.
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connect")
        .0
}

/// A client's WebSocket upgrade request to `/ws/{doc}` on `port`, written by hand (for
/// tests that send it in pieces or with a frame behind it). The key's accept value is
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
pub fn upgrade_head(port: u16, doc: &str) -> String {
    format!(
        "GET /ws/{doc} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads a response head byte by byte, so nothing after it is taken from the socket.
pub async fn read_response_head(tcp: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.expect("a response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
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
    /// Document updates sent (step 2 and updates), for "saved" acknowledgements.
    sent_updates: u64,
    /// The last "saved" acknowledgement: how many of our updates are durable.
    saved: Option<u64>,
}

/// A y-websocket client: a document replica synced through the engine's session.
pub struct Client {
    shared: Arc<Mutex<Shared>>,
    out: mpsc::UnboundedSender<Ws>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Client::connect_with_state(url, None).await
    }

    /// A client whose replica starts with `state` (a v1 update): what a y-websocket client
    /// that reconnects (to another node, say) brings along; the sync uploads what the
    /// server lacks.
    pub async fn connect_with_state(url: &str, state: Option<&[u8]>) -> Client {
        let ws = raw(url).await;
        let doc = Document::new("client");
        if let Some(state) = state {
            doc.apply_update_v1(state).unwrap();
        }
        let awareness = Awareness::new(doc.client_id());
        let shared = Arc::new(Mutex::new(Shared {
            session: SyncSession::new(Role::Client),
            synced: false,
            closed: None,
            sent_updates: 0,
            saved: None,
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
                        if out.saved.is_some() {
                            s.saved = out.saved;
                        }
                        for r in &out.reply {
                            if matches!(
                                Message::decode(r),
                                Ok(Message::Sync(tandem_engine::SyncMessage::Step2(_)))
                            ) {
                                s.sent_updates += 1;
                            }
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
        let mut guard = self.shared.lock().unwrap();
        guard.sent_updates += 1;
        let text = guard.doc.text("content");
        let (_, update) = guard.doc.edit_with_update(|e| {
            let pos = pos.min(e.text_len(&text));
            e.insert(&text, pos, s).unwrap()
        });
        let frame = tandem_engine::protocol::codec::encode_update(&update.unwrap());
        self.out.send(Ws::Binary(frame.into())).unwrap();
    }

    /// The replica's whole state as one v1 update.
    pub fn state(&self) -> Vec<u8> {
        self.shared.lock().unwrap().doc.snapshot_v1()
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

    /// Document updates this client has sent.
    pub fn sent_updates(&self) -> u64 {
        self.shared.lock().unwrap().sent_updates
    }

    /// How many of its updates the server has acknowledged as durable.
    pub fn saved(&self) -> Option<u64> {
        self.shared.lock().unwrap().saved
    }

    /// Waits until the server acknowledged every update sent so far.
    pub async fn wait_saved(&self) {
        self.wait(|s| s.saved == Some(s.sent_updates), "saved acknowledgement")
            .await
    }

    pub fn closed(&self) -> Option<(u16, String)> {
        self.shared.lock().unwrap().closed.clone()
    }

    pub async fn wait_closed(&self) -> (u16, String) {
        self.wait(|s| s.closed.is_some(), "close").await;
        self.closed().unwrap()
    }

    /// Sends raw bytes as one binary frame. Once the server has closed the connection the
    /// frame goes nowhere, as on a real socket: a flood may be cut off before it is all sent.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Ws::Binary(bytes.into()));
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

/// The Postgres server the tests use (`TANDEM_TEST_PG`, default the local one).
pub fn pg_admin_url() -> String {
    std::env::var("TANDEM_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh Postgres database for one test, dropped when the guard goes.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let name = format!("tandem_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin} (scripts/test starts it): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop is synchronous; use a runtime of its own on a thread of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                })
        })
        .join();
    }
}

/// A database of each backend for one test: (label, url, what keeps it alive).
pub async fn each_backend() -> Vec<(&'static str, String, Box<dyn std::any::Any + Send>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/tandem.db", dir.path().display());
    let pg = PgDatabase::create().await;
    let pg_url = pg.url.clone();
    vec![
        ("sqlite", sqlite, Box::new(dir)),
        ("postgres", pg_url, Box::new(pg)),
    ]
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Opens `GET path` with extra headers and streams its events (parsed from the chunked
/// body) into a channel; the channel ends when the stream does.
pub async fn sse_stream(
    port: u16,
    path: &str,
    headers: &[(&str, String)],
) -> (
    mpsc::UnboundedReceiver<SseEvent>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut raw = Vec::new();
        let mut body = Vec::new();
        let mut headers_done = false;
        let mut buf = [0u8; 8192];
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            raw.extend_from_slice(&buf[..n]);
            if !headers_done {
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                assert!(
                    raw.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&raw)
                );
                raw.drain(..end + 4);
                headers_done = true;
            }
            // Dechunk whatever complete chunks arrived. The last chunk (size 0) may come in
            // the same read as the last events: they are passed on before the end.
            let mut ended = false;
            while let Some(line) = raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap().trim(), 16)
                        .unwrap();
                if size == 0 {
                    ended = true;
                    break;
                }
                if raw.len() < line + 2 + size + 2 {
                    break;
                }
                body.extend_from_slice(&raw[line + 2..line + 2 + size]);
                raw.drain(..line + 2 + size + 2);
            }
            while let Some(end) = body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(body.drain(..end + 2).collect()).unwrap();
                let mut ev = SseEvent::default();
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim_start().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.trim_start());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim_start().to_owned());
                    }
                }
                if any && tx.send(ev).is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
        }
    });
    (rx, task)
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Counter `name` in the server's `/metrics` (0 before it is first counted).
pub fn counter(server: &Server, name: &str) -> f64 {
    let (_, body) = server.http("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}
