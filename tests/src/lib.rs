//! Cross-crate tests of Tandem. The Rust tests are in `tests/tests/`; Node-side tests (real
//! `yjs` / `y-websocket` packages) are in `tests/node/`; `src/bin/yclient.rs` is a Rust
//! y-websocket client those Node tests start beside JavaScript clients.
