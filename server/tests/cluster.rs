//! Cluster mode with real processes: three `tandem-server` nodes sharing the machine's
//! Redis (127.0.0.1:6379) and one Postgres database, clients spread over them.
//!
//! The tests run one at a time (one of them restarts Redis) and each uses its own channel
//! prefix, so nothing leaks between them.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{counter, Client, PgDatabase, Server};
use tokio::sync::Mutex;

const REDIS: &str = "redis://127.0.0.1:6379";

/// Serialises the tests of this file: one restarts the Redis all of them use.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn redis_up() -> bool {
    Command::new("redis-cli")
        .args(["-p", "6379", "ping"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

fn start_redis() {
    if !redis_up() {
        let status = Command::new("redis-server")
            .args(["--daemonize", "yes", "--port", "6379", "--save", ""])
            .status()
            .expect("redis-server");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_up() {
            assert!(Instant::now() < deadline, "redis did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn stop_redis() {
    let _ = Command::new("redis-cli")
        .args(["-p", "6379", "shutdown", "nosave"])
        .output();
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_up() {
        assert!(Instant::now() < deadline, "redis did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings Redis back even when a test fails half-way.
struct RedisGuard;

impl Drop for RedisGuard {
    fn drop(&mut self) {
        start_redis();
    }
}

/// `n` nodes on one fresh Postgres database, with a channel prefix of their own.
async fn cluster(n: usize, extra: &[&str]) -> (Vec<Server>, PgDatabase) {
    start_redis();
    let db = PgDatabase::create().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut args = vec!["--redis-url", REDIS, "--redis-prefix", &prefix];
    args.extend_from_slice(extra);
    let nodes = (0..n)
        .map(|_| Server::start_with_db(&db.url, &args))
        .collect();
    (nodes, db)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_edit_one_document_and_converge() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, _db) = cluster(3, &[]).await;
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..3 {
            clients.push(Client::connect(&node.url("shared")).await);
        }
    }
    // everyone types at once, at both ends of the text
    for round in 0..10 {
        for (i, c) in clients.iter().enumerate() {
            c.insert(0, &format!("<{i}.{round}>"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("every client holds every edit", || {
        clients
            .iter()
            .all(|c| c.text().matches('<').count() == clients.len() * 10)
    })
    .await;
    let first = clients[0].text();
    assert!(clients.iter().all(|c| c.text() == first), "identical texts");
    // presence crosses nodes too
    clients[0].set_presence(r#"{"user":{"name":"on node 0"}}"#);
    let id = clients[0].client_id();
    clients[8].wait_presence(id, true).await;
    // and the store holds it all: a new node loads it from Postgres alone
    for node in &nodes {
        assert_eq!(node.json("GET", "/readyz", b"").0, 200);
    }
    // the link stayed up all along (its health pings must not read as failures)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for node in &nodes {
        let (_, metrics) = node.http("/metrics");
        assert!(
            !metrics.contains("tandem_cluster_link_failures_total"),
            "the redis link failed on a healthy redis"
        );
        assert!(
            metrics.contains("tandem_cluster_up 1"),
            "link reported down"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // group commits
    let late = Server::start_with_db(&_db.url, &[]);
    let fresh = Client::connect(&late.url("shared")).await;
    assert_eq!(fresh.text(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_loses_nothing_its_clients_typed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut nodes, db) = cluster(3, &[]).await;
    let doomed_client = Client::connect(&nodes[0].url("doc")).await;
    let survivor = Client::connect(&nodes[1].url("doc")).await;
    let third = Client::connect(&nodes[2].url("doc")).await;
    doomed_client.insert(0, "before the crash. ");
    survivor
        .wait_text(|t| t == "before the crash. ", "relayed")
        .await;
    // typed and killed at once: whatever node 0 had not yet relayed or stored is still in
    // its client's replica
    doomed_client.insert(18, "typed as it died.");
    nodes[0].kill();
    // the client reconnects to another node with what it has
    let state = doomed_client.state();
    let reconnected = Client::connect_with_state(&nodes[2].url("doc"), Some(&state)).await;
    survivor.insert(0, "[after] ");
    let want = "[after] before the crash. typed as it died.";
    for c in [&reconnected, &survivor, &third] {
        c.wait_text(|t| t == want, "converged after the crash")
            .await;
    }
    // node 0 is gone for good; the others must have stored everything
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(nodes);
    let fresh_node = Server::start_with_db(&db.url, &[]);
    let fresh = Client::connect(&fresh_node.url("doc")).await;
    assert_eq!(fresh.text(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_edit_ends_converged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _guard = RedisGuard;
    let (nodes, _db) = cluster(2, &[]).await;
    let a = Client::connect(&nodes[0].url("doc")).await;
    let b = Client::connect(&nodes[1].url("doc")).await;
    a.insert(0, "start.");
    b.wait_text(|t| t == "start.", "relayed").await;
    stop_redis();
    // each node keeps serving its own clients and says it is not ready
    for node in &nodes {
        eventually("not ready without redis", || {
            node.request("GET", "/readyz", b"").0 == 503
        })
        .await;
    }
    let a2 = Client::connect(&nodes[0].url("doc")).await;
    a.insert(6, " a typed alone.");
    b.insert(0, "b typed alone. ");
    a2.wait_text(
        |t| t.contains("a typed alone"),
        "local clients still served",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.text().contains("a typed alone"), "no link, no relay");
    start_redis();
    let want_parts = ["b typed alone. ", "start.", " a typed alone."];
    for c in [&a, &b, &a2] {
        c.wait_text(
            |t| want_parts.iter().all(|p| t.contains(p)),
            "converged after redis returned",
        )
        .await;
    }
    assert_eq!(a.text(), b.text());
    for node in &nodes {
        eventually("ready again", || {
            node.request("GET", "/readyz", b"").0 == 200
        })
        .await;
    }
}

/// Only the publishing connection of a node is cut (an idle timeout, a `CLIENT KILL`): its
/// next publish fails and it is unready meanwhile, then it reconnects (with nothing to
/// publish: an unready node gets no traffic), is ready again and its clients' edits reach
/// the other node. Readiness used to come back only when the subscribing connection
/// reconnected, which here it never has to: the node stayed unready for good and a load
/// balancer would have taken it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_publishing_connection_is_cut_is_ready_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, _db) = cluster(2, &[]).await;
    let a = Client::connect(&nodes[0].url("doc")).await;
    let b = Client::connect(&nodes[1].url("doc")).await;
    a.insert(0, "start.");
    b.wait_text(|t| t == "start.", "relayed").await;
    let (_, ready) = nodes[0].json("GET", "/readyz", b"");
    let name = format!("tandem-pub-{}", ready["node"].as_str().unwrap());
    let list = Command::new("redis-cli")
        .args(["-p", "6379", "client", "list"])
        .output()
        .expect("redis-cli");
    let list = String::from_utf8_lossy(&list.stdout);
    let id = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no connection named {name} in\n{list}"))
        .to_owned();
    let killed = Command::new("redis-cli")
        .args(["-p", "6379", "client", "kill", "id", &id])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&killed.stdout).trim(), "1");
    // The next publish fails: the link is down (that edit is dropped, and repaired by the
    // resync). Then nobody edits: the node must be ready again all the same.
    a.insert(u32::MAX, ".");
    eventually("a publish failed", || {
        counter(&nodes[0], "tandem_cluster_link_failures_total") >= 1.0
    })
    .await;
    eventually("node 0 ready again with its publisher reconnected", || {
        nodes[0].request("GET", "/readyz", b"").0 == 200
    })
    .await;
    a.insert(0, "end.");
    let want = a.text();
    b.wait_text(
        |t| t.starts_with("end.") && t.len() == want.len(),
        "converged",
    )
    .await;
    assert_eq!(b.text(), a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_behind_the_other_nodes_catches_up_by_resyncing() {
    let _one = ONE_AT_A_TIME.lock().await;
    start_redis();
    let db = PgDatabase::create().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let args = ["--redis-url", REDIS, "--redis-prefix", &prefix];
    let roomy = Server::start_with_db(&db.url, &args);
    // One frame of another node may wait for this node's document.
    let cramped = Server::start_with_db(&db.url, &[&args[..], &["--cluster-queue", "1"]].concat());
    let a = Client::connect(&roomy.url("doc")).await;
    let b = Client::connect(&cramped.url("doc")).await;
    // A third node's 300 edits arrive at once, in one pipeline: far faster than a
    // document applies them.
    let replica = tandem_engine::Document::new("doc");
    let text = replica.text("content");
    let node = uuid::Uuid::new_v4();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        let (_, update) = replica.edit_with_update(|e| {
            let end = e.text_len(&text);
            e.insert(&text, end, &format!("<{i}>")).unwrap()
        });
        let frame = tandem_engine::protocol::codec::encode_update(&update.unwrap());
        let message = [node.as_bytes().as_slice(), &frame].concat();
        pipe.publish(format!("{prefix}:doc:doc"), message).ignore();
    }
    let redis = redis::Client::open(REDIS).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    pipe.query_async::<()>(&mut conn).await.unwrap();
    let want = replica.text_string("content");
    a.wait_text(|t| t == want, "the roomy node took every edit")
        .await;
    // The cramped one dropped most and got them back from the roomy one by resyncing.
    b.wait_text(|t| t == want, "the cramped node has every edit too")
        .await;
    assert!(
        counter(&cramped, "tandem_cluster_received_dropped_total") >= 100.0,
        "the burst did not overflow the queue: the test proves nothing"
    );
    // and the link keeps working in both directions afterwards
    b.insert(0, "end.");
    a.wait_text(|t| t.starts_with("end."), "relayed back").await;
    assert_eq!(a.text(), b.text());
}

/// A client of node 0 with a cursor, seen by a watcher on node 1: (watcher, client, its id).
async fn cursor_seen_on_node_1(nodes: &[Server]) -> (Client, Client, u64) {
    let watcher = Client::connect(&nodes[1].url("doc")).await;
    let client = Client::connect(&nodes[0].url("doc")).await;
    client.set_presence(r#"{"user":{"name":"on node 0"}}"#);
    let id = client.client_id();
    watcher.wait_presence(id, true).await;
    (watcher, client, id)
}

/// A node that loads a document after another node's clients set their cursors sees them
/// at once: the answer to its step 1 carries the presence, not only the document (clients
/// renew their presence only every 15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_loading_a_document_learns_the_cursors_already_there() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, _db) = cluster(2, &[]).await;
    let writer = Client::connect(&nodes[0].url("doc")).await;
    writer.insert(0, "hello");
    writer.set_presence(r#"{"user":{"name":"on node 0"}}"#);
    let id = writer.client_id();
    // give node 0 the presence before node 1 loads the document
    let local = Client::connect(&nodes[0].url("doc")).await;
    local.wait_presence(id, true).await;
    let started = Instant::now();
    let watcher = Client::connect(&nodes[1].url("doc")).await;
    watcher.wait_text(|t| t == "hello", "the document").await;
    watcher.wait_presence(id, true).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cursor came with a renewal, not with the sync: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_dead_node_expires_on_the_others() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut nodes, _db) = cluster(2, &[]).await;
    let (watcher, _ghost, id) = cursor_seen_on_node_1(&nodes).await;
    nodes[0].kill();
    // no removal message was ever sent: the state times out (30 s without renewal)
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(45);
    while watcher.presence_of(id).is_some() {
        assert!(Instant::now() < deadline, "ghost presence never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "expired too early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_node_shut_down_gracefully_leaves_the_others_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, _db) = cluster(2, &[]).await;
    let (watcher, leaving, id) = cursor_seen_on_node_1(&nodes).await;
    nodes[0].terminate();
    assert_eq!(leaving.wait_closed().await.0, 1001);
    // The node published the removal before exiting: no 30 s expiry to wait for.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while watcher.presence_of(id).is_some() {
        assert!(
            Instant::now() < deadline,
            "the cursor of a client of the node shut down stayed on the other node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of `doc` on each of the first two nodes, after an edit on node 0 reached node 1.
async fn edited_on_two_nodes(nodes: &[Server], doc: &str) -> (Client, Client) {
    let here = Client::connect(&nodes[0].url(doc)).await;
    let there = Client::connect(&nodes[1].url(doc)).await;
    here.insert(0, "before the delete");
    there
        .wait_text(|t| t == "before the delete", "the edit on the other node")
        .await;
    (here, there)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_deleted_on_one_node_is_gone_from_every_node() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, _db) = cluster(2, &[]).await;
    let (here, there) = edited_on_two_nodes(&nodes, "doomed").await;
    let (status, _) = nodes[0].request("DELETE", "/api/docs/doomed", b"");
    assert_eq!(status, 204);
    assert_eq!(here.wait_closed().await.0, 4410);
    // The other node closes its clients for good too, and drops its copy.
    assert_eq!(there.wait_closed().await.0, 4410);
    // Neither node serves the old content again, from memory or from the store.
    for node in &nodes {
        let fresh = Client::connect(&node.url("doomed")).await;
        assert_eq!(fresh.text(), "", "a deleted document came back on a node");
    }
}

/// A delete whose notice a node misses (Redis down) must not let that node store part of
/// the document again: the store refuses its next write, and it closes its clients for
/// good as if the notice had come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_delete_does_not_bring_the_document_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (nodes, db) = cluster(2, &[]).await;
    let (here, there) = edited_on_two_nodes(&nodes, "missed").await;
    // Each node stores what it applies: once both have, both write to the same row.
    let mut pg = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&db.url).await.unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let writers: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT node) FROM updates u JOIN documents d ON d.id = u.doc_id
             WHERE d.name = 'missed'",
        )
        .fetch_one(&mut pg)
        .await
        .unwrap();
        if writers == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both nodes never stored the edit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _redis = RedisGuard;
    stop_redis();
    let (status, _) = nodes[0].request("DELETE", "/api/docs/missed", b"");
    assert_eq!(status, 204);
    assert_eq!(here.wait_closed().await.0, 4410);
    // The other node never heard of the delete, and its client types on.
    there.insert(0, "after it: ");
    assert_eq!(there.wait_closed().await.0, 4410);
    start_redis();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE name = 'missed'")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(stored, 0, "part of the document was stored again");
    // Neither node serves the old content again: once both have let go of the document (a
    // client joining while a node closes it is refused with 4410 like those before it), a
    // new client on either gets an empty one.
    for node in &nodes {
        let loaded = || node.json("GET", "/readyz", b"").1["documents_loaded"].as_u64();
        eventually("the node let go of the document", || loaded() == Some(0)).await;
    }
    for node in &nodes {
        let fresh = Client::connect(&node.url("missed")).await;
        assert_eq!(fresh.text(), "", "a deleted document came back on a node");
    }
}

#[tokio::test]
async fn cluster_mode_refuses_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            REDIS,
            "--database-url",
        ])
        .arg(format!("sqlite://{}/x.db", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a Postgres"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_compacting_the_same_document_keep_every_update() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Every few updates each node folds the log into a snapshot, merging with the one the
    // other node stored (under the advisory lock): neither may drop the other's edits.
    let (nodes, db) = cluster(2, &["--compact-after-updates", "3"]).await;
    let a = Client::connect(&nodes[0].url("doc")).await;
    let b = Client::connect(&nodes[1].url("doc")).await;
    for i in 0..30 {
        a.insert(0, &format!("a{i} "));
        b.insert(0, &format!("b{i} "));
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    eventually("both sides hold 60 edits", || {
        a.text().matches(' ').count() == 60 && b.text() == a.text()
    })
    .await;
    let want = a.text();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop((a, b));
    drop(nodes);
    let fresh_node = Server::start_with_db(&db.url, &[]);
    let fresh = Client::connect(&fresh_node.url("doc")).await;
    assert_eq!(fresh.text(), want);
    // and the log was really folded (each node stores all 60 updates it applied; the
    // snapshots replaced most of those rows)
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM updates")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(snapshots, 1);
    assert!(rows < 60, "{rows} log rows left of 120 written");
}
