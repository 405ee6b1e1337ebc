//! Property test: whatever a client sends, a server-role session keeps the document intact.
//!
//! Frames are made by real edits and presence changes on a client replica, then mutated
//! (bit flips, truncation, inserted, duplicated and spliced bytes) or replaced by random
//! bytes, and handled as the server does — in both access modes — by the rules of
//! `support/hostile.rs` (the fuzz targets' own checks): no panic, a rejected frame leaves
//! the document byte-identical, a read-only client never changes it, and the document
//! reloads from its snapshot with the same content. The fuzzer (`scripts/fuzz`) searches
//! the same space by coverage; this runs on every `cargo test`.

#[path = "support/hostile.rs"]
mod hostile;

use proptest::prelude::*;
use tandem_engine::protocol::codec;
use tandem_engine::{Access, Awareness, Document};

/// One local edit on the client replica; positions are reduced modulo the text length.
#[derive(Debug, Clone)]
enum EditOp {
    Insert { at: u32, text: String },
    Delete { at: u32, len: u32 },
    Bold { at: u32, len: u32 },
}

/// Edits as a user makes them: mostly typing, some deleting and formatting, non-ASCII
/// included (offsets are UTF-16, where surrogate pairs are a classic source of bugs).
fn edit_op() -> impl Strategy<Value = EditOp> {
    prop_oneof![
        3 => (any::<u32>(), "[a-zé👋 ]{1,6}").prop_map(|(at, text)| EditOp::Insert { at, text }),
        1 => (any::<u32>(), 1u32..6).prop_map(|(at, len)| EditOp::Delete { at, len }),
        1 => (any::<u32>(), 1u32..6).prop_map(|(at, len)| EditOp::Bold { at, len }),
    ]
}

/// Applies `op` to `text` of `doc` and returns the update it made (if it changed anything).
fn perform(doc: &Document, op: &EditOp) -> Option<Vec<u8>> {
    let text = doc.text(hostile::TEXT);
    let (_, update) = doc.edit_with_update(|e| {
        let len = e.text_len(&text);
        // A range that would split a surrogate pair is refused (OutOfBounds is fine too).
        let _ = match op {
            EditOp::Insert { at, text: chunk } => e.insert(&text, at % (len + 1), chunk),
            EditOp::Delete { at, len: n } => {
                let at = at % (len + 1);
                e.delete(&text, at, (*n).min(len - at))
            }
            EditOp::Bold { at, len: n } => {
                let at = at % (len + 1);
                let bold = [("bold".into(), true.into())].into_iter().collect();
                e.format(&text, at, (*n).min(len - at), bold)
            }
        };
    });
    update
}

/// Every kind of frame a real client sends, made by real edits on a replica of the seeded
/// document: its step 1, one update per edit, its step 2, a dependent update sent alone,
/// presence set and removed, a presence query and an auth token.
fn valid_frames(edits: &[EditOp], name: &str) -> Vec<Vec<u8>> {
    let server = hostile::seeded_document();
    let client = hostile::peer_of(&server, 7);
    let mut frames = vec![codec::encode_step1(&client.state_vector_v1())];
    let updates: Vec<Vec<u8>> = edits.iter().filter_map(|op| perform(&client, op)).collect();
    frames.extend(updates.iter().map(|u| codec::encode_update(u)));
    let step2 = client
        .diff_v1(&server.state_vector_v1())
        .expect("own state vector");
    frames.push(codec::encode_step2(&step2));
    let mut presence = Awareness::new(7);
    let state = serde_json::json!({ "user": { "name": name, "color": "#0a0" } }).to_string();
    let set = presence
        .set_local_state_json(Some(&state), 0)
        .expect("valid json");
    frames.push(set.encode_frame());
    frames.push(
        presence
            .set_local_state_json(None, 1)
            .expect("removal")
            .encode_frame(),
    );
    frames.push(tandem_engine::Message::QueryAwareness.encode());
    frames.push(codec::encode_auth_token("header.payload.signature"));
    frames
}

/// One way a hostile or broken client damages a frame; positions are reduced modulo the
/// frame's length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Splice {
        at: usize,
        len: usize,
        bytes: Vec<u8>,
    },
    Random(Vec<u8>),
}

/// Damage of every kind, small insertions favoured (they keep most of a frame parseable).
fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || proptest::collection::vec(any::<u8>(), 1..8);
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        2 => (any::<usize>(), 0usize..8, bytes())
            .prop_map(|(at, len, bytes)| Mutation::Splice { at, len, bytes }),
        1 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(Mutation::Random),
    ]
}

