//! Persistence benchmarks against the real databases (Postgres at 127.0.0.1:5432, an
//! SQLite file), side by side with the same bytes decoded from memory:
//!
//! - `cold_load/*`: the automerge-paper document (259,778 per-transaction updates) read
//!   from the store and rebuilt, as its whole log and after compaction into one snapshot.
//! - `writer/*`: sustained updates/s through the group-commit writer until durable, for
//!   one document and spread over 100.
//!
//! Database sizes per document are printed (and written to
//! `target/criterion/persistence-sizes.json`). Run: `cargo bench -p tandem-server --bench
//! persistence`.

#[path = "../../engine/tests/support/mod.rs"]
#[allow(dead_code)]
mod traces;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlx::Connection;
use tandem_engine::Document;
use tandem_server::hub::doc_load;
use tandem_server::store::{self, Append, DocWrite, Snapshot, Store, StoredDoc, Writer};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A scratch database of each backend: (label, url).
fn databases(rt: &Runtime, dir: &tempfile::TempDir) -> Vec<(&'static str, String)> {
    let pg = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(ADMIN)
            .await
            .expect("Postgres at 127.0.0.1:5432");
        sqlx::query("DROP DATABASE IF EXISTS tandem_bench WITH (FORCE)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE tandem_bench")
            .execute(&mut c)
            .await
            .unwrap();
        "postgres://postgres@127.0.0.1:5432/tandem_bench".to_owned()
    });
    let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
    vec![("postgres", pg), ("sqlite", sqlite)]
}

/// Bytes the database holds for its (only) document.
async fn database_bytes(url: &str) -> u64 {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("VACUUM FULL").execute(&mut c).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT pg_total_relation_size('documents') + pg_total_relation_size('updates')
                  + pg_total_relation_size('snapshots')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        n as u64
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("VACUUM").execute(&mut c).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        n as u64
    }
}

fn appends(updates: &[Bytes], first: u64) -> Vec<Append> {
    let origin: Arc<str> = Arc::from("bench");
    updates
        .iter()
        .enumerate()
        .map(|(i, u)| Append {
            seq: first + i as u64,
            update: u.clone(),
            origin: origin.clone(),
        })
        .collect()
}

