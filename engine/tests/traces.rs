//! Every real editing trace in `../shared/traces/sequential` replays through the engine
//! (one transaction per trace transaction) to exactly its `endContent`, and a second
//! replica fed the per-transaction updates ends identical.

mod support;

use tandem_engine::Document;

#[test]
fn every_sequential_trace_replays_to_its_end_content() {
    let traces = support::sequential_traces();
    assert_eq!(traces.len(), 8, "the eight published sequential traces");
    for (name, trace) in traces {
        let doc = Document::with_client_id(name.as_str(), 1);
        let updates = trace.replay_collecting_updates(&doc, "content").unwrap();
        assert_eq!(
            updates.len(),
            trace.txns.len(),
            "{name}: one update per txn"
        );
        let text = doc.text_string("content");
        assert!(
            text == trace.end_content,
            "{name}: replay differs from endContent"
        );

        // Remote apply: a replica receiving every update in order converges.
        let replica = Document::with_client_id(name.as_str(), 2);
        for u in &updates {
            replica.apply_update_v1(u).unwrap();
        }
        assert!(
            replica.text_string("content") == trace.end_content,
            "{name}: remote replica differs"
        );

        // And the compacted snapshot loads to the same text.
        let loaded = Document::with_client_id(name.as_str(), 3);
        loaded.apply_update_v1(&doc.snapshot_v1()).unwrap();
        assert!(
            loaded.text_string("content") == trace.end_content,
            "{name}: snapshot differs"
        );
    }
}

#[test]
fn ascii_only_copies_replay_too() {
    let dir = support::traces_dir().join("sequential/ascii_only");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("ascii_only traces") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.trim_end_matches(".json.gz");
        let trace = support::sequential_trace(&format!("ascii_only/{stem}"));
        let doc = Document::with_client_id(stem, 1);
        trace.replay(&doc, "content").unwrap();
        assert!(
            doc.text_string("content") == trace.end_content,
            "ascii_only/{stem} differs"
        );
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn concurrent_traces_merge_to_their_end_content() {
    let traces = support::concurrent_traces();
    assert_eq!(traces.len(), 2, "clownschool and friendsforever");
    for (name, trace) in traces {
        let merged = trace.replay("content").unwrap();
        assert!(
            !merged.has_missing_updates(),
            "{name}: updates left pending"
        );
        assert!(
            merged.text_string("content") == trace.end_content,
            "{name}: merge differs from endContent"
        );
    }
}
