//! Replays every input under `fuzz/regressions/<target>/` through the fuzz targets' own
//! checks (`support/hostile.rs`), so a crash file the fuzzer found — dropped into that
//! directory — is a plain `cargo test` failure until fixed, and stays tested afterwards.
//!
//! The directories also hold seed inputs for the tricky paths (truncated updates, lying
//! lengths and counts, oversized presence). They are written by the ignored test
//! `write_seed_files` (`cargo test -p tandem-engine --test fuzz_regressions --
//! --ignored`), which also refreshes the fuzzers' seed corpora in `fuzz/corpus/`.

#[path = "support/hostile.rs"]
mod hostile;

use std::any::Any;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tandem_engine::Access;

/// `fuzz/` at the root of the repository.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every input file of `fuzz/regressions/<target>/` (READMEs excluded), sorted by name.
fn regression_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("regressions").join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("README"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Counts allocation sizes, so an input that makes the engine ask for more than
/// libFuzzer's malloc limit fails here as it crashes the fuzzer.
#[global_allocator]
static ALLOC: hostile::LimitedAlloc = hostile::LimitedAlloc;

/// Runs `check` on every input of `fuzz/regressions/<target>/` and fails with the list of
/// every input that panicked or asked for an allocation above the fuzzer's limit (all of
/// them, not just the first, so one run shows what is still open). The directory must not
/// be empty: a wrong path would silently test nothing.
fn replay(target: &str, check: fn(&[u8]) -> String) {
    hostile::quiet_yrs_panics();
    let inputs = regression_inputs(target);
    assert!(!inputs.is_empty(), "fuzz/regressions/{target} is empty");
    let mut failures = Vec::new();
    for (name, bytes) in &inputs {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            hostile::largest_allocation(|| check(bytes))
        }));
        match outcome {
            Ok((summary, largest)) if largest <= hostile::MALLOC_LIMIT => {
                eprintln!("{target}/{name}: ok, {summary}, largest allocation {largest} B");
            }
            Ok((_, largest)) => failures.push(format!(
                "{target}/{name}: requested an allocation of {largest} bytes (limit {}); input {}",
                hostile::MALLOC_LIMIT,
                hostile::hex(bytes)
            )),
            Err(panic) => failures.push(format!(
                "{target}/{name}: {}; input {}",
                panic_message(&panic),
                hostile::hex(bytes)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// The text of a caught panic.
fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".into())
}

/// Crash files of the `decode` target must now decode (or fail) without panicking,
/// round-trip, and stay under the allocation limit.
#[test]
fn decode_regressions_pass() {
    replay("decode", |bytes| {
        format!("decodes: {}", hostile::check_decode(bytes))
    });
}

/// Crash files of the `session` target must now pass every session rule.
#[test]
fn session_regressions_pass() {
    replay("session", |bytes| {
        format!("{:?}", hostile::check_session_input(bytes))
    });
}

/// Known yrs 0.28 divergences (forged origins placed differently by the server's replica
/// and a client's; see fuzz/regressions/README.md) must still keep every other rule.
#[test]
fn upstream_divergences_keep_the_other_rules() {
    replay("session-upstream", |bytes| {
        format!("{:?}", hostile::check_session_input_upstream(bytes))
    });
}

/// The seed inputs, straight from the generator (no files involved), pass the checks
/// and reach the paths they were written for; a change in the engine that makes them
/// miss their path shows up here rather than as a silently weaker corpus.
#[test]
fn seeds_pass_and_reach_their_paths() {
    hostile::quiet_yrs_panics();
    for (name, frame) in hostile::seed_frames() {
        let decodes = hostile::check_decode(&frame);
        let expect_decode = !matches!(
            name,
            "truncated-frame"
                | "update-lying-length"
                | "awareness-lying-count"
                | "step1-lying-count"
                | "unknown-type"
        );
        assert_eq!(decodes, expect_decode, "seed {name} decodes: {decodes}");
    }
    let runs: Vec<(String, hostile::Run)> = hostile::seed_sessions()
        .into_iter()
        .map(|(name, input)| {
            let run = hostile::check_session_input(&input);
            (name, run)
        })
        .collect();
    let run = |name: &str| -> &hostile::Run {
        &runs
            .iter()
            .find(|(n, _)| n == name)
            .expect("seed session")
            .1
    };
    assert_eq!(run("rw-update").applied, 1);
    assert_eq!(run("ro-update").refused, 1);
    assert_eq!(run("ro-update").applied, 0);
    assert_eq!(run("rw-truncated-update").rejected, 1);
    assert_eq!(run("rw-update-lying-struct-count").rejected, 1);
    assert_eq!(run("rw-update-lying-client-count").rejected, 1);
    assert_eq!(run("rw-awareness-too-large").rejected, 1);
    assert_eq!(run("ro-awareness-too-large").rejected, 1);
    assert_eq!(run("rw-update-lying-length").undecodable, 1);
    assert_eq!(run("rw-awareness-lying-count").undecodable, 1);
    // A read-only client's step 2 echoing what the server has is not a change: no refusal.
    assert_eq!(run("ro-step2-echo").refused, 0);
    // The conversation's step 2 carries both of the client's edits; the updates repeating
    // them afterwards are duplicates and change nothing.
    assert_eq!(
        run("rw-conversation").applied,
        1,
        "{:?}",
        run("rw-conversation")
    );
    assert_eq!(run("rw-reordered").applied, 3, "{:?}", run("rw-reordered"));
    assert_eq!(run("ro-conversation").applied, 0);
    assert!(
        runs.iter().all(|(_, r)| !r.poisoned),
        "a seed poisons the document"
    );
}

/// Packing and unpacking session inputs are inverse (the seed files depend on it).
#[test]
fn session_input_packing_round_trips() {
    let frames: [&[u8]; 3] = [b"", b"abc", &[7; 300]];
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let packed = hostile::join_frames(access, &frames);
        let (got_access, got) = hostile::split_frames(&packed);
        assert_eq!(got_access, access);
        assert_eq!(got, frames);
    }
}

/// Seeds that also go into `fuzz/regressions/`: the ones aimed at tricky paths (the plain
/// valid frames are covered by the corpus and by `seeds_pass_and_reach_their_paths`).
const TRICKY: [&str; 8] = [
    "truncated",
    "lying",
    "too-large",
    "ahead",
    "inside",
    "dependent",
    "reordered",
    "unknown",
];

/// Regenerates the committed seed files: `fuzz/corpus/decode/` (single frames),
/// `fuzz/corpus/session/` (packed sessions) and the `seed-` entries of
/// `fuzz/regressions/{decode,session}/` (the tricky ones; crash files added by hand are
/// left alone). Ignored: it writes into the source tree.
#[test]
#[ignore]
fn write_seed_files() {
    let root = fuzz_dir();
    let write = |dir: PathBuf, name: &str, bytes: &[u8]| {
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };
    for (name, frame) in hostile::seed_frames() {
        write(root.join("corpus/decode"), name, &frame);
        if TRICKY.iter().any(|t| name.contains(t)) {
            write(
                root.join("regressions/decode"),
                &format!("seed-{name}"),
                &frame,
            );
        }
    }
    for (name, input) in hostile::seed_sessions() {
        write(root.join("corpus/session"), &name, &input);
        if TRICKY.iter().any(|t| name.contains(t)) {
            write(
                root.join("regressions/session"),
                &format!("seed-{name}"),
                &input,
            );
        }
    }
}
