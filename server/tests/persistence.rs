//! Durability through the real server binary, against both real databases: edits survive
//! SIGKILL, "saved" acknowledgements come only once durable, compaction keeps content,
//! the document API, deletion, corrupt rows, and many documents written at once.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::{close_of, counter, each_backend, raw, Client, Server};
use tandem_engine::Document;
use tokio_tungstenite::tungstenite::Message as Ws;

/// Inserts `n` tokens `<tag.i>` at alternating ends.
fn type_tokens(c: &Client, tag: &str, n: usize) {
    for i in 0..n {
        let at = if i % 2 == 0 { 0 } else { u32::MAX };
        c.insert(at, &format!("<{tag}.{i}>"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_survive_sigkill_after_the_flush_interval() {
    for (backend, url, _keep) in each_backend().await {
        let mut server = Server::start_with_db(&url, &["--group-commit-ms", "50"]);
        let a = Client::connect(&server.url("kill")).await;
        let b = Client::connect(&server.url("kill")).await;
        type_tokens(&a, "a", 40);
        type_tokens(&b, "b", 40);
        a.wait_text(|t| t.matches('<').count() == 80, "a sees all")
            .await;
        b.wait_text(|t| t.matches('<').count() == 80, "b sees all")
            .await;
        let expected = a.text();
        assert_eq!(b.text(), expected);
        tokio::time::sleep(Duration::from_millis(300)).await; // > the flush interval
        server.kill();
        server.restart();
        let c = Client::connect(&server.url("kill")).await;
        assert_eq!(c.text(), expected, "{backend}: every edit after restart");
        assert_eq!(c.state_vector(), a.state_vector(), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_acknowledgement_means_the_edit_is_durable() {
    for (backend, url, _keep) in each_backend().await {
        // A long group-commit interval makes "acknowledged too early" observable.
        let mut server = Server::start_with_db(&url, &["--group-commit-ms", "400"]);
        let a = Client::connect(&server.acks_url("acked")).await;
        // The sync step 2 answering the server's step 1 counts as update 1 (it brought
        // nothing, so it is saved at once); the first insert commits at once too.
        a.insert(0, "first");
        a.wait_saved().await;
        assert_eq!(a.saved(), Some(2), "{backend}");
        // The next commit cannot come before 400 ms after that one.
        a.insert(5, " second");
        a.insert(12, "!");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            a.saved(),
            Some(2),
            "{backend}: acknowledged before the commit"
        );
        a.wait_saved().await;
        assert_eq!(a.saved(), Some(4));
        // Kill right after the acknowledgement: the edits must be there.
        server.kill();
        server.restart();
        let b = Client::connect(&server.url("acked")).await;
        assert_eq!(b.text(), "first second!", "{backend}");
        // A stock client (no ?acks) never receives the extension message.
        let mut stock = raw(&server.url("acked")).await;
        let c = Client::connect(&server.acks_url("acked")).await;
        c.insert(0, "x");
        c.wait_saved().await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stock.next()).await {
            if let Ws::Binary(b) = msg {
                assert_ne!(b.first(), Some(&100), "{backend}: stock client got an ack");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_through_the_server_keeps_the_document_identical() {
    for (backend, url, _keep) in each_backend().await {
        let mut server = Server::start_with_db(
            &url,
            &["--compact-after-updates", "25", "--group-commit-ms", "20"],
        );
        let a = Client::connect(&server.acks_url("compact")).await;
        for i in 0..110u32 {
            a.insert(i * 3 % (i + 1), &format!("{}", i % 10));
        }
        a.wait_saved().await;
        let expected = a.text();
        server.kill();
        let store = tandem_server::store::open(&url, None).await.unwrap();
        let stored = store.load("compact").await.unwrap().unwrap();
        let snapshot = stored.snapshot.as_ref().expect("a snapshot was written");
        assert!(
            snapshot.seq >= 100,
            "{backend}: snapshot at {}",
            snapshot.seq
        );
        assert!(
            stored.log.len() < 25,
            "{backend}: {} entries left",
            stored.log.len()
        );
        drop(store);
        server.restart();
        let b = Client::connect(&server.url("compact")).await;
        assert_eq!(b.text(), expected, "{backend}");
        assert_eq!(b.state_vector(), a.state_vector(), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_api_lists_reads_imports_and_deletes() {
    for (backend, url, _keep) in each_backend().await {
        let server = Server::start_with_db(&url, &[]);
        let a = Client::connect(&server.acks_url("notes%2Fone")).await;
        a.insert(0, "hello api");
        a.wait_saved().await;

        let (status, list) = server.json("GET", "/api/docs", b"");
        assert_eq!(status, 200, "{backend}");
        let docs = list["documents"].as_array().unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["name"], "notes/one");
        assert!(docs[0]["size_bytes"].as_u64().unwrap() > 0);

        let (status, meta) = server.json("GET", "/api/docs/notes%2Fone", b"");
        assert_eq!(status, 200);
        assert_eq!(meta["text"], "hello api");
        assert_eq!(meta["clients"], 1);
        assert_eq!(meta["seq"], meta["saved_seq"]);

        // Export the whole state; it rebuilds the document elsewhere.
        let (status, state) = server.request("GET", "/api/docs/notes%2Fone/state", b"");
        assert_eq!(status, 200);
        let copy = Document::new("copy");
        copy.apply_update_v1(&state).unwrap();
        assert_eq!(copy.text_string("content"), "hello api");

        // Import into another document: live clients see it, and it is durable.
        let b = Client::connect(&server.url("imported")).await;
        let (status, body) = server.json("POST", "/api/docs/imported/state", &state);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["changed"], true);
        b.wait_text(|t| t == "hello api", "import reaches live clients")
            .await;
        let (_, again) = server.json("POST", "/api/docs/imported/state", &state);
        assert_eq!(
            again["changed"], false,
            "a duplicate import changes nothing"
        );

        // Malformed imports: 400 with a JSON error, nothing changes.
        let (status, err) = server.json("POST", "/api/docs/imported/state", &[0xff, 0xfe, 1]);
        assert_eq!(status, 400);
        assert!(err["error"].as_str().unwrap().contains("update"), "{err}");
        let (status, _) = server.json("POST", "/api/docs/imported/state", b"");
        assert_eq!(status, 400);
        assert_eq!(b.text(), "hello api");

        let (status, err) = server.json("GET", "/api/docs/never-made", b"");
        assert_eq!((status, err["error"].is_string()), (404, true));
        let (status, _) = server.json("GET", "/api/docs/%00bad", b"");
        assert_eq!(status, 400);

        // Delete: its clients are closed for good (4410), then it is gone.
        let (status, _) = server.request("DELETE", "/api/docs/notes%2Fone", b"");
        assert_eq!(status, 204, "{backend}");
        assert_eq!(a.wait_closed().await.0, 4410);
        let (status, _) = server.json("GET", "/api/docs/notes%2Fone", b"");
        assert_eq!(status, 404);
        let (status, _) = server.json("DELETE", "/api/docs/notes%2Fone", b"");
        assert_eq!(status, 404);
        let (_, list) = server.json("GET", "/api/docs", b"");
        let names: Vec<&str> = list["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["imported"], "{backend}");
        // The name is free again: a new client starts an empty document.
        let c = Client::connect(&server.url("notes%2Fone")).await;
        assert_eq!(c.text(), "");
    }
}

/// A server (unloading idle documents after 50 ms) where one client wrote `text` into
/// `doc` and left, and the document has since left memory: stored, not loaded.
async fn written_then_unloaded(url: &str, backend: &str, doc: &str, text: &str) -> Server {
    let server = Server::start_with_db(url, &["--idle-unload-ms", "50"]);
    let a = Client::connect(&server.url(doc)).await;
    a.insert(0, text);
    a.disconnect();
    wait_unloaded(&server, backend).await;
    server
}

/// Waits until `/readyz` reports no document in memory (an idle unload happened).
async fn wait_unloaded(server: &Server, backend: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.json("GET", "/readyz", b"").1["documents_loaded"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{backend}: never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Overwrites the stored bytes of update `seq` of `doc` with garbage.
async fn corrupt_update(url: &str, doc: &str, seq: i64) {
    use sqlx::Connection;
    let garbage: &[u8] = &[0xff, 0xff, 0xff, 0xff];
    let sql = "UPDATE updates SET data = $1 WHERE seq = $2 AND doc_id = (SELECT id FROM documents WHERE name = $3)";
    let changed = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let r = sqlx::query(sql).bind(garbage).bind(seq).bind(doc);
        r.execute(&mut c).await.unwrap().rows_affected()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        let r = sqlx::query(sql).bind(garbage).bind(seq).bind(doc);
        r.execute(&mut c).await.unwrap().rows_affected()
    };
    assert_eq!(changed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_fails_that_document_alone_with_a_clear_error() {
    for (backend, url, _keep) in each_backend().await {
        let mut server = Server::start_with_db(&url, &[]);
        let a = Client::connect(&server.acks_url("broken")).await;
        let b = Client::connect(&server.acks_url("fine")).await;
        type_tokens(&a, "a", 3);
        type_tokens(&b, "b", 3);
        a.wait_saved().await;
        b.wait_saved().await;
        let fine = b.text();
        server.kill();
        corrupt_update(&url, "broken", 2).await;
        server.restart();

        let mut ws = raw(&server.url("broken")).await;
        let (code, reason) = close_of(&mut ws).await.expect("close frame");
        assert_eq!(code, 1011, "{backend}");
        assert!(
            reason.contains("corrupt") && reason.contains("seq 2"),
            "{backend}: {reason}"
        );
        let (status, err) = server.json("GET", "/api/docs/broken", b"");
        assert_eq!(status, 503);
        assert!(err["error"].as_str().unwrap().contains("corrupt"), "{err}");

        let c = Client::connect(&server.url("fine")).await;
        assert_eq!(c.text(), fine, "{backend}: other documents are untouched");
        // A corrupt document can still be deleted, and then used afresh.
        let (status, _) = server.request("DELETE", "/api/docs/broken", b"");
        assert_eq!(status, 204);
        let d = Client::connect(&server.url("broken")).await;
        assert_eq!(d.text(), "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_in_many_documents_are_all_stored() {
    for (backend, url, _keep) in each_backend().await {
        let mut server = Server::start_with_db(&url, &["--group-commit-ms", "30"]);
        let mut clients = Vec::new();
        for i in 0..24 {
            let c = Client::connect(&server.acks_url(&format!("many-{}", i % 8))).await;
            clients.push((i % 8, c));
        }
        for (i, (_, c)) in clients.iter().enumerate() {
            type_tokens(c, &i.to_string(), 15);
        }
        for (_, c) in &clients {
            c.wait_saved().await;
        }
        let mut expected = Vec::new();
        for d in 0..8 {
            let members: Vec<&Client> = clients
                .iter()
                .filter(|(doc, _)| *doc == d)
                .map(|(_, c)| c)
                .collect();
            for c in &members {
                c.wait_text(|t| t.matches('<').count() == 45, "converged")
                    .await;
            }
            expected.push(members[0].text());
        }
        server.kill();
        server.restart();
        for (d, text) in expected.iter().enumerate() {
            let c = Client::connect(&server.url(&format!("many-{d}"))).await;
            assert_eq!(&c.text(), text, "{backend} many-{d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_document_leaves_memory_once_saved_and_comes_back_from_the_store() {
    for (backend, url, _keep) in each_backend().await {
        let server = written_then_unloaded(&url, backend, "idle", "still here").await;
        let b = Client::connect(&server.url("idle")).await;
        assert_eq!(b.text(), "still here", "{backend}");
    }
}

#[tokio::test]
async fn the_migrate_subcommand_creates_the_schema_on_both_backends_and_exits() {
    for (backend, url, _keep) in each_backend().await {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_tandem-server"))
            .args(["migrate", "--database-url", &url])
            .env("RUST_LOG", "warn")
            .status()
            .unwrap();
        assert!(status.success(), "{backend}: {status:?}");
        // The schema is there: a store opened without migrating can list documents.
        let store = tandem_server::store::open(&url, None).await.unwrap();
        assert!(store.list().await.unwrap().is_empty(), "{backend}");
        let bad = std::process::Command::new(env!("CARGO_BIN_EXE_tandem-server"))
            .args(["migrate", "--database-url", "mysql://nope"])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("DATABASE_URL"));
    }
}

/// `DELETE` of a document that is stored but not in memory (after a restart, or once it
/// was unloaded) starts its load and sends the delete at once, so the delete reaches the
/// actor while it loads. It used to hit an `unreachable!` there: the actor panicked, the
/// caller got 503 and the document stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_not_in_memory_can_be_deleted() {
    for (backend, url, _keep) in each_backend().await {
        let server = written_then_unloaded(&url, backend, "cold", "to be deleted").await;
        let (status, body) = server.request("DELETE", "/api/docs/cold", b"");
        assert_eq!(status, 204, "{backend}: {}", String::from_utf8_lossy(&body));
        let (status, _) = server.json("GET", "/api/docs/cold", b"");
        assert_eq!(status, 404, "{backend}: deleted from the store");
        let (status, _) = server.json("DELETE", "/api/docs/never-made", b"");
        assert_eq!(status, 404, "{backend}");
        let b = Client::connect(&server.url("cold")).await;
        assert_eq!(b.text(), "", "{backend}: the name starts afresh");
    }
}

/// A graceful shutdown writes the last edits at once, whatever `--group-commit-ms` says.
/// With commits a minute apart and 5 s allowed for the final flush, the shutdown used to
/// wait for a commit due only after its deadline, then exit without the edits; with
/// `--shutdown-flush-ms 0` it gave up on them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_stores_the_last_edits_at_once() {
    // 0 too: the limit is for a database that is down, and used to drop the last edits
    // with the database up.
    let backends = each_backend().await;
    for ((backend, url, _keep), limit) in backends
        .iter()
        .flat_map(|b| ["5000", "0"].map(|limit| (b, limit)))
    {
        let doc = format!("last-{limit}");
        let mut server = Server::start_with_db(
            url,
            &["--group-commit-ms", "60000", "--shutdown-flush-ms", limit],
        );
        let a = Client::connect(&server.acks_url(&doc)).await;
        a.insert(0, "first");
        // The first commit comes at once; the next is due a minute after it.
        a.wait_saved().await;
        a.insert(5, " and last");
        let b = Client::connect(&server.url(&doc)).await;
        b.wait_text(|t| t == "first and last", "the server has the edit")
            .await;
        let asked = std::time::Instant::now();
        server.terminate();
        let (server_back, exit) = tokio::task::spawn_blocking(move || {
            let exit = server.child.wait().unwrap();
            (server, exit)
        })
        .await
        .unwrap();
        server = server_back;
        let took = asked.elapsed();
        assert!(
            exit.success(),
            "{backend}, limit {limit}: exit status {exit:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{backend}, limit {limit}: the shutdown took {took:?} (the flush waited for the next commit)"
        );
        server.restart();
        let c = Client::connect(&server.url(&doc)).await;
        assert_eq!(
            c.text(),
            "first and last",
            "{backend}, limit {limit}: the last edit was stored"
        );
    }
}

/// A delete does not wait for the next group commit either: with commits a minute apart it
/// held the API call, and refused the document's new clients, for up to that minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_answered_without_waiting_for_the_next_commit() {
    for (backend, url, _keep) in each_backend().await {
        let server = Server::start_with_db(&url, &["--group-commit-ms", "60000"]);
        let a = Client::connect(&server.acks_url("doomed")).await;
        a.insert(0, "stored");
        a.wait_saved().await;
        a.insert(6, " and pending");
        let b = Client::connect(&server.url("doomed")).await;
        b.wait_text(|t| t == "stored and pending", "the server has the edit")
            .await;
        let asked = std::time::Instant::now();
        let (status, body) = server.request("DELETE", "/api/docs/doomed", b"");
        let took = asked.elapsed();
        assert_eq!(status, 204, "{backend}: {}", String::from_utf8_lossy(&body));
        assert!(
            took < Duration::from_secs(3),
            "{backend}: the delete took {took:?} (it waited for the next commit)"
        );
        assert_eq!(a.wait_closed().await.0, 4410, "{backend}");
        let (status, _) = server.json("GET", "/api/docs/doomed", b"");
        assert_eq!(status, 404, "{backend}: deleted from the store");
        let c = Client::connect(&server.url("doomed")).await;
        assert_eq!(c.text(), "", "{backend}: the name starts afresh");
    }
}

/// A document whose writes the database refuses (here a trigger refuses two documents'
/// log rows, as a constraint or a bad value would) holds up no other document, costs no
/// busy loop, and loses nothing: once the database takes them, its writes are stored (and
/// those of a document deleted meanwhile are not).
/// Before, the writer retried the refused documents inside one commit for ever: with one
/// of them, no other document was saved again; with two, it retried without a pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_the_database_refuses_holds_up_no_other() {
    use sqlx::Connection;
    let pg = support::PgDatabase::create().await;
    let mut server = Server::start_with_db(&pg.url, &[]);
    let mut db = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    for statement in [
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN
           IF (SELECT name FROM documents WHERE id = NEW.doc_id) LIKE 'poison%' THEN
             RAISE EXCEPTION 'refused by the test';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON updates
           FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    let fine = Client::connect(&server.acks_url("fine")).await;
    let poison = [
        Client::connect(&server.acks_url("poison-a")).await,
        Client::connect(&server.acks_url("poison-b")).await,
    ];
    for (i, p) in poison.iter().enumerate() {
        p.insert(0, &format!("kept {i}"));
    }
    fine.insert(0, "one");
    fine.wait_saved().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counter(&server, "tandem_persist_refused_total") < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the poison documents were never refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Later edits of the fine document are saved while the others stay refused.
    for word in [" two", " three"] {
        fine.insert(u32::MAX, word);
        fine.wait_saved().await;
    }
    for p in &poison {
        assert_ne!(p.saved(), Some(p.sent_updates()), "refused, not saved");
    }
    let before = counter(&server, "tandem_persist_refused_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = counter(&server, "tandem_persist_refused_total") - before;
    assert!(
        during <= 20.0,
        "{during} refusals in 2 s: retried without a pause"
    );
    // A refused document deleted meanwhile: its held writes go with it.
    let doomed = Client::connect(&server.url("poison-doomed")).await;
    doomed.insert(0, "deleted");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counter(&server, "tandem_persist_refused_total") < before + during + 1.0 {
        assert!(std::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = server.request("DELETE", "/api/docs/poison-doomed", b"");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    // The database takes them again: nothing was lost.
    sqlx::query("DROP TRIGGER refuse_poison ON updates")
        .execute(&mut db)
        .await
        .unwrap();
    for p in &poison {
        p.wait_saved().await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await; // past the longest backoff
    let (status, _) = server.json("GET", "/api/docs/poison-doomed", b"");
    assert_eq!(
        status, 404,
        "the deleted document came back from its held writes"
    );
    server.kill();
    server.restart();
    for (i, name) in ["poison-a", "poison-b"].iter().enumerate() {
        let c = Client::connect(&server.url(name)).await;
        assert_eq!(c.text(), format!("kept {i}"));
    }
    let c = Client::connect(&server.url("fine")).await;
    assert_eq!(c.text(), "one two three");
}

/// A failover: the connections the server holds lead to a server that only reads (the old
/// primary, demoted), while a new connection would reach one that writes. The server must
/// let go of the read-only connections and store the edits on a new one. It kept them in
/// its pool, so every commit was refused until their lifetime ran out (30 minutes).
/// Simulated with one database's default: sessions that start while it is on stay
/// read-only for their whole life, sessions that start after it is reset write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_edits_are_stored_on_a_new_connection() {
    use sqlx::Connection;
    let pg = support::PgDatabase::create().await;
    let name = pg.url.rsplit_once('/').unwrap().1.to_owned();
    let mut server = Server::start_with_db(&pg.url, &["--group-commit-ms", "20"]);
    let c = Client::connect(&server.acks_url("failover")).await;
    c.insert(0, "before");
    c.wait_saved().await;
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    // The old primary goes away: the server reconnects, to a server that only reads.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    c.insert(u32::MAX, " during");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.http("/readyz").0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "the read-only database never refused a commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(c.saved(), Some(c.sent_updates()), "refused, not saved");
    // The new primary takes writes; connections opened from now on reach it.
    sqlx::query(&format!(
        "ALTER DATABASE {name} RESET default_transaction_read_only"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    c.insert(u32::MAX, " after");
    c.wait_saved().await;
    server.kill();
    server.restart();
    let reader = Client::connect(&server.url("failover")).await;
    assert_eq!(reader.text(), "before during after");
}

/// A shutdown while the database is unreachable ends soon after `--shutdown-flush-ms`,
/// even with a document busy with a delete that waits for the database. It used to wait for
/// that document for as long as the outage lasted (here another program holds SQLite's
/// write lock; the server learns of the outage when its 5 s busy timeout runs out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_an_outage_does_not_wait_for_the_database() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tandem.db", dir.path().display());
    let mut server = Server::start_with_db(&url, &["--shutdown-flush-ms", "1000"]);
    let a = Client::connect(&server.acks_url("locked")).await;
    a.insert(0, "before");
    a.wait_saved().await;
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    a.insert(6, " during");
    let port = server.port;
    // Answered only once the database takes the delete: never, here.
    std::thread::spawn(move || {
        let _ = support::http_exchange(port, "DELETE", "/api/docs/locked", &[], b"");
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    server.terminate();
    let exit = tokio::task::spawn_blocking(move || {
        while asked.elapsed() < Duration::from_secs(25) {
            if let Some(exit) = server.child.try_wait().unwrap() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();
    let took = asked.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took < Duration::from_secs(15), "the shutdown took {took:?}");
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
}
