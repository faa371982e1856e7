//! The hub: fans committed messages out to live SSE subscribers. Publishing never blocks: a
//! subscriber whose bounded queue is full is dropped, and resumes from SQLite when it returns.
pub mod frame;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Silence longer than this gets a `: keepalive` comment, so proxies keep the stream open.
pub const KEEPALIVE: Duration = Duration::from_secs(20);

/// Commits a subscriber may fall behind by before it is cut off. Small on purpose: each
/// queue's slots are allocated up front, and thousands of watchers must stay cheap. Counted
/// in commits, not events, so that one commit of many messages (a batch publish, or a
/// thousand publishers' group commit) does not cut off a subscriber that keeps up.
pub const QUEUE_CAPACITY: usize = 256;

/// What one commit delivers to one subscriber: its events for the subscriber's channel (or
/// all of them, for the all-channels feed), in order. Shared by every subscriber of it. An
/// `Arc` of a `Vec`, not of a slice: a thin pointer, since every subscriber's queue allocates
/// its 256 places up front (a fat pointer took the peak RSS with 5,000 watchers from 43.2 to
/// 56.1 MiB, `BENCH_ONLY=fanout`).
pub type Delivery = Arc<Vec<Arc<Event>>>;
/// Bytes of events a stream may hold unsent (queued here or not yet taken by its socket)
/// while its client is not reading, before the broadcaster cuts it off. Events are shared,
/// never copied per stream, but a stalled stream keeps the ones it holds alive.
pub const BACKLOG_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of events a subscriber may have queued and unsent at all: past it, the hub drops the
/// subscriber at once, whatever its queue's free places (a commit can hold a thousand
/// messages). Bounds what a stream holds before the broadcaster adopts it (during its
/// replay), where `BACKLOG_BYTES` is not yet watched.
pub const MOST_QUEUED_BYTES: usize = 4 * BACKLOG_BYTES;

/// A committed message, with its SSE frame (`id:` and `data:` lines) encoded once for every
/// subscriber, already wrapped as one HTTP chunk.
#[derive(Debug)]
pub struct Event {
    pub id: String,
    pub ch: String,
    pub kind: String,
    /// The frame as one chunk: size line, frame, CRLF.
    chunk: Vec<u8>,
    /// Where the bare frame lies in `chunk`.
    frame: Range<usize>,
    /// The agents it is addressed to (see `NewMessage::recipients`); empty for everyone.
    pub recipients: Vec<String>,
}

impl Event {
    /// `json` is the message's envelope, as stored. The frame is written straight into its
    /// chunk, so a message is copied once here, whatever its size.
    pub fn new(id: String, ch: String, kind: String, json: &str) -> Event {
        let mut chunk = Vec::new();
        let frame = frame::encode_frame(&id, json, true, &mut chunk);
        Event {
            id,
            ch,
            kind,
            frame,
            chunk,
            recipients: Vec::new(),
        }
    }

    /// The bytes that carry this event on a stream: one chunk, or the bare frame (HTTP/1.0).
    pub fn wire(&self, chunked: bool) -> &[u8] {
        if chunked {
            &self.chunk
        } else {
            &self.chunk[self.frame.clone()]
        }
    }

    /// What the event counts in a subscriber's backlog.
    pub fn weight(&self) -> usize {
        self.chunk.len()
    }
}

/// What a client asked to watch.
#[derive(Debug, Clone)]
pub struct Filter {
    /// One channel, or all of them.
    pub ch: Option<String>,
    pub type_prefix: Option<String>,
    /// Replay everything after this id first.
    pub since: Option<String>,
}

impl Filter {
    pub fn wants(&self, event: &Event) -> bool {
        self.type_prefix
            .as_deref()
            .is_none_or(|prefix| event.kind.starts_with(prefix))
    }
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Registry>,
    /// Rung after every publish and on close, so each broadcaster thread wakes once per
    /// batch however many subscribers there are. Bounded(1): rings coalesce while it is busy.
    bells: Mutex<Vec<Sender<()>>>,
}

#[derive(Default)]
struct Registry {
    next_key: u64,
    /// Subscribers by channel; `None` is the all-channels feed.
    subscribers: HashMap<Option<String>, HashMap<u64, Feed>>,
    count: usize,
    closed: bool,
}

/// The hub's end of a subscription.
struct Feed {
    events: Sender<Delivery>,
    backlog: Arc<AtomicUsize>,
}

impl Feed {
    /// Queues `delivery`; `false` when the queue is full, the subscriber holds too many
    /// bytes already (`MOST_QUEUED_BYTES`; one that holds none takes any commit), or it is
    /// gone.
    fn offer(&self, delivery: &Delivery, weight: usize) -> bool {
        let queued = self.backlog.load(Ordering::Acquire);
        if queued > 0 && queued + weight > MOST_QUEUED_BYTES {
            return false;
        }
        // Counted before it is sent: once sent, the broadcaster may be `done` with it before
        // an add after the send, and the count would wrap below zero in between.
        self.backlog.fetch_add(weight, Ordering::AcqRel);
        match self.events.try_send(delivery.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.backlog.fetch_sub(weight, Ordering::AcqRel);
                false
            }
        }
    }
}

