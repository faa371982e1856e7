//! The hub: fans committed messages out to live SSE subscribers. Publishing never blocks: a
//! subscriber whose bounded queue is full is dropped, and resumes from SQLite when it returns.
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Events a subscriber may fall behind by before it is cut off. Small on purpose: each
/// queue's slots are allocated up front, and thousands of watchers must stay cheap.
pub const QUEUE_CAPACITY: usize = 256;

/// A committed message, with its SSE frame (`id:` and `data:` lines) encoded once for every
/// subscriber.
#[derive(Debug)]
pub struct Event {
    pub id: String,
    pub ch: String,
    pub kind: String,
    pub frame: Vec<u8>,
    /// The agents it is addressed to (see `NewMessage::recipients`); empty for everyone.
    pub recipients: Vec<String>,
}

impl Event {
    /// `json` is the message's envelope, as stored.
    pub fn new(id: String, ch: String, kind: String, json: &str) -> Event {
        let frame = crate::sse::frame(&id, json);
        Event {
            id,
            ch,
            kind,
            frame,
            recipients: Vec::new(),
        }
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
    subscribers: HashMap<Option<String>, HashMap<u64, Sender<Arc<Event>>>>,
    count: usize,
    closed: bool,
}

/// A live feed. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    ch: Option<String>,
    key: u64,
    pub events: Receiver<Arc<Event>>,
}

impl Hub {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the maps half-updated, so carry on.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a subscriber for one channel, or every channel with `None`.
    /// `None` when the hub is closed (shutting down).
    pub fn subscribe(self: &Arc<Self>, ch: Option<String>) -> Option<Subscription> {
        let (tx, rx) = bounded(QUEUE_CAPACITY);
        let mut registry = self.registry();
        if registry.closed {
            return None;
        }
        let key = registry.next_key;
        registry.next_key += 1;
        registry.count += 1;
        registry
            .subscribers
            .entry(ch.clone())
            .or_default()
            .insert(key, tx);
        Some(Subscription {
            hub: self.clone(),
            ch,
            key,
            events: rx,
        })
    }

    /// Delivers committed events, in order, to every matching subscriber without waiting.
    pub fn publish(&self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        let mut registry = self.registry();
        let mut dropped = 0;
        for event in events {
            for key in [None, Some(event.ch.clone())] {
                if let Some(subscribers) = registry.subscribers.get_mut(&key) {
                    subscribers.retain(|_, tx| match tx.try_send(event.clone()) {
                        Ok(()) => true,
                        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                            dropped += 1;
                            false
                        }
                    });
                }
            }
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

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.ch, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, ch: &str) -> Arc<Event> {
        Arc::new(Event::new(id.into(), ch.into(), "t".into(), "{}"))
    }

    #[test]
    fn delivers_to_channel_and_all_feeds_only() {
        let hub = Arc::new(Hub::default());
        let bells = [hub.bell(), hub.bell()];
        let general = hub.subscribe(Some("general".into())).unwrap();
        let all = hub.subscribe(None).unwrap();
        let other = hub.subscribe(Some("other".into())).unwrap();
        hub.publish(&[event("1", "general")]);
        assert_eq!(general.events.try_recv().unwrap().id, "1");
        assert_eq!(all.events.try_recv().unwrap().id, "1");
        assert!(other.events.try_recv().is_err());
        for bell in &bells {
            assert!(bell.try_recv().is_ok(), "a publish rings every bell");
        }
        hub.publish(&[event("2", "general"), event("3", "general")]);
        hub.publish(&[event("4", "general")]);
        assert!(bells[0].try_recv().is_ok());
        assert!(bells[0].try_recv().is_err(), "rings coalesce until heard");
        assert_eq!(hub.subscriber_count(), 3);
        drop(other);
        assert_eq!(hub.subscriber_count(), 2);
    }

    #[test]
    fn a_full_subscriber_is_dropped_and_others_keep_receiving() {
        let hub = Arc::new(Hub::default());
        let slow = hub.subscribe(None).unwrap();
        let fast = hub.subscribe(None).unwrap();
        for i in 0..=QUEUE_CAPACITY {
            hub.publish(&[event(&i.to_string(), "c")]);
            fast.events.try_recv().unwrap();
        }
        assert_eq!(hub.subscriber_count(), 1);
        // The slow one gets what was queued, then sees its stream end.
        assert_eq!(slow.events.iter().count(), QUEUE_CAPACITY);
        drop(slow);
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[test]
    fn close_ends_streams_and_refuses_new_ones() {
        let hub = Arc::new(Hub::default());
        let sub = hub.subscribe(None).unwrap();
        let bell = hub.bell();
        hub.close();
        assert!(sub.events.recv().is_err());
        assert!(bell.try_recv().is_ok(), "close wakes the broadcaster");
        assert!(hub.subscribe(None).is_none());
        assert_eq!(hub.subscriber_count(), 0);
    }
}
