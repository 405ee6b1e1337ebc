//! Limits and hostile input over real connections: every limit closes only the offending
//! connection, with 1008 and a reason, counts it in `/metrics`, and leaves the others and
//! the documents untouched.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{close_of, http_exchange, raw, Client, Server, Socket};
use tandem_engine::protocol::codec;
use tandem_engine::{AwarenessEntry, AwarenessUpdate, Document};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

fn presence(client_id: u64, clock: u64, json: String) -> Vec<u8> {
    AwarenessUpdate {
        entries: vec![AwarenessEntry {
            client_id,
            clock,
            state: json.into(),
        }],
    }
    .encode_frame()
}

/// The value of one labelled counter on `/metrics` (0 when absent).
fn metric(server: &Server, name_and_labels: &str) -> u64 {
    let (_, text) = server.http("/metrics");
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn connect_with_origin(server: &Server, doc: &str, origin: &str) -> Socket {
    let mut request = server.url(doc).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_cut_off_while_the_others_keep_editing() {
    let server = Server::start(&["--max-messages-per-second", "50", "--message-burst", "100"]);
    let alice = Client::connect(&server.url("doc")).await;
    let bob = Client::connect(&server.url("doc")).await;
    let flooder = Client::connect(&server.url("doc")).await;
    for clock in 1..=1000 {
        flooder.send_raw(presence(99, clock, format!(r#"{{"n":{clock}}}"#)));
    }
    let (code, reason) = flooder.wait_closed().await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("messages per second"), "{reason}");
    // typing at a human pace is never affected
    for i in 0..20 {
        alice.insert(0, "a");
        bob.insert(0, "b");
        if i % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    alice.wait_text(|t| t.len() == 40, "alice sees 40").await;
    bob.wait_text(|t| t.len() == 40, "bob sees 40").await;
    assert!(alice.closed().is_none() && bob.closed().is_none());
    assert_eq!(
        metric(&server, "tandem_limit_exceeded_total{limit=\"rate\"}"),
        1
    );
}

/// One insertion of `piece` by a replica of its own: posts that do not depend on each other,
/// so refusing some leaves the others whole.
fn independent_insert(piece: &str) -> Vec<u8> {
    let replica = Document::new("doc");
    let text = replica.text("content");
    replica
        .edit_with_update(|e| e.insert(&text, 0, piece).unwrap())
        .1
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_posting_too_fast_gets_429_and_its_refused_posts_change_nothing() {
    // One request a second once the burst of 20 is spent: a slow machine's loop cannot
    // earn more than a few.
    let server = Server::start(&[
        "--max-http-requests-per-ip",
        "1",
        "--http-request-burst-per-ip",
        "20",
    ]);
    let alice = Client::connect(&server.url("doc")).await;
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    for i in 0..60 {
        let piece = format!("<{i}>");
        let update = independent_insert(&piece);
        let out =
            http_exchange(server.port, "POST", "/api/docs/doc/updates", &[], &update).unwrap();
        let answer = String::from_utf8_lossy(&out).to_lowercase();
        if answer.starts_with("http/1.1 200") {
            accepted.push(piece);
        } else {
            assert!(answer.starts_with("http/1.1 429"), "{answer}");
            assert!(answer.contains("retry-after: 1"), "{answer}");
            assert!(answer.contains("--max-http-requests-per-ip"), "{answer}");
            refused.push(piece);
        }
    }
    let earned = started.elapsed().as_secs() as usize + 1;
    assert!(
        (20..=20 + earned).contains(&accepted.len()),
        "{} accepted in {:?}",
        accepted.len(),
        started.elapsed()
    );
    // Long-polls, imports and exports spend the same budget (of three tries in a row, a
    // token earned meanwhile can let one through, not all three).
    for path in [
        "/api/docs/doc/poll?since=0&timeout=0",
        "/api/docs/doc/state",
    ] {
        let statuses: Vec<u16> = (0..3).map(|_| server.request("GET", path, b"").0).collect();
        assert!(statuses.contains(&429), "{path}: {statuses:?}");
    }
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            let update = independent_insert("imported.");
            server.request("POST", "/api/docs/doc/state", &update).0
        })
        .collect();
    assert!(statuses.contains(&429), "import: {statuses:?}");
    let imported = statuses.iter().filter(|s| **s == 200).count();
    let want: usize = accepted.iter().map(String::len).sum::<usize>() + imported * 9;
    alice
        .wait_text(|t| t.len() == want, "every accepted post applied")
        .await;
    let text = alice.text();
    assert!(accepted.iter().all(|p| text.contains(p.as_str())), "{text}");
    assert!(refused.iter().all(|p| !text.contains(p.as_str())), "{text}");
    let limited = metric(
        &server,
        "tandem_limit_exceeded_total{limit=\"http_requests_per_ip\"}",
    );
    assert!(limited > refused.len() as u64, "{limited}");
    // WebSockets are not held to it, and the bucket refills
    alice.insert(0, "ws.");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, _) = server.request(
        "POST",
        "/api/docs/doc/updates",
        &independent_insert("later."),
    );
    assert_eq!(status, 200);
    alice
        .wait_text(|t| t.contains("later."), "the post after the pause applied")
        .await;
    let late = Client::connect(&server.url("doc")).await;
    assert_eq!(
        late.text(),
        alice.text(),
        "the WebSocket edit was applied too"
    );
    assert!(alice.closed().is_none());
}

#[tokio::test]
async fn connections_per_address_are_capped_and_freed_on_close() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let first = Client::connect(&server.url("doc")).await;
    let _second = Client::connect(&server.url("doc")).await;
    let _third = Client::connect(&server.url("other")).await;
    let mut fourth = raw(&server.url("doc")).await;
    let (code, reason) = close_of(&mut fourth).await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("connections from your address"), "{reason}");
    let (status, _) = server.request("GET", "/api/docs/doc/events", b"");
    assert_eq!(status, 429, "SSE streams count too");
    first.disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Client::connect(&server.url("doc")).await;
    assert!(
        metric(
            &server,
            "tandem_limit_exceeded_total{limit=\"connections_per_ip\"}"
        ) >= 2
    );
}

#[tokio::test]
async fn only_allowed_origins_may_open_websockets() {
    let server = Server::start(&[
        "--allowed-origins",
        "http://good.example,https://also.example",
    ]);
    let mut evil = connect_with_origin(&server, "doc", "http://evil.example").await;
    let (code, reason) = close_of(&mut evil).await.unwrap();
    assert_eq!(code, 1008);
    assert!(reason.contains("http://evil.example"), "{reason}");
    let mut good = connect_with_origin(&server, "doc", "https://also.example").await;
    good.send(Ws::Binary(
        codec::encode_step1(&Document::new("x").state_vector_v1()).into(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), good.next()).await;
    assert!(matches!(first, Ok(Some(Ok(Ws::Binary(_))))), "{first:?}");
    // a non-browser client sends no Origin and is not affected
    let witness = Client::connect(&server.url("doc")).await;
    // The document's HTTP routes are held to the same list: a page of any site can post
    // to them without a CORS preflight. Before, the evil page's post was applied.
    let post = |origin: Option<&str>, piece: &str| {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let update = independent_insert(piece);
        let out = http_exchange(
            server.port,
            "POST",
            "/api/docs/doc/updates",
            &headers,
            &update,
        )
        .unwrap();
        String::from_utf8_lossy(&out).to_lowercase()
    };
    let evil = post(Some("http://evil.example"), "<evil>");
    assert!(evil.starts_with("http/1.1 403"), "{evil}");
    assert!(
        evil.contains("origin http://evil.example is not allowed"),
        "{evil}"
    );
    assert!(post(Some("http://good.example"), "<good>").starts_with("http/1.1 200"));
    assert!(post(None, "<script>").starts_with("http/1.1 200"));
    let (status, _) = server.request_with(
        "GET",
        "/api/docs/doc/state",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(status, 403, "an export from the evil page is refused too");
    witness
        .wait_text(
            |t| t.contains("<good>") && t.contains("<script>"),
            "both allowed posts",
        )
        .await;
    assert!(!witness.text().contains("<evil>"), "{}", witness.text());
}

#[tokio::test]
async fn oversized_presence_and_documents_are_refused_and_change_nothing() {
    let server = Server::start(&["--max-awareness-bytes", "200", "--max-doc-bytes", "4000"]);
    let witness = Client::connect(&server.url("doc")).await;
    let big = Client::connect(&server.url("doc")).await;
    big.send_raw(presence(
        5,
        1,
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(300)),
    ));
    let (code, reason) = big.wait_closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("--max-awareness-bytes"), "{reason}");
    assert!(witness.presence_of(5).is_none());
    let (status, _) = server.request(
        "POST",
        "/api/docs/doc/awareness",
        &AwarenessUpdate {
            entries: vec![AwarenessEntry {
                client_id: 6,
                clock: 1,
                state: format!(r#"{{"pad":"{}"}}"#, "y".repeat(300)).into(),
            }],
        }
        .encode(),
    );
    assert_eq!(status, 413);

    witness.insert(0, "small");
    let grower = Client::connect(&server.url("doc")).await;
    grower.wait_text(|t| t == "small", "synced").await;
    grower.insert(0, &"z".repeat(5000));
    let (code, reason) = grower.wait_closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("--max-doc-bytes"), "{reason}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(witness.text(), "small");
    let (_, v) = server.json("GET", "/api/docs/doc", b"");
    assert_eq!(v["text"], "small");
    assert!(metric(&server, "tandem_limit_exceeded_total{limit=\"doc_size\"}") >= 1);
    assert!(
        metric(
            &server,
            "tandem_limit_exceeded_total{limit=\"awareness_size\"}"
        ) >= 2
    );
}

/// One connection publishing presence for more client ids than `--max-awareness-clients`
/// is closed with 1008 and nothing of that frame reaches the others; a tab publishing its
/// one state is not affected.
#[tokio::test]
async fn presence_for_too_many_client_ids_is_refused_and_changes_nothing() {
    let server = Server::start(&["--max-awareness-clients", "8"]);
    let witness = Client::connect(&server.url("crowd")).await;
    let tab = Client::connect(&server.url("crowd")).await;
    tab.send_raw(presence(1, 1, r#"{"user":"tab"}"#.into()));
    witness.wait_presence(1, true).await;
    let crowd = Client::connect(&server.url("crowd")).await;
    crowd.send_raw(
        AwarenessUpdate {
            entries: (100..1100)
                .map(|client_id| AwarenessEntry {
                    client_id,
                    clock: 1,
                    state: "{}".into(),
                })
                .collect(),
        }
        .encode_frame(),
    );
    let (code, reason) = crowd.wait_closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("--max-awareness-clients"), "{reason}");
    let late = Client::connect(&server.url("crowd")).await;
    late.wait_presence(1, true).await;
    assert!(
        (100..1100).all(|id| witness.presence_of(id).is_none() && late.presence_of(id).is_none())
    );
    assert!(tab.closed().is_none());
    assert_eq!(
        metric(
            &server,
            "tandem_limit_exceeded_total{limit=\"awareness_clients\"}"
        ),
        1
    );
}

/// Presence posted over HTTP without a subscription is held to `--max-awareness-clients`
/// ids per address across posts, not per post: one id at a time, an address could fill
/// the document with states. Renewing or removing its own ids is always allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_posting_presence_for_too_many_ids_is_refused_across_posts() {
    let server = Server::start(&["--max-awareness-clients", "8"]);
    let witness = Client::connect(&server.url("crowd")).await;
    let post = |client_id: u64, clock: u64, state: &str| {
        let body = AwarenessUpdate {
            entries: vec![AwarenessEntry {
                client_id,
                clock,
                state: state.into(),
            }],
        }
        .encode();
        server.request("POST", "/api/docs/crowd/awareness", &body)
    };
    for id in 1..=8 {
        assert_eq!(post(id, 1, "{}").0, 200, "id {id}");
    }
    witness.wait_presence(8, true).await;
    let (status, body) = post(9, 1, "{}");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("--max-awareness-clients"));
    assert_eq!(
        post(1, 2, r#"{"renewed":true}"#).0,
        200,
        "renewing an own id"
    );
    assert_eq!(post(2, 2, "null").0, 200, "removing an own id");
    witness.wait_presence(2, false).await;
    assert_eq!(post(9, 1, "{}").0, 200, "room again after a removal");
    witness.wait_presence(9, true).await;
    // Anyone may remove any id: one removed by a WebSocket client frees its place too.
    witness.send_raw(presence(3, 2, "null".into()));
    witness.wait_presence(3, false).await;
    assert_eq!(
        post(10, 1, "{}").0,
        200,
        "room again after a removal elsewhere"
    );
    witness.wait_presence(10, true).await;
    let late = Client::connect(&server.url("crowd")).await;
    late.wait_presence(9, true).await;
    assert_eq!(
        metric(
            &server,
            "tandem_limit_exceeded_total{limit=\"awareness_clients\"}"
        ),
        1
    );
}

/// A deterministic stream of hostile frames: random bytes, truncated and bit-flipped real
/// frames, lying lengths, garbage update payloads, bad JSON presence, text frames.
struct Hostile {
    state: u64,
    samples: Vec<Vec<u8>>,
}

impl Hostile {
    fn new(seed: u64) -> Self {
        let doc = Document::with_client_id("h", 77);
        let t = doc.text("content");
        let (_, update) = doc.edit_with_update(|e| e.insert(&t, 0, "hostile text").unwrap());
        let update = update.unwrap();
        let samples = vec![
            codec::encode_update(&update),
            codec::encode_step2(&update),
            codec::encode_step1(&doc.state_vector_v1()),
            presence(1, 1, r#"{"a":1}"#.into()),
        ];
        Self {
            state: seed | 1,
            samples,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn frame(&mut self) -> Ws {
        let r = self.next_u64();
        let sample = self.samples[(r % self.samples.len() as u64) as usize].clone();
        let bytes = match (r >> 8) % 8 {
            0 => (0..(r >> 16) % 64).map(|_| self.next_u64() as u8).collect(),
            1 => sample[..(r >> 16) as usize % sample.len()].to_vec(),
            // a flipped bit: anywhere in a state vector or presence, only in the header of
            // an update (a flip inside its content could make a valid, different edit)
            2 => {
                let mut s = sample;
                let span = if s[0] == 0 && s[1] != 0 { 2 } else { s.len() };
                let at = (r >> 16) as usize % span;
                s[at] ^= 1 << ((r >> 32) % 8);
                s
            }
            // a sync update whose payload claims far more bytes than follow
            3 => vec![0, 2, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
            // a sync update carrying random bytes as its update
            4 => {
                let junk: Vec<u8> = (0..(r >> 16) % 48).map(|_| self.next_u64() as u8).collect();
                codec::encode_update(&junk)
            }
            5 => presence(3, 1, "{not json".into()),
            6 => return Ws::Text(format!("hello {r}").into()),
            // an unknown sync sub-type
            _ => vec![0, 9, 1, 0],
        };
        Ws::Binary(bytes.into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_frames_leave_the_server_up_and_every_document_intact() {
    let mut server = Server::start(&[]);
    let docs = ["alpha", "beta", "gamma"];
    let mut expected = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let c = Client::connect(&server.acks_url(doc)).await;
        c.insert(0, &format!("document {i}: the quick brown fox"));
        c.wait_saved().await;
        expected.push(c.text());
    }
    let watcher = Client::connect(&server.url("alpha")).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (sent, closes) = (sent.clone(), closes.clone());
        let urls: Vec<String> = docs.iter().map(|d| server.url(d)).collect();
        workers.push(tokio::spawn(async move {
            let mut hostile = Hostile::new(w * 7919 + 1);
            let mut round = 0usize;
            while sent.load(Ordering::Relaxed) < 10_000 {
                let mut ws = raw(&urls[(w as usize + round) % urls.len()]).await;
                round += 1;
                // hostile frames until the server closes this connection
                loop {
                    if sent.fetch_add(1, Ordering::Relaxed) >= 10_000 {
                        break;
                    }
                    if ws.send(hostile.frame()).await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(5), ws.next()).await {
                        Ok(Some(Ok(Ws::Close(Some(frame))))) => {
                            let code: u16 = frame.code.into();
                            assert!(
                                matches!(code, 1003 | 1007 | 1008 | 1009),
                                "close {code} {}",
                                frame.reason
                            );
                            closes.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(None) | Ok(Some(Err(_))) => break,
                        _ => {}
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) >= 10_000);
    assert!(
        closes.load(Ordering::Relaxed) > 1000,
        "malformed frames close their connection ({} closes)",
        closes.load(Ordering::Relaxed)
    );
    // the process is alive and healthy
    assert!(server.child_alive(), "server process exited");
    assert_eq!(server.http("/healthz").0, 200);
    // every document is exactly as it was, in memory, in the store and for a new client
    for (doc, text) in docs.iter().zip(&expected) {
        let (_, v) = server.json("GET", &format!("/api/docs/{doc}"), b"");
        assert_eq!(v["text"].as_str(), Some(text.as_str()), "{doc}");
        let fresh = Client::connect(&server.url(doc)).await;
        assert_eq!(&fresh.text(), text, "{doc}");
    }
    assert!(watcher.closed().is_none(), "a bystander was not disturbed");
    // and still editable
    watcher.insert(0, "> ");
    let other = Client::connect(&server.url("alpha")).await;
    other
        .wait_text(|t| t.starts_with("> document 0"), "edit after the storm")
        .await;
}

/// Reads until the server closes `tcp` (end of stream or a reset); returns what came
/// before, or `None` if it was still open after `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(seen)
}

/// Slowloris: connections that never finish a request head are closed after
/// `--header-timeout-ms`, whether they send nothing (the listener's own wait) or half a head
/// (hyper's); each counts as a limit. A kept-alive connection left idle is closed too, but
/// is no limit broken, and one that keeps sending requests stays open. WebSockets upgraded
/// in time, by either path, and an event stream are not touched by it.
#[tokio::test]
async fn connections_that_never_finish_a_request_head_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let server = Server::start(&["--header-timeout-ms", "1000"]);
    let addr = ("127.0.0.1", server.port);
    let limit = "tandem_limit_exceeded_total{limit=\"header_timeout\"}";
    let before = metric(&server, limit);
    let watcher = Client::connect(&server.url("slow")).await;
    // An upgrade whose head arrives in two pieces goes through hyper, whose timer must stop
    // at the upgrade.
    let mut split = raw_upgrade_in_two_pieces(server.port, "slow").await;
    // A response that streams for longer than the deadline (SSE) is not a head being read.
    let (mut events, _reader) =
        support::sse_stream(server.port, "/api/docs/slow/events", &[]).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /ws/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    let started = tokio::time::Instant::now();
    // A kept-alive connection with a request every 0.4 s, for twice the deadline.
    let busy = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for i in 0..5 {
            tcp.write_all(HEALTHZ).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "busy request {i}");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    // Not a refusal: both are still open half-way to the deadline...
    let early = Duration::from_millis(500);
    let (silent_early, half_early, ()) = tokio::join!(
        closed_within(&mut silent, early),
        closed_within(&mut half, early),
        busy,
    );
    assert!(silent_early.is_none(), "silent: closed at once");
    assert!(half_early.is_none(), "half: closed at once");
    // ...and closed soon after it.
    for (what, tcp) in [
        ("silent", &mut silent),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        let seen = closed_within(tcp, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: still open after {:?}", started.elapsed()));
        if what == "idle" {
            let seen = String::from_utf8_lossy(&seen);
            assert!(seen.starts_with("HTTP/1.1 200"), "idle: {seen}");
        } else {
            assert!(seen.is_empty(), "{what}: answered {seen:?}");
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        metric(&server, limit) - before,
        2,
        "silent and half, not idle"
    );
    // Both WebSockets outlived the deadline and still carry edits.
    watcher.insert(0, "still here");
    let update = async {
        loop {
            let Some(Ok(Ws::Binary(data))) = split.next().await else {
                panic!("the split-head socket was closed");
            };
            if let Ok(codec::Message::Sync(tandem_engine::SyncMessage::Update(_))) =
                codec::Message::decode(&data)
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), update)
        .await
        .expect("the edit on the split-head socket");
    let streamed = async {
        while let Some(event) = events.recv().await {
            if event.event == "update" {
                return;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(Duration::from_secs(5), streamed)
        .await
        .expect("the edit on the event stream");
    assert!(watcher.closed().is_none());
}

/// A WebSocket whose upgrade head is sent in two writes 300 ms apart (so it takes hyper's
/// path), after the 101.
async fn raw_upgrade_in_two_pieces(port: u16, doc: &str) -> Socket {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = support::upgrade_head(port, doc);
    tcp.write_all(&head.as_bytes()[..17]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tcp.write_all(&head.as_bytes()[17..]).await.unwrap();
    let response = support::read_response_head(&mut tcp).await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    tokio_tungstenite::WebSocketStream::from_raw_socket(
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await
}

/// A POST whose body trickles in past `--body-timeout-ms` (an edit, or a document import)
/// gets 408 and its connection is closed, with nothing of the body applied and the limit
/// counted; one whose body comes in pieces within the deadline is applied. A client that declares a body and sends it a byte
/// at a time can no longer hold its socket for ever.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused_and_applies_nothing() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let server = Server::start(&["--body-timeout-ms", "1000"]);
    let limit = "tandem_limit_exceeded_total{limit=\"body_timeout\"}";
    let before = metric(&server, limit);
    let watcher = Client::connect(&server.url("trickle")).await;
    watcher.insert(0, "kept");
    let edit = |text: &str| {
        let doc = Document::new("trickle");
        let content = doc.text("content");
        doc.edit_with_update(|e| e.insert(&content, 0, text).unwrap())
            .1
            .unwrap()
    };
    let addr = ("127.0.0.1", server.port);

    // Too slow, on both routes that take an update (a POSTed edit and an import): half the
    // body at once, a byte at 0.3 and at 0.6 s, then nothing.
    let late = edit("late ");
    let started = tokio::time::Instant::now();
    for seen in futures_util::future::join_all(
        ["updates", "state"].map(|route| stalled_post(server.port, route, &late)),
    )
    .await
    {
        assert!(seen.starts_with("HTTP/1.1 408"), "answered {seen}");
        assert!(seen.contains("--body-timeout-ms"), "with a reason: {seen}");
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(metric(&server, limit) - before, 2);

    // In time: the body in three pieces 0.2 s apart.
    let prompt = edit("prompt ");
    let mut paced = TcpStream::connect(addr).await.unwrap();
    paced
        .write_all(post_head("updates", &prompt).as_bytes())
        .await
        .unwrap();
    for piece in prompt.chunks(prompt.len().div_ceil(3)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        paced.write_all(piece).await.unwrap();
    }
    let response = support::read_response_head(&mut paced).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    watcher
        .wait_text(|t| t.contains("prompt "), "the paced body applied")
        .await;

    // The late body changed nothing: a fresh client sees only the other two edits.
    let fresh = Client::connect(&server.url("trickle")).await;
    fresh
        .wait_text(|t| t.contains("prompt ") && t.contains("kept"), "synced")
        .await;
    assert!(!fresh.text().contains("late"), "{}", fresh.text());
    assert!(!watcher.text().contains("late"), "{}", watcher.text());
    assert_eq!(
        metric(&server, limit) - before,
        2,
        "the paced body did not count"
    );
    assert!(watcher.closed().is_none());
}

/// The head of a POST of `body` to `/api/docs/trickle/{route}`.
fn post_head(route: &str, body: &[u8]) -> String {
    format!(
        "POST /api/docs/trickle/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
}

/// POSTs half of `body`, a byte at 0.3 and at 0.6 s, then nothing; returns what the server
/// answered before it closed the connection. (Stopping short of the deadline keeps the
/// server's receive buffer empty when it closes, so the close is a FIN after the answer,
/// not a reset that could discard it.)
async fn stalled_post(port: u16, route: &str, body: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    assert!(body.len() / 2 > 3, "bytes left to send after the trickle");
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(post_head(route, body).as_bytes())
        .await
        .unwrap();
    tcp.write_all(&body[..body.len() / 2]).await.unwrap();
    for byte in &body[body.len() / 2..body.len() / 2 + 2] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(std::slice::from_ref(byte)).await.unwrap();
    }
    // Not refused at once: still open a little before the deadline.
    assert!(
        closed_within(&mut tcp, Duration::from_millis(200))
            .await
            .is_none(),
        "{route}: closed before the deadline"
    );
    let seen = closed_within(&mut tcp, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{route}: the stalled connection is still open"));
    String::from_utf8_lossy(&seen).into_owned()
}

/// A client that asks for a large answer (an 8 MB document's export) and never reads it has
/// its connection closed once the server's write has waited `--write-timeout-ms`, counted as
/// a limit, so it cannot hold the unsent answer in memory for ever; a client that reads gets
/// the whole answer, and a long-poll waiting past the deadline is not cut off.
#[tokio::test]
async fn a_client_that_stops_reading_its_answer_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    const EXPORT: &[u8] = b"GET /api/docs/big/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let server = Server::start(&["--write-timeout-ms", "1000"]);
    let limit = "tandem_limit_exceeded_total{limit=\"write_timeout\"}";
    let before = metric(&server, limit);
    let text = "x".repeat(8 << 20);
    let update = server.import_text("big", &text);
    // A long-poll with nothing to answer for 3 s: idle, not stalled.
    let (status, caught_up) = server.json("GET", "/api/docs/big/poll?since=0&timeout=1", b"");
    assert_eq!(status, 200);
    let path = format!(
        "/api/docs/big/poll?since={}&aw={}&timeout=3",
        caught_up["since"], caught_up["aw"]
    );
    let port = server.port;
    let poll =
        tokio::task::spawn_blocking(move || support::http_exchange(port, "GET", &path, &[], b""));

    // Asks for the export with a 4 KiB receive window and reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .unwrap();
    stalled.write_all(EXPORT).await.unwrap();
    let asked = tokio::time::Instant::now();
    while metric(&server, limit) == before {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the stalled export was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "cut off early"
    );
    assert_eq!(metric(&server, limit) - before, 1);
    // What the kernel had buffered still arrives, then the end: never the whole answer.
    let seen = closed_within(&mut stalled, Duration::from_secs(10))
        .await
        .expect("the stalled connection is closed");
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    assert!(
        seen.len() < update.len(),
        "{} of {} bytes",
        seen.len(),
        update.len()
    );

    // A reader gets all of it, and the idle long-poll was answered, not cut off.
    let (status, exported) = server.request("GET", "/api/docs/big/state", b"");
    assert_eq!(status, 200);
    let copy = Document::new("copy");
    copy.apply_update_v1(&exported).unwrap();
    assert_eq!(copy.text_string("content").len(), text.len());
    let answer = poll.await.unwrap().expect("the long-poll's answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..40.min(answer.len())])
    );
    assert_eq!(metric(&server, limit) - before, 1);
}

/// Holds every document load on the Postgres database `url` (each reads the documents
/// table) until the returned connection commits.
async fn hold_loads(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut lock = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// An update that crashes the CRDT, among what waited for the document to load, stops
/// everything behind it: the client that joined after it is closed (1011, reconnect) without
/// a sync reply, and its edit is not saved on top of the state that can no longer be
/// trusted. Before, the replay went on: that client was answered from the crashed state and
/// its edit stored, and only then was the document reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_update_among_what_waited_for_a_load_stops_what_came_after_it() {
    let pg = support::PgDatabase::create().await;
    let server = Server::start_with_db(&pg.url, &[]);
    // A step 2 the fuzzer found (fuzz/regressions/session/): it crashes yrs on any
    // document. The file is an access byte, then each frame after its u16 length.
    let input =
        std::fs::read("../fuzz/regressions/session/crash-relayed-update-does-not-decode").unwrap();
    let crash = input[3..3 + u16::from_le_bytes([input[1], input[2]]) as usize].to_vec();
    let mut lock = hold_loads(&pg.url).await;
    let mut attacker = raw(&server.url("poisoned")).await;
    attacker.send(Ws::Binary(crash.into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut later = raw(&server.url("poisoned")).await;
    let step1 = codec::encode_step1(&Document::new("x").state_vector_v1());
    later.send(Ws::Binary(step1.into())).await.unwrap();
    later
        .send(Ws::Binary(independent_insert("<after>").into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    let mut frames = 0;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), later.next()).await {
            Ok(Some(Ok(Ws::Binary(_)))) => frames += 1,
            Ok(Some(Ok(Ws::Close(Some(close))))) => break Some(u16::from(close.code)),
            Ok(Some(Ok(_))) => {}
            _ => break None,
        }
    };
    assert_eq!(closed, Some(1011));
    assert_eq!(frames, 0, "nothing served from the crashed state");
    assert_eq!(close_of(&mut attacker).await.map(|c| c.0), Some(1007));
    // The document reloads without the edit that came after the crash.
    let reader = Client::connect(&server.url("poisoned")).await;
    assert!(!reader.text().contains("<after>"), "{}", reader.text());
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What a client sends while its document loads waits in memory only up to
/// --max-doc-bytes. Here the load waits on a table lock while the client sends 60 MB; the
/// server keeps what fits (2 MB), drops the rest, and once the document is loaded closes
/// the client with 1013 (reconnect and resync) instead of holding 60 MB while the database
/// does not answer. Before, every frame was kept: 60 MB more memory, for as long as the
/// load waited, and any amount for a client that went on sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_arrives_while_a_document_loads_is_held_to_a_budget() {
    let pg = support::PgDatabase::create().await;
    let server = Server::start_with_db(&pg.url, &["--max-doc-bytes", "2000000"]);
    let mut lock = hold_loads(&pg.url).await;
    let before = rss_kib(server.child.id());
    let mut flood = raw(&server.url("loading")).await;
    let replica = Document::new("flood");
    let text = replica.text("content");
    let mb = "x".repeat(1_000_000);
    for _ in 0..60 {
        let (_, update) = replica.edit_with_update(|e| e.insert(&text, 0, &mb).unwrap());
        let frame = codec::encode_update(&update.unwrap());
        flood.send(Ws::Binary(frame.into())).await.unwrap();
    }
    // Sent: the server has read all but what the sockets' buffers hold (a few MB).
    flood.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    assert!(
        grown < 30_000,
        "the server grew by {grown} KiB holding frames for a loading document"
    );
    assert_eq!(
        metric(
            &server,
            "tandem_limit_exceeded_total{limit=\"loading_backlog\"}"
        ),
        1
    );
    // The load goes on: the client is told to come back, and the document is served.
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    let (code, reason) = close_of(&mut flood).await.unwrap();
    assert_eq!(code, 1013, "{reason}");
    let reader = Client::connect(&server.url("loading")).await;
    assert_eq!(
        reader.text().len(),
        1_000_000,
        "the frame that fitted, applied"
    );
}
