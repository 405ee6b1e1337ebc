//! Cursors and selections as relative positions that survive concurrent edits.
//!
//! An absolute offset goes stale the moment a peer inserts before it. A [`StickyIndex`]
//! names the character a caret is attached to, so after any merge it still converts back
//! to the right offset. The JSON form is Yjs' `relativePositionToJSON` shape, which is what
//! y-codemirror and y-prosemirror put in awareness (`cursor: {anchor, head}`).

use serde::{Deserialize, Serialize};
use yrs::{Assoc, IndexedSequence, ReadTxn, StickyIndex, TextRef};

use crate::error::DocError;

/// A caret (anchor == head) or a selection from `anchor` to `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Where the selection started.
    pub anchor: StickyIndex,
    /// Where the selection ends (the caret).
    pub head: StickyIndex,
}

impl Cursor {
    /// A selection at UTF-16 offsets `anchor`..`head` of `text`.
    pub fn from_offsets<T: ReadTxn>(
        txn: &T,
        text: &TextRef,
        anchor: u32,
        head: u32,
    ) -> Result<Self, DocError> {
        Ok(Self {
            anchor: sticky(txn, text, anchor)?,
            head: sticky(txn, text, head)?,
        })
    }

    /// A collapsed caret at offset `at`.
    pub fn caret<T: ReadTxn>(txn: &T, text: &TextRef, at: u32) -> Result<Self, DocError> {
        Self::from_offsets(txn, text, at, at)
    }

    /// The current (anchor, head) offsets, or `None` if the positions refer to content this
    /// replica has not received yet.
    pub fn offsets<T: ReadTxn>(&self, txn: &T) -> Option<(u32, u32)> {
        Some((
            self.anchor.get_offset(txn)?.index,
            self.head.get_offset(txn)?.index,
        ))
    }
}

/// A sticky position at `index` that stays with the character on its right (Yjs' default
/// association), so a caret stays in front of the text it was in front of.
pub fn sticky<T: ReadTxn>(txn: &T, text: &TextRef, index: u32) -> Result<StickyIndex, DocError> {
    let content_len = yrs::Text::len(text, txn);
    if index == content_len {
        // At the end there is no character to the right: like Yjs, anchor to the type
        // itself, which resolves to "the end" however the text grows.
        return Ok(StickyIndex::from_type(txn, text, Assoc::After));
    }
    text.sticky_index(txn, index, Assoc::After)
        .ok_or(DocError::OutOfBounds {
            index,
            len: 0,
            content_len,
        })
}
