//! [`Document`]: one named yrs document with UTF-16 offsets, typed roots and checked edits.
//!
//! The wrapper is deliberately thin (a replay through it costs within a few percent of raw
//! yrs, see BENCHMARKS.md): it adds what yrs leaves to the caller — bounds checks instead of
//! panics, UTF-16 offsets as Yjs and browsers count them, contained panics on hostile
//! updates, and the "is something missing?" signal a sync layer needs.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use yrs::types::text::{Diff, YChange};
use yrs::types::{Attrs, Delta, ToJson};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, ArrayRef, Doc, GetString, Map, MapRef, OffsetKind, Options, Origin, Out, ReadTxn,
    StateVector, Text, TextRef, Transact, Transaction, TransactionMut, Update,
};

use crate::error::DocError;

/// The transaction origin of every update applied from a peer ([`Document::apply_update_v1`]
/// and friends). Local edits carry no origin, so an undo manager with default options tracks
/// only local edits, and an update observer can tell what to forward (local changes) from
/// what it just received (see [`Document::observe_updates`]).
pub const REMOTE_ORIGIN: &str = "tandem-remote";

/// Formatting attributes of a run of text (`{"bold": true}`), as in Yjs' `Y.Text` deltas.
pub type Attributes = HashMap<Arc<str>, Any>;

/// One shared document: a yrs [`Doc`] that counts text offsets in UTF-16 code units.
///
/// UTF-16 is what `Y.Text` in JavaScript, the DOM and every browser editor use, so an index
/// received from a JS client means the same place here; with yrs' default (bytes) any
/// non-ASCII text would make indexes disagree between a browser and the server.
#[derive(Clone)]
pub struct Document {
    name: Arc<str>,
    doc: Doc,
    /// Updates that skip clocks of their client, held here until the clocks before them
    /// arrive. yrs would park them itself, but yrs 0.28 shows some parked updates while
    /// leaving them out of its encodings (and a duplicate can make one appear), so they
    /// reach yrs only once they follow on from what it has.
    held: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("name", &self.name)
            .field("client_id", &self.client_id())
            .finish()
    }
}

/// What applying a remote update did, so a sync layer can decide what to forward.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The v1 update of what was newly integrated (`None` if the update brought nothing
    /// new). This — not the raw incoming bytes — is what a hub forwards to other peers.
    pub update: Option<Vec<u8>>,
    /// After the update, parts of the document wait for updates this replica has not seen.
    /// The caller should ask its peer for a resync (send a sync step 1).
    pub missing: bool,
    /// This update was not wholly applied: it was refused for skipping clocks, or it left
    /// parts waiting where nothing waited before. Unlike `missing`, which stays true for as
    /// long as anything in the document waits (whoever sent it), this is about this update:
    /// what a caller answering its sender ("saved", or not) needs.
    pub incomplete: bool,
}

