//! Replaying an [`EditLog`] across N replicas under a delivery [`Schedule`].
//!
//! Each replica is a full [`Document`]. Every local operation becomes one update, queued on
//! the link to every other replica. The schedule decides when a queued update is delivered:
//! in order or out of order (`pick`), twice (`Duplicate`), late (it simply waits), or not
//! at all while a partition separates the two replicas (`Partition` … `Heal`). After the
//! schedule, [`Cluster::flush`] heals and delivers everything, and [`Cluster::check_converged`]
//! says whether all replicas ended identical — the property a CRDT must have.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use yrs::{Any, GetString, MapRef, TextRef};

use crate::cursor::Cursor;
use crate::document::{Document, TextDelta};
use crate::editlog::log::{EditLog, Op, MAP_ROOT, TEXT_ROOT};
use crate::error::ReplayError;

/// One scheduling decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Apply the next operation of the log at its replica.
    Local,
    /// Deliver one queued update from `from` to `to`: the `pick`-th (modulo the queue
    /// length), so schedules can reorder. Nothing happens if the queue is empty or a
    /// partition separates the two.
    Deliver {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// Which queued update (modulo queue length).
        pick: usize,
    },
    /// Like `Deliver`, but the update stays queued and will be delivered again.
    Duplicate {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// Which queued update (modulo queue length).
        pick: usize,
    },
    /// Cut every link between `group` and the other replicas until `Heal`.
    Partition {
        /// Replicas on one side.
        group: Vec<usize>,
    },
    /// Reconnect everything.
    Heal,
}

/// A sequence of [`Step`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// What one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The update's id (unique per cluster).
    pub packet: u64,
    /// The receiver had already been given this update.
    pub duplicate: bool,
    /// For a duplicate: whether applying it again changed the receiver (it never should).
    pub changed: bool,
}

/// Why replicas did not converge.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The first replica that differs from replica 0.
    pub replica: usize,
    /// What differs ("text", "state vector", "formatting", "map", "pending updates").
    pub what: &'static str,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica {} differs from replica 0 in its {}",
            self.replica, self.what
        )
    }
}

impl std::error::Error for Divergence {}

#[derive(Debug, Clone)]
struct Packet {
    id: u64,
    update: Arc<[u8]>,
}

struct Replica {
    doc: Document,
    text: TextRef,
    map: MapRef,
    cursor: Option<Cursor>,
    seen: HashSet<u64>,
}

/// N replicas and the links between them.
pub struct Cluster {
    replicas: Vec<Replica>,
    /// Queue of the link from `i` to `j` at `i * n + j`.
    links: Vec<VecDeque<Packet>>,
    /// Partition side of each replica; `None` when healed.
    sides: Option<Vec<bool>>,
    next_packet: u64,
}

impl Cluster {
    /// `n` empty replicas with client ids 1..=n (fixed, so replays are deterministic).
    pub fn new(n: usize) -> Self {
        let replicas = (0..n)
            .map(|i| {
                let doc = Document::with_client_id(format!("replica-{i}"), i as u64 + 1);
                Replica {
                    text: doc.text(TEXT_ROOT),
                    map: doc.map(MAP_ROOT),
                    doc,
                    cursor: None,
                    seen: HashSet::new(),
                }
            })
            .collect();
        Self {
            replicas,
            links: (0..n * n).map(|_| VecDeque::new()).collect(),
            sides: None,
            next_packet: 0,
        }
    }

