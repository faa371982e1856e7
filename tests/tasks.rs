//! The task queue: lifecycle, who may do what, races, announcements.
mod common;

use common::{Server, request};
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};

#[test]
fn whole_lifecycle_with_announcements_on_the_task_channel() {
    let s = Server::start();
    let id = s.create_task(
        json!({"from":"boss.alice","title":"summarise","context":{"url":"x"},"ch":"jobs"}),
    );
    let task = s.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "open");
    assert_eq!(task["created_by"], "boss.alice");
    assert_eq!(task["context"], json!({"url":"x"}));
    assert_eq!(task["ch"], "jobs");
    assert_eq!(task["assigned_to"], Value::Null);
    let keys: Vec<&String> = task.as_object().unwrap().keys().collect();
    for key in [
        "id",
        "created_at",
        "updated_at",
        "created_by",
        "assigned_to",
        "claimed_by",
        "claimed_at",
        "status",
        "title",
        "context",
        "result",
        "files",
        "ch",
    ] {
        assert!(keys.iter().any(|k| *k == key), "{key}");
    }

    let r = s.task_action(&id, "claim", json!({"from":"worker.bob"}));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"id": id, "status":"claimed","claimed-by":"worker.bob","claim":1})
    );
    let r = s.task_action(
        &id,
        "update",
        json!({"from":"worker.bob","progress":0.5,"note":"half"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"id": id}));
    let r = s.task_action(
        &id,
        "interrupt",
        json!({"from":"boss.alice","reason":"hurry"}),
    );
    assert_eq!(r.json(), json!({"id": id, "signalled": true}));
    let hash = request(s.port, "POST", "/files", &[], b"report").json()["hash"].clone();
    let r = s.task_action(
        &id,
        "done",
        json!({"from":"worker.bob","result":{"summary":"ok"},"files":[hash]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": id, "status":"done"}));
    let task = s.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "done");
    assert_eq!(task["claimed_by"], "worker.bob");
    assert_eq!(task["result"], json!({"summary":"ok"}));
    assert_eq!(task["files"], json!([hash]));

    let history = s.history("/ch/jobs/history");
    let types: Vec<&str> = history
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "task.created",
            "task.claimed",
            "task.updated",
            "task.interrupt",
            "task.done"
        ]
    );
    assert_eq!(
        history[0]["body"],
        json!({"task-id": id, "title":"summarise","for": null})
    );
    assert_eq!(history[0]["from"], "boss.alice");
    assert_eq!(
        history[1]["body"],
        json!({"task-id": id, "title":"summarise", "claim": 1})
    );
    assert_eq!(history[1]["from"], "worker.bob");
    assert_eq!(
        history[2]["body"],
        json!({"task-id": id, "progress":0.5, "note":"half"})
    );
    assert_eq!(
        history[3]["body"],
        json!({"task-id": id, "title":"summarise", "reason":"hurry"})
    );
    assert_eq!(
        history[4]["body"],
        json!({"task-id": id, "title":"summarise", "result":{"summary":"ok"}})
    );
    assert_eq!(history[4]["files"], json!([hash]));
}

#[test]
fn abandon_returns_the_task_to_open_and_only_the_claimer_may() {
    let s = Server::start();
    let id = s.create_task(json!({"created_by":"boss","title":"t"}));
    assert_eq!(
        s.task_action(&id, "abandon", json!({"from":"w1"})).status,
        409
    );
    assert_eq!(s.task_action(&id, "done", json!({"from":"w1"})).status, 409);
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w1"})).status,
        200
    );
    let r = s.task_action(&id, "abandon", json!({"from":"w2"}));
    assert_eq!(r.status, 403);
    assert!(r.error().contains("w1"));
    assert_eq!(s.task_action(&id, "done", json!({"from":"w2"})).status, 403);
    let r = s.task_action(&id, "abandon", json!({"from":"w1","reason":"stuck"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"id": id, "status":"open"}));
    let task = s.get(&format!("/tasks/{id}")).json();
    assert_eq!(task["status"], "open");
    assert_eq!(task["claimed_by"], Value::Null);
    let last = s.history("/ch/tasks/history").pop().unwrap();
    assert_eq!(last["type"], "task.abandoned");
    assert_eq!(
        last["body"],
        json!({"task-id": id, "title":"t","reason":"stuck"})
    );
    // Open again: someone else can claim and finish it; then it is done for good.
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w2"})).status,
        200
    );
    assert_eq!(s.task_action(&id, "done", json!({"from":"w2"})).status, 200);
    let r = s.task_action(&id, "claim", json!({"from":"w3"}));
    assert_eq!(r.status, 409);
    r.error();
    assert_eq!(s.task_action(&id, "done", json!({"from":"w2"})).status, 409);
}

#[test]
fn a_task_for_an_agent_can_only_be_claimed_by_it() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"t","for":"special.one"}));
    let created = s.history("/ch/tasks/history").pop().unwrap();
    assert_eq!(created["body"]["for"], "special.one");
    let r = s.task_action(&id, "claim", json!({"from":"other"}));
    assert_eq!(r.status, 403);
    assert!(r.error().contains("special.one"));
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"special.one"}))
            .status,
        200
    );
    let mine = s.get("/tasks?for=special.one").json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
}

