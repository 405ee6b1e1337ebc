//! Document name → actor. Lookups happen once per connection, never per frame, so one
//! short mutex (no await inside) is enough and makes "get or create" atomic: two clients
//! arriving at once at a new document always end up in the same actor.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::hub::command::{ApiError, Command, Reply};
use crate::hub::doc_actor::{self, Env};
use crate::store::{Store, Writer};

/// Capacity of a document actor's mailbox. Readers await when it is full, which slows a
/// flooding client down without dropping anything.
const MAILBOX: usize = 4096;

/// A cheap, cloneable way to reach one document's actor.
#[derive(Clone)]
pub struct DocHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Command>,
    users: Arc<AtomicUsize>,
}

impl DocHandle {
    /// The document's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Sends a command; fails only if the actor has stopped.
    ///
    /// The send is tried at the call, and only a full mailbox (a flooding client) waits,
    /// boxed. An awaited `mpsc::Sender::send` is a future of over 400 bytes, and every
    /// connection's reading task holds one for its whole life; this one holds the answer
    /// or a box.
    pub fn send(&self, cmd: Command) -> impl Future<Output = Result<(), Stopped>> + Send + '_ {
        type Wait<'a> = Pin<Box<dyn Future<Output = Result<(), Stopped>> + Send + 'a>>;
        let tried: Result<Result<(), Stopped>, Wait<'_>> = match self.tx.try_send(cmd) {
            Ok(()) => Ok(Ok(())),
            Err(TrySendError::Closed(_)) => Ok(Err(Stopped)),
            Err(TrySendError::Full(cmd)) => Err(Box::pin(async move {
                self.tx.send(cmd).await.map_err(|_| Stopped)
            })),
        };
        async move {
            match tried {
                Ok(sent) => sent,
                Err(wait) => wait.await,
            }
        }
    }

    /// A handle whose mailbox is the returned receiver, with no actor behind it.
    #[cfg(test)]
    pub(crate) fn detached(name: &str) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let handle = Self {
            name: name.into(),
            tx,
            users: Arc::default(),
        };
        (handle, rx)
    }
}

/// The server is shutting down: documents are neither started nor joined any more.
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down")]
pub struct ShuttingDown;

/// The document's actor has stopped (deleted, handed over after a crash, or shut down).
#[derive(Debug, thiserror::Error)]
#[error("the document's actor has stopped")]
pub struct Stopped;

/// A claim on a document that keeps its actor loaded until dropped.
pub struct Lease {
    handle: DocHandle,
}

impl Lease {
    /// The document the lease holds.
    pub fn handle(&self) -> &DocHandle {
        &self.handle
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.handle.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// All loaded documents.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    docs: Mutex<HashMap<Arc<str>, DocHandle>>,
    /// Set, under the `docs` lock, when shutdown begins. Connections made before it (a
    /// kept-alive HTTP connection, a WebSocket still authenticating) go on being served
    /// until the process exits; without it their next request started a new actor whose
    /// edits came after the last flush and were lost.
    closing: AtomicBool,
    config: Arc<Config>,
    store: Arc<dyn Store>,
    writer: Writer,
    cluster: Option<Cluster>,
}

impl Registry {
    /// An empty registry whose actors use `config`, load from `store` and write through
    /// `writer`.
    /// With `cluster`, documents are shared with the other nodes.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        writer: Writer,
        cluster: Option<Cluster>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                docs: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
                config,
                store,
                writer,
                cluster,
            }),
        }
    }

    /// The cluster link, in cluster mode.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// The group-commit writer every document writes through.
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// The store documents are loaded from.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Sends the command `make` builds to the actor of `name` (loading the document if
    /// needed) and waits for its answer.
    pub async fn request<T>(
        &self,
        name: &str,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ApiError> {
        let lease = self.acquire(name).map_err(|_| ApiError::Closing)?;
        let (reply, answer) = oneshot::channel();
        if lease.handle().send(make(reply)).await.is_err() {
            return Err(ApiError::Closing);
        }
        answer.await.unwrap_or(Err(ApiError::Closing))
    }

    /// Returns the actor of `name`, starting it (and its load) if the document is not in
    /// memory, and counts the caller as a user until the lease is dropped.
    pub fn acquire(&self, name: &str) -> Result<Lease, ShuttingDown> {
        let mut docs = self.inner.docs.lock().expect("registry lock");
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(ShuttingDown);
        }
        // A handle whose actor has stopped (it can only have crashed: an idle actor removes
        // itself first) is replaced, so one failure does not lock a document out for ever.
        let crashed = docs.get(name).is_some_and(|h| h.tx.is_closed());
        let handle = match docs.get(name).filter(|h| !h.tx.is_closed()) {
            Some(h) => h.clone(),
            None => {
                let name: Arc<str> = Arc::from(name);
                let (tx, rx) = mpsc::channel(MAILBOX);
                let handle = DocHandle {
                    name: name.clone(),
                    tx,
                    users: Arc::new(AtomicUsize::new(0)),
                };
                docs.insert(name.clone(), handle.clone());
                metrics::gauge!("tandem_documents_loaded").set(docs.len() as f64);
                let env = Env {
                    registry: self.clone(),
                    users: handle.users.clone(),
                    config: self.inner.config.clone(),
                    store: self.inner.store.clone(),
                    writer: self.inner.writer.clone(),
                    after_crash: crashed,
                    cluster: self.inner.cluster.clone(),
                };
                doc_actor::spawn(name, rx, env);
                handle
            }
        };
        handle.users.fetch_add(1, Ordering::AcqRel);
        Ok(Lease { handle })
    }

    /// Called by an idle actor: removes it if nobody acquired it meanwhile. Returns whether
    /// the actor may stop. Checked under the same lock as [`Registry::acquire`], so no
    /// connection can slip in between the check and the removal.
    pub(crate) fn release_if_idle(&self, name: &str, users: &Arc<AtomicUsize>) -> bool {
        let mut docs = self.inner.docs.lock().expect("registry lock");
        let mine = docs.get(name).is_some_and(|h| Arc::ptr_eq(&h.users, users));
        if mine && users.load(Ordering::Acquire) == 0 {
            docs.remove(name);
            metrics::gauge!("tandem_documents_loaded").set(docs.len() as f64);
            true
        } else {
            false
        }
    }

    /// Called by an actor that stops serving for good (deleted, failed to load, poisoned):
    /// removes it whatever its users, so the next client starts a fresh actor.
    pub(crate) fn remove(&self, name: &str, users: &Arc<AtomicUsize>) {
        let mut docs = self.inner.docs.lock().expect("registry lock");
        if docs.get(name).is_some_and(|h| Arc::ptr_eq(&h.users, users)) {
            docs.remove(name);
            metrics::gauge!("tandem_documents_loaded").set(docs.len() as f64);
        }
    }

    /// Number of documents in memory.
    pub fn loaded(&self) -> usize {
        self.inner.docs.lock().expect("registry lock").len()
    }

    /// Closes every client with 1001 and waits until each document has flushed.
    pub async fn shutdown(&self) {
        let handles: Vec<DocHandle> = {
            let docs = self.inner.docs.lock().expect("registry lock");
            self.inner.closing.store(true, Ordering::Release);
            docs.values().cloned().collect()
        };
        let mut waits = Vec::with_capacity(handles.len());
        for h in handles {
            let (done, wait) = oneshot::channel();
            if h.send(Command::Shutdown { done }).await.is_ok() {
                waits.push(wait);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}