    /// Plays `log` under `schedule`, then plays the operations the schedule did not reach,
    /// then flushes every link.
    pub fn replay(log: &EditLog, schedule: &Schedule) -> Result<Self, ReplayError> {
        let mut cluster = Self::new(log.replicas);
        let mut ops = log.ops.iter();
        for step in &schedule.steps {
            if let Step::Local = step {
                if let Some(op) = ops.next() {
                    cluster.apply(op.replica, &op.op)?;
                }
            } else {
                cluster.step(step)?;
            }
        }
        for op in ops {
            cluster.apply(op.replica, &op.op)?;
        }
        cluster.flush()?;
        Ok(cluster)
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the cluster has no replicas.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica `i`'s document.
    pub fn document(&self, i: usize) -> &Document {
        &self.replicas[i].doc
    }

    /// Replica `i`'s text.
    pub fn text(&self, i: usize) -> String {
        self.replicas[i].doc.text_string(TEXT_ROOT)
    }

    /// Replica `i`'s cursor offsets, if it has placed one and can resolve it.
    pub fn cursor(&self, i: usize) -> Option<(u32, u32)> {
        let r = &self.replicas[i];
        r.cursor.as_ref().and_then(|c| c.offsets(&r.doc.read()))
    }

    /// Whether replica `i` has placed a cursor.
    pub fn has_cursor(&self, i: usize) -> bool {
        self.replicas[i].cursor.is_some()
    }

    /// Updates queued on all links.
    pub fn in_flight(&self) -> usize {
        self.links.iter().map(VecDeque::len).sum()
    }

    /// Applies `op` at `replica` and queues the resulting update to every other replica.
    pub fn apply(&mut self, replica: usize, op: &Op) -> Result<(), ReplayError> {
        let n = self.replicas.len();
        let r = self
            .replicas
            .get_mut(replica)
            .ok_or(ReplayError::NoSuchReplica {
                replica,
                replicas: n,
            })?;
        let (text, map) = (r.text.clone(), r.map.clone());
        let (result, update) = r.doc.edit_with_update(|e| {
            let current = e.text_string(&text);
            // Clamp to the content and snap to code point boundaries: a log replayed under
            // another schedule may point past the end or into a surrogate pair.
            let range = |pos: u32, n: u32| {
                let start = snap(&current, pos);
                (
                    start,
                    snap(&current, pos.saturating_add(n)).max(start) - start,
                )
            };
            match op {
                Op::Insert { pos, text: s } => e.insert(&text, snap(&current, *pos), s),
                Op::Delete { pos, len } => {
                    let (pos, len) = range(*pos, *len);
                    e.delete(&text, pos, len)
                }
                Op::Format { pos, len, attrs } => {
                    let (pos, len) = range(*pos, *len);
                    let attrs = attrs
                        .iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), json_to_any(v)))
                        .collect();
                    e.format(&text, pos, len, attrs)
                }
                Op::MapSet { key, value } => {
                    e.map_set(&map, key, json_to_any(value));
                    Ok(())
                }
                Op::MapDelete { key } => {
                    e.map_delete(&map, key);
                    Ok(())
                }
                Op::Cursor { .. } => Ok(()),
            }
        });
        result?;
        if let Op::Cursor { anchor, head } = op {
            let txn = r.doc.read();
            let current = r.text.get_string(&txn);
            r.cursor = Some(Cursor::from_offsets(
                &txn,
                &r.text,
                snap(&current, *anchor),
                snap(&current, *head),
            )?);
        }
        if let Some(update) = update {
            let packet = Packet {
                id: self.next_packet,
                update: update.into(),
            };
            self.next_packet += 1;
            self.replicas[replica].seen.insert(packet.id);
            for to in (0..n).filter(|&to| to != replica) {
                self.links[replica * n + to].push_back(packet.clone());
            }
        }
        Ok(())
    }

    /// Executes one non-`Local` step (a `Local` step needs a log and is a no-op here).
    pub fn step(&mut self, step: &Step) -> Result<Option<Delivery>, ReplayError> {
        match step {
            Step::Local => Ok(None),
            Step::Deliver { from, to, pick } => self.deliver(*from, *to, *pick, false),
            Step::Duplicate { from, to, pick } => self.deliver(*from, *to, *pick, true),
            Step::Partition { group } => {
                let mut sides = vec![false; self.replicas.len()];
                for &g in group {
                    if let Some(s) = sides.get_mut(g) {
                        *s = true;
                    }
                }
                self.sides = Some(sides);
                Ok(None)
            }
            Step::Heal => {
                self.sides = None;
                Ok(None)
            }
        }
    }

    /// Delivers the `pick`-th queued update (modulo queue length) from `from` to `to`;
    /// with `keep` it stays queued. Returns `None` when nothing could be delivered.
    pub fn deliver(
        &mut self,
        from: usize,
        to: usize,
        pick: usize,
        keep: bool,
    ) -> Result<Option<Delivery>, ReplayError> {
        let n = self.replicas.len();
        if from >= n || to >= n || from == to {
            return Ok(None);
        }
        if let Some(sides) = &self.sides {
            if sides[from] != sides[to] {
                return Ok(None);
            }
        }
        let queue = &mut self.links[from * n + to];
        if queue.is_empty() {
            return Ok(None);
        }
        let index = pick % queue.len();
        let packet = if keep {
            queue[index].clone()
        } else {
            queue.remove(index).expect("index is within the queue")
        };
        let r = &mut self.replicas[to];
        let duplicate = !r.seen.insert(packet.id);
        let before = duplicate.then(|| fingerprint(&r.doc));
        r.doc.apply_update_v1(&packet.update)?;
        let changed = before.is_some_and(|b| b != fingerprint(&r.doc));
        Ok(Some(Delivery {
            packet: packet.id,
            duplicate,
            changed,
        }))
    }

    /// Heals any partition and delivers every queued update, oldest first.
    pub fn flush(&mut self) -> Result<(), ReplayError> {
        self.sides = None;
        let n = self.replicas.len();
        while self.in_flight() > 0 {
            for from in 0..n {
                for to in 0..n {
                    while self.deliver(from, to, 0, false)?.is_some() {}
                }
            }
        }
        Ok(())
    }

    /// Checks that every replica equals replica 0 in text, formatting, map, state vector,
    /// and that none waits for missing updates.
    pub fn check_converged(&self) -> Result<(), Divergence> {
        let Some(first) = self.replicas.first() else {
            return Ok(());
        };
        let reference = Summary::of(&first.doc);
        for (i, r) in self.replicas.iter().enumerate().skip(1) {
            if let Some(what) = reference.differs(&Summary::of(&r.doc)) {
                return Err(Divergence { replica: i, what });
            }
        }
        Ok(())
    }
}

