//! The hub with real sockets against the real binary: convergence, late joiners, presence,
//! slow clients, hostile frames, limits and shutdown.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{close_of, raw, Client, Server};
use tandem_engine::protocol::codec;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_typing_concurrently_in_three_documents_converge() {
    let server = Server::start(&[]);
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push((
            i % 3,
            Client::connect(&server.url(&format!("conv-{}", i % 3))).await,
        ));
    }
    // Everyone types at once: 10 tokens each at random-ish places.
    // Inserts go to the start or the end (token boundaries), so no token can be split
    // by another and each must appear whole, exactly once.
    for (i, (_, c)) in clients.iter().enumerate() {
        for k in 0..10u32 {
            let at = if (i as u32 + k).is_multiple_of(2) {
                0
            } else {
                u32::MAX
            };
            c.insert(at, &format!("<{i}.{k}>"));
        }
    }
    for doc in 0..3 {
        let members: Vec<&Client> = clients
            .iter()
            .filter(|(d, _)| *d == doc)
            .map(|(_, c)| c)
            .collect();
        let writers: Vec<usize> = (0..20).filter(|i| i % 3 == doc).collect();
        for c in &members {
            let want = writers.len() * 10;
            c.wait_text(|t| t.matches('<').count() == want, "all tokens")
                .await;
        }
        let reference = members[0].text();
        for i in &writers {
            for k in 0..10 {
                assert_eq!(
                    reference.matches(&format!("<{i}.{k}>")).count(),
                    1,
                    "token <{i}.{k}> once"
                );
            }
        }
        for c in &members {
            assert_eq!(c.text(), reference, "doc {doc} converged");
            assert_eq!(c.state_vector(), members[0].state_vector());
        }
    }
}

#[tokio::test]
async fn a_late_joiner_receives_the_full_state() {
    let server = Server::start(&[]);
    let a = Client::connect(&server.url("late")).await;
    for i in 0..50 {
        a.insert(i, "x");
    }
    a.insert(0, "start:");
    // A second client sees it all; then a third joins after the first left.
    let b = Client::connect(&server.url("late")).await;
    b.wait_text(|t| t.len() == 56, "b synced").await;
    a.disconnect();
    let c = Client::connect(&server.url("late")).await;
    c.wait_text(|t| t.starts_with("start:") && t.len() == 56, "c synced")
        .await;
    assert_eq!(c.text(), b.text());
}

