//! # tandem-client
//!
//! Tandem's engine compiled to WebAssembly for browsers: the same documents, protocol
//! session and presence as the server, exposed to JavaScript with TypeScript types.
//!
//! | idea | export |
//! |---|---|
//! | a replica and its shared roots | [`Doc`], [`Text`], [`Map`], [`Array`] |
//! | undo/redo of one's own edits | [`UndoManager`] |
//! | presence | [`Awareness`] |
//! | sync with a server (WebSocket → SSE → long polling), offline copy, tabs | [`Provider`] |
//! | editors | [`TextAreaBinding`], [`ContentEditableBinding`], [`PresenceList`] |
//!
//! ```js
//! import init, { Doc, Awareness, Provider, TextAreaBinding } from './pkg/tandem_client.js'
//! await init()
//! const doc = new Doc()
//! const awareness = new Awareness(doc)
//! awareness.setLocalState({ user: { name: 'Ada', color: '#30bced' } })
//! const provider = new Provider('ws://127.0.0.1:8080/ws', 'notes', doc, awareness, {})
//! new TextAreaBinding(doc.getText('content'), document.querySelector('textarea'), awareness)
//! ```

#![deny(missing_docs)]

pub mod awareness;
pub mod binding;
pub mod channel;
pub mod collections;
pub mod doc;
pub mod js;
mod keepalive;
pub mod provider;
pub mod storage;
pub mod text;
pub mod transport;
pub mod undo;

pub use awareness::Awareness;
pub use binding::contenteditable::ContentEditableBinding;
pub use binding::presence::PresenceList;
pub use binding::textarea::TextAreaBinding;
pub use collections::{Array, Map};
pub use doc::Doc;
pub use provider::Provider;
pub use text::Text;
pub use undo::UndoManager;