impl Document {
    /// A document with a random 32-bit client id — the id width Yjs uses, so updates made
    /// here are readable by every Yjs-family peer, including ones that read ids as u32.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::with_client_id(name, random_client_id())
    }

    /// A document with a chosen client id. Two live replicas must never share an id; fixed
    /// ids are for deterministic replays and tests.
    pub fn with_client_id(name: impl Into<Arc<str>>, client_id: u64) -> Self {
        let mut options = Options::with_client_id(yrs::ClientID::new(client_id & ((1 << 53) - 1)));
        options.offset_kind = OffsetKind::Utf16;
        // yrs' formatting cleanup deletes dangling format markers *while applying a remote
        // update*: the receiving replica then holds deletions nobody sent it, and peers that
        // never see them diverge in formatting (the replay property tests found this). A
        // replica here changes only what it is told to; Yjs clients still clean up and
        // publish their cleanup as ordinary updates, which everyone applies.
        options.cleanup_formatting = false;
        Self {
            name: name.into(),
            doc: Doc::with_options(options),
            held: Arc::default(),
        }
    }

    /// The name the document is shared under (the y-websocket room name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This replica's client id, as it appears in updates and state vectors.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// The underlying yrs document, for what the wrapper does not cover (undo managers,
    /// XML types, sub-documents).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The shared text root `name`, created on first use (as `ydoc.getText(name)`).
    pub fn text(&self, name: &str) -> TextRef {
        self.doc.get_or_insert_text(name)
    }

    /// The shared map root `name`, created on first use (as `ydoc.getMap(name)`).
    pub fn map(&self, name: &str) -> MapRef {
        self.doc.get_or_insert_map(name)
    }

    /// The shared array root `name`, created on first use (as `ydoc.getArray(name)`).
    pub fn array(&self, name: &str) -> ArrayRef {
        self.doc.get_or_insert_array(name)
    }

    /// A read-only transaction, for reading several values from one consistent state.
    pub fn read(&self) -> Transaction<'_> {
        self.doc.transact()
    }

    /// Runs `f` as one local transaction and returns its result. Observers see the whole
    /// closure as one change, and peers receive it as one update.
    pub fn edit<R>(&self, f: impl FnOnce(&mut Edit<'_>) -> R) -> R {
        let mut edit = Edit {
            txn: self.doc.transact_mut(),
        };
        f(&mut edit)
    }

    /// Like [`Document::edit`], and also returns the v1 update the transaction produced
    /// (empty changes give `None`), ready to send to peers.
    pub fn edit_with_update<R>(&self, f: impl FnOnce(&mut Edit<'_>) -> R) -> (R, Option<Vec<u8>>) {
        let mut edit = Edit {
            txn: self.doc.transact_mut(),
        };
        let result = f(&mut edit);
        let update = edit.update_v1();
        (result, update)
    }

    /// The plain content of text root `name`.
    pub fn text_string(&self, name: &str) -> String {
        let text = self.text(name);
        text.get_string(&self.read())
    }

    /// The content of text root `name` with formatting, as Quill-style delta operations.
    pub fn text_delta(&self, name: &str) -> Vec<TextDelta> {
        let text = self.text(name);
        let txn = self.read();
        text.diff(&txn, YChange::identity)
            .into_iter()
            .map(|d: Diff<YChange>| TextDelta::insert(d.insert, d.attributes, &txn))
            .collect()
    }

    /// The content of map root `name` as a JSON-like value.
    pub fn map_json(&self, name: &str) -> Any {
        let map = self.map(name);
        map.to_json(&self.read())
    }

    /// The content of array root `name` as a JSON-like value.
    pub fn array_json(&self, name: &str) -> Any {
        let array = self.array(name);
        array.to_json(&self.read())
    }

    /// Calls `f` with the deltas of every committed transaction that changes text root
    /// `name`, local or remote, and whether the change came from a peer (origin
    /// [`REMOTE_ORIGIN`]). Registered under `key`; [`Document::unobserve_text`] with the
    /// same key removes it. Editor bindings use this to patch the DOM without a full
    /// re-render. `f` runs while the transaction commits: it must not touch the document.
    pub fn observe_text<F>(&self, name: &str, key: impl Into<Origin>, mut f: F)
    where
        F: FnMut(&[TextDelta], bool) + 'static,
    {
        use yrs::Observable;
        let remote = Origin::from(REMOTE_ORIGIN);
        self.text(name).observe(key, move |txn, event| {
            let deltas = convert_deltas(event.delta(txn), txn);
            f(&deltas, txn.origin() == Some(&remote))
        });
    }

    /// Calls `f` with the v1 update of every committed transaction that changed the document,
    /// and whether it was applied from a peer (origin [`REMOTE_ORIGIN`]) rather than made
    /// here. A provider forwards the local ones to the server; a persistence layer stores
    /// both. `f` runs while the transaction commits: it must not touch the document.
    /// Registered under `key`; [`Document::unobserve_updates`] removes it.
    pub fn observe_updates<F>(&self, key: impl Into<Origin>, mut f: F)
    where
        F: FnMut(&[u8], bool) + 'static,
    {
        let remote = Origin::from(REMOTE_ORIGIN);
        // Fails only inside another transaction, which a caller holding `&self` cannot be.
        let _ = self.doc.observe_update_v1(key, move |txn, event| {
            f(&event.update, txn.origin() == Some(&remote))
        });
    }

    /// Removes an observer registered by [`Document::observe_updates`].
    pub fn unobserve_updates(&self, key: impl Into<Origin>) -> bool {
        self.doc.unobserve_update_v1(key).unwrap_or(false)
    }

    /// Removes an observer registered by [`Document::observe_text`].
    pub fn unobserve_text(&self, name: &str, key: impl Into<Origin>) -> bool {
        use yrs::Observable;
        self.text(name).unobserve(key)
    }

    /// The encoded (v1) state vector: what this replica has seen. A peer answers it with
    /// exactly what is missing here.
    pub fn state_vector_v1(&self) -> Vec<u8> {
        self.read().state_vector().encode_v1()
    }

    /// Everything this replica has that the peer with (encoded v1) `state_vector` lacks, as
    /// one v1 update: the answer to a sync step 1.
    pub fn diff_v1(&self, state_vector: &[u8]) -> Result<Vec<u8>, DocError> {
        let sv = decode_state_vector(state_vector)?;
        Ok(self.read().encode_state_as_update_v1(&sv))
    }

    /// As [`Document::diff_v1`] with an already decoded state vector (saves a decode when the
    /// codec has validated it).
    pub fn diff_v1_from(&self, sv: &StateVector) -> Vec<u8> {
        self.read().encode_state_as_update_v1(sv)
    }

    /// Whether the replica whose state vector is `sv` has seen updates this one has not.
    /// Answering its sync step 1 only sends what it lacks; when this is true the answer
    /// must go the other way too (a step 1 of our own), or this replica stays behind.
    pub fn is_behind(&self, sv: &StateVector) -> bool {
        let ours = self.read().state_vector();
        sv.iter().any(|(client, clock)| *clock > ours.get(client))
    }

    /// As [`Document::diff_v1`] in the v2 encoding (smaller; not used on the y-websocket wire).
    pub fn diff_v2(&self, state_vector: &[u8]) -> Result<Vec<u8>, DocError> {
        let sv = decode_state_vector(state_vector)?;
        Ok(self.read().encode_state_as_update_v2(&sv))
    }

    /// The whole document as one compacted v1 update: what a snapshot stores and what a
    /// joiner with an empty state receives. Loading it gives an identical document.
    pub fn snapshot_v1(&self) -> Vec<u8> {
        self.read()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// The whole document as one compacted v2 update.
    pub fn snapshot_v2(&self) -> Vec<u8> {
        self.read()
            .encode_state_as_update_v2(&StateVector::default())
    }

    /// Applies a remote v1 update. Duplicate content is ignored; content whose
    /// predecessors are missing is parked and reported through [`Applied::missing`], and
    /// integrated once they arrive.
    pub fn apply_update_v1(&self, bytes: &[u8]) -> Result<Applied, DocError> {
        let update = decode_update(bytes, crate::untrusted::update_v1, "update v1")?;
        self.apply_or_hold(update, bytes)
    }

    /// Applies `update` (decoded from v1 `bytes`), or holds it while it skips clocks;
    /// then applies every held update the document has caught up with.
    fn apply_or_hold(&self, update: Update, bytes: &[u8]) -> Result<Applied, DocError> {
        let Some(mut applied) = self.apply(update, Gaps::Refuse)? else {
            self.held_updates().push(bytes.to_vec());
            return Ok(Applied {
                update: None,
                missing: true,
                incomplete: true,
            });
        };
        if applied.update.is_some() {
            self.release_held(&mut applied)?;
        }
        applied.missing |= !self.held_updates().is_empty();
        Ok(applied)
    }

    fn held_updates(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the held updates that now follow on from the document, folding what they
    /// integrated into `applied`, until a pass applies none.
    fn release_held(&self, applied: &mut Applied) -> Result<(), DocError> {
        loop {
            let held = std::mem::take(&mut *self.held_updates());
            let mut waiting = Vec::new();
            let mut progress = false;
            for bytes in held {
                // Held bytes decoded once already; they decode again.
                let Ok(update) = crate::untrusted::update_v1(&bytes) else {
                    continue;
                };
                let Some(more) = self.apply(update, Gaps::Refuse)? else {
                    waiting.push(bytes);
                    continue;
                };
                progress = true;
                applied.missing = more.missing;
                if let Some(more) = more.update {
                    applied.update = Some(match applied.update.take() {
                        Some(first) => yrs::merge_updates_v1([first, more]).map_err(|source| {
                            DocError::Decode {
                                what: "merged update v1",
                                source,
                            }
                        })?,
                        None => more,
                    });
                }
            }
            self.held_updates().extend(waiting);
            if !progress {
                return Ok(());
            }
        }
    }

    /// Applies a v1 update from a peer that can resend (a sync session's peer), except
    /// that an update skipping clocks of one of its clients (it starts past what this
    /// replica has of that client) is not parked but dropped and reported as missing: the
    /// session then asks the peer to resend from where we are (a sync step 1, answered
    /// with a step 2 holding the skipped part too). yrs 0.28 integrates some such updates
    /// into what it shows while leaving them out of its own encodings, which would leave
    /// every other replica and the store behind for good (fuzz/regressions/README.md);
    /// a peer following the protocol never sends one.
    pub fn apply_peer_update_v1(&self, update: &[u8]) -> Result<Applied, DocError> {
        let update = decode_update(update, crate::untrusted::update_v1, "update v1")?;
        Ok(self.apply(update, Gaps::Refuse)?.unwrap_or(Applied {
            update: None,
            missing: true,
            incomplete: true,
        }))
    }

    /// Whether applying the v1 `update` would add anything: content this replica lacks or
    /// deletions it has not seen. A read-only peer's sync step 2 carries its whole delete
    /// set even when it edited nothing, so refusing every non-empty update would refuse
    /// harmless echoes; this tells a real edit from one.
    pub fn would_change_v1(&self, update: &[u8]) -> Result<bool, DocError> {
        let update = decode_update(update, crate::untrusted::update_v1, "update v1")?;
        if update.is_empty() {
            return Ok(false);
        }
        let txn = self.read();
        let sv = txn.state_vector();
        let adds = update.insertions(true).iter().any(|(client, ranges)| {
            let have = sv.get(client);
            ranges.iter().any(|r| r.end > have)
        });
        if adds {
            return Ok(true);
        }
        if update.delete_set().is_empty() {
            return Ok(false);
        }
        let known = txn.snapshot().delete_set;
        Ok(!update.delete_set().diff(&known).is_empty())
    }

    /// Applies a remote v2 update (see [`Document::apply_update_v1`]).
    pub fn apply_update_v2(&self, update: &[u8]) -> Result<Applied, DocError> {
        let update = decode_update(update, crate::untrusted::update_v2, "update v2")?;
        Ok(self.apply(update, Gaps::Park)?.unwrap_or_default())
    }

    /// Applies a sequence of v1 updates (a stored log), in order. Every update is decoded
    /// before anything is applied, so a corrupt entry is reported by its position
    /// ([`DocError::BatchEntry`]) and leaves the document untouched. Returns whether parts
    /// of the document wait for updates it has not seen.
    ///
    /// Each update gets a transaction of its own: yrs integrates a long log several times
    /// faster that way than inside one transaction (the per-transaction bookkeeping grows
    /// with everything the transaction touched), and merging them first is quadratic.
    pub fn apply_updates_v1<'u>(
        &self,
        updates: impl IntoIterator<Item = &'u [u8]>,
    ) -> Result<bool, DocError> {
        let decoded = updates
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| {
                decode_update(bytes, crate::untrusted::update_v1, "update v1").map_err(
                    |e| match e {
                        DocError::Decode { source, .. } => DocError::BatchEntry { index, source },
                        other => other,
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for update in decoded {
                self.doc
                    .transact_mut_with(REMOTE_ORIGIN)
                    .apply_update(update)?;
            }
            Ok::<_, DocError>(self.read().has_missing_updates())
        }));
        outcome.unwrap_or(Err(DocError::Poisoned))
    }

    /// Applies `update`; `None` when `gaps` is [`Gaps::Refuse`] and it skips clocks of
    /// one of its clients (nothing was applied).
    fn apply(&self, update: Update, gaps: Gaps) -> Result<Option<Applied>, DocError> {
        // yrs asserts on some malformed-but-decodable updates. The update came from outside,
        // so a panic must not unwind through the caller (the server's document task).
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = self.doc.transact_mut_with(REMOTE_ORIGIN);
            let before = txn.state_vector();
            let waited = txn.has_missing_updates();
            if gaps == Gaps::Refuse && skips_clocks(&update, &before) {
                return Ok(None);
            }
            if let Err(e) = txn.apply_update(update) {
                // yrs can fail half-way through, after integrating part of the update: a
                // document changed by an update that was refused cannot be trusted.
                if txn.has_changes() || txn.state_vector() != before {
                    return Err(DocError::Poisoned);
                }
                return Err(e.into());
            }
            let changed = txn.has_changes();
            let update = changed.then(|| txn.encode_update_v1());
            // Some malformed input is integrated into a state yrs then encodes as bytes it
            // cannot decode: relayed, stored and reloaded, that would spread the damage.
            if let Some(u) = &update {
                if Update::decode_v1(u).is_err() {
                    return Err(DocError::Poisoned);
                }
            }
            let missing = txn.has_missing_updates();
            drop(txn);
            if missing {
                // Parked updates are merged into every later encoding, and some make that
                // merge panic; better to find out now than in the next client's sync.
                // Diffing against our own state vector encodes next to nothing but the
                // parked part, so the check is cheap whatever the document's size.
                let txn = self.read();
                let _ = txn.encode_state_as_update_v1(&txn.state_vector());
            }
            Ok::<_, DocError>(Some(Applied {
                update,
                missing,
                incomplete: missing && !waited,
            }))
        }));
        match outcome {
            Ok(result) => result,
            Err(_) => Err(DocError::Poisoned),
        }
    }

    /// Parts of the document wait for updates this replica has not received. A sync layer
    /// that sees this after applying updates should request a resync from its peer instead
    /// of silently staying behind.
    pub fn has_missing_updates(&self) -> bool {
        self.read().has_missing_updates() || !self.held_updates().is_empty()
    }
}

