//! Agents that work in turns (issue 20): long-poll reads (`?wait=`) on history and the
//! inbox, addressed messages (`to`), and the inbox's server-side read cursor, against the
//! real binary. A waiting request is held open on a raw socket; the test publishes only once
//! `/status` shows it waiting.
mod common;

use common::{Options, Response, Server, connect, read_response};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// A request sent and not yet answered.
struct Pending {
    stream: TcpStream,
}

impl Pending {
    fn get(port: u16, path: &str) -> Pending {
        let mut stream = connect(port).expect("connect");
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).expect("send request");
        Pending { stream }
    }

    fn answer(self) -> Response {
        read_response(&mut BufReader::new(self.stream), false)
    }
}

fn waiting(s: &Server) -> u64 {
    s.status()["waiting"].as_u64().expect("waiting in /status")
}

/// Waits until exactly `n` long-polls are held by the server.
fn wait_for_waiting(s: &Server, n: u64) {
    s.await_status("waiting", n, 30 * SECOND);
}

fn lines(r: &Response) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect()
}

fn ids(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

fn send(s: &Server, ch: &str, body: Value) -> String {
    let r = s.post_json(&format!("/ch/{ch}"), body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn a_waiting_history_read_is_answered_by_the_publish_that_satisfies_it() {
    let s = Server::start();
    let mut last = s.publish("general", "msg.text", json!({"n": 1}));
    for all in [false, true] {
        let path = match all {
            false => format!("/ch/general/history?since={last}&wait=30"),
            true => format!("/history?since={last}&wait=30"),
        };
        let pending = Pending::get(s.port, &path);
        wait_for_waiting(&s, 1);
        let published = Instant::now();
        let id = s.publish("general", "msg.text", json!({"path": path}));
        let r = pending.answer();
        let answered = published.elapsed();
        assert_eq!(ids(&lines(&r)), [id.as_str()], "{path}");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert!(
            answered < 15 * SECOND,
            "{path}: answered {answered:?} after the publish, not woken by it"
        );
        assert_eq!(waiting(&s), 0);
        // The next turn starts after what it was given.
        let r = s.get(&format!("/ch/general/history?since={id}&wait=0"));
        assert_eq!(lines(&r), Vec::<Value>::new());
        last = id;
    }
    s.assert_no_panic();
}

#[test]
fn a_wait_answers_at_once_when_there_is_something_and_empty_after_its_time() {
    let s = Server::start();
    let first = s.publish("general", "msg.text", json!({}));
    let second = s.publish("general", "msg.text", json!({}));
    let started = Instant::now();
    let r = s.get(&format!("/ch/general/history?since={first}&wait=30"));
    assert_eq!(ids(&lines(&r)), [second.as_str()]);
    assert!(started.elapsed() < 15 * SECOND, "{:?}", started.elapsed());
    // Nothing after `second`: 200 with an empty body once the wait is over.
    let started = Instant::now();
    let r = s.get(&format!("/ch/general/history?since={second}&wait=1.5"));
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "");
    assert!(
        took >= Duration::from_millis(1500),
        "answered after {took:?}"
    );
    assert!(took < 20 * SECOND, "answered after {took:?}");
    // An empty inbox waits the same way.
    let started = Instant::now();
    let r = s.get("/inbox/nobody?wait=1");
    assert_eq!((r.status, r.text()), (200, String::new()));
    assert!(started.elapsed() >= SECOND);
    assert_eq!(waiting(&s), 0);
}

#[test]
fn bad_waits_are_refused() {
    let s = Server::start();
    let id = s.publish("general", "msg.text", json!({}));
    for query in [
        "wait=-1".to_string(),
        "wait=abc".into(),
        "wait=NaN".into(),
        "wait=inf".into(),
        format!("wait=5&before={id}"),
        "wait=5&since=nope".into(),
    ] {
        for path in ["/ch/general/history", "/history", "/inbox/bob"] {
            if path == "/inbox/bob" && query.contains("before") {
                continue; // the inbox has no `before`
            }
            let r = s.get(&format!("{path}?{query}"));
            assert_eq!(r.status, 400, "{path}?{query}: {}", r.text());
            assert!(!r.error().is_empty());
        }
    }
    // Over the maximum is capped, as `n` is, not refused: something is there, so at once.
    let r = s.get("/history?wait=3600");
    assert_eq!(ids(&lines(&r)), [id.as_str()]);
}

#[test]
fn a_type_filtered_wait_is_not_woken_by_other_types_or_channels() {
    let s = Server::start();
    let first = s.publish("jobs", "msg.text", json!({}));
    let pending = Pending::get(
        s.port,
        &format!("/ch/jobs/history?since={first}&type=task.&wait=30"),
    );
    wait_for_waiting(&s, 1);
    // Woken by either of these, the read would run and answer nothing: the answer below
    // holding the task message proves the wait went on past them.
    s.publish("jobs", "msg.text", json!({"not": "a task"}));
    s.publish("other", "task.created", json!({"other": "channel"}));
    assert_eq!(waiting(&s), 1);
    let wanted = s.publish("jobs", "task.done", json!({}));
    let r = pending.answer();
    assert_eq!(ids(&lines(&r)), [wanted.as_str()]);
    s.assert_no_panic();
}

#[test]
fn five_hundred_waiters_are_all_answered_by_one_publish() {
    let s = Server::start();
    let first = s.publish("general", "msg.text", json!({}));
    let path = format!("/ch/general/history?since={first}&wait=60");
    let pending: Vec<Pending> = (0..500).map(|_| Pending::get(s.port, &path)).collect();
    wait_for_waiting(&s, 500);
    let published = Instant::now();
    let id = s.publish("general", "msg.text", json!({"for": "everyone"}));
    for p in pending {
        assert_eq!(ids(&lines(&p.answer())), [id.as_str()]);
    }
    let took = published.elapsed();
    assert!(took < 30 * SECOND, "500 answers took {took:?}");
    wait_for_waiting(&s, 0);
    assert_eq!(s.status()["subscribers"], 0);
    s.assert_no_panic();
}

#[test]
fn waiting_requests_share_the_stream_cap() {
    // 272 descriptors leave room for 16 streams (the server keeps 256 for everything else).
    let s = Server::start_with_options(Options {
        fd_limit: Some(272),
        ..Options::default()
    });
    let first = s.publish("general", "msg.text", json!({}));
    let path = format!("/history?since={first}&wait=30");
    let streams: Vec<_> = (0..8).map(|_| s.sse("/ch/general", &[])).collect();
    let pending: Vec<Pending> = (0..8).map(|_| Pending::get(s.port, &path)).collect();
    wait_for_waiting(&s, 8);
    assert_eq!(s.status()["subscribers"], 16);
    let r = s.get(&path);
    assert_eq!(r.status, 503, "{}", r.text());
    // README: every 503 (busy, shutting down) carries `Retry-After: 1`.
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = s.get("/ch/general");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Without waiting there is nothing to hold: a plain read still answers, and so does a
    // wait that has its answer already.
    assert_eq!(s.get("/history").status, 200);
    assert_eq!(s.get("/history?wait=30").status, 200);
    drop(streams);
    let id = s.publish("general", "msg.text", json!({}));
    for p in pending {
        assert_eq!(ids(&lines(&p.answer())), [id.as_str()]);
    }
}

#[test]
fn shutdown_answers_waiting_requests_at_once() {
    let mut s = Server::start();
    let first = s.publish("general", "msg.text", json!({}));
    let pending = Pending::get(s.port, &format!("/history?since={first}&wait=60"));
    let inbox = Pending::get(s.port, "/inbox/bob?unread=1&wait=60");
    wait_for_waiting(&s, 2);
    let stopping = Instant::now();
    let status = s.stop();
    assert!(status.success(), "clean shutdown, got {status}");
    for p in [pending, inbox] {
        let r = p.answer();
        assert_eq!((r.status, r.text()), (200, String::new()));
    }
    let took = stopping.elapsed();
    assert!(took < 20 * SECOND, "shutdown took {took:?}");
    s.assert_no_panic();
}

#[test]
fn addressed_messages_keep_the_envelope_order_and_bytes() {
    let s = Server::start();
    let mut sse = s.sse("/ch/general", &[]);
    let one = send(
        &s,
        "general",
        json!({"from": "alice", "type": "msg.text", "to": "bob"}),
    );
    let many = send(
        &s,
        "general",
        json!({"from": "alice", "type": "msg.text", "to": ["bob", "carol"]}),
    );
    let everyone = send(&s, "general", json!({"from": "alice", "type": "msg.text"}));
    let history = s.get("/ch/general/history").text();
    let stored: Vec<&str> = history.lines().collect();
    assert_eq!(stored.len(), 3);
    assert!(
        stored[0].ends_with(r#","reply_to":null,"to":"bob"}"#),
        "{}",
        stored[0]
    );
    assert!(stored[1].ends_with(r#","to":["bob","carol"]}"#));
    assert!(
        stored[2].ends_with(r#","reply_to":null}"#),
        "absent means no field"
    );
    for (i, id) in [&one, &many, &everyone].into_iter().enumerate() {
        let event = std::iter::from_fn(|| sse.next(10 * SECOND))
            .find(|e| e.data.is_some())
            .expect("live event");
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(
            event.data.as_deref(),
            Some(stored[i]),
            "SSE and history carry the same bytes"
        );
    }
    let inbox = s.get("/inbox/bob").text();
    assert_eq!(inbox, format!("{}\n{}\n", stored[0], stored[1]));
    assert_eq!(s.get("/inbox/carol").text(), format!("{}\n", stored[1]));
}

#[test]
fn bad_addressees_are_refused_and_change_nothing() {
    let s = Server::start();
    let too_many: Vec<String> = (0..33).map(|i| format!("agent{i}")).collect();
    for to in [
        json!(""),
        json!("   "),
        json!([]),
        json!(["bob", ""]),
        json!(["bob", 5]),
        json!(5),
        json!({"bob": true}),
        json!("x".repeat(129)),
        json!(too_many),
    ] {
        let r = s.post_json(
            "/ch/general",
            json!({"from": "alice", "type": "msg.text", "to": to}),
        );
        assert_eq!(r.status, 400, "{to}: {}", r.text());
        assert!(r.error().contains("to"), "{}", r.error());
    }
    let ok: Vec<String> = (0..32).map(|i| format!("agent{i}")).collect();
    send(
        &s,
        "general",
        json!({"from": "alice", "type": "t", "to": ok, "reply_to": null}),
    );
    send(
        &s,
        "general",
        json!({"from": "alice", "type": "t", "to": null}),
    );
    assert_eq!(s.status()["messages"], 2);
    assert_eq!(lines(&s.get("/inbox/agent31")).len(), 1);
    for bad in [
        "/inbox/%20",
        "/inbox/%ff",
        &format!("/inbox/{}", "x".repeat(129)),
    ] {
        assert_eq!(s.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn the_inbox_has_addressed_messages_and_tasks_for_the_agent() {
    let s = Server::start();
    let to_bob = send(&s, "a", json!({"from": "x", "type": "m", "to": "bob"}));
    send(&s, "a", json!({"from": "x", "type": "m", "to": "carol"}));
    send(&s, "a", json!({"from": "x", "type": "m"}));
    s.create_task(json!({"from": "x", "title": "anyone's"}));
    s.create_task(json!({"from": "x", "title": "bob's", "for": "bob", "ch": "jobs"}));
    let also = send(
        &s,
        "b",
        json!({"from": "x", "type": "m", "to": ["carol", "bob"]}),
    );
    let inbox = lines(&s.get("/inbox/bob"));
    assert_eq!(inbox.len(), 3);
    assert_eq!(inbox[0]["id"], to_bob.as_str());
    assert_eq!(inbox[1]["type"], "task.created");
    assert_eq!(inbox[1]["body"]["title"], "bob's");
    assert_eq!(inbox[2]["id"], also.as_str());
    // Paging as history does: the newest n, or the oldest n after `since`.
    assert_eq!(ids(&lines(&s.get("/inbox/bob?n=1"))), [also.as_str()]);
    let after_first = lines(&s.get(&format!("/inbox/bob?since={to_bob}&n=1")));
    assert_eq!(after_first[0]["type"], "task.created");
    // Identities are percent-decoded path segments.
    let odd = send(
        &s,
        "a",
        json!({"from": "x", "type": "m", "to": "team/lead one"}),
    );
    assert_eq!(
        ids(&lines(&s.get("/inbox/team%2Flead%20one"))),
        [odd.as_str()]
    );
}

#[test]
fn an_inbox_wait_is_woken_only_by_the_agents_messages() {
    let s = Server::start();
    let pending = Pending::get(s.port, "/inbox/bob?unread=1&wait=30");
    wait_for_waiting(&s, 1);
    send(&s, "a", json!({"from": "x", "type": "m", "to": "carol"}));
    send(&s, "a", json!({"from": "x", "type": "m"}));
    s.create_task(json!({"from": "x", "title": "carol's", "for": "carol"}));
    assert_eq!(waiting(&s), 1);
    let task = s.create_task(json!({"from": "x", "title": "bob's", "for": "bob"}));
    let got = lines(&pending.answer());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["task-id"], task.as_str());
}

#[test]
fn the_inbox_cursor_moves_forward_only_and_survives_a_restart() {
    let mut s = Server::start();
    let sent: Vec<String> = (0..4)
        .map(|i| {
            send(
                &s,
                "a",
                json!({"from": "x", "type": "m", "to": "bob", "body": {"i": i}}),
            )
        })
        .collect();
    let unread = |s: &Server| ids(&lines(&s.get("/inbox/bob?unread=1"))).join(",");
    assert_eq!(
        unread(&s),
        sent.join(","),
        "never read: everything is unread"
    );
    let r = s.post_json("/inbox/bob/read", json!({"up_to": sent[1]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"agent": "bob", "up_to": sent[1]}));
    // A lower id is ignored.
    let r = s.post_json("/inbox/bob/read", json!({"up_to": sent[0]}));
    assert_eq!(r.json()["up_to"], sent[1].as_str());
    assert_eq!(unread(&s), sent[2..].join(","));
    // `since` further than the cursor wins.
    let r = s.get(&format!("/inbox/bob?unread=1&since={}", sent[2]));
    assert_eq!(ids(&lines(&r)), [sent[3].as_str()]);
    for bad in [json!({}), json!({"up_to": "nope"}), json!({"up_to": 5})] {
        let r = s.post_json("/inbox/bob/read", bad);
        assert_eq!(r.status, 400, "{}", r.text());
    }
    assert_eq!(s.get("/inbox/bob?unread=maybe").status, 400);
    assert_eq!(s.get("/inbox/bob/read").status, 405);
    s.kill();
    s.restart_stopped();
    assert_eq!(
        unread(&s),
        sent[2..].join(","),
        "the cursor is a committed row"
    );
    s.post_json("/inbox/bob/read", json!({"up_to": sent[3]}));
    assert_eq!(unread(&s), "");
    // Another agent's cursor is its own.
    assert_eq!(lines(&s.get("/inbox/carol?unread=1")).len(), 0);
    s.assert_no_panic();
}

/// A cursor beyond every id issued so far is clamped to the greatest one: it used to be kept
/// as given, and hid every later message from `unread=1` for good.
#[test]
fn a_cursor_past_every_issued_id_does_not_hide_later_messages() {
    let s = Server::start();
    let first = send(
        &s,
        "a",
        json!({"from": "x", "type": "m", "to": "bob", "body": {"i": 0}}),
    );
    let far = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ";
    let r = s.post_json("/inbox/bob/read", json!({ "up_to": far }));
    assert_eq!(r.status, 200, "{}", r.text());
    let up_to = r.json()["up_to"].as_str().unwrap().to_string();
    assert!(up_to.as_str() < far, "clamped, not {up_to}");
    assert!(up_to >= first, "still past what was read: {up_to}");
    let later = send(
        &s,
        "a",
        json!({"from": "x", "type": "m", "to": "bob", "body": {"i": 1}}),
    );
    assert_eq!(ids(&lines(&s.get("/inbox/bob?unread=1"))), [later.as_str()]);
    // An agent never mentioned before gets a cursor too, and it is clamped the same way.
    let r = s.post_json("/inbox/carol/read", json!({ "up_to": far }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["up_to"].as_str().unwrap() < far);
    let for_carol = send(
        &s,
        "a",
        json!({"from": "x", "type": "m", "to": "carol", "body": {}}),
    );
    assert_eq!(
        ids(&lines(&s.get("/inbox/carol?unread=1"))),
        [for_carol.as_str()]
    );
    s.assert_no_panic();
}

/// Retention forgets read cursors below its cutoff (one row per agent ever addressed used to
/// stay for good); such a cursor reads exactly like none, and newer ones are kept.
#[test]
fn retention_forgets_read_cursors_older_than_it_keeps() {
    let mut s = Server::start_with(&[("WORKSHOP_RETENTION_DAYS", "7")]);
    let kept = send(
        &s,
        "a",
        json!({"from": "x", "type": "m", "to": ["bob", "carol"], "body": {}}),
    );
    // Any id may be given; this one is from 1970, long before the cutoff.
    let old = "00000000010000000000000000";
    let r = s.post_json("/inbox/bob/read", json!({ "up_to": old }));
    assert_eq!(r.json()["up_to"], old);
    let r = s.post_json("/inbox/carol/read", json!({ "up_to": kept }));
    assert_eq!(r.json()["up_to"], kept.as_str());
    s.stop();
    // Retention runs as the server starts.
    s.restart_stopped();
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let cursors: Vec<(String, String)> = conn
        .prepare("SELECT agent, up_to FROM inbox_cursors ORDER BY agent")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(cursors, [("carol".to_string(), kept.clone())]);
    assert_eq!(ids(&lines(&s.get("/inbox/bob?unread=1"))), [kept.as_str()]);
    assert_eq!(lines(&s.get("/inbox/carol?unread=1")).len(), 0);
    s.assert_no_panic();
}

/// Agents re-polling with the last id they got, while messages keep coming: each sees every
/// message once, in order, and no poll answers empty before its time. (A re-poll racing the
/// commit it just read used to be woken by that same message and answer nothing.)
#[test]
fn re_polling_agents_get_every_message_once_in_order() {
    const AGENTS: usize = 300;
    const MESSAGES: usize = 100;
    let s = Server::start();
    let start = s.publish("turns", "t.start", json!({}));
    let port = s.port;
    let agents: Vec<_> = (0..AGENTS)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let (mut since, mut seen) = (start, Vec::new());
                while seen.len() < MESSAGES {
                    let path = format!("/ch/turns/history?since={since}&wait=30");
                    let r = common::request(port, "GET", &path, &[], b"");
                    let got = lines(&r);
                    assert!(!got.is_empty(), "a re-poll answered empty after {seen:?}");
                    for m in got {
                        seen.push(m["body"]["seq"].as_u64().unwrap() as usize);
                        since = m["id"].as_str().unwrap().to_string();
                    }
                }
                seen
            })
        })
        .collect();
    wait_for_waiting(&s, AGENTS as u64);
    for seq in 0..MESSAGES {
        s.publish("turns", "t.tick", json!({ "seq": seq }));
    }
    for agent in agents {
        let seen = agent.join().expect("agent");
        assert_eq!(seen, (0..MESSAGES).collect::<Vec<_>>());
    }
}
