//! Real editing traces (josephg/editing-traces format) as data, and their replay.
//!
//! A trace is the keystroke history of a real document. Replaying one through the engine
//! must reproduce its final text exactly; it is also the workload of the benchmarks.
//! Reading and decompressing the file is the caller's business (the engine does no I/O).

use serde::Deserialize;

use yrs::TextRef;

use crate::document::{Document, Edit};
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
            doc.edit(|e| apply_patches(e, &text, &txn.patches))?;
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
            let (result, update) = doc.edit_with_update(|e| apply_patches(e, &text, &txn.patches));
            result?;
            updates.extend(update);
        }
        Ok(updates)
    }
}

/// A concurrent trace: transactions by several agents forming a DAG. Each transaction was
/// made on the merged state of its `parents` (indexes of earlier transactions).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrentTrace {
    /// Number of agents (replicas) that took part.
    pub num_agents: usize,
    /// The document after merging every transaction.
    pub end_content: String,
    /// The transactions, each after all of its parents.
    pub txns: Vec<ConcurrentTxn>,
}

/// One transaction of a [`ConcurrentTrace`].
#[derive(Debug, Clone, Deserialize)]
pub struct ConcurrentTxn {
    /// Transactions whose merged result this one was made on (`[]` = the empty document).
    pub parents: Vec<usize>,
    /// The agent (0-based) that made it.
    pub agent: usize,
    /// `(position, deleted count, inserted text)` against the merged parent state.
    pub patches: Vec<(u32, u32, String)>,
}

impl ConcurrentTrace {
    /// Replays the DAG with one replica per agent: before each transaction, its agent's
    /// replica receives the updates of every ancestor it lacks (the fork/merge of the
    /// trace), then applies the patches in one local transaction. Returns a document that
    /// has merged every transaction's update.
    ///
    /// Agents in the published traces only move forward (each transaction descends from
    /// its agent's previous one), which is what makes a growing replica per agent enough.
    pub fn replay(&self, root: &str) -> Result<Document, DocError> {
        let agents = self.num_agents.max(1);
        let replicas: Vec<Document> = (0..agents)
            .map(|a| Document::with_client_id(format!("agent-{a}"), a as u64 + 1))
            .collect();
        let mut known = vec![vec![false; self.txns.len()]; agents];
        let mut updates: Vec<Option<Vec<u8>>> = vec![None; self.txns.len()];
        for (i, txn) in self.txns.iter().enumerate() {
            let agent = txn.agent.min(agents - 1);
            let doc = &replicas[agent];
            // Ancestors this replica lacks, found by walking up from the parents and
            // stopping at anything already known (known sets are ancestor-closed).
            let mut missing = Vec::new();
            let mut stack: Vec<usize> = txn.parents.clone();
            while let Some(p) = stack.pop() {
                if p >= i || known[agent][p] {
                    continue;
                }
                known[agent][p] = true;
                missing.push(p);
                stack.extend(self.txns[p].parents.iter().copied());
            }
            missing.sort_unstable();
            for p in missing {
                if let Some(u) = &updates[p] {
                    doc.apply_update_v1(u)?;
                }
            }
            let text = doc.text(root);
            let (result, update) = doc.edit_with_update(|e| apply_patches(e, &text, &txn.patches));
            result?;
            known[agent][i] = true;
            updates[i] = update;
        }
        let merged = Document::with_client_id("merged", agents as u64 + 1);
        for u in updates.iter().flatten() {
            merged.apply_update_v1(u)?;
        }
        Ok(merged)
    }
}

/// Applies `(position, deleted, inserted)` patches in order inside one transaction, each
/// seeing the previous one's result (`Array.prototype.splice` semantics).
fn apply_patches(
    e: &mut Edit<'_>,
    text: &TextRef,
    patches: &[(u32, u32, String)],
) -> Result<(), DocError> {
    for (pos, del, ins) in patches {
        if *del > 0 {
            e.delete(text, *pos, *del)?;
        }
        if !ins.is_empty() {
            e.insert(text, *pos, ins)?;
        }
    }
    Ok(())
}
