//! The two tasks that talk to Redis: the subscriber (one pub/sub connection carrying every
//! loaded document's channel, resubscribed after each reconnect) and the publisher (one
//! connection, publishes pipelined in batches, in order). Both retry with backoff while
//! Redis is down; the node meanwhile serves its own clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use uuid::Uuid;

use super::{channel, decode, Op, Outgoing, Remote, Shared, DELETED};

/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Publishes sent in one pipeline at most.
const PUBLISH_BATCH: usize = 512;

/// How often the subscriber pings Redis: a pub/sub connection to a Redis that went away
/// can stay silent instead of ending, and a dead link must be noticed (and resynced)
/// within a few seconds.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Which of the two connections to Redis a change of health is about.
#[derive(Clone, Copy)]
enum Side {
    Subscriber,
    Publisher,
}

fn flag(shared: &Shared, side: Side) -> &std::sync::atomic::AtomicBool {
    match side {
        Side::Subscriber => &shared.subscribed,
        Side::Publisher => &shared.publishing,
    }
}

fn set_down(shared: &Shared, side: Side, why: String) {
    let was_up = shared.is_up();
    flag(shared, side).store(false, Ordering::Release);
    if was_up {
        warn!(error = %why, "redis link down: serving local clients only until it returns");
        metrics::counter!("tandem_cluster_link_failures_total").increment(1);
    }
    metrics::gauge!("tandem_cluster_up").set(0.0);
    *shared.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
}

fn set_up(shared: &Shared, side: Side) {
    flag(shared, side).store(true, Ordering::Release);
    if shared.is_up() {
        *shared.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        metrics::gauge!("tandem_cluster_up").set(1.0);
    }
}

/// The documents this node has loaded, by channel.
type Docs = HashMap<Vec<u8>, Member>;

/// A loaded document as the subscriber sees it: where its frames go, and whether it missed
/// some. Its queue is bounded, and the subscriber never waits on one document (every other
/// document's frames arrive on the same connection), so what a full queue cannot take is
/// dropped and repaired the way an outage is: the document resyncs once it has room.
struct Member {
    doc: Arc<str>,
    to: mpsc::Sender<Remote>,
    /// A resync waits in the queue, not yet taken by the document: it will read the
    /// document's state when handled, so it covers every frame dropped until then.
    resync_queued: Arc<AtomicBool>,
    /// Frames were dropped, or a resync could not be queued: it must resync.
    behind: bool,
}

impl Member {
    fn new(doc: Arc<str>, to: mpsc::Sender<Remote>, resync_queued: Arc<AtomicBool>) -> Self {
        Self {
            doc,
            to,
            resync_queued,
            behind: false,
        }
    }

    /// The document must ask the other nodes for what it lacks (and republish its presence).
    fn resync(&mut self) {
        self.behind = true;
        self.catch_up();
    }

    /// Queues the resync a document that missed frames owes, if its queue has room and no
    /// resync waits there already (one per backlog: a resync per freed slot would flood
    /// the other nodes with step 1s, each answered with a diff, while it stays behind).
    fn catch_up(&mut self) {
        if !self.behind {
            return;
        }
        if self.resync_queued.load(Ordering::Acquire) {
            self.behind = false;
            return;
        }
        // Raised before the send: the document may take the resync at once and lower it.
        self.resync_queued.store(true, Ordering::Release);
        if self.to.try_send(Remote::Reconnected).is_ok() {
            self.behind = false;
        } else {
            self.resync_queued.store(false, Ordering::Release);
        }
    }

    /// Hands a frame of another node to the document, or drops it and notes the debt. A
    /// frame of a document already behind is dropped without being copied.
    fn deliver(&mut self, node: Uuid, frame: &[u8]) {
        self.catch_up();
        let deletion = frame == DELETED;
        if self.behind && !deletion {
            self.drop_frame();
            return;
        }
        let remote = Remote::Frame {
            node,
            frame: Bytes::copy_from_slice(frame),
        };
        let remote = match self.to.try_send(remote) {
            Err(mpsc::error::TrySendError::Full(remote)) => remote,
            _ => return,
        };
        if deletion {
            // No resync brings a deletion back: this one frame waits for room.
            let to = self.to.clone();
            tokio::spawn(async move {
                let _ = to.send(remote).await;
            });
            return;
        }
        self.drop_frame();
    }