/// What [`Document::apply`] does with an update that skips clocks of one of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gaps {
    /// Hand it to yrs, which parks it.
    Park,
    /// Apply nothing (the caller holds it or asks the peer to resend).
    Refuse,
}

/// Whether `update` starts past what a replica with state vector `have` has of one of its
/// clients.
fn skips_clocks(update: &Update, have: &StateVector) -> bool {
    update
        .state_vector_lower()
        .iter()
        .any(|(client, clock)| *clock > have.get(client))
}

/// Decodes an update from untrusted bytes (see [`crate::untrusted`]): nothing has been
/// changed yet when it fails, so a failure is a decode error, not a poisoned document.
fn decode_update(
    bytes: &[u8],
    decode: fn(&[u8]) -> Result<Update, yrs::encoding::read::Error>,
    what: &'static str,
) -> Result<Update, DocError> {
    decode(bytes).map_err(|source| DocError::Decode { what, source })
}

/// Decodes a v1 state vector, typed error on garbage.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, DocError> {
    crate::untrusted::state_vector_v1(bytes).map_err(|source| DocError::Decode {
        what: "state vector",
        source,
    })
}

/// A random client id in Yjs' 32-bit range. yrs' generator is seeded from the OS (and from
/// `crypto.getRandomValues` in browsers), so ids differ across tabs and processes.
fn random_client_id() -> u64 {
    match yrs::ClientID::random().get() as u32 {
        0 => 1,
        id => id as u64,
    }
}

