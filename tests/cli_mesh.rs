//! The client side of issue 17, end to end: `pub` and `task create` send an Idempotency-Key
//! (fresh per command, the same on its retries), `workshop thread`, and `tail`'s notice when
//! retention left a hole. The built binary as a subprocess against a real server.
mod cli_support;
mod common;
mod mesh_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use cli_support::{Cli, json, poll};
use common::{Server, header, try_read_response};
use mesh_support::server_with_pruned;
use serde_json::json;

const ME: &str = "tester.mesh";

#[test]
fn every_pub_and_task_create_is_a_new_write() {
    let hub = Server::start();
    let first = hub.ok(ME, &["pub", "general", "msg.text", r#"{"n":1}"#]);
    let second = hub.ok(ME, &["pub", "general", "msg.text", r#"{"n":1}"#]);
    assert_ne!(first, second, "a fresh key per command, so both are stored");
    assert_eq!(hub.channel_history("general", "").len(), 2);
    let t1 = hub.ok(ME, &["task", "create", "same title"]);
    let t2 = hub.ok(ME, &["task", "create", "same title"]);
    assert_ne!(t1, t2);
    assert_eq!(hub.status()["tasks"], 2);
}

/// What a test proxy does with a request.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Forwards it and passes the answer on.
    None,
    /// Forwards it and loses the answer (closes the connection instead), as when a timeout or
    /// a dropped link hides a write that happened.
    LoseAnswer,
    /// Answers 503 itself (the hub busy or failing), forwarding nothing.
    Busy,
}

/// A proxy to the server that does `fault(n)` to its `n`th request (from 0). Returns its
/// port and the request heads it saw.
fn proxy(
    server_port: u16,
    fault: impl Fn(usize) -> Fault + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = seen.clone();
    thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(mut client) = client else { return };
            let (head, body) = read_request(&client);
            heads.lock().unwrap().push(head.clone());
            let (status, answer) = match fault(n) {
                Fault::Busy => (503, br#"{"error":"busy"}"#.to_vec()),
                forwarded => {
                    let mut server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                    server.write_all(head.as_bytes()).unwrap();
                    server.write_all(&body).unwrap();
                    let answer = try_read_response(&mut BufReader::new(server), false).unwrap();
                    if forwarded == Fault::LoseAnswer {
                        continue; // `client` is dropped: the answer is lost
                    }
                    (answer.status, answer.body)
                }
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Retry-After: 1\r\nConnection: close\r\n\r\n",
                answer.len()
            );
            let _ = client.write_all(reply.as_bytes());
            let _ = client.write_all(&answer);
        }
    });
    (port, seen)
}

/// The answer to the first request is lost; the rest go through.
fn lossy_proxy(server_port: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    proxy(server_port, |n| {
        if n == 0 {
            Fault::LoseAnswer
        } else {
            Fault::None
        }
    })
}

/// The first `failures` requests are answered 503; the rest go through.
fn failing_proxy(server_port: u16, failures: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    proxy(server_port, move |n| {
        if n < failures {
            Fault::Busy
        } else {
            Fault::None
        }
    })
}

/// One request's head (through the blank line) and its Content-Length body.
fn read_request(stream: &TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

fn idempotency_key(head: &str) -> String {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("idempotency-key:"))
        .unwrap_or_else(|| panic!("no Idempotency-Key in {head:?}"));
    line.split_once(':').unwrap().1.trim().to_string()
}

#[test]
fn a_pub_whose_answer_was_lost_is_retried_with_its_key_and_stored_once() {
    let hub = Server::start();
    let (proxy, seen) = lossy_proxy(hub.port);
    let out = hub
        .cmd(ME, &["pub", "general", "msg.text", r#"{"once":true}"#])
        .env("WORKSHOP_URL", format!("http://127.0.0.1:{proxy}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "one retry: {heads:#?}");
    assert_eq!(idempotency_key(&heads[0]), idempotency_key(&heads[1]));
    let stored = hub.channel_history("general", "");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(
        stored[0]["id"],
        id.as_str(),
        "the retry answered the first id"
    );
}

/// README: the CLI retries a `pub` twice, with the same key, while the server fails (5xx);
/// a third failure is the answer (exit 1), and nothing is stored twice either way.
#[test]
fn a_pub_is_tried_three_times_with_one_key_while_the_server_fails() {
    let hub = Server::start();
    let (proxy, seen) = failing_proxy(hub.port, 2);
    let url = format!("http://127.0.0.1:{proxy}");
    let out = hub
        .cmd(ME, &["pub", "general", "msg.text", r#"{"third":true}"#])
        .env("WORKSHOP_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:#?}");
    assert!(
        heads
            .iter()
            .all(|h| idempotency_key(h) == idempotency_key(&heads[0]))
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("retrying").count(), 2, "{stderr}");
    assert_eq!(hub.channel_history("general", "").len(), 1);

    let (proxy, seen) = failing_proxy(hub.port, usize::MAX);
    let out = hub
        .cmd(ME, &["pub", "general", "msg.text", r#"{"never":true}"#])
        .env("WORKSHOP_URL", format!("http://127.0.0.1:{proxy}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(hub.channel_history("general", "").len(), 1);
}

#[test]
fn a_task_create_whose_answer_was_lost_creates_one_task() {
    let hub = Server::start();
    let (proxy, seen) = lossy_proxy(hub.port);
    let out = hub
        .cmd(ME, &["task", "create", "only once"])
        .env("WORKSHOP_URL", format!("http://127.0.0.1:{proxy}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    assert_eq!(idempotency_key(&heads[0]), idempotency_key(&heads[1]));
    let tasks = hub.get("/tasks").json();
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    let id = String::from_utf8(out.stdout).unwrap();
    assert_eq!(tasks[0]["id"], id.trim());
}

#[test]
fn thread_prints_the_whole_thread_oldest_first() {
    let hub = Server::start();
    let root = hub.ok(ME, &["pub", "general", "msg.q", r#"{"q":"why"}"#]);
    let answer = hub.ok(ME, &["pub", "general", "msg.a", "--reply-to", &root]);
    let follow_up = hub.ok(ME, &["pub", "other", "msg.b", "--reply-to", &answer]);
    hub.ok(ME, &["pub", "general", "msg.unrelated"]);
    let out = hub.ok(ME, &["thread", &follow_up]);
    let ids: Vec<String> = out
        .lines()
        .map(|l| json(l)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![root.clone(), answer, follow_up]);
    let pretty = hub.ok(ME, &["thread", &root, "--pretty"]);
    let lines: Vec<&str> = pretty.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].contains("· general · msg.q · {\"q\":\"why\"}"),
        "{pretty}"
    );
    let missing = hub.fails(ME, &["thread", &"0".repeat(26)], 3);
    assert!(missing.contains("no message"), "{missing}");
}

#[test]
fn tail_says_on_stderr_when_retention_deleted_messages_it_asked_for() {
    let (hub, pruned) = server_with_pruned("jobs", 2);
    let kept = hub.publish("jobs", "msg.new", json!({}));
    let tail = hub.spawn("tailer", &["tail", "jobs", "--since", &pruned[0]], &[]);
    let line = tail.take_lines(1).remove(0);
    assert_eq!(
        json(&line)["id"],
        kept.as_str(),
        "the gap is not printed as a message"
    );
    let log = hub.path("tailer.stderr");
    let notice = poll("the gap notice on stderr", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("removed by retention").then_some(text)
    });
    assert!(
        notice.contains(&format!("messages before {kept}")),
        "{notice}"
    );
    // Resuming from the last deleted message misses nothing: no notice.
    let quiet = hub.spawn("quiet", &["tail", "jobs", "--since", &pruned[1]], &[]);
    assert_eq!(json(&quiet.take_lines(1)[0])["id"], kept.as_str());
    let text = std::fs::read_to_string(hub.path("quiet.stderr")).unwrap();
    assert!(!text.contains("retention"), "{text}");
}
