//! Beyond the seed, over the API: idempotent writes (`Idempotency-Key`), replay gaps said out
//! loud (`event: gap`, `Workshop-Gap`), and threads (`GET /messages/:id[/thread]`). The real
//! binary on port 0; retention really deletes; raw sockets read what goes on the wire.
mod common;
mod mesh_support;

use common::{Response, Server, request, stream_text};
use mesh_support::server_with_pruned;
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};
use std::thread;

fn ids_of(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

// ---- 1. idempotent publish and task creation ----

#[test]
fn a_repeated_publish_answers_the_first_reply_and_stores_nothing() {
    let s = Server::start();
    let body = json!({"from": "a", "type": "msg.text", "body": {"n": 1}});
    let first = s.post_keyed("/ch/general", "k-1", &body);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = s.post_keyed("/ch/general", "k-1", &body);
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json(), "same id and ts");
    assert_eq!(s.history("/ch/general/history").len(), 1);
    assert_eq!(s.status()["messages"], 1);
    // The key is remembered in the database, not in memory: a restart changes nothing.
    let mut s = s;
    s.restart();
    let after_restart = s.post_keyed("/ch/general", "k-1", &body);
    assert_eq!(after_restart.json(), first.json());
    assert_eq!(s.history("/ch/general/history").len(), 1);
    // Without the header, or with another key, every request stores.
    assert_eq!(s.post_json("/ch/general", body.clone()).status, 201);
    assert_eq!(s.post_keyed("/ch/general", "k-2", &body).status, 201);
    assert_eq!(s.history("/ch/general/history").len(), 3);
}

#[test]
fn a_key_is_per_sender() {
    let s = Server::start();
    let a = s.post_keyed("/ch/c", "shared", &json!({"from": "a", "type": "t"}));
    let b = s.post_keyed("/ch/c", "shared", &json!({"from": "b", "type": "t"}));
    assert_eq!((a.status, b.status), (201, 201));
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(s.history("/ch/c/history").len(), 2);
}

#[test]
fn the_same_key_with_another_request_is_422_and_changes_nothing() {
    let s = Server::start();
    let body = json!({"from": "a", "type": "t", "body": {"n": 1}});
    assert_eq!(s.post_keyed("/ch/c", "k", &body).status, 201);
    let other_body = json!({"from": "a", "type": "t", "body": {"n": 2}});
    let r = s.post_keyed("/ch/c", "k", &other_body);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.error().contains("different request"), "{}", r.text());
    // Another channel is another request too.
    assert_eq!(s.post_keyed("/ch/d", "k", &body).status, 422);
    let task = json!({"from": "a", "title": "x"});
    assert_eq!(s.post_keyed("/tasks", "k", &task).status, 422);
    assert_eq!(s.status()["messages"], 1);
    assert_eq!(s.status()["tasks"], 0);
    // The same JSON object with its keys in another order is the same request.
    let reordered = r#"{"body":{"n":1},"type":"t","from":"a"}"#;
    let same = request(
        s.port,
        "POST",
        "/ch/c",
        &[("Idempotency-Key", "k")],
        reordered.as_bytes(),
    );
    assert_eq!(same.status, 201, "{}", same.text());
    assert_eq!(s.status()["messages"], 1);
}

