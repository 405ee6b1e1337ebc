//! Editor bindings: a `<textarea>`, a plain-text `contenteditable`, remote carets, and a
//! presence list.

pub mod carets;
pub mod contenteditable;
pub mod diff;
pub mod presence;
mod shared;
pub mod textarea;
