//! Real editing traces (josephg/editing-traces format) as data, and their replay.
//!
//! A trace is the keystroke history of a real document. Replaying one through the engine
//! must reproduce its final text exactly; it is also the workload of the benchmarks.
//! Reading and decompressing the file is the caller's business (the engine does no I/O).

use serde::Deserialize;

use crate::document::Document;
use crate::error::DocError;

/// A sequential trace: one author's transactions, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SequentialTrace {
    /// The document before the first transaction (empty in every published trace).
    #[serde(default)]
    pub start_content: String,
    /// The document after the last transaction.
    pub end_content: String,
    /// The transactions.
    pub txns: Vec<TraceTxn>,
}

/// One user action: its patches are applied in one transaction.
#[derive(Debug, Clone, Deserialize)]
pub struct TraceTxn {
    /// `(position, deleted count, inserted text)`, each seeing the previous one's result.
    pub patches: Vec<(u32, u32, String)>,
}

impl SequentialTrace {
    /// Replays every transaction into text root `root` of `doc`, one engine transaction per
    /// trace transaction. Positions count code points; they equal UTF-16 offsets for every
    /// published trace (none contains astral-plane characters).
    pub fn replay(&self, doc: &Document, root: &str) -> Result<(), DocError> {
        let text = doc.text(root);
        if !self.start_content.is_empty() {
            doc.edit(|e| e.insert(&text, 0, &self.start_content))?;
        }
        for txn in &self.txns {
            doc.edit(|e| {
                for (pos, del, ins) in &txn.patches {
                    if *del > 0 {
                        e.delete(&text, *pos, *del)?;
                    }
                    if !ins.is_empty() {
                        e.insert(&text, *pos, ins)?;
                    }
                }
                Ok::<_, DocError>(())
            })?;
        }
        Ok(())
    }

    /// Replays like [`SequentialTrace::replay`] and collects each transaction's v1 update,
    /// as a peer would receive them.
    pub fn replay_collecting_updates(
        &self,
        doc: &Document,
        root: &str,
    ) -> Result<Vec<Vec<u8>>, DocError> {
        let text = doc.text(root);
        let mut updates = Vec::with_capacity(self.txns.len());
        for txn in &self.txns {
            let (result, update) = doc.edit_with_update(|e| {
                for (pos, del, ins) in &txn.patches {
                    if *del > 0 {
                        e.delete(&text, *pos, *del)?;
                    }
                    if !ins.is_empty() {
                        e.insert(&text, *pos, ins)?;
                    }
                }
                Ok::<_, DocError>(())
            });
            result?;
            updates.extend(update);
        }
        Ok(updates)
    }
}