/// Everything observable about a replica, for convergence checks.
struct Summary {
    text: String,
    delta: Vec<TextDelta>,
    map: Any,
    state_vector: BTreeMap<u64, u32>,
    missing: bool,
}

impl Summary {
    fn of(doc: &Document) -> Self {
        use yrs::ReadTxn;
        let state_vector = doc
            .read()
            .state_vector()
            .iter()
            .map(|(c, k)| (c.get(), *k))
            .collect();
        Self {
            text: doc.text_string(TEXT_ROOT),
            delta: doc.text_delta(TEXT_ROOT),
            map: doc.map_json(MAP_ROOT),
            state_vector,
            missing: doc.has_missing_updates(),
        }
    }

    fn differs(&self, other: &Self) -> Option<&'static str> {
        if self.text != other.text {
            Some("text")
        } else if self.delta != other.delta {
            Some("formatting")
        } else if self.map != other.map {
            Some("map")
        } else if self.state_vector != other.state_vector {
            Some("state vector")
        } else if self.missing || other.missing {
            Some("pending updates")
        } else {
            None
        }
    }
}

/// The largest code point boundary at or below UTF-16 offset `pos`, clamped to the text.
fn snap(text: &str, pos: u32) -> u32 {
    let mut units = 0u32;
    for c in text.chars() {
        let next = units + c.len_utf16() as u32;
        if next > pos {
            break;
        }
        units = next;
    }
    units
}

/// Log values are JSON; numbers become `Any::Number` (a JS number, as Yjs writes them),
/// so the same log always produces the same update bytes.
fn json_to_any(value: &serde_json::Value) -> Any {
    use serde_json::Value;
    match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => Any::from(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Any::from(s.as_str()),
        Value::Array(items) => Any::from(items.iter().map(json_to_any).collect::<Vec<_>>()),
        Value::Object(map) => Any::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_any(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    }
}

/// What a replica holds, for "a duplicate changed nothing": the content of both roots,
/// the clocks seen of each client (zero entries dropped), and whether updates are parked.
/// Not the snapshot's bytes: with a parked update, encoding the same state twice can lay
/// it out differently (a proptest schedule found a duplicate "changing" the bytes alone).
fn fingerprint(doc: &Document) -> (String, String, Vec<(u64, u32)>, bool) {
    use yrs::{ReadTxn, Transact};
    let mut clocks: Vec<(u64, u32)> = doc
        .doc()
        .transact()
        .state_vector()
        .iter()
        .filter(|(_, clock)| **clock > 0)
        .map(|(client, clock)| (client.get(), *clock))
        .collect();
    clocks.sort_unstable();
    (
        format!("{:?}", doc.text_delta(TEXT_ROOT)),
        // Through serde_json, whose maps are ordered: the map's own order is a hash map's.
        serde_json::to_value(doc.map_json(MAP_ROOT))
            .map(|v| v.to_string())
            .unwrap_or_default(),
        clocks,
        doc.has_missing_updates(),
    )
}
