//! Fuzz target `session`: one client's frames handled the way the server's document actor
//! handles them, against a seeded document. The rules checked (no panic, a rejected frame
//! leaves the document byte-identical, a read-only client changes nothing, the document
//! reloads from its snapshot) live in `engine/tests/support/hostile.rs`, shared with
//! `cargo test`, which replays crash files from `fuzz/regressions/session/`.
//!
//! Contained yrs panics are allowed (see `contained.rs`); one that escapes is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../engine/tests/support/hostile.rs"]
mod hostile;

mod contained;

fuzz_target!(|data: &[u8]| {
    contained::run(|| {
        hostile::check_session_input_fuzzing(data);
    });
});