#[tokio::test]
async fn awareness_appears_for_others_and_disappears_when_a_client_disconnects() {
    let server = Server::start(&[]);
    let a = Client::connect(&server.url("aw")).await;
    let b = Client::connect(&server.url("aw")).await;
    a.set_presence(r##"{"user":{"name":"Ada","color":"#30bced"}}"##);
    b.wait_presence(a.client_id(), true).await;
    assert!(b.presence_of(a.client_id()).unwrap().contains("Ada"));
    // A new joiner gets the existing presence with the server's greeting.
    let c = Client::connect(&server.url("aw")).await;
    c.wait_presence(a.client_id(), true).await;
    // Closing the socket (no explicit leave message) removes it for everyone.
    a.disconnect();
    b.wait_presence(a.client_id(), false).await;
    c.wait_presence(a.client_id(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_relays_presence_in_a_few_frames_and_loses_none() {
    // A wide window so that batching does not depend on how fast this machine is.
    let server = Server::start(&["--presence-batch-ms", "300"]);
    let mut observer = raw(&server.url("storm")).await;
    let url = server.url("storm");
    let clients = futures_util::future::join_all((0..30).map(|_| Client::connect(&url))).await;
    let ids: HashSet<u64> = clients.iter().map(Client::client_id).collect();
    for (i, c) in clients.iter().enumerate() {
        c.set_presence(&format!(r#"{{"user":{{"name":"c{i}"}}}}"#));
    }
    let frames = awareness_frames_until(&mut observer, &ids, true).await;
    assert!(
        frames <= 10,
        "30 presence states took {frames} frames; one per joiner is the n² storm"
    );
    // Every client sees every other, however the states were grouped.
    for c in &clients {
        for id in &ids {
            c.wait_presence(*id, true).await;
        }
    }
    // Everyone leaves at once: the removals are batched too.
    for c in &clients {
        c.disconnect();
    }
    let frames = awareness_frames_until(&mut observer, &ids, false).await;
    assert!(frames <= 10, "30 removals took {frames} frames");
}

#[test]
fn a_presence_window_that_would_outlast_presence_renewal_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem-server"))
        // The bad database URL makes a server that accepted the flag exit too, not run.
        .args(["--listen", "127.0.0.1:0", "--database-url", "bogus://x"])
        .args(["--presence-batch-ms", "30000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--presence-batch-ms"), "{stderr}");
}

/// Reads awareness frames until every client of `ids` has a state (`present`) or has been
/// removed; returns how many frames carried news about them.
async fn awareness_frames_until(
    ws: &mut support::Socket,
    ids: &HashSet<u64>,
    present: bool,
) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut done = HashSet::new();
    let mut frames = 0;
    while done.len() < ids.len() {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} presence changes", done.len(), ids.len()))
            .expect("open")
            .expect("frame");
        let Ws::Binary(b) = msg else { continue };
        let Ok(tandem_engine::Message::Awareness(u)) = tandem_engine::Message::decode(&b) else {
            continue;
        };
        let news = u
            .entries
            .iter()
            .filter(|e| ids.contains(&e.client_id) && e.is_removal() != present)
            .map(|e| done.insert(e.client_id))
            .fold(false, |any, new| any | new);
        frames += usize::from(news);
    }
    frames
}

#[tokio::test]
async fn query_awareness_is_answered_and_unknown_types_are_ignored() {
    let server = Server::start(&[]);
    let a = Client::connect(&server.url("q")).await;
    a.set_presence(r#"{"user":{"name":"Q"}}"#);
    let mut ws = raw(&server.url("q")).await;
    // Unknown outer type 42: ignored, the connection stays usable.
    ws.send(Ws::Binary(vec![42, 1, 2].into())).await.unwrap();
    ws.send(Ws::Binary(vec![3].into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saw_q = false;
    while !saw_q {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("answer")
            .unwrap()
            .unwrap();
        if let Ws::Binary(b) = msg {
            if let Ok(tandem_engine::Message::Awareness(u)) = tandem_engine::Message::decode(&b) {
                saw_q = u.entries.iter().any(|e| e.state.contains("\"Q\""));
            }
        }
    }
}

#[tokio::test]
async fn a_slow_client_is_closed_with_1013_while_the_others_continue() {
    let server = Server::start(&["--outbox-frames", "64"]);
    let writer = Client::connect(&server.url("slow")).await;
    let fast = Client::connect(&server.url("slow")).await;
    // The slow client connects and then never reads.
    let mut slow = raw(&server.url("slow")).await;
    let chunk = "y".repeat(64 * 1024);
    // Paced so the reading clients are never more than 10 frames behind (a loaded CI
    // machine must not make *them* slow), while the silent one falls ever further back.
    for i in 0..30usize {
        for _ in 0..10 {
            writer.insert(0, &chunk);
        }
        let want = (i + 1) * 10 * chunk.len();
        fast.wait_text(|t| t.len() == want, "fast client keeps up")
            .await;
    }
    fast.wait_text(
        |t| t.len() == 300 * 64 * 1024,
        "fast client gets everything",
    )
    .await;
    assert!(fast.closed().is_none(), "the fast client stays connected");
    // Now read the slow client's socket: after what was buffered comes a 1013 close.
    let (code, reason) = close_of(&mut slow).await.expect("a close frame");
    assert_eq!(code, 1013, "reason: {reason}");
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn garbage_frames_close_only_their_own_connection_and_the_document_survives() {
    let server = Server::start(&["--max-frame-bytes", "65536"]);
    let keeper = Client::connect(&server.url("g")).await;
    keeper.insert(0, "precious");
    let other = Client::connect(&server.url("g")).await;
    other.wait_text(|t| t == "precious", "other synced").await;

    let cases: Vec<(&str, Ws, &[u16])> = vec![
        (
            "random bytes",
            Ws::Binary(vec![0, 2, 200, 17, 99, 1, 4, 4, 4].into()),
            &[1007],
        ),
        (
            "truncated varint",
            Ws::Binary(vec![0, 0x80].into()),
            &[1007],
        ),
        ("wrong sync type", Ws::Binary(vec![0, 7, 0].into()), &[1003]),
        ("text frame", Ws::Text("hello".into()), &[1003]),
        ("bad awareness json", Ws::Binary(bad_awareness()), &[1007]),
        (
            "update that does not decode",
            Ws::Binary(codec::encode_update(&[9, 9, 9, 9]).into()),
            &[1007],
        ),
        ("oversized", Ws::Binary(vec![0u8; 100_000].into()), &[1009]),
    ];
    for (what, frame, codes) in cases {
        let mut ws = raw(&server.url("g")).await;
        ws.send(frame).await.unwrap();
        let (code, reason) = close_of(&mut ws)
            .await
            .unwrap_or_else(|| panic!("{what}: no close frame"));
        assert!(codes.contains(&code), "{what}: got {code} ({reason})");
        assert!(!reason.is_empty(), "{what}: close without a reason");
    }
    // Everyone else is untouched, and the document is intact and still editable.
    assert!(keeper.closed().is_none() && other.closed().is_none());
    keeper.insert(8, "!");
    other
        .wait_text(|t| t == "precious!", "edit after garbage")
        .await;
    let late = Client::connect(&server.url("g")).await;
    late.wait_text(|t| t == "precious!", "late joiner").await;
}

fn bad_awareness() -> tokio_tungstenite::tungstenite::Bytes {
    let update = tandem_engine::AwarenessUpdate {
        entries: vec![tandem_engine::AwarenessEntry {
            client_id: 5,
            clock: 1,
            state: "{broken".into(),
        }],
    };
    update.encode_frame().into()
}

#[tokio::test]
async fn concurrent_first_connections_share_one_document() {
    let server = Server::start(&[]);
    let url = server.url("fresh-doc");
    let clients = futures_util::future::join_all((0..12).map(|_| Client::connect(&url))).await;
    for (i, c) in clients.iter().enumerate() {
        c.insert(0, &format!("[{i}]"));
    }
    for c in &clients {
        c.wait_text(|t| t.matches('[').count() == 12, "all twelve inserts")
            .await;
    }
}

#[tokio::test]
async fn invalid_document_names_get_http_400_and_unknown_paths_404() {
    let server = Server::start(&[]);
    let (status, body) = server.http("/ws/%FF%FE");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("UTF-8"));
    let (status, _) = server.http("/ws/");
    assert_eq!(status, 400);
    let (status, _) = server.http("/ws/plain-get-without-upgrade");
    assert_eq!(status, 400);
    let (status, _) = server.http("/nope");
    assert_eq!(status, 404);
    let (status, body) = server.http("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// Raw upgrade requests, as a client with its own HTTP code might send them: the head in
/// pieces (the server must wait for the rest), or with the first WebSocket frame in the same
/// write (the server must not lose it). Either way the connection syncs.
#[tokio::test]
async fn upgrades_in_pieces_or_with_a_frame_behind_them_sync() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&[]);
    let seed = Client::connect(&server.acks_url("raw-up")).await;
    seed.insert(0, "seeded");
    seed.wait_saved().await;
    let head = support::upgrade_head(server.port, "raw-up");
    // A masked binary frame (mask 0) holding SyncStep1 with an empty state vector.
    let step1 = [0u8, 0, 1, 0];
    let mut frame = vec![0x82, 0x80 | step1.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&step1);
    for split in [None, Some(17), Some(head.len() - 1)] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(&frame);
        if let Some(at) = split {
            tcp.write_all(&bytes[..at]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            tcp.write_all(&bytes[at..]).await.unwrap();
        } else {
            tcp.write_all(&bytes).await.unwrap();
        }
        let response = support::read_response_head(&mut tcp).await.to_lowercase();
        assert!(
            response.starts_with("http/1.1 101"),
            "{split:?}: {response}"
        );
        assert!(
            response.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{split:?}: {response}"
        );
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            tcp,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        let replica = tandem_engine::Document::new("raw");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .unwrap_or_else(|_| panic!("{split:?}: no SyncStep2 for the early frame"))
                .expect("open")
                .expect("frame");
            let Ws::Binary(data) = msg else { continue };
            if let Ok(codec::Message::Sync(tandem_engine::SyncMessage::Step2(update))) =
                codec::Message::decode(&data)
            {
                replica.apply_update_v1(update).unwrap();
                break;
            }
        }
        assert_eq!(replica.text_string("content"), "seeded", "{split:?}");
    }
}

#[tokio::test]
async fn metrics_count_connections_and_messages() {
    let server = Server::start(&[]);
    let a = Client::connect(&server.url("m")).await;
    a.insert(0, "counted");
    let b = Client::connect(&server.url("m")).await;
    b.wait_text(|t| t == "counted", "b synced").await;
    let (status, body) = server.http("/metrics");
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{body}"))
    };
    assert_eq!(value("tandem_connections "), 2.0);
    assert_eq!(value("tandem_documents_loaded "), 1.0);
    assert!(
        value("tandem_messages_in_total ") >= 3.0,
        "step 1s and the update"
    );
    assert!(value("tandem_messages_out_total ") >= 4.0);
    // Histograms, not summaries: bucket counts add up across the nodes of a cluster.
    assert!(body.contains("# TYPE tandem_update_apply_seconds histogram"));
    assert!(value("tandem_update_apply_seconds_bucket{le=\"+Inf\"} ") >= 1.0);
}

#[tokio::test]
async fn percent_encoded_names_and_query_strings_address_the_same_document() {
    let server = Server::start(&[]);
    let a = Client::connect(&format!(
        "ws://127.0.0.1:{}/ws/team%2Fmy%20doc?token=abc",
        server.port
    ))
    .await;
    a.insert(0, "shared");
    let b = Client::connect(&format!("ws://127.0.0.1:{}/ws/team/my%20doc", server.port)).await;
    b.wait_text(|t| t == "shared", "same document").await;
}

#[tokio::test]
async fn connection_limit_answers_1013() {
    let server = Server::start(&["--max-connections", "2"]);
    let _a = Client::connect(&server.url("lim")).await;
    let _b = Client::connect(&server.url("lim")).await;
    let mut c = raw(&server.url("lim")).await;
    let (code, reason) = close_of(&mut c).await.expect("close");
    assert_eq!(code, 1013, "{reason}");
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_cleanly() {
    let mut server = Server::start(&[]);
    let a = Client::connect(&server.url("bye")).await;
    a.insert(0, "x");
    server.terminate();
    let (code, _) = a.wait_closed().await;
    assert_eq!(code, 1001);
    let exit = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// The control frames a client starts: a ping gets its pong (proxies and Node clients with
/// keep-alive send them), and a client's close gets the closing handshake's reply.
#[tokio::test]
async fn a_client_ping_gets_a_pong_and_a_client_close_gets_a_reply() {
    let server = Server::start(&[]);
    let mut ws = raw(&server.url("control")).await;
    ws.send(Ws::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Pong(payload))) => break payload,
                Some(Ok(_)) => continue,
                other => panic!("connection ended before the pong: {other:?}"),
            }
        }
    })
    .await
    .expect("no pong");
    assert_eq!(&pong[..], b"still there?");
    ws.send(Ws::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_of(&mut ws).await.map(|(code, _)| code), Some(1000));
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_and_its_presence_removed() {
    let server = Server::start(&["--ping-interval-ms", "100"]);
    let watcher = Client::connect(&server.url("ping")).await;
    // A client that publishes a presence and then never reads again: it cannot answer
    // pings (tungstenite answers them while reading).
    let mut silent = raw(&server.url("ping")).await;
    let mut aw = tandem_engine::Awareness::new(4242);
    let update = aw
        .set_local_state_json(Some(r#"{"user":{"name":"ghost"}}"#), 0)
        .unwrap();
    silent
        .send(Ws::Binary(update.encode_frame().into()))
        .await
        .unwrap();
    watcher.wait_presence(4242, true).await;
    watcher.wait_presence(4242, false).await;
    drop(silent);
}

#[tokio::test]
async fn a_peer_whose_socket_stays_full_is_dropped_even_when_its_queue_has_room() {
    // The outbox is large enough never to overflow, so only the bounded write can free the
    // connection task of a client that stopped reading.
    let server = Server::start(&["--ping-interval-ms", "200", "--outbox-frames", "100000"]);
    let writer = Client::connect(&server.url("stall")).await;
    let mut stalled = raw(&server.url("stall")).await;
    let mut aw = tandem_engine::Awareness::new(777);
    let update = aw
        .set_local_state_json(Some(r#"{"user":{"name":"stuck"}}"#), 0)
        .unwrap();
    stalled
        .send(Ws::Binary(update.encode_frame().into()))
        .await
        .unwrap();
    writer.wait_presence(777, true).await;
    let chunk = "z".repeat(64 * 1024);
    for _ in 0..400 {
        writer.insert(0, &chunk);
    }
    writer.wait_presence(777, false).await;
    assert!(
        writer.closed().is_none(),
        "the reading client is unaffected"
    );
    drop(stalled);
}

/// A socket that hands its reader at most 16 KiB every 10 ms (about 1.6 MB/s), as a client on
/// a slow link would.
struct SlowReader {
    tcp: tokio::net::TcpStream,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for SlowReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        let room = buf.remaining().min(16 << 10);
        let mut part = tokio::io::ReadBuf::new(&mut buf.initialize_unfilled()[..room]);
        let result = std::pin::Pin::new(&mut self.tcp).poll_read(cx, &mut part);
        let n = part.filled().len();
        if let Poll::Ready(Ok(())) = result {
            buf.advance(n);
            let wake = tokio::time::Instant::now() + Duration::from_millis(10);
            self.pause = Some(Box::pin(tokio::time::sleep_until(wake)));
        }
        result
    }
}

impl tokio::io::AsyncWrite for SlowReader {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A client on a slow link gets all of a large document's first sync, however long it
/// takes, as long as it keeps reading. The writer's deadline (two ping intervals, 2 s here)
/// used to bound the whole write: the 12 MB answer, about 8 s at this client's pace, was
/// cut off after 4 s, and the client reconnected to the same fate for ever. Now it bounds
/// only a wait in which the socket takes nothing, so a client that stops reading is still
/// dropped (`a_peer_whose_socket_stays_full_...` above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_all_of_a_large_document() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&["--ping-interval-ms", "1000"]);
    let text = "y".repeat(12 << 20);
    server.import_text("slow", &text);

    // A small receive window, so the kernel cannot take the answer in for the client.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let mut tcp = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .unwrap();
    tcp.write_all(support::upgrade_head(server.port, "slow").as_bytes())
        .await
        .unwrap();
    let head = support::read_response_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let slow = SlowReader { tcp, pause: None };
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        slow,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send(Ws::Binary(codec::encode_step1(&[0]).into()))
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let replica = tandem_engine::Document::new("replica");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no answer within a minute")
            .unwrap_or_else(|| panic!("closed after {:?}", asked.elapsed()))
            .unwrap_or_else(|e| panic!("broken after {:?}: {e}", asked.elapsed()));
        let Ws::Binary(data) = msg else { continue };
        if let Ok(codec::Message::Sync(tandem_engine::SyncMessage::Step2(update))) =
            codec::Message::decode(&data)
        {
            replica.apply_update_v1(update).unwrap();
            break;
        }
    }
    let took = asked.elapsed();
    assert_eq!(replica.text_string("content").len(), text.len());
    assert!(
        took > Duration::from_millis(800),
        "the answer took only {took:?}: the client was not slow enough to test anything"
    );
}

/// Sends one request on a kept-alive connection and reads the answer's status (the
/// answers here are small and say their length).
fn exchange_on(tcp: &mut std::net::TcpStream, method: &str, path: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "closed mid-answer");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut rest = vec![0u8; length];
    tcp.read_exact(&mut rest).unwrap();
    head[9..12].parse().unwrap()
}

/// A connection made before a shutdown (here a kept-alive HTTP connection) is still
/// served while the server closes its clients and writes its last updates, but an edit it
/// sends then is refused with 503 (retry against the next server). It used to start the
/// document anew after shutdown had told every document to close: that actor's clients
/// were never closed, and its writes raced the last flush (an edit answered 200 could be
/// lost if it came after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_sent_during_shutdown_is_refused_not_lost() {
    let server = Server::start(&[]);
    // A client that never reads keeps the server closing for about a second.
    let _stuck = raw(&server.url("stuck")).await;
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(exchange_on(&mut kept, "GET", "/healthz", b""), 200);
    let doc = tandem_engine::Document::new("late");
    let content = doc.text("content");
    let update = doc
        .edit_with_update(|e| e.insert(&content, 0, "too late").unwrap())
        .1
        .unwrap();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || {
        exchange_on(&mut kept, "POST", "/api/docs/late/updates", &update)
    })
    .await
    .unwrap();
    assert_eq!(status, 503, "an edit accepted during shutdown");
}
