//! The hub's fan-out, queues, backlog and cap, without sockets.
use super::*;

fn event(id: &str, ch: &str) -> Arc<Event> {
    Arc::new(Event::new(id.into(), ch.into(), "t".into(), "{}"))
}

#[test]
fn delivers_to_channel_and_all_feeds_only() {
    let hub = Arc::new(Hub::default());
    let bells = [hub.bell(), hub.bell()];
    let general = hub.subscribe(Some("general".into()), usize::MAX).unwrap();
    let all = hub.subscribe(None, usize::MAX).unwrap();
    let other = hub.subscribe(Some("other".into()), usize::MAX).unwrap();
    hub.publish(&[event("1", "general")]);
    assert_eq!(ids(&general.events.try_recv().unwrap()), ["1"]);
    assert_eq!(ids(&all.events.try_recv().unwrap()), ["1"]);
    assert!(other.events.try_recv().is_err());
    for bell in &bells {
        assert!(bell.try_recv().is_ok(), "a publish rings every bell");
    }
    hub.publish(&[event("2", "general"), event("3", "general")]);
    hub.publish(&[event("4", "general")]);
    assert_eq!(ids(&general.events.try_recv().unwrap()), ["2", "3"]);
    assert!(bells[0].try_recv().is_ok());
    assert!(bells[0].try_recv().is_err(), "rings coalesce until heard");
    assert_eq!(hub.subscriber_count(), 3);
    drop(other);
    assert_eq!(hub.subscriber_count(), 2);
}

#[test]
fn a_full_subscriber_is_dropped_and_others_keep_receiving() {
    let hub = Arc::new(Hub::default());
    let slow = hub.subscribe(None, usize::MAX).unwrap();
    let fast = hub.subscribe(None, usize::MAX).unwrap();
    for i in 0..=QUEUE_CAPACITY {
        hub.publish(&[event(&i.to_string(), "c")]);
        fast.events.try_recv().unwrap();
    }
    assert_eq!(hub.subscriber_count(), 1);
    // The slow one gets what was queued, then sees its stream end; the event it had no
    // room for is not in its backlog.
    let queued: Vec<Arc<Event>> = slow.events.iter().flat_map(|d| d.to_vec()).collect();
    assert_eq!(queued.len(), QUEUE_CAPACITY);
    let weight: usize = queued.iter().map(|event| event.weight()).sum();
    assert_eq!(slow.backlog(), weight);
    drop(slow);
    assert_eq!(hub.subscriber_count(), 1);
}

#[test]
fn a_backlog_counts_delivered_events_until_done() {
    let hub = Arc::new(Hub::default());
    let sub = hub.subscribe(Some("c".into()), usize::MAX).unwrap();
    let other = hub.subscribe(Some("d".into()), usize::MAX).unwrap();
    let one = event("1", "c");
    hub.publish(&[one.clone(), event("2", "c"), event("3", "d")]);
    assert_eq!(sub.backlog(), 2 * one.weight());
    assert_eq!(other.backlog(), one.weight());
    let delivered = sub.events.try_recv().unwrap();
    assert_eq!(ids(&delivered), ["1", "2"]);
    assert_eq!(ids(&other.events.try_recv().unwrap()), ["3"]);
    sub.done(&delivered[0]);
    assert_eq!(sub.backlog(), one.weight());
}

/// One commit of many events (a batch publish, a large group commit) is one queue entry
/// per subscriber: a subscriber that keeps up is not cut off by it, however many it holds.
#[test]
fn a_commit_of_many_events_is_one_queue_entry() {
    let hub = Arc::new(Hub::default());
    let all = hub.subscribe(None, usize::MAX).unwrap();
    let c = hub.subscribe(Some("c".into()), usize::MAX).unwrap();
    let events: Vec<Arc<Event>> = (0..QUEUE_CAPACITY * 4)
        .map(|i| event(&format!("{i:05}"), ["c", "d"][i % 2]))
        .collect();
    hub.publish(&events);
    assert_eq!(hub.subscriber_count(), 2);
    assert_eq!(all.events.try_recv().unwrap().len(), QUEUE_CAPACITY * 4);
    let own = c.events.try_recv().unwrap();
    assert_eq!(own.len(), QUEUE_CAPACITY * 2);
    assert!(own.iter().all(|e| e.ch == "c") && own.windows(2).all(|w| w[0].id < w[1].id));
}

