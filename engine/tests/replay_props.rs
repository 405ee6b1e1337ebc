//! Property tests: random edit logs under random delivery schedules (reorder, duplicate,
//! delay, partition and heal) must converge, never produce partial or duplicated inserts,
//! keep cursors in bounds and attached, and be idempotent under duplicate delivery.
//!
//! Inserted text is made of unique tokens `[r<replica>.<n>]` placed only at token
//! boundaries, and deletions remove whole tokens. A correct CRDT then ends with text that
//! parses back into whole tokens, each at most once, and exactly the inserted-minus-deleted
//! set. Failures print the seed; proptest's regression file replays them.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tandem_engine::editlog::{Cluster, EditLog, Op, Schedule, Step};

#[derive(Debug, Clone)]
enum Action {
    Insert {
        replica: usize,
        slot: usize,
        tokens: usize,
    },
    Delete {
        replica: usize,
        slot: usize,
    },
    Format {
        replica: usize,
        slot: usize,
        bold: bool,
    },
    MapSet {
        replica: usize,
        key: u8,
        value: i32,
    },
    MapDelete {
        replica: usize,
        key: u8,
    },
    Cursor {
        replica: usize,
        slot: usize,
    },
    Net(Step),
}

fn action(n: usize) -> impl Strategy<Value = Action> {
    let r = 0..n;
    prop_oneof![
        6 => (r.clone(), any::<usize>(), 1usize..3).prop_map(|(replica, slot, tokens)| Action::Insert { replica, slot, tokens }),
        2 => (r.clone(), any::<usize>()).prop_map(|(replica, slot)| Action::Delete { replica, slot }),
        1 => (r.clone(), any::<usize>(), any::<bool>()).prop_map(|(replica, slot, bold)| Action::Format { replica, slot, bold }),
        1 => (r.clone(), 0u8..4, any::<i32>()).prop_map(|(replica, key, value)| Action::MapSet { replica, key, value }),
        1 => (r.clone(), 0u8..4).prop_map(|(replica, key)| Action::MapDelete { replica, key }),
        2 => (r.clone(), any::<usize>()).prop_map(|(replica, slot)| Action::Cursor { replica, slot }),
        8 => (r.clone(), r.clone(), any::<usize>()).prop_map(|(from, to, pick)| Action::Net(Step::Deliver { from, to, pick })),
        2 => (r.clone(), r.clone(), any::<usize>()).prop_map(|(from, to, pick)| Action::Net(Step::Duplicate { from, to, pick })),
        1 => proptest::collection::vec(r.clone(), 1..n.max(2)).prop_map(|group| Action::Net(Step::Partition { group })),
        1 => Just(Action::Net(Step::Heal)),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Action>)> {
    (2usize..5).prop_flat_map(|n| (Just(n), proptest::collection::vec(action(n), 1..120)))
}

/// Start offsets of the tokens of `text` plus its end: the boundaries.
fn boundaries(text: &str) -> Vec<(u32, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = 0u32;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(']').expect("text is whole tokens") + 1;
        out.push((offset, Some(rest[..end].to_owned())));
        offset += end as u32; // tokens are ASCII: bytes = UTF-16 units
        rest = &rest[end..];
    }
    out.push((offset, None));
    out
}

/// Parses text into tokens; `None` if some token is cut (a partial insert).
fn tokens(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if !rest.starts_with("[r") {
            return None;
        }
        let end = rest.find(']')? + 1;
        let tok = &rest[..end];
        if tok[1..].contains('[') {
            return None;
        }
        out.push(tok.to_owned());
        rest = &rest[end..];
    }
    Some(out)
}

struct Driver {
    cluster: Cluster,
    log: EditLog,
    schedule: Schedule,
    inserted: BTreeSet<String>,
    deleted: BTreeSet<String>,
    next: usize,
    /// Per replica: the token its caret sits in front of, if any.
    caret_before: BTreeMap<usize, String>,
}

impl Driver {
    fn new(n: usize) -> Self {
        Self {
            cluster: Cluster::new(n),
            log: EditLog::new(n),
            schedule: Schedule::default(),
            inserted: BTreeSet::new(),
            deleted: BTreeSet::new(),
            next: 0,
            caret_before: BTreeMap::new(),
        }
    }

    fn local(&mut self, replica: usize, op: Op) {
        self.cluster.apply(replica, &op).unwrap();
        self.log.push(replica, op);
        self.schedule.steps.push(Step::Local);
    }

