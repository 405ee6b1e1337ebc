//! # tandem-engine
//!
//! The collaborative document engine under Tandem's server and browser client: a pure
//! library (no I/O, no async runtime; builds for `wasm32-unknown-unknown`) on the
//! [`yrs`] CRDT, the Rust port of Yjs.
//!
//! | idea | module |
//! |---|---|
//! | a named document with UTF-16 offsets and checked edits | [`document`] |
//! | y-protocols frames, byte-compatible with the npm package | [`protocol::codec`] |
//! | what to answer to each message, shared by server and client | [`protocol::session`] |
//! | presence, with explicit time | [`awareness`] |
//! | carets that survive concurrent edits | [`cursor`] |
//! | edit logs replayed under adversarial delivery | [`editlog`] |
//! | real editing traces | [`trace`] |
//!
//! ## Two replicas syncing through the protocol
//!
//! ```
//! use tandem_engine::{Awareness, Document, Message, Role, SyncSession};
//!
//! let server = Document::new("notes");
//! let client = Document::new("notes");
//! let text = client.text("content");
//! client.edit(|e| e.insert(&text, 0, "hello")).unwrap();
//!
//! // The server greets with its step 1; the client answers with a step 2.
//! let (mut server_aw, mut client_aw) = (Awareness::new(1), Awareness::new(2));
//! let mut at_server = SyncSession::new(Role::Server);
//! let mut at_client = SyncSession::new(Role::Client);
//! for frame in at_server.greeting(&server, &server_aw) {
//!     let msg = Message::decode(&frame).unwrap();
//!     let out = at_client.handle(&client, &mut client_aw, &msg, 0).unwrap();
//!     for reply in out.reply {
//!         let msg = Message::decode(&reply).unwrap();
//!         at_server.handle(&server, &mut server_aw, &msg, 0).unwrap();
//!     }
//! }
//! assert_eq!(server.text_string("content"), "hello");
//! ```
//!
//! ## A caret that survives a concurrent insert
//!
//! ```
//! use tandem_engine::{Cursor, Document};
//!
//! let a = Document::with_client_id("d", 1);
//! let text = a.text("content");
//! a.edit(|e| e.insert(&text, 0, "world")).unwrap();
//! let caret = Cursor::caret(&a.read(), &text, 0).unwrap(); // before "world"
//! a.edit(|e| e.insert(&text, 0, "hello ")).unwrap();
//! assert_eq!(caret.offsets(&a.read()), Some((6, 6)));
//! ```
//!
//! ## Replaying a log under a hostile network
//!
//! ```
//! use tandem_engine::editlog::{Cluster, EditLog, Op, Schedule, Step};
//!
//! let mut log = EditLog::new(2);
//! log.push(0, Op::Insert { pos: 0, text: "a".into() });
//! log.push(1, Op::Insert { pos: 0, text: "b".into() });
//! let schedule = Schedule { steps: vec![Step::Partition { group: vec![0] }, Step::Local, Step::Local, Step::Heal] };
//! let cluster = Cluster::replay(&log, &schedule).unwrap();
//! cluster.check_converged().unwrap();
//! assert_eq!(cluster.text(0).len(), 2);
//! ```

#![deny(missing_docs)]

pub mod awareness;
pub mod cursor;
pub mod document;
pub mod editlog;
pub mod error;
pub mod protocol;
pub mod trace;
mod untrusted;

pub use awareness::{Awareness, AwarenessChanges, Presence, Status, User};
pub use cursor::Cursor;
pub use document::{Applied, Attributes, Document, Edit, TextDelta, REMOTE_ORIGIN};
pub use error::{CodecError, DocError, ReplayError, SessionError};
pub use protocol::{
    Access, AuthMessage, AwarenessEntry, AwarenessUpdate, Message, Outcome, Role, SyncMessage,
    SyncSession,
};
pub use yrs;
