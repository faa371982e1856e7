//! The broadcaster's streams on real sockets: a connected pair from a local listener, the
//! server's end handed to `Live` as `sse::open` hands it over.
use super::*;
use crate::hub::frame::KEEPALIVE_CHUNK;
use std::net::TcpListener;

/// A connected pair: (the server's end, the client's end).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

fn event(id: &str, json: &str) -> Arc<Event> {
    Arc::new(Event::new(id.into(), "c".into(), "t.x".into(), json))
}

fn live(hub: &Arc<Hub>, chunked: bool, last_sent: Option<&str>) -> (Live, TcpStream) {
    let (server, client) = pair();
    let filter = Filter {
        ch: None,
        type_prefix: None,
        since: None,
    };
    let subscription = hub.subscribe(None, usize::MAX).unwrap();
    let last_sent = last_sent.map(String::from);
    let live = Live::new(server, chunked, subscription, filter, last_sent).unwrap();
    (live, client)
}

/// Reads from `client` until `want` bytes have come (or the connection ends).
fn read_bytes(client: &mut TcpStream, want: usize) -> Vec<u8> {
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < want {
        match client.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

fn wires(events: &[Arc<Event>], chunked: bool) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| e.wire(chunked).to_vec())
        .collect()
}

#[test]
fn one_pump_drains_the_whole_queue_not_one_send_worth() {
    let hub = Arc::new(Hub::default());
    let (mut live, mut client) = live(&hub, false, None);
    let events: Vec<_> = (0..3 * PIECES_PER_SEND)
        .map(|i| event(&format!("{i:04}"), "{}"))
        .collect();
    // A commit each: the queue holds many entries, not one that happens to hold them all.
    for event in &events {
        hub.publish(std::slice::from_ref(event));
    }
    assert!(live.pump(Instant::now()));
    let expected = wires(&events, false);
    assert_eq!(read_bytes(&mut client, expected.len()), expected);
    assert_eq!(live.subscription.backlog(), 0, "every event is done with");
}

#[test]
fn events_replay_sent_and_events_the_filter_refuses_are_skipped() {
    let hub = Arc::new(Hub::default());
    let (mut live, mut client) = live(&hub, true, Some("02"));
    live.filter.type_prefix = Some("t.".into());
    let other = Arc::new(Event::new("04".into(), "c".into(), "u".into(), "{}"));
    hub.publish(&[
        event("01", "{}"),
        event("02", "{}"),
        event("03", "{}"),
        other,
    ]);
    hub.publish(&[event("05", "{}")]);
    assert!(live.pump(Instant::now()));
    let expected = wires(&[event("03", "{}"), event("05", "{}")], true);
    assert_eq!(read_bytes(&mut client, expected.len()), expected);
    assert_eq!(
        live.subscription.backlog(),
        0,
        "skipped events are done with too"
    );
}

#[test]
fn a_full_socket_keeps_events_until_the_client_reads_then_sends_them_all() {
    let hub = Arc::new(Hub::default());
    let (mut live, mut client) = live(&hub, false, None);
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(256 * 1024));
    let events: Vec<_> = (0..64).map(|i| event(&format!("{i:02}"), &big)).collect();
    hub.publish(&events);
    // Always the same `now`: over budget, but never for long (this test is not about that).
    let now = Instant::now();
    assert!(live.pump(now), "a full socket waits for its client");
    assert!(live.has_unsent(), "more than the socket buffers is waiting");
    let expected = wires(&events, false);
    let reader = thread::spawn(move || read_bytes(&mut client, expected.len()) == expected);
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.has_unsent() || !live.subscription.events.is_empty() {
        assert!(Instant::now() < deadline, "the stream never drained");
        assert!(live.pump(now));
        thread::yield_now();
    }
    assert!(
        reader.join().unwrap(),
        "the client got every byte, in order"
    );
}

#[test]
fn a_stalled_client_over_budget_is_cut_off_after_the_grace() {
    let hub = Arc::new(Hub::default());
    let (mut live, _client) = live(&hub, false, None);
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(1024 * 1024));
    let events: Vec<_> = (0..16).map(|i| event(&format!("{i:02}"), &big)).collect();
    hub.publish(&events);
    let now = Instant::now();
    assert!(live.pump(now), "over budget, but within the grace");
    assert!(
        !live.pump(now + OVER_BUDGET_LIMIT),
        "over budget for too long"
    );
}

#[test]
fn a_quiet_stream_gets_a_keepalive() {
    let hub = Arc::new(Hub::default());
    let (mut live, mut client) = live(&hub, true, None);
    assert!(live.pump(Instant::now() + KEEPALIVE));
    let got = read_bytes(&mut client, KEEPALIVE_CHUNK.len());
    assert_eq!(got, KEEPALIVE_CHUNK);
}

#[test]
fn a_closed_hub_ends_the_chunked_body_after_what_was_queued() {
    let hub = Arc::new(Hub::default());
    let (mut live, mut client) = live(&hub, true, None);
    hub.publish(&[event("01", "{}")]);
    hub.close();
    assert!(!live.pump(Instant::now()));
    drop(live);
    let expected = [event("01", "{}").wire(true), LAST_CHUNK].concat();
    assert_eq!(read_bytes(&mut client, usize::MAX), expected);
}

#[test]
fn a_client_that_closes_is_noticed_and_one_that_talks_is_not_taken_for_gone() {
    let hub = Arc::new(Hub::default());
    let (live, mut client) = live(&hub, true, None);
    client.write_all(b"stray bytes").unwrap();
    assert!(!live.peer_has_closed());
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !live.peer_has_closed() {
        assert!(Instant::now() < deadline, "the close was never seen");
        thread::yield_now();
    }
}

#[test]
fn a_broadcaster_delivers_to_an_adopted_stream_and_ends_it_on_stop() {
    let hub = Arc::new(Hub::default());
    let broadcaster = Broadcaster::start(&hub).unwrap();
    let (live, mut client) = live(&hub, true, None);
    broadcaster.adopt(live);
    let events = [event("01", "{\"a\":1}"), event("02", "{\"b\":2}")];
    hub.publish(&events);
    let expected = wires(&events, true);
    assert_eq!(read_bytes(&mut client, expected.len()), expected);
    broadcaster.stop();
    assert_eq!(read_bytes(&mut client, usize::MAX), LAST_CHUNK);
}

#[test]
fn a_client_that_keeps_sending_does_not_hold_the_close_check() {
    let hub = Arc::new(Hub::default());
    let (live, mut client) = live(&hub, true, None);
    // More than one check drains: the check returns with the rest still waiting.
    let sent = DRAIN_PER_CHECK * 4096 * 2;
    client.write_all(&vec![b'x'; sent]).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert!(!live.peer_has_closed());
    let mut rest = [0u8; 1];
    assert_eq!((&live.socket).read(&mut rest).unwrap(), 1);
}