    fn drop_frame(&mut self) {
        if !self.behind {
            warn!(doc = %self.doc, "a document fell behind the other nodes' frames: it will resync");
        }
        self.behind = true;
        metrics::counter!("tandem_cluster_received_dropped_total").increment(1);
    }
}

/// Receives every loaded document's channel and hands frames of other nodes to the
/// document; keeps the subscriptions across reconnects.
pub(super) async fn subscriber(
    client: redis::Client,
    shared: Arc<Shared>,
    mut ops: mpsc::UnboundedReceiver<Op>,
) {
    let mut docs: Docs = HashMap::new();
    let mut backoff = BACKOFF.0;
    let mut ever_up = false;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                set_down(&shared, Side::Subscriber, format!("redis unreachable: {e}"));
                // Keep registering documents while waiting: they subscribe on reconnect.
                let deadline = tokio::time::Instant::now() + backoff;
                while let Ok(Some(op)) = tokio::time::timeout_at(deadline, ops.recv()).await {
                    apply_offline(&shared, &mut docs, op);
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut failed = None;
        for ch in docs.keys() {
            if let Err(e) = sink.subscribe(ch.as_slice()).await {
                failed = Some(e.to_string());
                break;
            }
        }
        if let Some(e) = failed {
            set_down(
                &shared,
                Side::Subscriber,
                format!("redis subscribe failed: {e}"),
            );
            tokio::time::sleep(backoff).await;
            continue;
        }
        set_up(&shared, Side::Subscriber);
        backoff = BACKOFF.0;
        if ever_up {
            info!(
                documents = docs.len(),
                "redis link back: resyncing documents"
            );
            docs.values_mut().for_each(Member::resync);
        }
        ever_up = true;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                _ = ping.tick() => {
                    docs.values_mut().for_each(Member::catch_up);
                    match tokio::time::timeout(PING_EVERY * 2, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("redis ping failed: {e}"),
                        Err(_) => break "redis did not answer a ping".to_owned(),
                    }
                }
                op = ops.recv() => match op {
                    None => return,
                    Some(Op::Join { doc, to, resync_queued, ready }) => {
                        let ch = channel(&shared.prefix, &doc);
                        docs.insert(ch.clone(), Member::new(doc, to, resync_queued));
                        if let Err(e) = sink.subscribe(ch.as_slice()).await {
                            break format!("redis subscribe failed: {e}");
                        }
                        let _ = ready.send(());
                    }
                    Some(Op::Resync) => {
                        info!(documents = docs.len(), "publishing resumed: resyncing documents");
                        docs.values_mut().for_each(Member::resync);
                    }
                    Some(Op::Leave { doc }) => {
                        let ch = channel(&shared.prefix, &doc);
                        // A document reloaded meanwhile registered a new sender: keep it.
                        if docs.get(&ch).is_some_and(|m| m.to.is_closed()) {
                            docs.remove(&ch);
                            if let Err(e) = sink.unsubscribe(ch.as_slice()).await {
                                break format!("redis unsubscribe failed: {e}");
                            }
                        }
                    }
                },
                msg = stream.next() => match msg {
                    None => break "redis connection lost".to_owned(),
                    Some(msg) => dispatch(&shared, &mut docs, &msg),
                },
            }
        };
        set_down(&shared, Side::Subscriber, why);
    }
}

/// Registers or forgets a document while Redis is down (it is subscribed on reconnect).
fn apply_offline(shared: &Shared, docs: &mut Docs, op: Op) {
    match op {
        Op::Join {
            doc,
            to,
            resync_queued,
            ready,
        } => {
            docs.insert(
                channel(&shared.prefix, &doc),
                Member::new(doc, to, resync_queued),
            );
            let _ = ready.send(());
        }
        Op::Leave { doc } => {
            let ch = channel(&shared.prefix, &doc);
            if docs.get(&ch).is_some_and(|m| m.to.is_closed()) {
                docs.remove(&ch);
            }
        }
        // The reconnect resyncs every document anyway.
        Op::Resync => {}
    }
}

