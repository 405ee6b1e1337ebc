//! Fuzz target `decode`: any bytes a peer can send as one frame. `Message::decode` must
//! never panic, and what decodes must survive a re-encode unchanged (the server relays
//! frames it decoded; a lossy round trip would corrupt them for the other peers).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../engine/tests/support/hostile.rs"]
mod hostile;

mod contained;

// The decoder contains yrs' assertions on hostile state vectors; see `contained.rs`.
fuzz_target!(|data: &[u8]| {
    contained::run(|| {
        hostile::check_decode(data);
    });
});