/// A local transaction on a [`Document`], with bounds-checked edit methods.
///
/// Offsets and lengths of text are UTF-16 code units. Every method checks its range and
/// returns [`DocError::OutOfBounds`] where yrs would panic.
pub struct Edit<'doc> {
    txn: TransactionMut<'doc>,
}

impl<'doc> Edit<'doc> {
    /// The underlying yrs transaction, for operations the wrapper does not cover.
    pub fn txn(&mut self) -> &mut TransactionMut<'doc> {
        &mut self.txn
    }

    /// The v1 update of everything done in this transaction so far (`None` if nothing).
    pub fn update_v1(&self) -> Option<Vec<u8>> {
        self.txn.has_changes().then(|| self.txn.encode_update_v1())
    }

    /// Inserts `chunk` at `index` of `text`.
    pub fn insert(&mut self, text: &TextRef, index: u32, chunk: &str) -> Result<(), DocError> {
        check(index, 0, text.len(&self.txn))?;
        text.insert(&mut self.txn, index, chunk);
        Ok(())
    }

    /// Inserts `chunk` at `index` of `text` with formatting `attributes`.
    pub fn insert_formatted(
        &mut self,
        text: &TextRef,
        index: u32,
        chunk: &str,
        attributes: Attributes,
    ) -> Result<(), DocError> {
        check(index, 0, text.len(&self.txn))?;
        text.insert_with_attributes(&mut self.txn, index, chunk, attributes);
        Ok(())
    }

    /// Deletes `len` code units of `text` starting at `index`.
    pub fn delete(&mut self, text: &TextRef, index: u32, len: u32) -> Result<(), DocError> {
        check(index, len, text.len(&self.txn))?;
        if len > 0 {
            text.remove_range(&mut self.txn, index, len);
        }
        Ok(())
    }

    /// Applies formatting `attributes` to `len` code units of `text` at `index` (an
    /// attribute set to `Any::Null` removes that attribute, as in Yjs).
    pub fn format(
        &mut self,
        text: &TextRef,
        index: u32,
        len: u32,
        attributes: Attributes,
    ) -> Result<(), DocError> {
        check(index, len, text.len(&self.txn))?;
        if len > 0 {
            text.format(&mut self.txn, index, len, attributes);
        }
        Ok(())
    }

    /// Sets `key` of `map` to a JSON-like `value`.
    pub fn map_set(&mut self, map: &MapRef, key: &str, value: impl Into<Any>) {
        map.insert(&mut self.txn, key, value.into());
    }

    /// Removes `key` from `map`, returning whether it was there.
    pub fn map_delete(&mut self, map: &MapRef, key: &str) -> bool {
        map.remove(&mut self.txn, key).is_some()
    }

    /// Inserts a JSON-like `value` at `index` of `array`.
    pub fn array_insert(
        &mut self,
        array: &ArrayRef,
        index: u32,
        value: impl Into<Any>,
    ) -> Result<(), DocError> {
        check(index, 0, array.len(&self.txn))?;
        array.insert(&mut self.txn, index, value.into());
        Ok(())
    }

    /// Removes `len` elements of `array` at `index`.
    pub fn array_delete(&mut self, array: &ArrayRef, index: u32, len: u32) -> Result<(), DocError> {
        check(index, len, array.len(&self.txn))?;
        if len > 0 {
            array.remove_range(&mut self.txn, index, len);
        }
        Ok(())
    }

    /// Length of `text` in UTF-16 code units, as seen inside this transaction.
    pub fn text_len(&self, text: &TextRef) -> u32 {
        text.len(&self.txn)
    }

    /// Plain content of `text` as seen inside this transaction.
    pub fn text_string(&self, text: &TextRef) -> String {
        text.get_string(&self.txn)
    }
}

