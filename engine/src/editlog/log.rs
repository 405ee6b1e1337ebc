//! [`EditLog`]: a serialisable record of what each replica did, in order.
//!
//! A log captures edits independently of the network, so the same log can be replayed
//! under many delivery schedules (see [`crate::editlog::replay`]) — the basis of the
//! convergence property tests — or stored as a reproducible bug report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the text root log operations edit (yload's and the demo's default).
pub const TEXT_ROOT: &str = "content";
/// Name of the map root log operations edit.
pub const MAP_ROOT: &str = "meta";

/// Operations by replica, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EditLog {
    /// How many replicas took part.
    pub replicas: usize,
    /// The operations, each tagged with its replica.
    pub ops: Vec<LoggedOp>,
}

/// One operation made at one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOp {
    /// The replica (0-based) that made it.
    pub replica: usize,
    /// What it did.
    #[serde(flatten)]
    pub op: Op,
}

/// One local operation. Text offsets are UTF-16 code units. When a log is replayed under a
/// schedule other than the one it was recorded under, a replica may hold less text than
/// when the op was made, so positions and lengths are clamped to the content at replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Insert `text` at `pos`.
    Insert {
        /// Offset.
        pos: u32,
        /// Inserted text.
        text: String,
    },
    /// Delete `len` code units at `pos`.
    Delete {
        /// Offset.
        pos: u32,
        /// Length.
        len: u32,
    },
    /// Format `len` code units at `pos` with `attrs` (a `null` value removes an attribute).
    Format {
        /// Offset.
        pos: u32,
        /// Length.
        len: u32,
        /// Attributes, e.g. `{"bold": true}`.
        attrs: BTreeMap<String, Value>,
    },
    /// Set `key` of the map root to `value`.
    MapSet {
        /// Key.
        key: String,
        /// JSON value (numbers become JS numbers).
        value: Value,
    },
    /// Delete `key` from the map root.
    MapDelete {
        /// Key.
        key: String,
    },
    /// Move this replica's cursor (selection `anchor`..`head`).
    Cursor {
        /// Selection start.
        anchor: u32,
        /// Selection end (the caret).
        head: u32,
    },
}

impl EditLog {
    /// An empty log for `replicas` replicas.
    pub fn new(replicas: usize) -> Self {
        Self {
            replicas,
            ops: Vec::new(),
        }
    }

    /// Appends `op` made at `replica`.
    pub fn push(&mut self, replica: usize, op: Op) {
        self.ops.push(LoggedOp { replica, op });
    }
}
