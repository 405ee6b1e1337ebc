//! The fallback transports against the real binary: Server-Sent Events with POSTed
//! updates, long polling, alongside WebSocket clients; resumption with Last-Event-ID;
//! presence over HTTP; idle long-pollers cost no CPU.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{sse_stream, unb64, Client, Server, SseEvent};
use tandem_engine::{Awareness, Document};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP request over a fresh connection: (status, body).
async fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    let start = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[start..].to_vec())
}

async fn http_json(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let (status, body) = http(port, method, path, body).await;
    (status, serde_json::from_slice(&body).unwrap())
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Inserts `s` at `pos` (clamped) of the replica's text; returns the update to post.
fn local_insert(doc: &Mutex<Document>, pos: u32, s: &str) -> Vec<u8> {
    let doc = doc.lock().unwrap();
    let text = doc.text("content");
    doc.edit_with_update(|e| {
        let pos = pos.min(e.text_len(&text));
        e.insert(&text, pos, s).unwrap()
    })
    .1
    .unwrap()
}

/// A replica fed by an SSE stream that posts its own edits over HTTP.
struct SseClient {
    port: u16,
    doc_name: String,
    doc: Arc<Mutex<Document>>,
    events: Arc<Mutex<Vec<SseEvent>>>,
    session: Arc<Mutex<Option<u64>>>,
    task: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl SseClient {
    async fn connect(port: u16, doc_name: &str, doc: Document, last_id: Option<u64>) -> SseClient {
        let headers: Vec<(&str, String)> = last_id
            .map(|id| ("Last-Event-ID", id.to_string()))
            .into_iter()
            .collect();
        let (mut rx, reader) =
            sse_stream(port, &format!("/api/docs/{doc_name}/events"), &headers).await;
        let doc = Arc::new(Mutex::new(doc));
        let events = Arc::new(Mutex::new(Vec::new()));
        let session = Arc::new(Mutex::new(None));
        let (d, e, s, name) = (
            doc.clone(),
            events.clone(),
            session.clone(),
            doc_name.to_owned(),
        );
        let task = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                match ev.event.as_str() {
                    "session" => *s.lock().unwrap() = Some(ev.data.parse().unwrap()),
                    "sync" | "update" => {
                        d.lock().unwrap().apply_update_v1(&unb64(&ev.data)).unwrap();
                    }
                    "state-vector" => {
                        // Post what the server lacks (our offline edits).
                        let diff = d.lock().unwrap().diff_v1(&unb64(&ev.data)).unwrap();
                        if diff.len() > 2 {
                            let id = s.lock().unwrap().unwrap();
                            let path = format!("/api/docs/{name}/updates?session={id}");
                            let (status, _) = http(port, "POST", &path, &diff).await;
                            assert_eq!(status, 200);
                        }
                    }
                    _ => {}
                }
                e.lock().unwrap().push(ev);
            }
        });
        let c = SseClient {
            port,
            doc_name: doc_name.to_owned(),
            doc,
            events,
            session,
            task,
            reader,
        };
        wait_until("SSE session", || c.session.lock().unwrap().is_some()).await;
        c
    }

    async fn insert(&self, pos: u32, s: &str) {
        let update = local_insert(&self.doc, pos, s);
        let id = self.session.lock().unwrap().unwrap();
        let path = format!("/api/docs/{}/updates?session={id}", self.doc_name);
        let (status, body) = http(self.port, "POST", &path, &update).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    fn text(&self) -> String {
        self.doc.lock().unwrap().text_string("content")
    }

    fn last_id(&self) -> Option<u64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|e| e.id.as_ref().map(|id| id.parse().unwrap()))
    }

    /// The ids of the `update` events received, in order.
    fn update_ids(&self) -> Vec<u64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event == "update")
            .map(|e| e.id.as_ref().unwrap().parse().unwrap())
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event.clone())
            .collect()
    }

    /// Drops the stream (as a browser tab losing its network would) and returns the replica.
    fn drop_stream(self) -> Document {
        self.reader.abort();
        self.task.abort();
        let doc = self.doc.lock().unwrap().clone();
        doc
    }
}