fn check(index: u32, len: u32, content_len: u32) -> Result<(), DocError> {
    match index.checked_add(len) {
        Some(end) if end <= content_len => Ok(()),
        _ => Err(DocError::OutOfBounds {
            index,
            len,
            content_len,
        }),
    }
}

/// One operation of a text delta, in the shape Quill, Yjs' `Y.Text#toDelta` and editor
/// bindings use: insert (with optional formatting), delete, or retain (optionally
/// re-formatting what is kept).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum TextDelta {
    /// Text inserted (`insert` is a string) or an embed (any other JSON value).
    Insert {
        /// The inserted content.
        insert: Any,
        /// Formatting of the inserted run, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<Attributes>,
    },
    /// `delete` code units removed.
    Delete {
        /// Number of UTF-16 code units removed.
        delete: u32,
    },
    /// `retain` code units kept (and re-formatted when `attributes` is set).
    Retain {
        /// Number of UTF-16 code units kept.
        retain: u32,
        /// New formatting of the kept run, if it changed.
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<Attributes>,
    },
}

impl TextDelta {
    fn insert<T: ReadTxn>(value: Out, attributes: Option<Box<Attrs>>, txn: &T) -> Self {
        let insert = match value {
            Out::Any(any) => any,
            other => other.to_json(txn),
        };
        TextDelta::Insert {
            insert,
            attributes: attributes.map(|a| *a),
        }
    }
}

fn convert_deltas<T: ReadTxn>(deltas: &[Delta], txn: &T) -> Vec<TextDelta> {
    deltas
        .iter()
        .map(|d| match d {
            Delta::Inserted(value, attrs) => TextDelta::insert(value.clone(), attrs.clone(), txn),
            Delta::Deleted(n) => TextDelta::Delete { delete: *n },
            Delta::Retain(n, attrs) => TextDelta::Retain {
                retain: *n,
                attributes: attrs.as_ref().map(|a| (**a).clone()),
            },
        })
        .collect()
}
