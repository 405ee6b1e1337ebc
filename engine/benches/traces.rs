//! Engine benchmarks on the real editing traces, each beside raw yrs in the same run:
//!
//! - `replay/<trace>/{engine,yrs}`: replay one trace, one transaction per trace txn,
//!   through the engine API and through raw yrs (UTF-16 offsets in both);
//! - `load/<trace>`: decode and integrate the final document's v1 snapshot;
//! - `remote_apply/<trace>`: replica B applying A's per-transaction updates in order.
//!
//! Encoded sizes are written to `target/criterion/trace-sizes.json`;
//! `scripts/bench-table.py` joins them with criterion's estimates into the
//! BENCHMARKS.md table. Run: `cargo bench -p tandem-engine --bench traces`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tandem_engine::trace::SequentialTrace;
use tandem_engine::yrs::{Doc, OffsetKind, Options, Text, Transact};
use tandem_engine::Document;

fn raw_yrs_replay(trace: &SequentialTrace) -> Doc {
    let mut options = Options::with_client_id(tandem_engine::yrs::ClientID::new(1));
    options.offset_kind = OffsetKind::Utf16;
    options.cleanup_formatting = false;
    let doc = Doc::with_options(options);
    let text = doc.get_or_insert_text("content");
    for txn in &trace.txns {
        let mut t = doc.transact_mut();
        for (pos, del, ins) in &txn.patches {
            if *del > 0 {
                text.remove_range(&mut t, *pos, *del);
            }
            if !ins.is_empty() {
                text.insert(&mut t, *pos, ins);
            }
        }
    }
    doc
}

fn engine_replay(trace: &SequentialTrace) -> Document {
    let doc = Document::with_client_id("bench", 1);
    trace.replay(&doc, "content").unwrap();
    doc
}

/// Engine/yrs replay time ratio measured in alternating pairs (yrs, engine, yrs, …): on a
/// shared 2-core VM, noise drifts over minutes, and criterion measures the two variants
/// minutes apart; pairing makes both see the same noise. Returns the median ratio and the
/// median times (ms).
fn paired(trace: &SequentialTrace) -> (f64, f64, f64) {
    let pairs = if trace.txns.len() > 100_000 { 3 } else { 9 };
    let (mut ratios, mut ys, mut es) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..pairs {
        let t = std::time::Instant::now();
        criterion::black_box(raw_yrs_replay(trace));
        let y = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        criterion::black_box(engine_replay(trace));
        let e = t.elapsed().as_secs_f64() * 1e3;
        ratios.push(e / y);
        ys.push(y);
        es.push(e);
    }
    (median(ratios), median(ys), median(es))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn benches(c: &mut Criterion) {
    let only = std::env::var("TANDEM_BENCH_TRACES").ok();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let sizes_path = out.join("trace-sizes.json");
    // Keep the sizes of traces not selected this run (TANDEM_BENCH_TRACES re-runs a few).
    let mut sizes: serde_json::Map<String, serde_json::Value> =
        std::fs::read_to_string(&sizes_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
    for (name, trace) in support::sequential_traces() {
        if let Some(only) = &only {
            if !only.split(',').any(|n| n == name) {
                continue;
            }
        }
        let edits: usize = trace.txns.iter().map(|t| t.patches.len()).sum();
        let doc = engine_replay(&trace);
        assert_eq!(doc.text_string("content"), trace.end_content);
        let snapshot = doc.snapshot_v1();
        let updates = {
            let d = Document::with_client_id("bench", 1);
            trace.replay_collecting_updates(&d, "content").unwrap()
        };
        let (ratio, yrs_ms, engine_ms) = paired(&trace);
        sizes.insert(
            name.clone(),
            serde_json::json!({
                "paired_ratio": ratio,
                "paired_yrs_ms": yrs_ms,
                "paired_engine_ms": engine_ms,
                "txns": trace.txns.len(),
                "edits": edits,
                "v1_bytes": snapshot.len(),
                "v2_bytes": doc.snapshot_v2().len(),
                "updates_bytes": updates.iter().map(Vec::len).sum::<usize>(),
            }),
        );

        let mut group = c.benchmark_group(format!("replay/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        // Alternate the two so machine noise hits both alike.
        group.bench_function("yrs", |b| b.iter(|| raw_yrs_replay(&trace)));
        group.bench_function("engine", |b| b.iter(|| engine_replay(&trace)));
        group.finish();

        let mut group = c.benchmark_group(format!("load/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        group.bench_function("engine", |b| {
            b.iter(|| {
                let d = Document::with_client_id("load", 2);
                d.apply_update_v1(&snapshot).unwrap();
                d
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("remote_apply/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        group.bench_function("engine", |b| {
            b.iter_batched(
                || Document::with_client_id("replica", 2),
                |d| {
                    for u in &updates {
                        d.apply_update_v1(u).unwrap();
                    }
                    d
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&sizes_path, serde_json::to_string_pretty(&sizes).unwrap()).unwrap();
}

criterion_group!(engine, benches);
criterion_main!(engine);