#[test]
fn fifty_concurrent_repeats_of_one_key_store_exactly_one_message() {
    let s = Arc::new(Server::start());
    let body = json!({"from": "racer", "type": "msg.once", "body": {"x": 1}});
    let start = Arc::new(Barrier::new(50));
    let answers: Vec<Response> = (0..50)
        .map(|_| {
            let (s, body, start) = (s.clone(), body.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                s.post_keyed("/ch/race", "once", &body)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let first = answers[0].json();
    for answer in &answers {
        assert_eq!(answer.status, 201, "{}", answer.text());
        assert_eq!(answer.json(), first);
    }
    let stored = s.history("/ch/race/history");
    assert_eq!(ids_of(&stored), vec![first["id"].as_str().unwrap()]);
    assert_eq!(s.status()["messages"], 1);
}

#[test]
fn a_repeated_task_create_answers_the_first_task_id() {
    let s = Server::start();
    let task = json!({"from": "boss", "title": "resize", "ch": "jobs"});
    let first = s.post_keyed("/tasks", "t-1", &task);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = s.post_keyed("/tasks", "t-1", &task);
    assert_eq!((again.status, again.json()), (201, first.json()));
    assert_eq!(s.get("/tasks").json().as_array().unwrap().len(), 1);
    let announced = s.history("/ch/jobs/history?type=task.created");
    assert_eq!(announced.len(), 1, "one task.created");
}

#[test]
fn a_refused_request_is_not_remembered() {
    let s = Server::start();
    let id = s.create_task(json!({"from": "boss", "title": "x"}));
    let done = json!({"from": "w", "result": {"ok": true}});
    let path = format!("/tasks/{id}/done");
    // Not claimed yet: 409, and the key stays unused ...
    assert_eq!(s.post_keyed(&path, "done-1", &done).status, 409);
    assert_eq!(
        s.task_action(&id, "claim", json!({"from": "w"})).status,
        200
    );
    // ... so the retry runs for real, and a repeat of it answers its reply.
    let first = s.post_keyed(&path, "done-1", &done);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = s.post_keyed(&path, "done-1", &done);
    assert_eq!((again.status, again.json()), (200, first.json()));
    assert_eq!(s.history("/ch/tasks/history?type=task.done").len(), 1);
}

#[test]
fn bad_keys_are_refused_and_store_nothing() {
    let s = Server::start();
    let body = json!({"from": "a", "type": "t"});
    // (A header that is not ASCII never reaches a handler: tiny_http drops the connection.)
    for bad in [
        "x".repeat(129),
        "tab\there".to_string(),
        "del\u{7f}".to_string(),
    ] {
        let r = s.post_keyed("/ch/c", &bad, &body);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
        assert!(r.error().contains("Idempotency-Key"), "{}", r.text());
    }
    let empty = s.post_keyed("/ch/c", "", &body);
    assert_eq!(empty.status, 400, "{}", empty.text());
    assert_eq!(s.status()["messages"], 0);
    // The longest key is fine. (That an allowed origin's preflight lists the header is
    // tests/browser_rules.rs `cors_is_opt_in_by_origin`.)
    assert_eq!(s.post_keyed("/ch/c", &"x".repeat(128), &body).status, 201);
}

// ---- 2. replay gaps ----

/// A gap event's data as README shows it, `since` first.
fn gap_data(since: &str, oldest: Option<&str>) -> String {
    let oldest = oldest.map_or("null".to_string(), |id| format!("\"{id}\""));
    format!(r#"{{"since":"{since}","oldest":{oldest}}}"#)
}

#[test]
fn a_stream_resuming_before_what_retention_kept_gets_a_gap_event_first() {
    let (s, pruned) = server_with_pruned("a", 3);
    let kept = s.publish("a", "msg.new", json!({}));
    let last = s.publish("a", "msg.new", json!({}));
    let resume = [("Last-Event-ID", pruned[0].as_str())];
    let body = stream_text(s.port, "/ch/a", &resume, &format!("id: {last}"));
    let gap = gap_data(&pruned[0], Some(&kept));
    let expected = format!(": open\n\nevent: gap\ndata: {gap}\n\nid: {kept}\ndata: ");
    assert!(body.starts_with(&expected), "{body:?}");
    // ?since= says the same; so does the every-channel stream.
    let since = format!("/ch/a?since={}", pruned[1]);
    let body = stream_text(s.port, &since, &[], &format!("id: {last}"));
    assert!(body.contains("event: gap\n"), "{body:?}");
    let body = stream_text(s.port, "/", &resume, &format!("id: {last}"));
    assert!(body.starts_with(&expected), "{body:?}");
}

#[test]
fn no_gap_is_said_when_nothing_after_the_resume_point_was_deleted() {
    let (s, pruned) = server_with_pruned("a", 2);
    let kept = s.publish("a", "msg.new", json!({}));
    let other = s.publish("b", "msg.new", json!({}));
    // The client had the last deleted message: it missed nothing.
    let resume = [("Last-Event-ID", pruned[1].as_str())];
    let body = stream_text(s.port, "/ch/a", &resume, &format!("id: {kept}"));
    assert!(body.starts_with(": open\n\nid: "), "{body:?}");
    // Nothing was ever deleted on channel b.
    let resume = [("Last-Event-ID", pruned[0].as_str())];
    let body = stream_text(s.port, "/ch/b", &resume, &format!("id: {other}"));
    assert!(!body.contains("event: gap"), "{body:?}");
}

#[test]
fn history_after_a_hole_says_where_what_was_kept_begins() {
    let (s, pruned) = server_with_pruned("a", 2);
    let kept = s.publish("a", "msg.new", json!({}));
    let r = s.get(&format!("/ch/a/history?since={}", pruned[0]));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("workshop-gap"), Some(kept.as_str()));
    let exposed = r.header("access-control-expose-headers");
    assert_eq!(exposed, Some("Workshop-Gap"));
    assert_eq!(r.text().lines().count(), 1);
    let all = s.get(&format!("/history?since={}", pruned[0]));
    assert_eq!(all.header("workshop-gap"), Some(kept.as_str()));
    // No gap: from the last deleted id, without since, on another channel.
    let after = s.get(&format!("/ch/a/history?since={}", pruned[1]));
    assert_eq!(after.header("workshop-gap"), None);
    assert_eq!(s.get("/ch/a/history").header("workshop-gap"), None);
    let other = s.get(&format!("/ch/b/history?since={}", pruned[0]));
    assert_eq!(other.header("workshop-gap"), None);
}

#[test]
fn a_gap_with_nothing_kept_says_none() {
    let (s, pruned) = server_with_pruned("a", 1);
    // Ids compare normalised: a lowercase resume point is the same point.
    let since = pruned[0].to_lowercase();
    let zero = "0".repeat(26);
    let r = s.get(&format!("/ch/a/history?since={zero}"));
    assert_eq!(r.header("workshop-gap"), Some("none"));
    assert_eq!(r.text(), "");
    let gap = gap_data(&zero, None);
    let body = stream_text(s.port, &format!("/ch/a?since={zero}"), &[], &gap);
    assert_eq!(body, format!(": open\n\nevent: gap\ndata: {gap}\n\n"));
    let at_last = s.get(&format!("/ch/a/history?since={since}"));
    assert_eq!(at_last.header("workshop-gap"), None);
}

/// The record of what retention deleted is kept in the database: after a restart (which
/// deletes nothing more), a resume from before the hole still hears about it.
#[test]
fn a_gap_is_still_said_after_a_restart() {
    let (mut s, pruned) = server_with_pruned("a", 2);
    let kept = s.publish("a", "msg.new", json!({}));
    s.restart();
    let r = s.get(&format!("/ch/a/history?since={}", pruned[0]));
    assert_eq!(r.header("workshop-gap"), Some(kept.as_str()));
    let resume = [("Last-Event-ID", pruned[0].as_str())];
    let body = stream_text(s.port, "/ch/a", &resume, &format!("id: {kept}"));
    let gap = gap_data(&pruned[0], Some(&kept));
    assert!(
        body.starts_with(&format!(": open\n\nevent: gap\ndata: {gap}\n\n")),
        "{body:?}"
    );
}

/// Retention deletes old messages and nothing else: a file an old message named, and a task
/// older than the cutoff, are still there after it ran.
#[test]
fn retention_keeps_files_and_tasks() {
    let mut s = Server::start();
    let bytes = b"kept beyond retention".to_vec();
    let r = request(s.port, "POST", "/files", &[], &bytes);
    assert_eq!(r.status, 201, "{}", r.text());
    let hash = r.json()["hash"].as_str().unwrap().to_string();
    let task = s.create_task(json!({"from": "x", "title": "an old task"}));
    s.stop();
    let forty_days_ago = ulid::Ulid::generate().timestamp_ms() - 40 * 86_400_000;
    let old = ulid::Ulid::from_parts(forty_days_ago, 7).to_string();
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        let envelope = json!({"id": old, "ts": 0, "from": "x", "ch": "c", "type": "file.old",
            "v": 1, "body": {}, "files": [hash], "reply_to": null});
        conn.execute(
            "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, 'c', 'file.old', ?2)",
            (&old, envelope.to_string()),
        )
        .unwrap();
        let back = 40.0 * 86_400.0;
        conn.execute(
            "UPDATE tasks SET created_at = created_at - ?1, updated_at = updated_at - ?1",
            [back],
        )
        .unwrap();
    }
    s.restart_stopped();
    // The old message was deleted; what is left is the task's own `task.created`.
    let left = s.history("/history");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["type"], "task.created");
    let file = s.get(&format!("/files/{hash}"));
    assert_eq!((file.status, file.body), (200, bytes));
    assert_eq!(s.task(&task)["title"], "an old task");
    assert_eq!(s.status()["tasks"], 1);
    s.assert_no_panic();
}

/// Ids keep increasing across a restart even when the stored ones are from a clock ahead of
/// this one (a clock stepped back): a new id sorts after every stored id, so `?since=` misses
/// nothing.
#[test]
fn ids_keep_increasing_after_the_clock_steps_back() {
    let mut s = Server::start();
    let before = s.publish("c", "msg.before", json!({}));
    s.stop();
    let an_hour_ahead =
        ulid::Ulid::from_parts(ulid::Ulid::generate().timestamp_ms() + 3_600_000, 7);
    let ahead = an_hour_ahead.to_string();
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        let envelope = json!({"id": ahead, "ts": 0, "from": "x", "ch": "c", "type": "msg.ahead",
            "v": 1, "body": {}, "files": [], "reply_to": null});
        conn.execute(
            "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, 'c', 'msg.ahead', ?2)",
            (&ahead, envelope.to_string()),
        )
        .unwrap();
    }
    s.restart_stopped();
    let after = s.publish("c", "msg.after", json!({}));
    assert!(after > ahead, "{after} after {ahead}");
    let read = s.history(&format!("/ch/c/history?since={before}"));
    assert_eq!(ids_of(&read), [ahead.as_str(), after.as_str()]);
    s.assert_no_panic();
}

