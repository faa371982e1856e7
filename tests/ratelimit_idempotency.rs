//! The loop guard (`WORKSHOP_RATE`) and `Idempotency-Key` together: a retry of a keyed
//! request that was already committed answers the first reply, as README promises for 24 h,
//! and neither spends a token nor counts as throttled. Real server, real sockets.
mod common;

use common::Server;
use serde_json::json;

/// The value of one sample line of the exposition, e.g. `workshop_throttled_total{...}`.
fn sample(s: &Server, line_start: &str) -> f64 {
    let text = s.get("/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {line_start} in:\n{text}"))
}

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

    let history = s.history("/ch/loop/history?type=chatter");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"], first.json()["id"]);
    assert_eq!(s.status()["tasks"], 1);
    // Only the refusals count as throttled.
    let publish = "workshop_throttled_total{request=\"publish\"}";
    assert_eq!(sample(&s, publish), 2.0);
    let task_create = "workshop_throttled_total{request=\"task_create\"}";
    assert_eq!(sample(&s, task_create), 1.0);
    s.assert_no_panic();
}