#[test]
fn simultaneous_claims_have_exactly_one_winner() {
    let s = Server::start();
    for round in 0..5 {
        let id = s.create_task(json!({"from":"boss","title":format!("race {round}")}));
        let contenders = 24;
        let barrier = Arc::new(Barrier::new(contenders));
        let port = s.port;
        let handles: Vec<_> = (0..contenders)
            .map(|n| {
                let barrier = barrier.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let body = json!({"from": format!("w{n}")}).to_string();
                    barrier.wait();
                    request(
                        port,
                        "POST",
                        &format!("/tasks/{id}/claim"),
                        &[],
                        body.as_bytes(),
                    )
                    .status
                })
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            contenders - 1
        );
        let claims = s
            .history("/ch/tasks/history?type=task.claimed&n=1000")
            .into_iter()
            .filter(|m| m["body"]["task-id"] == json!(id))
            .count();
        assert_eq!(claims, 1, "exactly one task.claimed announcement");
    }
}

#[test]
fn list_filters_and_orders_newest_first() {
    let s = Server::start();
    let a = s.create_task(json!({"from":"boss","title":"a","ch":"one"}));
    let b = s.create_task(json!({"from":"boss","title":"b","for":"w1"}));
    let c = s.create_task(json!({"from":"boss","title":"c"}));
    s.task_action(&c, "claim", json!({"from":"w1"}));
    let ids = |path: &str| s.list_field(path, "id");
    assert_eq!(ids("/tasks"), vec![c.clone(), b.clone(), a.clone()]);
    assert_eq!(ids("/tasks?status=open"), vec![b.clone(), a.clone()]);
    assert_eq!(ids("/tasks?status=claimed"), vec![c.clone()]);
    assert_eq!(ids("/tasks?for=w1"), vec![c.clone(), b.clone()]);
    assert_eq!(ids("/tasks?ch=one"), vec![a.clone()]);
    assert_eq!(ids("/tasks?n=1"), vec![c.clone()]);
    assert_eq!(ids("/tasks?status=done"), Vec::<String>::new());
    for bad in [
        "/tasks?status=weird",
        "/tasks?n=zero",
        "/tasks?n=0",
        "/tasks?ch=a%20b",
    ] {
        assert_eq!(s.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn bad_task_requests_are_4xx_and_change_nothing() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"t"}));
    let before = s.get("/status").json();
    for body in [
        r#"{"title":"no from"}"#,
        r#"{"from":"x"}"#,
        r#"{"from":"x","title":"  "}"#,
        r#"{"from":"x","title":5}"#,
        r#"{"from":"x","title":"t","ch":"bad channel"}"#,
        r#"{"from":"x","title":"t","ch":7}"#,
        r#"{"from":"x","title":"t","for":""}"#,
        r#"not json"#,
    ] {
        let r = s.post("/tasks", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }
    let missing = "01J4XYZABCDEFGHJKMNPQRSTVW";
    for action in ["claim", "update", "done", "abandon", "interrupt"] {
        let r = s.task_action(missing, action, json!({"from":"x"}));
        assert_eq!(r.status, 404, "{action}");
        r.error();
        assert_eq!(
            s.task_action("not-an-id", action, json!({"from":"x"}))
                .status,
            404
        );
        assert_eq!(
            s.task_action(&id, action, json!({})).status,
            400,
            "{action} without from"
        );
        let r = s.post(&format!("/tasks/{id}/{action}"), "{oops");
        assert_eq!(r.status, 400);
    }
    assert_eq!(s.get(&format!("/tasks/{missing}")).status, 404);
    s.task_action(&id, "claim", json!({"from":"w"}));
    let unknown_file = format!("sha256:{}", "1".repeat(64));
    let r = s.task_action(&id, "done", json!({"from":"w","files":[unknown_file]}));
    assert_eq!(r.status, 400);
    assert_eq!(s.get(&format!("/tasks/{id}")).json()["status"], "claimed");
    let after = s.get("/status").json();
    assert_eq!(
        after["messages"].as_u64().unwrap(),
        before["messages"].as_u64().unwrap() + 1,
        "only the claim added a message"
    );
    assert_eq!(after["tasks"], before["tasks"]);
}

#[test]
fn shutdown_ends_a_waiting_claim_next_with_503() {
    let mut s = Server::start();
    let port = s.port;
    let waiting = std::thread::spawn(move || {
        let body = json!({"from": "w.one", "wait_s": 60});
        request(
            port,
            "POST",
            "/tasks/claim",
            &[],
            body.to_string().as_bytes(),
        )
    });
    common::wait_for(
        std::time::Duration::from_secs(30),
        "the claim to be waiting",
        || (s.get("/status").json()["claims-waiting"] == 1).then_some(()),
    );
    let status = s.stop();
    let answer = waiting.join().unwrap();
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(answer.json()["error"], "server is shutting down");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(status.success());
}
