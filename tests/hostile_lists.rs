//! Lists a client filled with large values: `GET /tasks` (a task's `context` and `result` may
//! each be nearly 1 MiB, and a list holds up to 1,000) and `GET /presence` (an agent's `meta`
//! likewise) are sent a batch at a time, so concurrent readers cost the server a batch each,
//! not a copy of the whole list.
mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufReader, Read, Write};
use std::thread;

/// A value that keeps each request just under the 1 MiB body limit.
const PAD: usize = 1024 * 1024 - 512;
/// Enough that whole answers in memory (4 x 24 MiB of text, parsed, then encoded again)
/// cannot pass for streaming.
const ROWS: usize = 24;

/// Reads a whole `GET path` answer as JSON, from a socket of its own: chunked (HTTP/1.1), or
/// for `http_1_0` ending where the server closes (a client that asks to keep the connection
/// must not make the server learn the length first, holding the whole answer).
fn read_list(port: u16, path: &str, http_1_0: bool) -> Value {
    let mut stream = connect(port).unwrap();
    let head = match http_1_0 {
        true => "HTTP/1.0\r\nConnection: keep-alive",
        false => "HTTP/1.1\r\nHost: 127.0.0.1",
    };
    write!(stream, "GET {path} {head}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let response = try_read_response(&mut reader, false).unwrap();
    assert_eq!(response.status, 200, "{path}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice(&response.body).expect("the list is one JSON array")
}

/// Four readers of `path` at once, two in HTTP/1.0: each answer, and how much the server grew
/// meanwhile (KiB).
fn four_readers(server: &Server, path: &'static str) -> (Vec<Value>, u64) {
    let port = server.port;
    let (lists, before, peak) = peak_rss_during(server.pid(), || {
        let readers: Vec<_> = (0..4)
            .map(|n| thread::spawn(move || read_list(port, path, n % 2 == 0)))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let grew = peak.saturating_sub(before);
    eprintln!(
        "4 x {path}: rss {before} KiB before, peak {peak} KiB (+{} MiB)",
        grew / 1024
    );
    (lists, grew)
}

#[test]
fn four_concurrent_task_lists_of_1_mib_contexts_stream_in_bounded_memory() {
    let server = Server::start();
    let pad = "c".repeat(PAD);
    let mut created: Vec<String> = (0..ROWS)
        .map(|n| {
            let task = json!({"from": "boss", "title": format!("t{n}"), "context": {"pad": pad}});
            server.create_task(task)
        })
        .collect();
    created.reverse(); // newest first, as the list answers
    let (lists, grew) = four_readers(&server, "/tasks?n=1000");
    for list in &lists {
        let tasks = list.as_array().expect("an array");
        let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert_eq!(ids, created);
        assert!(
            tasks
                .iter()
                .all(|t| t["context"]["pad"].as_str().map(str::len) == Some(PAD))
        );
    }
    assert!(
        grew < 64 * 1024,
        "4 task lists grew the server by {grew} KiB"
    );
    // Filters hold, and an empty list is still an array.
    let open = server.get("/tasks?status=open&n=5").json();
    assert_eq!(open.as_array().map(Vec::len), Some(5));
    assert_eq!(server.get("/tasks?status=done").json(), json!([]));
    server.assert_no_panic();
}

#[test]
fn four_concurrent_presence_lists_of_1_mib_meta_stream_in_bounded_memory() {
    let server = Server::start();
    let pad = "m".repeat(PAD);
    for n in 0..ROWS {
        let beat = json!({"from": format!("agent.{n}"), "meta": {"pad": pad}});
        let r = server.post_json("/presence", beat);
        assert!(r.status < 300, "{}", r.text());
    }
    let (lists, grew) = four_readers(&server, "/presence");
    for list in &lists {
        let agents = list.as_array().expect("an array");
        assert_eq!(agents.len(), ROWS);
        assert!(
            agents
                .iter()
                .all(|a| a["meta"]["pad"].as_str().map(str::len) == Some(PAD))
        );
    }
    assert!(
        grew < 64 * 1024,
        "4 presence lists grew the server by {grew} KiB"
    );
    server.assert_no_panic();
}

/// HTTP/1.0 has no chunked encoding: the list ends where the connection closes.
#[test]
fn a_list_reaches_an_http_1_0_client_whole() {
    let server = Server::start();
    let id = server.create_task(json!({"from": "boss", "title": "one"}));
    let mut stream = connect(server.port).unwrap();
    write!(stream, "GET /tasks HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let tasks: Value = serde_json::from_str(body).expect("the whole array");
    assert_eq!(tasks[0]["id"], id.as_str());
}

/// A list measures each batch again as it fetches it: rows that grew after the list began
/// (64 agents whose heartbeats now carry 1 MiB each) are fetched a few at a time, not as the
/// one batch their old size put them in.
#[test]
fn rows_that_grow_while_a_list_is_sent_are_still_fetched_in_bounded_batches() {
    let server = Server::start();
    let beat = |name: String, pad: usize| {
        let r = server.post_json("/presence", json!({"from": name, "meta": "m".repeat(pad)}));
        assert!(r.status < 300, "{}", r.text());
    };
    // Newest first: 64 small agents (one batch by size), after 40 of 256 KiB (enough to
    // fill the socket's buffers, so the server waits on the reader before it gets to them).
    let small: Vec<String> = (0..64).map(|n| format!("small.{n}")).collect();
    small.iter().for_each(|name| beat(name.clone(), 10));
    (0..40).for_each(|n| beat(format!("big.{n}"), 256 * 1024));
    let mut stream = connect(server.port).unwrap();
    write!(stream, "GET /presence HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let head = try_read_response(&mut reader, true).unwrap();
    assert_eq!(head.status, 200);
    // The list has begun; now the small agents grow to 1 MiB each.
    small.iter().for_each(|name| beat(name.clone(), PAD - 256));
    let (list, before, peak) = peak_rss_during(server.pid(), || {
        let mut body = Vec::new();
        read_chunked(&mut reader, &mut body).expect("a whole chunked body");
        serde_json::from_slice::<Value>(&body).expect("one JSON array")
    });
    let agents = list.as_array().expect("an array");
    assert_eq!(agents.len(), 104);
    let grown = agents
        .iter()
        .filter(|a| a["meta"].as_str().map(str::len) == Some(PAD - 256));
    assert_eq!(
        grown.count(),
        64,
        "the small agents are sent as they are now"
    );
    let grew = peak.saturating_sub(before);
    eprintln!(
        "grown rows: rss {before} KiB before, peak {peak} KiB (+{} MiB)",
        grew / 1024
    );
    assert!(grew < 32 * 1024, "grown rows grew the server by {grew} KiB");
}