/// What a client is told when `Refusal::Full` turns its stream or long poll away.
pub const TOO_MANY_STREAMS: &str = "too many open streams; try again later";

/// Why the hub did not take a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// As many subscribers as allowed are subscribed.
    Full,
    /// The hub is closed: the server is shutting down.
    Closed,
}

/// A live feed. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    ch: Option<String>,
    key: u64,
    pub events: Receiver<Delivery>,
    /// Weight of the events delivered and not yet `done` with.
    backlog: Arc<AtomicUsize>,
}

impl Subscription {
    /// Weight of the events delivered to this subscriber and not yet sent or skipped.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Acquire)
    }

    /// The subscriber has sent `event` to its client, or skipped it: it no longer counts
    /// against the subscriber's backlog.
    pub fn done(&self, event: &Event) {
        self.backlog.fetch_sub(event.weight(), Ordering::AcqRel);
    }
}

impl Hub {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the maps half-updated, so carry on.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a subscriber for one channel, or every channel with `None`, unless `most`
    /// are subscribed already: counted and added under one lock, so concurrent subscribers
    /// cannot overshoot the cap between a look at the count and the subscription.
    pub fn subscribe(
        self: &Arc<Self>,
        ch: Option<String>,
        most: usize,
    ) -> Result<Subscription, Refusal> {
        let mut registry = self.registry();
        if registry.closed {
            return Err(Refusal::Closed);
        }
        if registry.count >= most {
            return Err(Refusal::Full);
        }
        let (tx, rx) = bounded(QUEUE_CAPACITY);
        let backlog = Arc::new(AtomicUsize::new(0));
        let key = registry.next_key;
        registry.next_key += 1;
        registry.count += 1;
        registry.subscribers.entry(ch.clone()).or_default().insert(
            key,
            Feed {
                events: tx,
                backlog: backlog.clone(),
            },
        );
        Ok(Subscription {
            hub: self.clone(),
            ch,
            key,
            events: rx,
            backlog,
        })
    }

    /// Delivers a commit's events, in order, to every matching subscriber without waiting:
    /// one queue entry per subscriber for the whole commit.
    pub fn publish(&self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        // Grouped before the lock: publishing must not hold up subscribing for long.
        let deliveries = deliveries(events);
        let mut registry = self.registry();
        let mut dropped = 0;
        for (key, delivery) in deliveries {
            let Some(subscribers) = registry.subscribers.get_mut(&key) else {
                continue;
            };
            let weight = delivery.iter().map(|event| event.weight()).sum();
            subscribers.retain(|_, feed| {
                let kept = feed.offer(&delivery, weight);
                dropped += usize::from(!kept);
                kept
            });
        }
        registry.count -= dropped;
        drop(registry);
        self.ring();
    }

    /// A new bell: rung after every publish and on close, to wake a thread that looks at
    /// subscribers' queues (a broadcaster thread).
    pub fn bell(&self) -> Receiver<()> {
        let (ring, bell) = bounded(1);
        self.lock_bells().push(ring);
        bell
    }

    fn ring(&self) {
        for bell in self.lock_bells().iter() {
            // Full means a ring is already pending, which is all a ring says.
            let _ = bell.try_send(());
        }
    }

    fn lock_bells(&self) -> MutexGuard<'_, Vec<Sender<()>>> {
        self.bells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscriber_count(&self) -> usize {
        self.registry().count
    }

    /// Ends every stream and refuses new ones (shutdown).
    pub fn close(&self) {
        let mut registry = self.registry();
        registry.closed = true;
        registry.subscribers.clear();
        registry.count = 0;
        drop(registry);
        self.ring();
    }

    fn unsubscribe(&self, ch: &Option<String>, key: u64) {
        let mut registry = self.registry();
        let removed = match registry.subscribers.get_mut(ch) {
            Some(subscribers) => {
                let removed = subscribers.remove(&key).is_some();
                if subscribers.is_empty() {
                    registry.subscribers.remove(ch);
                }
                removed
            }
            None => false,
        };
        if removed {
            registry.count -= 1;
        }
    }
}

/// A commit's events as the feeds take them: all of them for the all-channels feed (`None`),
/// and each channel's own, in order.
fn deliveries(events: &[Arc<Event>]) -> Vec<(Option<String>, Delivery)> {
    let all: Delivery = Arc::new(events.to_vec());
    if events.iter().all(|event| event.ch == events[0].ch) {
        // The usual commit: one channel, whose delivery is all of it.
        return vec![(Some(events[0].ch.clone()), all.clone()), (None, all)];
    }
    let mut by_channel: HashMap<&str, Vec<Arc<Event>>> = HashMap::new();
    for event in events {
        by_channel.entry(&event.ch).or_default().push(event.clone());
    }
    let own = by_channel
        .into_iter()
        .map(|(ch, own)| (Some(ch.to_string()), Arc::new(own)));
    own.chain([(None, all)]).collect()
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.ch, self.key);
    }
}

#[cfg(test)]
mod tests;
