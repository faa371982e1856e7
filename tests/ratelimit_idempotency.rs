//! The loop guard (`WORKSHOP_RATE`) and `Idempotency-Key` together: a retry of a keyed
//! request that was already committed answers the first reply, as README promises for 24 h,
//! and neither spends a token nor counts as throttled. Real server, real sockets.
mod common;

use common::Server;
use serde_json::json;

#[test]
fn a_retry_of_a_committed_keyed_request_answers_the_first_reply_under_the_loop_guard() {
    // 0.01 per second: bursts of one, then one more every 100 s (far beyond this test).
    let s = Server::start_with(&[("WORKSHOP_RATE", "0.01")]);

    let message = json!({"from": "agent.a", "type": "chatter", "body": {"n": 1}});
    let first = s.post_keyed("/ch/loop", "pub-1", &message);
    assert_eq!(first.status, 201, "{}", first.text());
    for _ in 0..3 {
        let again = s.post_keyed("/ch/loop", "pub-1", &message);
        assert_eq!(again.status, 201, "{}", again.text());
        assert_eq!(again.json(), first.json(), "the first reply");
    }
    // The sender's one token is spent on the first request: anything new is refused.
    assert_eq!(s.post_json("/ch/loop", message.clone()).status, 429);
    assert_eq!(s.post_keyed("/ch/loop", "pub-2", &message).status, 429);
    // A key reused for another request is still 422 (not a way around the guard).
    let other = json!({"from": "agent.a", "type": "chatter", "body": {"n": 2}});
    assert_eq!(s.post_keyed("/ch/loop", "pub-1", &other).status, 422);

    let task = json!({"from": "agent.b", "title": "once", "ch": "loop"});
    let created = s.post_keyed("/tasks", "task-1", &task);
    assert_eq!(created.status, 201, "{}", created.text());
    let again = s.post_keyed("/tasks", "task-1", &task);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json(), created.json(), "the first reply");
    assert_eq!(s.post_json("/tasks", task).status, 429);

    let lock = json!({"from": "agent.c", "name": "build", "ttl_s": 60, "ch": "loop"});
    assert_eq!(s.post_json("/locks/acquire", lock.clone()).status, 200);
    let renewal = s.post_json("/locks/acquire", lock);
    assert_eq!(renewal.status, 429, "{}", renewal.text());

    let history = s.history("/ch/loop/history?type=chatter");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"], first.json()["id"]);
    assert_eq!(s.status()["tasks"], 1);
    // Only the refusals count as throttled.
    let publish = "workshop_throttled_total{request=\"publish\"}";
    assert_eq!(s.metric(publish), 2.0);
    let task_create = "workshop_throttled_total{request=\"task_create\"}";
    assert_eq!(s.metric(task_create), 1.0);
    let lock_acquire = "workshop_throttled_total{request=\"lock_acquire\"}";
    assert_eq!(s.metric(lock_acquire), 1.0);
    s.assert_no_panic();
}

/// Unix seconds now, as the server's timestamps.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// README's retention of what is not a message: a key is remembered for 24 hours, then the
/// same key may carry a new request; a presence row is deleted after 7 days. Time is moved
/// back in the real database file while the server is stopped, and retention runs as it
/// starts again.
#[test]
fn keys_are_kept_a_day_and_presence_rows_a_week() {
    let mut s = Server::start();
    let task = json!({"from": "agent.a", "title": "first"});
    let first = s.post_keyed("/tasks", "k", &task);
    assert_eq!(first.status, 201, "{}", first.text());
    for agent in ["agent.gone", "agent.away"] {
        let r = s.post_json("/presence", json!({ "from": agent }));
        assert!(r.status < 300, "{}", r.text());
    }
    s.stop();

    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let expires: f64 = conn
        .query_row("SELECT expires_at FROM idempotency_keys", [], |r| r.get(0))
        .unwrap();
    let kept_for = expires - unix_now();
    assert!(
        (86_400.0 - 120.0..=86_400.0).contains(&kept_for),
        "kept for {kept_for} s"
    );
    // The key's day is over; one agent was last seen 8 days ago, the other 6.
    let back = |days: f64| unix_now() - days * 86_400.0;
    conn.execute("UPDATE idempotency_keys SET expires_at = ?1", [back(0.001)])
        .unwrap();
    let seen = "UPDATE presence SET last_seen = ?1 WHERE agent_id = ?2";
    conn.execute(seen, rusqlite::params![back(8.0), "agent.gone"])
        .unwrap();
    conn.execute(seen, rusqlite::params![back(6.0), "agent.away"])
        .unwrap();
    drop(conn);
    s.restart_stopped();
    // Retention, run as the server started, deleted the expired key's row.
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM idempotency_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 0);
    drop(conn);

    // The expired key is free: another request under it is taken, not refused (422).
    let other = json!({"from": "agent.a", "title": "second"});
    let second = s.post_keyed("/tasks", "k", &other);
    assert_eq!(second.status, 201, "{}", second.text());
    assert_ne!(second.json()["id"], first.json()["id"]);
    assert_eq!(s.status()["tasks"], 2);
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let agents: Vec<String> = conn
        .prepare("SELECT agent_id FROM presence ORDER BY agent_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(agents, ["agent.away"]);
    s.assert_no_panic();
}