/// A replica kept up to date by long polling.
struct Poller {
    port: u16,
    doc_name: String,
    doc: Arc<Mutex<Document>>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(port: u16, doc_name: &str) -> Poller {
        let doc = Arc::new(Mutex::new(Document::new("poller")));
        let (d, name) = (doc.clone(), doc_name.to_owned());
        let task = tokio::spawn(async move {
            let (mut since, mut aw) = (0u64, 0u64);
            loop {
                let path = format!("/api/docs/{name}/poll?since={since}&aw={aw}&timeout=5");
                let (status, batch) = http_json(port, "GET", &path, b"").await;
                assert_eq!(status, 200, "{batch}");
                let doc = d.lock().unwrap();
                if let Some(state) = batch["state"].as_str() {
                    doc.apply_update_v1(&unb64(state)).unwrap();
                }
                for u in batch["updates"].as_array().unwrap() {
                    doc.apply_update_v1(&unb64(u.as_str().unwrap())).unwrap();
                }
                since = batch["since"].as_u64().unwrap();
                aw = batch["aw"].as_u64().unwrap();
            }
        });
        Poller {
            port,
            doc_name: doc_name.to_owned(),
            doc,
            task,
        }
    }

    async fn insert(&self, pos: u32, s: &str) {
        let update = local_insert(&self.doc, pos, s);
        let path = format!("/api/docs/{}/updates", self.doc_name);
        let (status, _) = http(self.port, "POST", &path, &update).await;
        assert_eq!(status, 200);
    }

