//! A delayed task (`delay_s`) becomes claimable with no event on any stream. Claim-next's
//! empty answer says when (`Workshop-Next-Ready-In`), for delayed tasks this caller could
//! take, and `workshop work` asks again then instead of at its next poll.
mod cli_support;
mod common;

use cli_support::{Cli, json, poll, script};
use common::{Server, http::Response};
use serde_json::{Value, json};

const HEADER: &str = "Workshop-Next-Ready-In";

fn claim_next(hub: &Server, body: Value) -> Response {
    let r = hub.post_json("/tasks/claim", body);
    assert_eq!(r.status, 204, "{}", r.text());
    r
}

/// Seconds until ready, as the header says (asserting it is a number).
fn ready_in(r: &Response) -> Option<f64> {
    let value = r.header(HEADER)?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{HEADER}: {value:?}")),
    )
}

/// The header is there only for a delayed task this caller could claim: not for one
/// assigned to someone else, on another channel, or left out by `exclude`.
#[test]
fn an_empty_claim_next_says_when_a_delayed_task_it_could_take_is_ready() {
    let hub = Server::start();
    let nothing = claim_next(&hub, json!({"from": "w.a"}));
    assert_eq!(
        ready_in(&nothing),
        None,
        "no task at all: {:?}",
        nothing.headers
    );
    hub.create_task(json!({"from": "boss", "title": "b's", "for": "w.b", "delay_s": 5}));
    hub.create_task(json!({"from": "boss", "title": "other", "ch": "other", "delay_s": 5}));
    let not_mine = claim_next(&hub, json!({"from": "w.a", "ch": "jobs"}));
    assert_eq!(ready_in(&not_mine), None, "{:?}", not_mine.headers);
    let id =
        hub.create_task(json!({"from": "boss", "title": "later", "ch": "jobs", "delay_s": 30}));
    let r = claim_next(&hub, json!({"from": "w.a", "ch": "jobs"}));
    let secs = ready_in(&r).expect("the delayed task's time");
    assert!(secs > 20.0 && secs <= 30.0, "ready in {secs} s");
    assert_eq!(r.header("Access-Control-Expose-Headers"), Some(HEADER));
    let excluded = claim_next(&hub, json!({"from": "w.a", "ch": "jobs", "exclude": [id]}));
    assert_eq!(ready_in(&excluded), None, "{:?}", excluded.headers);
    // A long poll that ends empty says it too; for any channel, the soonest (5 s) task.
    let waited = claim_next(&hub, json!({"from": "w.a", "wait_s": 0.2}));
    let secs = ready_in(&waited).expect("after a wait");
    assert!(secs > 0.0 && secs <= 5.0, "ready in {secs} s");
    assert_eq!(waited.body, b"", "a 204 has no body");
}

/// A worker polling only every 10 minutes starts a task delayed by 3 s within 2 s of its
/// becoming claimable, as the hub's timestamps show.
#[test]
fn a_worker_starts_a_delayed_task_when_it_becomes_claimable() {
    let hub = Server::start();
    let handler = script(hub.dir.path(), "handle.sh", "cat >/dev/null\necho '{}'\n");
    let args = ["work", "--poll", "600", "--", handler.to_str().unwrap()];
    let _worker = hub.spawn("worker.d", &args, &[]);
    // Following the stream: from here on it hears of the task as it is created.
    hub.await_status("subscribers", 1, cli_support::DEADLINE);
    let id = hub.ok(
        "boss",
        &["task", "create", "in three seconds", "--delay", "3"],
    );
    let task = poll("the delayed task claimed", || {
        let task = json(&hub.ok("boss", &["task", "show", &id]));
        task["claimed_at"].as_f64().is_some().then_some(task)
    });
    let (ready, claimed) = (task["not_before"].as_f64(), task["claimed_at"].as_f64());
    let late = claimed.unwrap() - ready.expect("not_before");
    assert!(
        (0.0..2.0).contains(&late),
        "claimed {late:.2} s after it became claimable: {task}"
    );
}
