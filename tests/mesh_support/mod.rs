//! What the mesh tests (idempotency, replay gaps, threads) share on top of `common`: a server
//! whose retention really deleted messages, and a raw SSE read that keeps the `event:` lines.
#![allow(dead_code)] // each test binary uses a different part

use crate::common::{Server, connect};
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use ulid::Ulid;

/// A server whose retention (the default 30 days, run at start-up) deleted `old` messages on
/// channel `ch`: they were written 40 days back into the database while it was stopped.
/// Returns the server and the deleted ids, oldest first.
pub fn server_with_pruned(ch: &str, old: usize) -> (Server, Vec<String>) {
    let mut s = Server::start();
    s.stop();
    let forty_days_ago = Ulid::generate().timestamp_ms() - 40 * 86_400_000;
    let ids: Vec<String> = (0..old)
        .map(|i| Ulid::from_parts(forty_days_ago + i as u64, 7).to_string())
        .collect();
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        for id in &ids {
            let envelope = json!({"id": id, "ts": 0, "from": "old", "ch": ch, "type": "msg.old",
                "v": 1, "body": {}, "files": [], "reply_to": null});
            conn.execute(
                "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, 'msg.old', ?3)",
                (id, ch, envelope.to_string()),
            )
            .unwrap();
        }
        conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", [ch])
            .unwrap();
    }
    s.restart_stopped();
    assert_eq!(
        s.status()["messages"],
        0,
        "retention deleted the old messages"
    );
    (s, ids)
}

/// The raw body of an SSE stream (HTTP/1.0, so unchunked) from its start until it contains
/// `until`, or panics after a generous deadline.
pub fn stream_text(port: u16, path: &str, headers: &[(&str, &str)], until: &str) -> String {
    let mut stream = connect(port).unwrap();
    let mut head = format!("GET {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains(until) {
        assert!(Instant::now() < deadline, "no {until:?} in {text:?}");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => panic!("stream ended before {until:?}: {text:?}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let body = text.split_once("\r\n\r\n").expect("response head").1;
    body.to_string()
}
