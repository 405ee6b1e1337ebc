//! Tokens and access modes, over real connections to the real binary: who may open which
//! document, what a read-only client may do, and how refusals look on the wire.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{close_of, raw, Client, Server, Socket};
use tandem_engine::protocol::codec;
use tandem_engine::{AuthMessage, Document, Message, SyncMessage};
use tandem_server::auth::{Claims, Keys, Mode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

const SECRET: &str = "test-secret-0123456789abcdef0123456789";

fn keys() -> Keys {
    Keys::from_secret(SECRET.as_bytes())
}

fn token(doc: &str, mode: Mode) -> String {
    keys().mint(doc, mode, Some("Ann".into()), Duration::from_secs(3600))
}

/// A token for `doc` whose expiry and issue time are `exp` and `iat` seconds from now.
fn token_timed(doc: &str, mode: Mode, exp: i64, iat: i64) -> String {
    let now = tandem_server::auth::token::unix_now() as i64;
    keys().sign(&Claims {
        doc: doc.into(),
        mode,
        name: None,
        exp: (now + exp) as _,
        iat: (now + iat) as _,
    })
}

fn secured() -> Server {
    Server::start(&["--auth-secret", SECRET])
}

fn with_token(server: &Server, doc: &str, token: &str) -> String {
    format!("{}?token={token}", server.url(doc))
}

/// Reads frames until one satisfies `want` (skipping the rest); `None` on close/timeout.
async fn next_matching(ws: &mut Socket, want: impl Fn(&Message<'_>) -> bool) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Ws::Binary(frame)))) => {
                if Message::decode(&frame).is_ok_and(|m| want(&m)) {
                    return Some(frame.to_vec());
                }
            }
            Ok(Some(Ok(Ws::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send(ws: &mut Socket, frame: Vec<u8>) {
    ws.send(Ws::Binary(frame.into())).await.unwrap();
}

/// An update inserting `text` at the start, made by a fresh replica of nothing.
fn insertion(text: &str) -> Vec<u8> {
    let doc = Document::new("x");
    let t = doc.text("content");
    doc.edit_with_update(|e| e.insert(&t, 0, text).unwrap())
        .1
        .unwrap()
}

/// The stored text of a document, read through the API with a token that may read it.
fn text_of(server: &Server, doc: &str) -> String {
    let auth = format!("Bearer {}", token(doc, Mode::Read));
    let (status, body) = server.request_with(
        "GET",
        &format!("/api/docs/{doc}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_a_token_a_secured_server_closes_with_4401_and_answers_401() {
    let server = secured();
    let mut ws = raw(&server.url("doc")).await;
    // what y-websocket sends first: a step 1, not a token
    send(
        &mut ws,
        codec::encode_step1(&Document::new("x").state_vector_v1()),
    )
    .await;
    let (code, reason) = close_of(&mut ws).await.expect("close frame");
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("token required"), "{reason}");
    let (status, body) = server.json("GET", "/api/docs/doc", b"");
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("token required"));
    for path in [
        "/api/docs",
        "/api/docs/doc/state",
        "/api/docs/doc/events",
        "/api/docs/doc/poll",
    ] {
        assert_eq!(server.request("GET", path, b"").0, 401, "{path}");
    }
    assert_eq!(server.request("POST", "/api/docs/doc/updates", b"x").0, 401);
}

#[tokio::test]
async fn an_expired_or_forged_token_is_rejected() {
    let server = secured();
    let now = tandem_server::auth::token::unix_now();
    let expired = keys().sign(&Claims {
        doc: "doc".into(),
        mode: Mode::Write,
        name: None,
        exp: now - 120,
        iat: now - 3600,
    });
    let mut ws = raw(&with_token(&server, "doc", &expired)).await;
    assert_eq!(
        close_of(&mut ws).await,
        Some((4401, "token expired".into()))
    );
    let forged = Keys::from_secret(b"another secret").mint(
        "doc",
        Mode::Write,
        None,
        Duration::from_secs(60),
    );
    let mut ws = raw(&with_token(&server, "doc", &forged)).await;
    let (code, reason) = close_of(&mut ws).await.unwrap();
    assert_eq!(code, 4401);
    assert!(reason.contains("invalid token"), "{reason}");
    let (status, _) = server.json("GET", &format!("/api/docs/doc?token={expired}"), b"");
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_token_for_document_a_cannot_open_document_b() {
    let server = secured();
    let a = token("a", Mode::Write);
    let mut ws = raw(&with_token(&server, "b", &a)).await;
    let (code, reason) = close_of(&mut ws).await.unwrap();
    assert_eq!(code, 4403, "{reason}");
    // nor a name that merely starts like it
    let mut ws = raw(&with_token(&server, "ab", &a)).await;
    assert_eq!(close_of(&mut ws).await.unwrap().0, 4403);
    let auth = format!("Bearer {a}");
    for path in ["/api/docs/b", "/api/docs/b/state", "/api/docs/b/events"] {
        let (status, _) = server.request_with("GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(status, 403, "{path}");
    }
    // while document a itself opens, by query and by header
    let client = Client::connect(&with_token(&server, "a", &a)).await;
    client.insert(0, "hello");
    let mut request = server.url("a").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut ws,
        codec::encode_step1(&Document::new("x").state_vector_v1()),
    )
    .await;
    // "hello" arrives in the step 2 or, if it reached the server after, as an update
    let step2 = next_matching(&mut ws, |m| match m {
        Message::Sync(SyncMessage::Step2(u) | SyncMessage::Update(u)) => u.len() > 2,
        _ => false,
    })
    .await;
    assert!(
        step2.is_some(),
        "a header token syncs the document: {:?}",
        close_of(&mut ws).await
    );
    // and a prefix token opens every document under its prefix, only those
    let team = token("team/*", Mode::Write);
    Client::connect(&with_token(&server, "team%2Fnotes", &team)).await;
    let mut ws = raw(&with_token(&server, "other", &team)).await;
    assert_eq!(close_of(&mut ws).await.unwrap().0, 4403);
}

#[tokio::test]
async fn the_token_may_come_as_the_first_auth_message() {
    let server = Server::start(&["--auth-secret", SECRET, "--auth-timeout-ms", "500"]);
    let writer = Client::connect(&with_token(&server, "doc", &token("doc", Mode::Write))).await;
    writer.insert(0, "secret text");
    let mut ws = raw(&server.url("doc")).await;
    send(&mut ws, codec::encode_auth_token(&token("doc", Mode::Read))).await;
    send(
        &mut ws,
        codec::encode_step1(&Document::new("x").state_vector_v1()),
    )
    .await;
    let step2 = next_matching(&mut ws, |m| {
        matches!(m, Message::Sync(SyncMessage::Step2(_)))
    })
    .await
    .expect("synced after the auth message");
    let Ok(Message::Sync(SyncMessage::Step2(update))) = Message::decode(&step2) else {
        unreachable!()
    };
    let replica = Document::new("r");
    replica.apply_update_v1(update).unwrap();
    assert_eq!(replica.text_string("content"), "secret text");
    // silence past --auth-timeout-ms is refused
    let mut silent = raw(&server.url("doc")).await;
    assert_eq!(close_of(&mut silent).await.unwrap().0, 4401);
}

/// The wait for the token is one deadline: a client that never sends one but answers
/// with a pong every 100 ms is closed after --auth-timeout-ms all the same. Each pong used
/// to start the wait again, so such a client held its connection slots for ever.
#[tokio::test]
async fn pongs_do_not_stretch_the_wait_for_a_token() {
    let server = Server::start(&["--auth-secret", SECRET, "--auth-timeout-ms", "500"]);
    let (mut tx, mut rx) = raw(&server.url("doc")).await.split();
    let pongs = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx.send(Ws::Pong(Vec::new().into())).await.is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let closed = loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Ws::Close(Some(frame))))) => break Some(u16::from(frame.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => break None,
        }
    };
    pongs.abort();
    assert_eq!(
        closed,
        Some(4401),
        "closed for the missing token within 5 s"
    );
}

#[tokio::test]
async fn a_read_only_client_syncs_and_shows_presence_but_its_edits_are_refused() {
    let server = secured();
    let writer = Client::connect(&with_token(&server, "doc", &token("doc", Mode::Write))).await;
    writer.insert(0, "original");
    let mut viewer = raw(&with_token(&server, "doc", &token("doc", Mode::Read))).await;
    send(
        &mut viewer,
        codec::encode_step1(&Document::new("x").state_vector_v1()),
    )
    .await;
    assert!(next_matching(&mut viewer, |m| matches!(
        m,
        Message::Sync(SyncMessage::Step2(_))
    ))
    .await
    .is_some());
    // the viewer edits: refused with y-protocols' permission-denied, never applied
    send(&mut viewer, codec::encode_update(&insertion("HACKED "))).await;
    let denied = next_matching(&mut viewer, |m| {
        matches!(m, Message::Auth(AuthMessage::PermissionDenied { .. }))
    })
    .await;
    assert!(denied.is_some(), "the viewer is told its edit was refused");
    // its presence is relayed to the writer
    let presence = tandem_engine::AwarenessUpdate {
        entries: vec![tandem_engine::AwarenessEntry {
            client_id: 4242,
            clock: 1,
            state: r#"{"user":{"name":"viewer"}}"#.into(),
        }],
    };
    send(&mut viewer, presence.encode_frame()).await;
    writer.wait_presence(4242, true).await;
    // and it still receives the writer's edits
    writer.insert(0, ">");
    let relayed = next_matching(&mut viewer, |m| {
        matches!(m, Message::Sync(SyncMessage::Update(_)))
    })
    .await;
    assert!(relayed.is_some(), "the viewer keeps receiving edits");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writer.text(), ">original");
    assert_eq!(text_of(&server, "doc"), ">original");
    // a read-only token cannot write over HTTP either
    let read = format!("Bearer {}", token("doc", Mode::Read));
    let (status, _) = server.request_with(
        "POST",
        "/api/docs/doc/updates",
        &[("Authorization", &read)],
        &insertion("HTTP "),
    );
    assert_eq!(status, 403);
    let (status, _) =
        server.request_with("DELETE", "/api/docs/doc", &[("Authorization", &read)], b"");
    assert_eq!(status, 403);
    assert_eq!(text_of(&server, "doc"), ">original");
    // the connection stays open: refusing an edit is not a protocol error
    assert!(writer.closed().is_none());
}

#[tokio::test]
async fn the_document_list_shows_only_what_the_token_covers() {
    let server = secured();
    for doc in ["team%2Fa", "team%2Fb", "private"] {
        let name = doc.replace("%2F", "/");
        let url = with_token(&server, doc, &token(&name, Mode::Write)) + "&acks=1";
        let c = Client::connect(&url).await;
        c.insert(0, "x");
        c.wait_saved().await;
    }
    let auth = format!("Bearer {}", token("team/*", Mode::Read));
    let (status, body) = server.request_with("GET", "/api/docs", &[("Authorization", &auth)], b"");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut names: Vec<&str> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["team/a", "team/b"]);
}

#[tokio::test]
async fn the_token_subcommand_mints_tokens_the_server_accepts() {
    let server = secured();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem-server"))
        .args(["token", "--doc", "cli", "--mode", "read", "--ttl", "10m"])
        .env("TANDEM_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let claims = keys().verify(&minted).unwrap();
    assert_eq!((claims.doc.as_str(), claims.mode), ("cli", Mode::Read));
    let left = claims.exp - tandem_server::auth::token::unix_now();
    assert!((590..=600).contains(&left), "{left}");
    // a read token syncs (and nothing else)
    Client::connect(&with_token(&server, "cli", &minted)).await;
    // without a secret the subcommand refuses rather than minting something useless
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem-server"))
        .args(["token", "--doc", "cli"])
        .env_remove("TANDEM_AUTH_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn an_open_server_serves_dev_tokens_and_honours_read_only_ones() {
    let server = Server::start(&[]);
    let writer = Client::connect(&server.url("demo")).await;
    writer.insert(0, "open");
    let (status, v) = server.json("GET", "/api/dev/token?doc=demo&mode=read", b"");
    assert_eq!(status, 200);
    let read = v["token"].as_str().unwrap().to_owned();
    let mut viewer = raw(&with_token(&server, "demo", &read)).await;
    send(&mut viewer, codec::encode_update(&insertion("nope "))).await;
    assert!(
        next_matching(&mut viewer, |m| matches!(m, Message::Auth(_)))
            .await
            .is_some()
    );
    assert_eq!(writer.text(), "open");
    // on a secured server the dev endpoint does not exist
    let secured = secured();
    assert_eq!(secured.json("GET", "/api/dev/token?doc=demo", b"").0, 404);
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let server = secured();
    // Valid for one to two more seconds (the server allows 5 s of clock skew; `now` is in
    // whole seconds). With `now - 4` it had 0 to 1 s left: read late in a second, the token
    // could expire before the first sync, and the client waited for a sync that never came.
    let short = token_timed("doc", Mode::Write, -3, -60);
    let client = Client::connect(&with_token(&server, "doc", &short)).await;
    let (code, reason) = client.wait_closed().await;
    assert_eq!((code, reason.as_str()), (4401, "token expired"));
}

/// An event stream ends when its token expires, as a WebSocket is closed: its last event
/// is `close` 4401. Before, the stream went on delivering the document for as long as the
/// subscriber kept it open.
#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    let server = secured();
    // One to two seconds left, as in the WebSocket test above.
    let short = token_timed("doc", Mode::Read, -3, -60);
    let (mut events, _task) = support::sse_stream(
        server.port,
        &format!("/api/docs/doc/events?token={short}"),
        &[],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut kinds = Vec::new();
    let last = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if event.event == "close" => break Some(event.data),
            Ok(Some(event)) => kinds.push(event.event),
            Ok(None) | Err(_) => break None,
        }
    };
    assert!(
        kinds.contains(&"state-vector".to_owned()),
        "subscribed first: {kinds:?}"
    );
    let last: Value = serde_json::from_str(&last.expect("a close event within 10 s")).unwrap();
    assert_eq!(last["code"], 4401);
    assert_eq!(last["reason"], "token expired");
    // and the stream ends there
    let after = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert!(matches!(after, Ok(None)), "the stream ended: {after:?}");
}

/// A token's display name goes into the origin of every update its holder makes, which is
/// stored. Postgres refuses text with a NUL in it, so a name carrying one made every edit
/// of that user unstorable; control characters are now left out of the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_with_control_characters_does_not_stop_saving() {
    let pg = support::PgDatabase::create().await;
    let mut server = Server::start_with_db(&pg.url, &["--auth-secret", SECRET]);
    let token = keys().mint(
        "named",
        Mode::Write,
        Some("Eve\u{0}\u{1b}[31m".into()),
        Duration::from_secs(3600),
    );
    let a = Client::connect(&format!("{}&token={token}", server.acks_url("named"))).await;
    a.insert(0, "signed by Eve");
    a.wait_saved().await;
    server.kill();
    server.restart();
    let token = keys().mint("named", Mode::Read, None, Duration::from_secs(3600));
    let b = Client::connect(&with_token(&server, "named", &token)).await;
    assert_eq!(b.text(), "signed by Eve");
}