/// `frame` after `m`.
fn mutate(frame: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = frame.to_vec();
    let pos = |at: usize| at % (frame.len() + 1);
    match m {
        Mutation::Flip { at, bit } => {
            if !out.is_empty() {
                let i = at % out.len();
                out[i] ^= 1 << bit;
            }
        }
        Mutation::Truncate { at } => out.truncate(pos(*at)),
        Mutation::Insert { at, bytes } => {
            let at = pos(*at);
            out.splice(at..at, bytes.iter().copied());
        }
        Mutation::Duplicate { at, len } => {
            let at = pos(*at);
            let end = (at + len).min(out.len());
            let copy = out[at..end].to_vec();
            out.splice(end..end, copy);
        }
        Mutation::Splice { at, len, bytes } => {
            let at = pos(*at);
            let end = (at + len).min(out.len());
            out.splice(at..end, bytes.iter().copied());
        }
        Mutation::Random(bytes) => out = bytes.clone(),
    }
    out
}

/// A frame whose envelope is valid but whose payload is random: reaches the update,
/// state-vector and awareness decoders rather than stopping at the outer type.
fn enveloped_random() -> impl Strategy<Value = Vec<u8>> {
    let payload = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (0u64..3, payload.clone()).prop_map(|(sub, p)| codec::encode_sync(sub, &p)),
        payload.clone().prop_map(|p| {
            let mut frame = vec![1];
            hostile::write_var(&mut frame, p.len() as u64);
            frame.extend_from_slice(&p);
            frame
        }),
        payload.prop_map(|p| p.into_iter().collect()),
    ]
}

/// Refuses any single allocation above the fuzzer's limit, so a frame whose counts claim
/// gigabytes cannot make this test machine allocate them. yrs reserves such counts
/// fallibly (`try_reserve`): a refused reservation becomes a decode error, which the rules
/// accept, as production does when the kernel refuses. What would really hurt — memory
/// touched in proportion to a lying count — is refused before yrs sees it
/// (engine/src/untrusted.rs) and bounded by the fuzzer's RSS limit.
#[global_allocator]
static ALLOC: hostile::LimitedAlloc = hostile::LimitedAlloc;

/// Runs `frames` through the session rules in both access modes. Forged frames reach
/// yrs 0.28's known divergence (clients vs store, see fuzz/regressions/README.md) now and
/// then, so that one rule is checked only with `TANDEM_FUZZ_DIVERGENCE=1`; valid frames
/// are held to it below.
fn check_both(frames: &[Vec<u8>]) {
    let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    for access in [Access::ReadWrite, Access::ReadOnly] {
        hostile::check_frames_fuzzing(access, &frames);
    }
}

proptest! {
    // About 1 ms per case in a debug build (yrs itself is optimised): the whole file
    // takes 2-3 s.
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Real frames, in random order with repeats, some damaged: the session rules hold.
    #[test]
    fn mutated_real_frames_obey_the_session_rules(
        edits in proptest::collection::vec(edit_op(), 0..8),
        name in "[a-zA-Zé]{0,12}",
        picks in proptest::collection::vec(
            (any::<usize>(), proptest::collection::vec(mutation(), 0..3)), 1..12),
    ) {
        hostile::quiet_yrs_panics();
        let pool = valid_frames(&edits, &name);
        let frames: Vec<Vec<u8>> = picks
            .iter()
            .map(|(i, ms)| ms.iter().fold(pool[i % pool.len()].clone(), |f, m| mutate(&f, m)))
            .collect();
        check_both(&frames);
        // Decoding alone obeys the decode rules too.
        for frame in &frames {
            hostile::check_decode(frame);
        }
    }

    /// Random bytes, bare or inside a valid envelope, mixed with real frames.
    #[test]
    fn random_frames_obey_the_session_rules(
        edits in proptest::collection::vec(edit_op(), 0..4),
        randoms in proptest::collection::vec(enveloped_random(), 1..8),
        real in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        hostile::quiet_yrs_panics();
        let pool = valid_frames(&edits, "r");
        let mut frames = randoms;
        for (k, i) in real.iter().enumerate() {
            let at = (i / 7) % (frames.len() + 1);
            frames.insert(at, pool[(i + k) % pool.len()].clone());
        }
        check_both(&frames);
        for frame in &frames {
            hostile::check_decode(frame);
        }
    }
}

/// The generated pool really holds what the mutations start from: real updates that a
/// read-write session applies and a read-only one refuses.
#[test]
fn valid_frames_are_applied_and_refused_as_expected() {
    let edits = [
        EditOp::Insert {
            at: 2,
            text: "👋 hi".into(),
        },
        EditOp::Delete { at: 0, len: 3 },
        EditOp::Bold { at: 1, len: 4 },
    ];
    let pool = valid_frames(&edits, "ada");
    let frames: Vec<&[u8]> = pool.iter().map(Vec::as_slice).collect();
    let rw = hostile::check_frames(Access::ReadWrite, &frames);
    assert_eq!(rw.applied, 3, "{rw:?}");
    assert_eq!(rw.rejected + rw.undecodable, 0, "{rw:?}");
    let ro = hostile::check_frames(Access::ReadOnly, &frames);
    assert_eq!(ro.applied, 0, "{ro:?}");
    // The three updates and the step 2 carrying them.
    assert_eq!(ro.refused, 4, "{ro:?}");
}