fn cold_load(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let trace = traces::sequential_trace("automerge-paper");
    let src = Document::with_client_id("paper", 1);
    let updates: Vec<Bytes> = trace
        .replay_collecting_updates(&src, "content")
        .unwrap()
        .into_iter()
        .map(Bytes::from)
        .collect();
    assert_eq!(src.text_string("content"), trace.end_content);
    let n = updates.len() as u64;
    let snapshot = Snapshot {
        seq: n,
        state: src.snapshot_v1().into(),
        state_vector: src.state_vector_v1().into(),
        covers: Vec::new(),
    };
    let name: Arc<str> = Arc::from("automerge-paper");
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = serde_json::Map::new();
    let mut group = c.benchmark_group("cold_load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));

    // The same bytes without a database: what the store adds on top.
    let in_memory_log = || StoredDoc {
        snapshot: None,
        log: updates
            .iter()
            .enumerate()
            .map(|(i, u)| store::LogEntry {
                seq: i as u64 + 1,
                update: u.clone(),
            })
            .collect(),
        foreign: Vec::new(),
        row: None,
    };
    group.bench_function("memory/log", |b| {
        b.iter_batched(
            in_memory_log,
            |stored| doc_load::build(&name, stored).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("memory/compacted", |b| {
        b.iter(|| {
            let stored = StoredDoc {
                snapshot: Some(snapshot.clone()),
                log: Vec::new(),
                foreign: Vec::new(),
                row: None,
            };
            doc_load::build(&name, stored).unwrap()
        })
    });

    for (backend, url) in databases(&rt, &dir) {
        let store = rt.block_on(store::open(&url, None)).unwrap();
        rt.block_on(store.migrate()).unwrap();
        rt.block_on(async {
            for (i, chunk) in updates.chunks(20_000).enumerate() {
                let w = DocWrite {
                    name: name.clone(),
                    appends: appends(chunk, 1 + 20_000 * i as u64),
                    snapshot: None,
                    row: None,
                };
                store.commit(&[w]).await.unwrap();
            }
        });
        let load = |store: &Arc<dyn Store>| {
            let stored = rt.block_on(store.load(&name)).unwrap().unwrap();
            doc_load::build(&name, stored).unwrap()
        };
        assert_eq!(load(&store).doc.text_string("content"), trace.end_content);
        let log_bytes = rt.block_on(database_bytes(&url));
        group.bench_function(format!("{backend}/log"), |b| b.iter(|| load(&store)));

        let compact = DocWrite {
            name: name.clone(),
            appends: Vec::new(),
            snapshot: Some(snapshot.clone()),
            row: None,
        };
        rt.block_on(store.commit(&[compact])).unwrap();
        let loaded = load(&store);
        assert_eq!(loaded.doc.text_string("content"), trace.end_content);
        assert_eq!(loaded.log_updates, 0);
        let compacted_bytes = rt.block_on(database_bytes(&url));
        group.bench_function(format!("{backend}/compacted"), |b| b.iter(|| load(&store)));
        eprintln!(
            "{backend}: database bytes for automerge-paper: {log_bytes} as a log of {n} updates, {compacted_bytes} compacted"
        );
        sizes.insert(
            backend.to_owned(),
            serde_json::json!({ "log_updates": n, "log_bytes": log_bytes, "compacted_bytes": compacted_bytes }),
        );
    }
    group.finish();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("persistence-sizes.json"),
        serde_json::to_string_pretty(&sizes).unwrap(),
    )
    .unwrap();
}

/// Small real updates (one keystroke each) of `docs` documents.
fn keystrokes(count: usize) -> Vec<Bytes> {
    let doc = Document::new("k");
    let text = doc.text("content");
    (0..count)
        .map(|i| {
            let (_, u) = doc.edit_with_update(|e| {
                let at = e.text_len(&text) / 2;
                e.insert(&text, at, if i % 2 == 0 { "a" } else { "b" })
                    .unwrap()
            });
            Bytes::from(u.unwrap())
        })
        .collect()
}

fn writer(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    const UPDATES: usize = 20_000;
    let updates = keystrokes(UPDATES);
    let mut group = c.benchmark_group("writer");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(UPDATES as u64));
    for (backend, url) in databases(&rt, &dir) {
        let store = rt.block_on(store::open(&url, None)).unwrap();
        rt.block_on(store.migrate()).unwrap();
        let writer = rt.block_on(async { Writer::spawn(store.clone(), Duration::from_millis(50)) });
        for docs in [1usize, 100] {
            let mut round = 0u64;
            group.bench_function(format!("{backend}/{docs}_docs"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        total += rt.block_on(persist(&writer, &updates, docs, round));
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

/// Queues `updates` spread over `docs` documents (fresh names per round) and returns the
/// time until the writer reports all of them durable.
async fn persist(writer: &Writer, updates: &[Bytes], docs: usize, round: u64) -> Duration {
    let progress: Vec<_> = (0..docs)
        .map(|d| {
            let (tx, rx) = watch::channel(store::writer::Stored::default());
            (Arc::<str>::from(format!("r{round}-d{d}")), Arc::new(tx), rx)
        })
        .collect();
    let origin: Arc<str> = Arc::from("bench");
    let started = Instant::now();
    let mut last = vec![0u64; docs];
    for (i, u) in updates.iter().enumerate() {
        let d = i % docs;
        last[d] += 1;
        let (name, tx, _) = &progress[d];
        let append = Append {
            seq: last[d],
            update: u.clone(),
            origin: origin.clone(),
        };
        writer.append(name, append, tx);
    }
    for (d, (_, _, rx)) in progress.into_iter().enumerate() {
        let mut rx = rx;
        rx.wait_for(|stored| stored.seq >= last[d]).await.unwrap();
    }
    started.elapsed()
}

criterion_group!(persistence, cold_load, writer);
criterion_main!(persistence);
