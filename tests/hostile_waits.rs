//! Requests that wait (long polls, claim-next with `wait_s`) hold a thread and a stream's
//! place. A client that asks and hangs up at once must not keep them for the wait's minute
//! (10,000 such long polls sent in 1.4 s locked every stream out; 16,000 claim waits ran the
//! server out of threads and it aborted), and claim waits share the streams' cap.
mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// Sends a request that waits a minute, then hangs up at once.
fn ask_and_hang_up(port: u16, request: &[u8]) {
    let mut stream = connect(port).unwrap();
    stream.write_all(request).unwrap();
}

fn claim_wait(from: &str) -> Vec<u8> {
    let body = json!({"from": from, "ch": "nothing", "wait_s": 60}).to_string();
    format!(
        "POST /tasks/claim HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn waits_whose_clients_hung_up_are_let_go_within_seconds() {
    let server = Server::start();
    let poll = b"GET /ch/none/history?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n";
    let inbox = b"GET /inbox/someone?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n";
    for n in 0..100 {
        ask_and_hang_up(server.port, poll);
        ask_and_hang_up(server.port, inbox);
        ask_and_hang_up(server.port, &claim_wait(&format!("w{n}")));
    }
    // Each waiter looks at its client every second; the minute's wait is not served out.
    let started = Instant::now();
    server.await_status("waiting", 0, 20 * SECOND);
    server.await_status("claims-waiting", 0, 20 * SECOND);
    server.await_status("subscribers", 0, 20 * SECOND);
    assert!(started.elapsed() < 30 * SECOND);
    // Twenty claims wait, their clients hang up, and a task comes at once: the commit wakes
    // them, and each looks at its client before it claims. No task goes to a client that
    // has gone (before, one of them took it).
    let held: Vec<_> = (0..20)
        .map(|n| {
            let mut stream = connect(server.port).unwrap();
            stream.write_all(&claim_wait(&format!("gone{n}"))).unwrap();
            stream
        })
        .collect();
    server.await_status("claims-waiting", 20, 20 * SECOND);
    drop(held);
    let id = server.create_task(json!({"from": "boss", "title": "t", "ch": "nothing"}));
    server.await_status("claims-waiting", 0, 20 * SECOND);
    assert_eq!(server.task(&id)["status"], "open");
    // A client still there keeps its wait, and gets the task when it comes.
    let mut waiting = connect(server.port).unwrap();
    waiting.write_all(&claim_wait("patient")).unwrap();
    let claimed = read_response(&mut std::io::BufReader::new(&mut waiting), false);
    assert_eq!(claimed.status, 200, "{}", claimed.text());
    assert_eq!(claimed.json()["id"], id.as_str());
    server.assert_no_panic();
}

#[test]
fn claim_waits_beyond_the_streams_cap_are_refused_with_503() {
    // 300 descriptors leave room for 44 streams (README: Capacity).
    let server = Server::start_with_options(Options {
        fd_limit: Some(300),
        ..Options::default()
    });
    let mut held = Vec::new();
    for n in 0..44 {
        let mut stream = connect(server.port).unwrap();
        stream.write_all(&claim_wait(&format!("w{n}"))).unwrap();
        held.push(stream);
        server.await_status("claims-waiting", n + 1, 20 * SECOND);
    }
    for n in 44..60 {
        let mut stream = connect(server.port).unwrap();
        stream.write_all(&claim_wait(&format!("w{n}"))).unwrap();
        let refused = read_response(&mut std::io::BufReader::new(&mut stream), false);
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.header("retry-after"), Some("1"));
    }
    assert_eq!(server.status()["claims-waiting"], 44);
    drop(held);
    server.await_status("claims-waiting", 0, 20 * SECOND);
    server.assert_no_panic();
}