    fn text(&self) -> String {
        self.doc.lock().unwrap().text_string("content")
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_long_poll_clients_converge_with_websocket_clients() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.url("mixed")).await;
    ws.insert(0, "[ws-start]");
    let sse = SseClient::connect(server.port, "mixed", Document::new("sse"), None).await;
    let poller = Poller::start(server.port, "mixed");
    wait_until("everyone has the start", || {
        sse.text() == "[ws-start]" && poller.text() == "[ws-start]"
    })
    .await;
    for i in 0..20u32 {
        ws.insert(if i % 2 == 0 { 0 } else { u32::MAX }, &format!("<w{i}>"));
        sse.insert(if i % 2 == 0 { u32::MAX } else { 0 }, &format!("<s{i}>"))
            .await;
        poller
            .insert(if i % 3 == 0 { 0 } else { u32::MAX }, &format!("<p{i}>"))
            .await;
    }
    let all = |t: &str| t.matches('<').count() == 60;
    ws.wait_text(all, "ws has everything").await;
    wait_until("sse has everything", || all(&sse.text())).await;
    wait_until("poller has everything", || all(&poller.text())).await;
    assert_eq!(sse.text(), ws.text());
    assert_eq!(poller.text(), ws.text());
    for i in 0..20 {
        for tag in ["w", "s", "p"] {
            assert_eq!(ws.text().matches(&format!("<{tag}{i}>")).count(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_resuming_with_last_event_id_misses_nothing_and_gets_nothing_twice() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.acks_url("resume")).await;
    for i in 0..5 {
        ws.insert(u32::MAX, &format!("<a{i}>"));
    }
    ws.wait_saved().await;
    let sse = SseClient::connect(server.port, "resume", Document::new("sse"), None).await;
    wait_until("first five", || sse.text().matches('<').count() == 5).await;
    assert_eq!(sse.kinds()[..2], ["session", "sync"]);
    let last = sse.last_id().unwrap();
    assert_eq!(last, 5, "ids are update-log sequence numbers");
    let replica = sse.drop_stream();
    // Edits while the client is away, and one of its own made offline.
    for i in 0..7 {
        ws.insert(u32::MAX, &format!("<b{i}>"));
    }
    ws.wait_saved().await;
    let text = replica.text("content");
    replica.edit(|e| e.insert(&text, 0, "<offline>")).unwrap();
    let back = SseClient::connect(server.port, "resume", replica, Some(last)).await;
    wait_until("caught up", || back.text().matches('<').count() == 13).await;
    ws.wait_text(|t| t.contains("<offline>"), "offline edit arrives")
        .await;
    let kinds = back.kinds();
    assert!(
        !kinds.contains(&"sync".to_owned()),
        "resumed, not resent: {kinds:?}"
    );
    let updates = back.update_ids();
    // The 7 missed updates in order, then the echo of its own offline edit: no gaps, no repeats.
    assert_eq!(updates, (6..=13).collect::<Vec<u64>>());
    assert_eq!(back.text(), ws.text());
}

/// An SSE client that saw the first update, dropped, and comes back after ten more (all
/// durable by then): returns the kinds of events it got and the ids of its updates.
async fn resume_after_ten(server: &Server, doc: &str) -> (Vec<String>, Vec<u64>) {
    let ws = Client::connect(&server.acks_url(doc)).await;
    ws.insert(0, "a");
    let sse = SseClient::connect(server.port, doc, Document::new("sse"), None).await;
    wait_until("a", || sse.text() == "a").await;
    let last = sse.last_id().unwrap();
    let replica = sse.drop_stream();
    for _ in 0..10 {
        ws.insert(u32::MAX, "b");
    }
    ws.wait_saved().await; // all ten are durable
    let back = SseClient::connect(server.port, doc, replica, Some(last)).await;
    wait_until("caught up", || back.text() == ws.text()).await;
    let updates = back.update_ids();
    (back.kinds(), updates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_the_memory_window_resumes_from_the_stored_log() {
    // Memory holds only the last 3 durable updates; the other missed ones come from the log.
    let server = Server::start(&["--resume-window-updates", "3"]);
    let (kinds, updates) = resume_after_ten(&server, "window").await;
    assert!(!kinds.contains(&"sync".to_owned()), "{kinds:?}");
    assert_eq!(updates, (2..=11).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_compaction_gets_the_whole_state() {
    let server = Server::start(&[
        "--resume-window-updates",
        "3",
        "--compact-after-updates",
        "4",
    ]);
    let (kinds, updates) = resume_after_ten(&server, "compacted").await;
    assert!(kinds.contains(&"sync".to_owned()), "{kinds:?}");
    assert!(updates.is_empty(), "the state replaces them: {updates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_posted_over_http_is_seen_and_removed_with_its_subscription() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.url("presence")).await;
    let sse = SseClient::connect(server.port, "presence", Document::new("sse"), None).await;
    let mut awareness = Awareness::new(4242);
    let update = awareness
        .set_local_state_json(Some(r#"{"user":{"name":"Http"}}"#), 0)
        .unwrap();
    let id = sse.session.lock().unwrap().unwrap();
    let path = format!("/api/docs/presence/awareness?session={id}");
    let (status, _) = http(server.port, "POST", &path, &update.encode()).await;
    assert_eq!(status, 200);
    ws.wait_presence(4242, true).await;
    // WebSocket presence reaches the SSE client as an awareness event.
    ws.set_presence(r#"{"user":{"name":"Ws"}}"#);
    wait_until("awareness event", || {
        sse.events.lock().unwrap().iter().any(|e| {
            e.event == "awareness" && String::from_utf8_lossy(&unb64(&e.data)).contains("Ws")
        })
    })
    .await;
    drop(sse.drop_stream());
    ws.wait_presence(4242, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_posts_get_400_and_change_nothing() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.acks_url("bad")).await;
    ws.insert(0, "intact");
    ws.wait_saved().await;
    for (path, body) in [
        ("/api/docs/bad/updates", &[0xffu8, 0xff, 0x01][..]),
        ("/api/docs/bad/updates", &[][..]),
        ("/api/docs/bad/awareness", &[1, 5, 5][..]),
        ("/api/docs/bad/updates?wait=later", &[0, 0][..]),
        ("/api/docs/bad/updates?session=x", &[0, 0][..]),
    ] {
        let (status, body) = http_json(server.port, "POST", path, body).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = http_json(server.port, "GET", "/api/docs/bad/poll?since=x", b"").await;
    assert_eq!(status, 400, "{body}");
    let late = Client::connect(&server.url("bad")).await;
    assert_eq!(late.text(), "intact");
    assert!(ws.closed().is_none());
}

/// User + system CPU time of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / 100) // USER_HZ is 100 on Linux
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_long_pollers_hold_no_cpu() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.url("idle-poll")).await;
    ws.insert(0, "x");
    let (_, first) = http_json(server.port, "GET", "/api/docs/idle-poll/poll", b"").await;
    let since = first["since"].as_u64().unwrap();
    let aw = first["aw"].as_u64().unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pollers = Vec::new();
    for _ in 0..500 {
        let answered = answered.clone();
        let port = server.port;
        pollers.push(tokio::spawn(async move {
            let path = format!("/api/docs/idle-poll/poll?since={since}&aw={aw}&timeout=30");
            let (status, batch) = http_json(port, "GET", &path, b"").await;
            assert_eq!(status, 200);
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            batch
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // all 500 parked
    let before = cpu_time(server.child.id());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = cpu_time(server.child.id()) - before;
    println!("server CPU time over 10 s with 500 waiting long-pollers: {used:?}");
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nobody answered early"
    );
    assert!(
        used <= Duration::from_millis(100),
        "idle pollers cost {used:?} of CPU in 10 s"
    );
    // One edit answers every one of them.
    ws.insert(1, "y");
    for p in pollers {
        let batch = p.await.unwrap();
        assert_eq!(batch["updates"].as_array().unwrap().len(), 1);
        assert_eq!(batch["since"], since + 1);
    }
}

/// A long-poll waiting on a document that is deleted is answered 410, as a WebSocket gets
/// 4410: the client stops instead of polling again, which would recreate the document
/// and post its whole replica into it. It used to get 503, "try again", like a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_a_deleted_document_is_told_it_is_gone() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.url("gone")).await;
    ws.insert(0, "x");
    let (_, first) = http_json(server.port, "GET", "/api/docs/gone/poll", b"").await;
    let (since, aw) = (
        first["since"].as_u64().unwrap(),
        first["aw"].as_u64().unwrap(),
    );
    let port = server.port;
    let poller = tokio::spawn(async move {
        let path = format!("/api/docs/gone/poll?since={since}&aw={aw}&timeout=30");
        http_json(port, "GET", &path, b"").await
    });
    tokio::time::sleep(Duration::from_secs(1)).await; // parked
    let (status, _) = http(server.port, "DELETE", "/api/docs/gone", b"").await;
    assert_eq!(status, 204);
    let (status, body) = poller.await.unwrap();
    assert_eq!(status, 410, "{body}");
    assert_eq!(ws.wait_closed().await.0, 4410);
}

/// An update posted over HTTP that builds on one the document never received (it went to
/// another node, or its post was lost) is answered 409, not "saved": the part that depends
/// on the missing one is not applied, and a client told it was saved would never send it
/// again. Once the missing update arrives, the same post is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_update_missing_what_it_builds_on_is_not_called_saved() {
    let server = Server::start(&[]);
    let writer = Mutex::new(Document::new("writer"));
    let first = local_insert(&writer, 0, "first");
    let second = local_insert(&writer, 5, " second");
    let (status, body) = http_json(
        server.port,
        "POST",
        "/api/docs/gap/updates?wait=saved",
        &second,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (_, doc) = server.json("GET", "/api/docs/gap", b"");
    assert_ne!(doc["text"], " second");
    for update in [&first, &second] {
        let (status, body) = http_json(server.port, "POST", "/api/docs/gap/updates", update).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, doc) = server.json("GET", "/api/docs/gap", b"");
    assert_eq!(doc["text"], "first second");
}

/// An update left waiting (it builds on one the document never received) makes only its
/// own post a 409, not every later post of every client: the document still waits for the
/// missing part, but an update that does not build on it is applied and saved as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_left_by_one_poster_does_not_refuse_the_others() {
    let server = Server::start(&[]);
    let a = Mutex::new(Document::new("a"));
    let first = local_insert(&a, 0, "first");
    let b = Mutex::new(Document::new("b"));
    b.lock().unwrap().apply_update_v1(&first).unwrap();
    let after = local_insert(&b, 5, " after");
    let (status, body) = http_json(server.port, "POST", "/api/docs/gaps/updates", &after).await;
    assert_eq!(status, 409, "{body}");
    let c = Mutex::new(Document::new("c"));
    let other = local_insert(&c, 0, "other");
    let (status, body) = http_json(
        server.port,
        "POST",
        "/api/docs/gaps/updates?wait=saved",
        &other,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["saved"], true);
    for update in [&first, &after] {
        let (status, body) = http_json(server.port, "POST", "/api/docs/gaps/updates", update).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, doc) = server.json("GET", "/api/docs/gaps", b"");
    let text = doc["text"].as_str().unwrap();
    assert!(
        text.contains("first after") && text.contains("other"),
        "{text}"
    );
}

/// An SSE subscriber of a document that is deleted gets the stream's last event, `close`
/// with 4410, as a WebSocket gets its close frame. The stream used to end without it
/// (the document drops the subscription's queue right after the close signal, and the
/// queue was looked at first): the browser client took that for a broken stream,
/// reconnected, and brought the document back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_subscriber_of_a_deleted_document_is_told_it_is_gone() {
    let server = Server::start(&[]);
    let ws = Client::connect(&server.url("gone-sse")).await;
    ws.insert(0, "x");
    let (mut events, _task) = sse_stream(server.port, "/api/docs/gone-sse/events", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribed
    let (status, _) = http(server.port, "DELETE", "/api/docs/gone-sse", b"").await;
    assert_eq!(status, 204);
    let mut last = None;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        last = Some(e);
    }
    let last = last.expect("some events");
    assert_eq!(
        last.event, "close",
        "the stream ended without a close event"
    );
    let data: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["code"], 4410);
}