fn dispatch(shared: &Shared, docs: &mut Docs, msg: &redis::Msg) {
    let Ok(ch) = msg.get_channel::<Vec<u8>>() else {
        return;
    };
    let Some(member) = docs.get_mut(&ch) else {
        return;
    };
    let Some((node, frame)) = decode(msg.get_payload_bytes()) else {
        debug!(doc = %member.doc, "ignoring a malformed cluster message");
        return;
    };
    if node == shared.node {
        return; // our own, already applied
    }
    metrics::counter!("tandem_cluster_received_total").increment(1);
    member.deliver(node, frame);
}

/// Publishes frames in the order they were queued, a pipeline per batch; answers a flush
/// once everything queued before it has been sent (or dropped by an outage).
/// Publishes lost to an outage are repaired by a resync, which the publisher asks the
/// subscriber for (`ops`) once it can publish again.
pub(super) async fn publisher(
    client: redis::Client,
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    ops: mpsc::UnboundedSender<Op>,
) {
    let mut link = Publisher {
        client,
        shared,
        ops,
        conn: None,
        backoff: BACKOFF.0,
        lost: false,
    };
    loop {
        let next = if link.lost {
            // Publishes were lost: check on Redis now and then even with nothing to send,
            // so that the node is ready again without waiting for a document to publish
            // (an unready node gets no traffic, and its idle documents unload).
            tokio::select! {
                next = queue.recv() => next,
                _ = tokio::time::sleep(link.backoff) => {
                    link.probe().await;
                    continue;
                }
            }
        } else {
            queue.recv().await
        };
        let Some(first) = next else { return };
        let mut pipe = redis::pipe();
        let mut count = 0;
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Outgoing::Frame(ch, payload) => {
                    pipe.publish(ch, &payload[..]).ignore();
                    count += 1;
                }
                Outgoing::Flush(done) => flushes.push(done),
            }
            if count < PUBLISH_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if count > 0 {
            link.send(pipe, count, &mut queue, &mut flushes).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The publishing connection and what it remembers between batches.
struct Publisher {
    client: redis::Client,
    shared: Arc<Shared>,
    ops: mpsc::UnboundedSender<Op>,
    conn: Option<redis::aio::MultiplexedConnection>,
    backoff: Duration,
    /// Publishes were dropped since the last success: the next one asks for a resync.
    lost: bool,
}

impl Publisher {
    /// Sends one pipeline of `count` publishes, connecting first if need be. If Redis is
    /// unreachable, what queued up meanwhile is dropped too (its flushes join `flushes`).
    async fn send(
        &mut self,
        pipe: redis::Pipeline,
        mut count: usize,
        queue: &mut mpsc::UnboundedReceiver<Outgoing>,
        flushes: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    ) {
        if self.conn.is_none() {
            match self.connect().await {
                Ok(()) => {}
                Err(e) => {
                    set_down(
                        &self.shared,
                        Side::Publisher,
                        format!("redis unreachable: {e}"),
                    );
                    // Memory stays bounded by one backoff's worth of traffic, and the
                    // resync repairs the loss.
                    while let Ok(out) = queue.try_recv() {
                        match out {
                            Outgoing::Frame(..) => count += 1,
                            Outgoing::Flush(done) => flushes.push(done),
                        }
                    }
                    metrics::counter!("tandem_cluster_dropped_total").increment(count as u64);
                    self.lost = true;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF.1);
                    return;
                }
            }
        }
        let c = self.conn.as_mut().expect("connected above");
        match pipe.query_async::<()>(c).await {
            Ok(()) => {
                metrics::counter!("tandem_cluster_published_total").increment(count as u64);
                self.recovered();
            }
            Err(e) => {
                // Dropped; the next publish or probe that goes through asks for the resync
                // that repairs it.
                set_down(
                    &self.shared,
                    Side::Publisher,
                    format!("redis publish failed: {e}"),
                );
                metrics::counter!("tandem_cluster_dropped_total").increment(count as u64);
                self.lost = true;
                self.conn = None;
            }
        }
    }

    /// Opens the publishing connection. It is named, so that an operator (or a test) can
    /// tell which connection of `CLIENT LIST` is which node's; a proxy may refuse that.
    async fn connect(&mut self) -> Result<(), redis::RedisError> {
        let mut c = self.client.get_multiplexed_async_connection().await?;
        let name = format!("tandem-pub-{}", self.shared.node);
        let named = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query_async::<()>(&mut c)
            .await;
        if let Err(e) = named {
            debug!(error = %e, "could not name the redis publishing connection");
        }
        self.conn = Some(c);
        Ok(())
    }

    /// While publishes are lost and nothing is queued: one PING, connecting first if need
    /// be. Success counts as a publish that went through.
    async fn probe(&mut self) {
        let ping = match self.conn.is_some() {
            true => Ok(()),
            false => self.connect().await,
        };
        let ping = match (ping, self.conn.as_mut()) {
            (Ok(()), Some(c)) => redis::cmd("PING").query_async::<()>(c).await,
            (Err(e), _) => Err(e),
            (Ok(()), None) => return,
        };
        match ping {
            Ok(()) => self.recovered(),
            Err(e) => {
                set_down(
                    &self.shared,
                    Side::Publisher,
                    format!("redis unreachable: {e}"),
                );
                self.conn = None;
                self.backoff = (self.backoff * 2).min(BACKOFF.1);
            }
        }
    }

    /// Something went through: if publishes were lost before, the link is up again on
    /// this side and every document resyncs to repair the loss.
    fn recovered(&mut self) {
        self.backoff = BACKOFF.0;
        if std::mem::take(&mut self.lost) {
            set_up(&self.shared, Side::Publisher);
            let _ = self.ops.send(Op::Resync);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(remote: Option<Remote>) -> Vec<u8> {
        match remote {
            Some(Remote::Frame { frame, .. }) => frame.to_vec(),
            Some(Remote::Reconnected) => b"resync".to_vec(),
            None => b"nothing".to_vec(),
        }
    }

    /// A document whose queue is full loses frames, not the link's time: it gets one resync
    /// as soon as it has room, ahead of the frames after it, and no second one while that
    /// one waits in its queue however many frames are dropped meanwhile.
    #[tokio::test]
    async fn a_full_queue_drops_frames_then_queues_one_resync() {
        let queued = Arc::new(AtomicBool::new(false));
        let (to, mut from) = mpsc::channel(2);
        let mut member = Member::new("doc".into(), to, queued.clone());
        let node = Uuid::new_v4();
        for i in 1..=4 {
            member.deliver(node, &[0, 2, i]);
        }
        assert!(member.behind);
        assert_eq!(frame(from.try_recv().ok()), [0, 2, 1]);
        for i in 5..=9 {
            member.deliver(node, &[0, 2, i]); // the free slot takes the resync
        }
        assert_eq!(frame(from.try_recv().ok()), [0, 2, 2]);
        assert_eq!(frame(from.try_recv().ok()), b"resync");
        assert_eq!(
            frame(from.try_recv().ok()),
            b"nothing",
            "one resync for it all"
        );
        queued.store(false, Ordering::Release); // the document took it (Membership::recv)
        member.catch_up(); // the subscriber's next tick: frames were dropped after that
        member.deliver(node, &[0, 2, 10]);
        assert!(!member.behind);
        assert_eq!(frame(from.try_recv().ok()), b"resync");
        assert_eq!(frame(from.try_recv().ok()), [0, 2, 10]);
    }

    /// A deletion is never dropped: no resync would bring it back.
    #[tokio::test]
    async fn a_deletion_waits_for_room() {
        let (to, mut from) = mpsc::channel(1);
        let mut member = Member::new("doc".into(), to, Arc::default());
        let node = Uuid::new_v4();
        member.deliver(node, &[0, 2, 1]);
        member.deliver(node, DELETED);
        assert_eq!(frame(from.recv().await), [0, 2, 1]);
        let next = tokio::time::timeout(Duration::from_secs(5), from.recv()).await;
        assert_eq!(frame(next.expect("the deletion arrives")), DELETED);
    }
}