    fn run(&mut self, action: Action) -> Result<(), TestCaseError> {
        match action {
            Action::Insert {
                replica,
                slot,
                tokens,
            } => {
                let b = boundaries(&self.cluster.text(replica));
                let pos = b[slot % b.len()].0;
                let mut text = String::new();
                for _ in 0..tokens {
                    let t = format!("[r{replica}.{}]", self.next);
                    self.next += 1;
                    self.inserted.insert(t.clone());
                    text.push_str(&t);
                }
                self.local(replica, Op::Insert { pos, text });
            }
            Action::Delete { replica, slot } => {
                let b = boundaries(&self.cluster.text(replica));
                if b.len() > 1 {
                    let (pos, tok) = &b[slot % (b.len() - 1)];
                    let tok = tok.clone().unwrap();
                    self.deleted.insert(tok.clone());
                    self.local(
                        replica,
                        Op::Delete {
                            pos: *pos,
                            len: tok.len() as u32,
                        },
                    );
                }
            }
            Action::Format {
                replica,
                slot,
                bold,
            } => {
                let b = boundaries(&self.cluster.text(replica));
                if b.len() > 1 {
                    let (pos, tok) = &b[slot % (b.len() - 1)];
                    let attrs = [(
                        "bold".to_owned(),
                        if bold {
                            serde_json::Value::Bool(true)
                        } else {
                            serde_json::Value::Null
                        },
                    )]
                    .into();
                    let len = tok.as_ref().unwrap().len() as u32;
                    self.local(
                        replica,
                        Op::Format {
                            pos: *pos,
                            len,
                            attrs,
                        },
                    );
                }
            }
            Action::MapSet {
                replica,
                key,
                value,
            } => self.local(
                replica,
                Op::MapSet {
                    key: format!("k{key}"),
                    value: serde_json::json!(value),
                },
            ),
            Action::MapDelete { replica, key } => self.local(
                replica,
                Op::MapDelete {
                    key: format!("k{key}"),
                },
            ),
            Action::Cursor { replica, slot } => {
                let b = boundaries(&self.cluster.text(replica));
                let (pos, tok) = b[slot % b.len()].clone();
                match tok {
                    Some(t) => self.caret_before.insert(replica, t),
                    None => self.caret_before.remove(&replica),
                };
                self.local(
                    replica,
                    Op::Cursor {
                        anchor: pos,
                        head: pos,
                    },
                );
            }
            Action::Net(step) => {
                if let Some(d) = self.cluster.step(&step).unwrap() {
                    prop_assert!(
                        !(d.duplicate && d.changed),
                        "applying update {} twice changed replica state",
                        d.packet
                    );
                }
                self.schedule.steps.push(step);
            }
        }
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        for i in 0..self.cluster.len() {
            let text = self.cluster.text(i);
            let toks = tokens(&text);
            prop_assert!(
                toks.is_some(),
                "replica {i} holds a partial insert: {text:?}"
            );
            let toks = toks.unwrap();
            let unique: BTreeSet<_> = toks.iter().collect();
            prop_assert_eq!(
                unique.len(),
                toks.len(),
                "replica {} duplicated an insert: {:?}",
                i,
                text
            );
            if self.cluster.has_cursor(i) {
                let (a, h) = self.cluster.cursor(i).expect("own cursor always resolves");
                let len = text.len() as u32;
                prop_assert!(a <= len && h <= len, "cursor {a},{h} beyond length {len}");
                if let Some(t) = self.caret_before.get(&i) {
                    if let Some(at) = text.find(t.as_str()) {
                        prop_assert_eq!(a as usize, at, "replica {}'s caret left token {}", i, t);
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_logs_converge_under_random_schedules((n, actions) in scenario()) {
        let mut d = Driver::new(n);
        for a in actions {
            d.run(a)?;
        }
        d.cluster.flush().unwrap();
        d.check_invariants()?;
        if let Err(e) = d.cluster.check_converged() {
            return Err(TestCaseError::fail(format!("{e}")));
        }
        let final_tokens: BTreeSet<String> = tokens(&d.cluster.text(0)).unwrap().into_iter().collect();
        let expected: BTreeSet<String> = d.inserted.difference(&d.deleted).cloned().collect();
        prop_assert_eq!(final_tokens, expected, "inserted minus deleted is what remains");

        // The recorded log and schedule are a complete description: replaying them on
        // fresh replicas gives the identical document (text, formatting, state vectors).
        let json = serde_json::to_string(&(&d.log, &d.schedule)).unwrap();
        let (log, schedule): (EditLog, Schedule) = serde_json::from_str(&json).unwrap();
        let again = Cluster::replay(&log, &schedule).unwrap();
        again.check_converged().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(again.document(0).snapshot_v1(), d.cluster.document(0).snapshot_v1());
    }

    #[test]
    fn any_log_under_any_schedule_converges(
        (n, ops, steps) in (2usize..4).prop_flat_map(|n| (
            Just(n),
            proptest::collection::vec((0..n, 0u32..40, 0u32..6, "[a-zé😀]{0,4}", 0u8..4), 0..60),
            proptest::collection::vec((0..n, 0..n, any::<usize>(), 0u8..10), 0..150),
        ))
    ) {
        // Arbitrary positions (clamped at replay) and arbitrary text, including astral
        // characters: no token discipline, only convergence and idempotence.
        let mut log = EditLog::new(n);
        for (r, pos, len, text, kind) in ops {
            let op = match kind {
                0 => Op::Insert { pos, text },
                1 => Op::Delete { pos, len },
                2 => Op::Format { pos, len, attrs: [("i".to_owned(), serde_json::Value::Bool(true))].into() },
                _ => Op::MapSet { key: text, value: serde_json::json!(pos) },
            };
            log.push(r, op);
        }
        let steps = steps.into_iter().map(|(from, to, pick, k)| match k {
            0..=3 => Step::Local,
            4..=6 => Step::Deliver { from, to, pick },
            7 => Step::Duplicate { from, to, pick },
            8 => Step::Partition { group: vec![from] },
            _ => Step::Heal,
        }).collect();
        let cluster = Cluster::replay(&log, &Schedule { steps }).unwrap();
        cluster.check_converged().map_err(|e| TestCaseError::fail(format!("{e}")))?;
    }
}