/// A subscriber holding more than `MOST_QUEUED_BYTES` unsent is dropped at the next commit,
/// whatever its queue's free places; one holding nothing takes any commit, however large.
#[test]
fn a_subscriber_holding_too_many_bytes_is_dropped_but_an_idle_one_takes_any_commit() {
    let hub = Arc::new(Hub::default());
    let json = format!("{{\"text\":\"{}\"}}", "x".repeat(1024 * 1024));
    let big = |i: usize| Arc::new(Event::new(format!("{i:03}"), "c".into(), "t".into(), &json));
    let reader = hub.subscribe(None, usize::MAX).unwrap();
    let stalled = hub.subscribe(None, usize::MAX).unwrap();
    let huge: Vec<Arc<Event>> = (0..MOST_QUEUED_BYTES / (1024 * 1024) + 2)
        .map(big)
        .collect();
    hub.publish(&huge);
    assert_eq!(
        hub.subscriber_count(),
        2,
        "a commit over the limit, to idle subscribers"
    );
    for event in reader.events.try_recv().unwrap().iter() {
        reader.done(event);
    }
    hub.publish(&[big(900)]);
    assert_eq!(
        hub.subscriber_count(),
        1,
        "the one holding the first commit is dropped"
    );
    assert_eq!(ids(&reader.events.try_recv().unwrap()), ["900"]);
    assert_eq!(
        stalled.events.iter().count(),
        1,
        "what it held, then the end"
    );
}

fn ids(delivery: &Delivery) -> Vec<&str> {
    delivery.iter().map(|event| event.id.as_str()).collect()
}

#[test]
fn an_event_carries_its_frame_chunked_or_bare() {
    let event = Event::new("01A".into(), "c".into(), "t".into(), "{}");
    assert_eq!(event.wire(false), b"id: 01A\ndata: {}\n\n");
    assert_eq!(event.wire(true), b"12\r\nid: 01A\ndata: {}\n\n\r\n");
    // As `frame::encode` would wrap `frame::frame`, for a size line of several digits too.
    let json = format!("{{\"text\":\"{}\"}}", "x".repeat(70_000));
    let event = Event::new("01B".into(), "c".into(), "t".into(), &json);
    let frame = frame::frame("01B", &json);
    let mut chunk = Vec::new();
    frame::encode(&frame, true, &mut chunk);
    assert_eq!(event.wire(false), frame.as_slice());
    assert_eq!(event.wire(true), chunk.as_slice());
    assert_eq!(event.weight(), chunk.len());
}

#[test]
fn no_more_than_most_subscribe_and_a_dropped_one_frees_its_place() {
    let hub = Arc::new(Hub::default());
    let first = hub.subscribe(None, 2).unwrap();
    let _second = hub.subscribe(Some("c".into()), 2).unwrap();
    assert_eq!(hub.subscribe(None, 2).err(), Some(Refusal::Full));
    drop(first);
    assert!(hub.subscribe(None, 2).is_ok());
}

#[test]
fn close_ends_streams_and_refuses_new_ones() {
    let hub = Arc::new(Hub::default());
    let sub = hub.subscribe(None, usize::MAX).unwrap();
    let bell = hub.bell();
    hub.close();
    assert!(sub.events.recv().is_err());
    assert!(bell.try_recv().is_ok(), "close wakes the broadcaster");
    assert_eq!(hub.subscribe(None, usize::MAX).err(), Some(Refusal::Closed));
    assert_eq!(hub.subscriber_count(), 0);
}
