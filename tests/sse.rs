//! Live streams: headers, live delivery, resume without gap or duplicate, filters,
//! keepalive, HEAD, HTTP/1.0, shutdown.
mod common;

use common::{Server, Sse, request, wait_for};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Generous: a busy 2-core CI machine; a quiet one needs milliseconds.
const WAIT: Duration = Duration::from_secs(10);

fn wait_subscribers(s: &Server, n: u64) {
    wait_for(WAIT, "subscribers", || {
        (s.get("/status").json()["subscribers"] == n).then_some(())
    });
}

/// A stream of channel `ch` and the all-channels stream, each past its `: open`.
fn channel_and_all(s: &Server, ch: &str) -> (Sse, Sse) {
    let mut channel = s.sse(&format!("/ch/{ch}"), &[]);
    let mut all = s.sse("/", &[]);
    channel.next(WAIT).unwrap();
    all.next(WAIT).unwrap();
    (channel, all)
}

#[test]
fn stream_headers_and_open_comment() {
    let s = Server::start();
    for path in ["/", "/ch/general"] {
        let mut sse = s.sse(path, &[]);
        assert_eq!(sse.status, 200);
        assert_eq!(sse.header("content-type"), Some("text/event-stream"));
        assert_eq!(sse.header("cache-control"), Some("no-cache"));
        assert_eq!(sse.header("x-accel-buffering"), Some("no"));
        // Opt-in since the browser rules (tests/browser_rules.rs): no CORS by default.
        assert_eq!(sse.header("access-control-allow-origin"), None);
        assert_eq!(sse.header("x-content-type-options"), Some("nosniff"));
        let first = sse.next(WAIT).expect("first bytes");
        assert_eq!(first.comment.as_deref(), Some("open"));
    }
    for path in ["/", "/ch/general"] {
        let head = request(s.port, "HEAD", path, &[], b"");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert_eq!(head.header("access-control-allow-origin"), None);
        assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(s.get("/ch/bad%20name").status, 400);
    assert_eq!(s.get("/ch/x?since=bogus").status, 400);
}

/// A batch of 1,000 messages (one commit) reaches a channel's stream and the all-channels
/// stream whole and in order: a subscriber that keeps up is never cut off because one commit
/// holds more messages than its queue has places. A long poll waiting for it answers all of
/// it (that part reads the database, so it holds either way).
#[test]
fn a_batch_of_a_thousand_reaches_every_live_subscriber_whole() {
    let s = Server::start();
    let (mut channel, mut all) = channel_and_all(&s, "bulk");
    let start = s.publish("bulk", "msg.start", json!({}));
    assert_eq!(channel.next_message(WAIT).unwrap().0, start);
    assert_eq!(all.next_message(WAIT).unwrap().0, start);
    let port = s.port;
    let poll = std::thread::spawn(move || {
        let path = format!("/ch/bulk/history?since={start}&wait=30&n=1000");
        request(port, "GET", &path, &[], b"")
    });
    wait_for(WAIT, "the long poll to wait", || {
        (s.status()["waiting"] == 1).then_some(())
    });
    let batch: Vec<Value> = (0..1000)
        .map(|n| json!({"from": "bulk.loader", "type": "row", "body": {"n": n}}))
        .collect();
    let r = s.post_json("/ch/bulk", Value::Array(batch));
    assert_eq!(r.status, 201, "{}", r.text());
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for stream in [&mut channel, &mut all] {
        for (n, id) in ids.iter().enumerate() {
            let (got, data) = stream
                .next_message(WAIT)
                .expect("every event, no end of stream");
            assert_eq!((&got, &data["body"]["n"]), (id, &json!(n)));
        }
    }
    let polled = poll.join().unwrap();
    assert_eq!(polled.status, 200);
    let polled: Vec<String> = polled
        .text()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(polled, ids);
    // Still subscribed: the next message arrives on the same streams.
    let after = s.publish("bulk", "msg.after", json!({}));
    assert_eq!(channel.next_message(WAIT).unwrap().0, after);
    assert_eq!(all.next_message(WAIT).unwrap().0, after);
    s.assert_no_panic();
}

#[test]
fn live_messages_arrive_at_once_and_match_history_bytes() {
    let s = Server::start();
    let (mut channel, mut all) = channel_and_all(&s, "live");
    wait_subscribers(&s, 2);
    for i in 0..20 {
        let sent = Instant::now();
        let id = s.publish("live", "msg.tick", json!({"i": i}));
        let (got, data) = channel.next_message(WAIT).expect("live event");
        let latency = sent.elapsed();
        assert_eq!(got, id);
        assert_eq!(data["body"]["i"], i);
        // Latency figures belong to the benchmark; this only catches a message held back
        // (for a keepalive tick or a batch), which would take seconds.
        assert!(latency < Duration::from_secs(2), "took {latency:?}");
        assert_eq!(all.next_message(WAIT).unwrap().0, id);
    }
    // Byte-identical: read the raw data line and the raw history line.
    let id = s.publish("live", "msg.exact", json!({"unicode":"é ✓","n":1.5}));
    let raw = loop {
        let event = channel.next(WAIT).unwrap();
        if event.id.as_deref() == Some(id.as_str()) {
            break event.data.unwrap();
        }
    };
    let history = s.get("/ch/live/history?n=1").text();
    assert_eq!(history, format!("{raw}\n"));
}

#[test]
fn channel_streams_see_only_their_channel_and_type_filter_applies() {
    let s = Server::start();
    let mut a = s.sse("/ch/a", &[]);
    let mut tasks = s.sse("/?type=task.", &[]);
    a.next(WAIT).unwrap();
    tasks.next(WAIT).unwrap();
    wait_subscribers(&s, 2);
    s.publish("b", "msg.other", json!({}));
    let mine = s.publish("a", "msg.mine", json!({}));
    let task = s.post_json("/tasks", json!({"from":"x","title":"t"}));
    assert_eq!(task.status, 201);
    assert_eq!(a.next_message(WAIT).unwrap().0, mine);
    let (_, created) = tasks.next_message(WAIT).unwrap();
    assert_eq!(created["type"], "task.created");
    // Neither b's message nor the task announcement reached /ch/a: the next thing it
    // sees is the next message on a.
    let next = s.publish("a", "msg.next", json!({}));
    assert_eq!(a.next_message(WAIT).unwrap().0, next);
    // And the type filter let through nothing but task.* in between.
    s.publish("c", "msg.not-a-task", json!({}));
    let task2 = s.post_json("/tasks", json!({"from":"x","title":"t2"}));
    assert_eq!(task2.status, 201);
    let (_, created2) = tasks.next_message(WAIT).unwrap();
    assert_eq!(created2["body"]["task-id"], task2.json()["id"]);
}

/// Resume by Last-Event-ID and by ?since= while publishers keep going: the union of what the
/// first and second connection saw is every message exactly once, in order.
#[test]
fn resume_has_no_gap_and_no_duplicate_under_concurrent_publishing() {
    let s = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.port;
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let body = json!({"from":format!("p{p}"),"type":"load","body":{"n":n}});
                    let r = request(port, "POST", "/ch/load", &[], body.to_string().as_bytes());
                    assert_eq!(r.status, 201);
                    ids.push(r.json()["id"].as_str().unwrap().to_string());
                    n += 1;
                }
                ids
            })
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for round in 0..6 {
        let headers_owned;
        let (path, headers): (String, &[(&str, &str)]) = match (seen.last(), round % 2) {
            (None, _) => ("/ch/load".to_string(), &[]),
            (Some(last), 0) => {
                headers_owned = [("Last-Event-ID", last.as_str())];
                ("/ch/load".to_string(), &headers_owned)
            }
            (Some(last), _) => (format!("/ch/load?since={last}"), &[]),
        };
        let mut sse = s.sse(&path, headers);
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            if let Some((id, _)) = sse.next_message(Duration::from_millis(200)) {
                seen.push(id);
            }
        }
        drop(sse); // disconnect mid-stream, then resume
    }
    stop.store(true, Ordering::SeqCst);
    let mut published: Vec<String> = publishers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    published.sort();
    // Catch up on the tail with one more resume, up to the last id published (a read
    // that waits for it, not a silence that is taken to mean the end).
    let last_published = published.last().unwrap().clone();
    if seen.last() != Some(&last_published) {
        let mut sse = s.sse("/ch/load", &[("Last-Event-ID", seen.last().unwrap())]);
        while seen.last() != Some(&last_published) {
            let (id, _) = sse.next_message(WAIT).expect("the tail of the publishing");
            seen.push(id);
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "in id order");
    let first = published.iter().position(|id| *id == seen[0]).unwrap();
    assert_eq!(seen, published[first..].to_vec(), "no gaps");
    assert!(seen.len() > 20, "publishers were running: {}", seen.len());
}

