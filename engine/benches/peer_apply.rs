//! What the engine's defences cost on the server's hot path: applying a peer's update.
//! `Document::apply_update_v1` adds to raw yrs a check of the update's counts, a state
//! vector compare (a refused update must not have changed anything) and a decode of the
//! re-encoded result; `Document::apply_peer_update_v1` (what the server's sessions call)
//! adds the clock-gap check. Every variant applies the same per-transaction v1 updates of
//! a real trace to an empty replica, in one run; "raw yrs + re-encode" is the least a relay
//! must do (apply, then encode what was added for the other peers).
//!
//! `cargo bench -p tandem-engine --bench peer_apply` (`TANDEM_BENCH_TRACES=a,b` to choose
//! traces; default rustcode and sveltecomponent).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tandem_engine::yrs::updates::decoder::Decode;
use tandem_engine::yrs::{Doc, Transact, Update};
use tandem_engine::Document;

fn benches(c: &mut Criterion) {
    let only = std::env::var("TANDEM_BENCH_TRACES")
        .unwrap_or_else(|_| "rustcode,sveltecomponent".to_owned());
    for (name, trace) in support::sequential_traces() {
        if !only.split(',').any(|n| n == name) {
            continue;
        }
        let updates = {
            let d = Document::with_client_id("bench", 1);
            trace.replay_collecting_updates(&d, "content").unwrap()
        };
        let mut group = c.benchmark_group(format!("peer_apply/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        group.bench_function("raw yrs", |b| {
            b.iter_batched(
                Doc::new,
                |d| {
                    for u in &updates {
                        let u = Update::decode_v1(u).unwrap();
                        d.transact_mut().apply_update(u).unwrap();
                    }
                    d
                },
                BatchSize::PerIteration,
            )
        });
        // What a relay needs at least: the update applied and what it added re-encoded
        // for the other peers (the engine before its checks did exactly this).
        group.bench_function("raw yrs + re-encode", |b| {
            b.iter_batched(
                Doc::new,
                |d| {
                    for u in &updates {
                        let u = Update::decode_v1(u).unwrap();
                        let mut txn = d.transact_mut();
                        txn.apply_update(u).unwrap();
                        std::hint::black_box(txn.encode_update_v1());
                    }
                    d
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("apply_update_v1", |b| {
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
        group.bench_function("apply_peer_update_v1", |b| {
            b.iter_batched(
                || Document::with_client_id("replica", 2),
                |d| {
                    for u in &updates {
                        d.apply_peer_update_v1(u).unwrap();
                    }
                    d
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

criterion_group!(engine, benches);
criterion_main!(engine);