/// A batch spends a token per message, all or none; one larger than a burst could ever
/// pass is a 413, not a 429 that no wait would cure. Under a key, its repeat answers the
/// first reply, and the same key on another batch is a 422.
#[test]
fn a_batch_spends_a_token_per_message_and_repeats_under_its_key() {
    // 1 per second: bursts of 10.
    let s = Server::start_with(&[("WORKSHOP_RATE", "1")]);
    let batch = |n: usize, tag: &str| {
        let one = json!({"from": "agent.a", "type": "chatter", "body": {"tag": tag}});
        serde_json::Value::Array(vec![one; n])
    };
    let r = s.post_json("/ch/loop", batch(11, "too many"));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.error().contains("burst of 10"), "{}", r.error());
    let first = s.post_keyed("/ch/loop", "b-1", &batch(8, "eight"));
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.json().as_array().map(Vec::len), Some(8));
    let again = s.post_keyed("/ch/loop", "b-1", &batch(8, "eight"));
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json(), first.json(), "the first reply");
    assert_eq!(
        s.post_keyed("/ch/loop", "b-1", &batch(2, "two")).status,
        422
    );
    // Two tokens left (more only after 8 s; a slower machine would see a 201 here): a whole
    // burst is refused whole.
    let r = s.post_json("/ch/loop", batch(10, "ten"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(s.post_json("/ch/loop", batch(2, "two")).status, 201);
    let stored = s.history("/ch/loop/history?type=chatter");
    let tags: Vec<&str> = stored
        .iter()
        .map(|m| m["body"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, [vec!["eight"; 8], vec!["two"; 2]].concat());
    s.assert_no_panic();
}

/// Claim-next under an `Idempotency-Key`: a retry whose first answer was lost gets the task
/// the first claim took, never a second one; a claim that found nothing is not remembered, so
/// its retry looks again.
#[test]
fn a_keyed_claim_next_retried_gets_the_same_task() {
    let s = Server::start();
    let ask = json!({"from": "w", "ch": "jobs", "lease_s": 60});
    let none = s.post_keyed("/tasks/claim", "claim-1", &ask);
    assert_eq!(none.status, 204, "{}", none.text());
    let a = s.create_task(json!({"from": "boss", "title": "a", "ch": "jobs"}));
    let b = s.create_task(json!({"from": "boss", "title": "b", "ch": "jobs"}));
    let first = s.post_keyed("/tasks/claim", "claim-1", &ask);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["id"], a.as_str());
    for _ in 0..3 {
        let again = s.post_keyed("/tasks/claim", "claim-1", &ask);
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["id"], a.as_str(), "the first claim's task");
    }
    assert_eq!(s.task(&b)["status"], "open", "no second task was taken");
    let other = json!({"from": "w", "ch": "other"});
    assert_eq!(s.post_keyed("/tasks/claim", "claim-1", &other).status, 422);
    let next = s.post_keyed("/tasks/claim", "claim-2", &ask);
    assert_eq!(next.json()["id"], b.as_str());
}