// ---- 4. threads ----

fn reply(s: &Server, ch: &str, to: &str) -> String {
    let body = json!({"from": "b", "type": "msg.reply", "reply_to": to});
    let r = s.post_json(&format!("/ch/{ch}"), body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn thread(s: &Server, id: &str) -> Vec<Value> {
    s.history(&format!("/messages/{id}/thread"))
}

#[test]
fn a_message_is_read_by_id() {
    let s = Server::start();
    let body = json!({"from": "a", "type": "msg.text", "body": {"msg": "hi"}, "to": "b"});
    let id = s.post_json("/ch/general", body).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.get(&format!("/messages/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Byte for byte what history serves (README: the envelope), `to` last.
    let history = s.get("/ch/general/history");
    assert_eq!(r.text(), history.text().trim_end());
    assert!(r.text().ends_with(r#","to":"b"}"#), "{}", r.text());
    let lower = s.get(&format!("/messages/{}", id.to_lowercase()));
    assert_eq!(lower.json()["id"], id.as_str());
    let unknown = s.get(&format!("/messages/{}", "0".repeat(26)));
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("no message"));
    for junk in ["nope", "..%2F..", "%00"] {
        let r = s.get(&format!("/messages/{junk}"));
        assert_eq!(r.status, 404, "{junk}");
        r.error();
    }
    assert_eq!(
        s.post_json(&format!("/messages/{id}"), json!({})).status,
        405
    );
}

#[test]
fn a_thread_is_the_root_and_every_reply_to_it_oldest_first() {
    let s = Server::start();
    let root = s.publish("general", "msg.q", json!({"q": "why"}));
    let unrelated = s.publish("general", "msg.other", json!({}));
    let a = reply(&s, "general", &root);
    let b = reply(&s, "elsewhere", &root);
    let a1 = reply(&s, "general", &a);
    let a11 = reply(&s, "general", &a1);
    let _other_thread = reply(&s, "general", &unrelated);
    let want = vec![root.as_str(), &a, &b, &a1, &a11];
    for member in [&root, &a, &b, &a1, &a11] {
        assert_eq!(ids_of(&thread(&s, member)), want, "thread of {member}");
    }
    assert_eq!(ids_of(&thread(&s, &unrelated)).len(), 2);
    let unknown = s.get(&format!("/messages/{}/thread", "0".repeat(26)));
    assert_eq!(unknown.status, 404);
    unknown.error();
    // A reply to a message that is not stored is its thread's root.
    let orphan = reply(&s, "general", &"7".repeat(26));
    let child = reply(&s, "general", &orphan);
    assert_eq!(ids_of(&thread(&s, &child)), vec![orphan.as_str(), &child]);
}

#[test]
fn a_thread_answer_is_bounded_to_1000_messages() {
    let s = Server::start();
    let root = s.publish("big", "msg.q", json!({}));
    // A deep chain, so both the walk up and the walk down are long.
    let mut last = root.clone();
    for _ in 0..1005 {
        last = reply(&s, "big", &last);
    }
    let from_leaf = thread(&s, &last);
    assert_eq!(from_leaf.len(), 1000);
    let ids = ids_of(&from_leaf);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    // The walk up is bounded too: 1005 replies deep, the leaf's thread starts below the
    // true root, which heads its own (cut) thread.
    assert_ne!(ids[0], root.as_str());
    let from_root = thread(&s, &root);
    assert_eq!(ids_of(&from_root)[0], root.as_str());
    assert_eq!(from_root.len(), 1000);
}