#[test]
fn since_replays_more_than_a_page_then_goes_live() {
    let s = Server::start();
    let start = s.publish("big", "t", json!(0));
    let ids: Vec<String> = (1..=2500)
        .map(|i| s.publish("big", "t", json!(i)))
        .collect();
    let mut sse = s.sse(&format!("/ch/big?since={start}&type=t"), &[]);
    for expected in &ids {
        assert_eq!(&sse.next_message(WAIT).unwrap().0, expected);
    }
    let live = s.publish("big", "t", json!("live"));
    assert_eq!(sse.next_message(WAIT).unwrap().0, live);
}

#[test]
fn keepalive_comment_after_twenty_seconds_of_silence() {
    let s = Server::start();
    let mut sse = s.sse("/ch/quiet", &[]);
    assert_eq!(sse.next(WAIT).unwrap().comment.as_deref(), Some("open"));
    let started = Instant::now();
    let event = sse.next(Duration::from_secs(40)).expect("keepalive");
    assert_eq!(event.comment.as_deref(), Some("keepalive"));
    assert!(started.elapsed() >= Duration::from_secs(19));
}

#[test]
fn http_1_0_clients_get_an_unchunked_stream() {
    let s = Server::start();
    let mut stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .write_all(b"GET /ch/old HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    wait_subscribers(&s, 1);
    let id = s.publish("old", "t", json!({}));
    let mut received = String::new();
    let mut buf = [0u8; 4096];
    while !received.contains(&id) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early: {received}");
        received.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(received.starts_with("HTTP/1.0 200 OK\r\n"), "{received}");
    assert!(!received.contains("chunked"));
    assert!(received.contains("\r\n\r\n: open\n\n"));
}

#[test]
fn shutdown_ends_streams_and_subscribers_are_counted() {
    let mut s = Server::start();
    let mut streams: Vec<_> = (0..5).map(|_| s.sse("/", &[])).collect();
    for sse in &mut streams {
        sse.next(WAIT).unwrap();
    }
    wait_subscribers(&s, 5);
    // A client that closes its connection is noticed within seconds, with nothing
    // published: no write to it is needed to find out.
    streams.truncate(2);
    wait_subscribers(&s, 2);
    // The ones still open carry on.
    let id = s.publish("any", "t", json!({}));
    for sse in &mut streams {
        let (got, _) = sse.next_message(WAIT).expect("a live message");
        assert_eq!(got, id);
    }
    let started = Instant::now();
    let status = s.stop();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    for sse in &mut streams {
        assert!(sse.ends_within(WAIT), "stream ended");
    }
}

#[test]
fn a_reader_that_keeps_up_gets_a_burst_of_large_events_whole() {
    let s = Arc::new(Server::start());
    let mut sse = s.sse("/ch/big", &[]);
    sse.next(WAIT).unwrap();
    wait_subscribers(&s, 1);
    // More than a stream's backlog budget (4 MiB) in all, published as fast as the server
    // takes it, while this client reads: none of it may be cut off.
    let text = "x".repeat(600 * 1024);
    let publisher = {
        let s = s.clone();
        std::thread::spawn(move || {
            (0..12)
                .map(|i| s.publish("big", "blob", json!({"i": i, "text": text})))
                .collect::<Vec<_>>()
        })
    };
    let mut got = Vec::new();
    for _ in 0..12 {
        let (id, data) = sse.next_message(WAIT).expect("a large event");
        assert_eq!(
            data["body"]["text"].as_str().map(str::len),
            Some(600 * 1024)
        );
        got.push(id);
    }
    assert_eq!(got, publisher.join().unwrap(), "all of them, in order");
    assert_eq!(s.get("/status").json()["subscribers"], 1, "still open");
}

/// The stream cap is counted and taken in one step: of many streams opened at once, no more
/// than the cap are open, and every one turned away is told so (503).
#[test]
fn the_stream_cap_holds_when_many_streams_open_at_once() {
    // An fd limit of 300 caps streams at 44 (the limit less 256 kept for everything else).
    let s = Server::start_with_options(common::Options {
        fd_limit: Some(300),
        ..Default::default()
    });
    const CAP: usize = 44;
    const TRIES: usize = 120;
    let barrier = Arc::new(std::sync::Barrier::new(TRIES));
    let tries: Vec<_> = (0..TRIES)
        .map(|n| {
            let (port, barrier) = (s.port, barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let path = if n % 2 == 0 { "/" } else { "/ch/capped" };
                common::Sse::try_connect(port, path, &[]).expect("an answer")
            })
        })
        .collect();
    let answers: Vec<common::Sse> = tries.into_iter().map(|t| t.join().unwrap()).collect();
    let open = answers.iter().filter(|a| a.status == 200).count();
    let refused = answers.iter().filter(|a| a.status == 503).count();
    assert_eq!(open + refused, TRIES, "every try is a stream or a 503");
    assert!(open <= CAP, "{open} streams open, over the cap of {CAP}");
    // No stream closes before this count, so once one is turned away the cap is reached.
    assert!(refused > 0, "{TRIES} tries, none turned away");
    assert_eq!(open, CAP, "turned away below the cap");
    assert_eq!(
        s.status()["subscribers"],
        open,
        "the hub counts what is open"
    );
    // Room again once streams close.
    drop(answers);
    wait_subscribers(&s, 0);
    common::Sse::open(s.port, "/ch/capped", &[]).expect("a stream, with room again");
}
