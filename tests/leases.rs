//! Tasks that survive crashed agents: leases, touch, expiry (live and across a restart),
//! attempts and dead letters, delays, priorities, claim-next and its long poll, and the
//! in-place upgrade of a database written by the first schema.
mod common;

use common::{Server, request, unix_now, wait_for};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn announcements(s: &Server, kind: &str, id: &str) -> Vec<Value> {
    s.history(&format!("/history?type={kind}&n=1000"))
        .into_iter()
        .filter(|m| m["type"] == kind && m["body"]["task-id"] == id)
        .collect()
}

#[test]
fn new_fields_have_defaults_and_show_in_task_json() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"plain"}));
    let t = s.task(&id);
    assert_eq!(t["priority"], 0);
    assert_eq!(t["not_before"], Value::Null);
    assert_eq!(t["attempts"], 0);
    assert_eq!(t["max_attempts"], 5);
    assert_eq!(t["lease_expires_at"], Value::Null);
    let id = s.create_task(
        json!({"from":"boss","title":"rich","priority":7,"delay_s":30,"max_attempts":2}),
    );
    let t = s.task(&id);
    assert_eq!(t["priority"], 7);
    assert_eq!(t["max_attempts"], 2);
    let delay = t["not_before"].as_f64().unwrap() - t["created_at"].as_f64().unwrap();
    assert!((delay - 30.0).abs() < 0.01, "{delay}");
    for bad in [
        json!({"from":"b","title":"t","priority":"high"}),
        json!({"from":"b","title":"t","priority":1.5}),
        json!({"from":"b","title":"t","delay_s":-1}),
        json!({"from":"b","title":"t","delay_s":"soon"}),
        json!({"from":"b","title":"t","max_attempts":0}),
    ] {
        assert_eq!(s.post_json("/tasks", bad.clone()).status, 400, "{bad}");
    }
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w","lease_s":0}))
            .status,
        400
    );
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w","lease_s":0.999}))
            .status,
        400,
        "a lease is at least 1 s"
    );
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w","lease_s":"x"}))
            .status,
        400
    );
    // Up to a week, and not a second more; a delay likewise.
    const WEEK: u64 = 7 * 86_400;
    let id = s.create_task(json!({"from":"boss","title":"claimable now"}));
    let over = s.task_action(&id, "claim", json!({"from":"w","lease_s": WEEK + 1}));
    assert_eq!(over.status, 400, "{}", over.text());
    assert_eq!(s.task(&id)["status"], "open");
    let delayed = json!({"from":"b","title":"t","delay_s": WEEK + 1});
    assert_eq!(s.post_json("/tasks", delayed).status, 400);
    let week = s.task_action(&id, "claim", json!({"from":"w","lease_s": WEEK}));
    assert_eq!(week.status, 200, "{}", week.text());
    let in_a_week = json!({"from":"b","title":"t","delay_s": WEEK});
    assert_eq!(s.post_json("/tasks", in_a_week).status, 201);
}

#[test]
fn an_expired_lease_returns_the_task_with_task_expired() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"fragile","ch":"jobs"}));
    let r = s.task_action(&id, "claim", json!({"from":"w1","lease_s":1}));
    assert_eq!(r.status, 200);
    let expires = r.json()["lease_expires_at"].as_f64().unwrap();
    assert_eq!(s.task(&id)["lease_expires_at"].as_f64().unwrap(), expires);
    let expired = wait_for(WAIT, "task.expired", || {
        announcements(&s, "task.expired", &id).pop()
    });
    // Announced within a second of the deadline, from the expiry itself.
    assert!(expired["ts"].as_f64().unwrap() - expires < 1.0);
    assert_eq!(expired["ch"], "jobs");
    assert_eq!(
        expired["body"],
        json!({"task-id": id, "title":"fragile", "claimed-by":"w1"})
    );
    let t = s.task(&id);
    assert_eq!(t["status"], "open");
    assert_eq!(t["attempts"], 1);
    assert_eq!(t["claimed_by"], Value::Null);
    assert_eq!(t["lease_expires_at"], Value::Null);
    // The old claimer can no longer finish it; someone else can take it.
    assert_eq!(s.task_action(&id, "done", json!({"from":"w1"})).status, 409);
    assert_eq!(
        s.task_action(&id, "claim", json!({"from":"w2"})).status,
        200
    );
}

/// A claim's number fences off the process that held an earlier claim, even under the same
/// agent id (a worker restarted under its fixed id while the old one was paused): its touch,
/// update, done and abandon are refused and change nothing.
#[test]
fn an_ended_claim_cannot_act_on_the_next_one_under_the_same_agent() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"once","ch":"jobs"}));
    let first = s.task_action(&id, "claim", json!({"from":"w","lease_s":60}));
    assert_eq!(first.json()["claim"], 1, "{}", first.text());
    assert_eq!(
        s.task_action(&id, "abandon", json!({"from":"w","claim":1}))
            .status,
        200
    );
    let second = s.task_action(&id, "claim", json!({"from":"w","lease_s":60}));
    assert_eq!(second.json()["claim"], 2, "{}", second.text());
    let before = s.task(&id);
    assert_eq!(before["claims"], 2);
    let claimed = announcements(&s, "task.claimed", &id);
    assert_eq!(claimed.last().unwrap()["body"]["claim"], 2);
    for (action, body) in [
        ("touch", json!({"from":"w","claim":1,"lease_s":600})),
        ("update", json!({"from":"w","claim":1,"note":"stale"})),
        ("done", json!({"from":"w","claim":1,"result":"stale"})),
        ("abandon", json!({"from":"w","claim":1})),
    ] {
        let r = s.task_action(&id, action, body);
        assert_eq!(r.status, 409, "{action}: {}", r.text());
        assert_eq!(
            r.error(),
            format!("task {id}: claim 1 has ended; it is claimed again (claim 2)")
        );
    }
    assert_eq!(s.task(&id), before, "the refused calls changed nothing");
    assert!(announcements(&s, "task.updated", &id).is_empty());
    for bad in [json!(0), json!(-1), json!(1.5), json!("2")] {
        let r = s.task_action(&id, "touch", json!({"from":"w","claim":bad}));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // The current claim acts; so does a caller that names no claim (agent id alone).
    let r = s.task_action(&id, "update", json!({"from":"w","claim":2,"note":"live"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let updated = announcements(&s, "task.updated", &id);
    assert_eq!(updated[0]["body"], json!({"task-id": id, "note": "live"}));
    let r = s.task_action(&id, "done", json!({"from":"w","claim":2,"result":"fresh"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.task(&id)["result"], "fresh");
    assert_eq!(s.task(&id)["claims"], 2);
}

#[test]
fn touch_and_claimer_updates_extend_the_lease() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"long job"}));
    assert_eq!(
        s.task_action(&id, "touch", json!({"from":"w1"})).status,
        409,
        "not claimed"
    );
    let first = s
        .task_action(&id, "claim", json!({"from":"w1","lease_s":3}))
        .json()["lease_expires_at"]
        .as_f64()
        .unwrap();
    let r = s.task_action(&id, "touch", json!({"from":"w2"}));
    assert_eq!(r.status, 403);
    r.error();
    // Keep it alive past the original lease, alternating touch and update. Renewing every
    // 250 ms leaves a 3 s lease a tenfold margin for a busy machine's scheduling.
    let mut last = first;
    let mut n = 0;
    while unix_now() < first + 1.0 {
        std::thread::sleep(Duration::from_millis(250));
        let r = if n % 2 == 0 {
            let r = s.task_action(&id, "touch", json!({"from":"w1"}));
            assert_eq!(r.status, 200, "{}", r.text());
            r
        } else {
            assert_eq!(
                s.task_action(&id, "update", json!({"from":"w1","pct":n}))
                    .status,
                200
            );
            s.get(&format!("/tasks/{id}"))
        };
        let expires = r.json()["lease_expires_at"].as_f64().unwrap();
        assert!(expires > last, "lease moved forward");
        last = expires;
        n += 1;
    }
    assert_eq!(s.task(&id)["status"], "claimed");
    assert!(announcements(&s, "task.expired", &id).is_empty());
    // Someone else's update is refused (only the claimer reports progress) and does not
    // extend it.
    let before = s.task(&id)["lease_expires_at"].as_f64().unwrap();
    assert_eq!(
        s.task_action(&id, "update", json!({"from":"boss","note":"hi"}))
            .status,
        403
    );
    assert_eq!(s.task(&id)["lease_expires_at"].as_f64().unwrap(), before);
    // touch can change the lease length.
    let r = s.task_action(&id, "touch", json!({"from":"w1","lease_s":600}));
    let expires = r.json()["lease_expires_at"].as_f64().unwrap();
    assert!(expires - before > 500.0);
    assert_eq!(s.task_action(&id, "done", json!({"from":"w1"})).status, 200);
    assert_eq!(s.task(&id)["lease_expires_at"], Value::Null);
}

/// Unix seconds, the clock the server's lease times are in.
#[test]
fn a_claim_without_lease_never_expires_and_touch_needs_one() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"classic"}));
    assert_eq!(s.task_action(&id, "claim", json!({"from":"w"})).status, 200);
    assert_eq!(s.task(&id)["lease_expires_at"], Value::Null);
    assert_eq!(s.task_action(&id, "touch", json!({"from":"w"})).status, 400);
    let other = s.create_task(json!({"from":"boss","title":"leased"}));
    s.task_action(&other, "claim", json!({"from":"w","lease_s":1}));
    wait_for(WAIT, "the leased one to expire", || {
        (s.task(&other)["status"] == "open").then_some(())
    });
    assert_eq!(s.task(&id)["status"], "claimed");
}

#[test]
fn leases_that_ran_out_while_the_server_was_down_expire_at_start_up() {
    let mut s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"orphan"}));
    s.task_action(&id, "claim", json!({"from":"crashed.worker","lease_s":1}));
    let status = s.stop();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(1500));
    s.restart_stopped();
    let t = wait_for(WAIT, "expiry at start-up", || {
        let t = s.task(&id);
        (t["status"] == "open").then_some(t)
    });
    assert_eq!(t["attempts"], 1);
    let expired = announcements(&s, "task.expired", &id);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["body"]["claimed-by"], "crashed.worker");
}

#[test]
fn attempts_lead_to_failed_and_retry_revives() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"doomed","max_attempts":2}));
    s.task_action(&id, "claim", json!({"from":"w"}));
    let r = s.task_action(&id, "abandon", json!({"from":"w","reason":"try 1"}));
    assert_eq!(r.json(), json!({"id": id, "status":"open"}));
    assert_eq!(s.task(&id)["attempts"], 1);
    s.task_action(&id, "claim", json!({"from":"w","lease_s":1}));
    let t = wait_for(WAIT, "failure after expiry", || {
        let t = s.task(&id);
        (t["status"] == "failed").then_some(t)
    });
    assert_eq!(t["attempts"], 2);
    let failed = announcements(&s, "task.failed", &id);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["body"]["attempts"], 2);
    let dead: Vec<String> = s
        .get("/tasks?status=failed")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dead, vec![id.clone()]);
    assert_eq!(s.task_action(&id, "claim", json!({"from":"w"})).status, 409);
    let r = s.post_json("/tasks/claim", json!({"from":"w"}));
    assert_eq!(r.status, 204, "failed tasks are not handed out");
    let r = s.task_action(&id, "retry", json!({"from":"boss"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"id": id, "status":"open"}));
    let t = s.task(&id);
    assert_eq!(t["status"], "open");
    assert_eq!(t["attempts"], 0);
    assert_eq!(announcements(&s, "task.retried", &id).len(), 1);
    assert_eq!(
        s.task_action(&id, "retry", json!({"from":"boss"})).status,
        409
    );
    // An abandon that uses the last attempt fails it too, and says so.
    let last = s.create_task(json!({"from":"boss","title":"once","max_attempts":1}));
    s.task_action(&last, "claim", json!({"from":"w"}));
    let r = s.task_action(&last, "abandon", json!({"from":"w"}));
    assert_eq!(r.json(), json!({"id": last, "status":"failed"}));
}

/// A claimer that gives a task back for a reason of its own (its worker stopping) says
/// `count_attempt: false`: the task goes back open with its attempts as they were, however
/// often that happens, and the announcement says so.
#[test]
fn a_task_given_back_without_counting_keeps_its_attempts() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"long","max_attempts":1}));
    for _ in 0..3 {
        assert_eq!(s.task_action(&id, "claim", json!({"from":"w"})).status, 200);
        let back = json!({"from":"w","reason":"worker stopped","count_attempt":false});
        let r = s.task_action(&id, "abandon", back);
        assert_eq!(r.json(), json!({"id": id, "status":"open"}));
    }
    assert_eq!(s.task(&id)["attempts"], 0);
    let said = announcements(&s, "task.abandoned", &id);
    assert_eq!(said.len(), 3);
    assert_eq!(said[0]["body"]["attempt_counted"], false);
    s.task_action(&id, "claim", json!({"from":"w"}));
    for bad in [json!("no"), json!(0)] {
        let r = s.task_action(&id, "abandon", json!({"from":"w","count_attempt":bad}));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // Counted, the one attempt is used and the task fails.
    let r = s.task_action(&id, "abandon", json!({"from":"w","count_attempt":true}));
    assert_eq!(r.json(), json!({"id": id, "status":"failed"}));
}

#[test]
fn delays_hide_a_task_until_its_time() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"later","delay_s":1}));
    let r = s.task_action(&id, "claim", json!({"from":"w"}));
    assert_eq!(r.status, 409);
    assert!(r.error().contains("delayed"));
    assert_eq!(s.post_json("/tasks/claim", json!({"from":"w"})).status, 204);
    // A long poll wakes up for it when its time comes.
    let r = s.post_json("/tasks/claim", json!({"from":"w","wait_s":10}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], json!(id));
    // Abandon with a delay: back off before the next attempt.
    s.task_action(&id, "abandon", json!({"from":"w","delay_s":1}));
    assert_eq!(s.post_json("/tasks/claim", json!({"from":"w"})).status, 204);
    let t = s.task(&id);
    assert!(t["not_before"].as_f64().unwrap() > t["updated_at"].as_f64().unwrap());
    let r = s.post_json("/tasks/claim", json!({"from":"w","wait_s":10}));
    assert_eq!(r.status, 200);
}

#[test]
fn claim_next_orders_by_priority_then_age_and_respects_assignment() {
    let s = Server::start();
    let low = s.create_task(json!({"from":"b","title":"low","priority":-1}));
    let old = s.create_task(json!({"from":"b","title":"old"}));
    let young = s.create_task(json!({"from":"b","title":"young"}));
    let urgent = s.create_task(json!({"from":"b","title":"urgent","priority":5}));
    let theirs = s.create_task(json!({"from":"b","title":"theirs","priority":9,"for":"other"}));
    let mine = s.create_task(json!({"from":"b","title":"mine","priority":3,"for":"me"}));
    let elsewhere = s.create_task(json!({"from":"b","title":"else","priority":4,"ch":"side"}));
    let next = |ch: Option<&str>| -> Option<String> {
        let mut body = json!({"from":"me","lease_s":60});
        if let Some(ch) = ch {
            body["ch"] = json!(ch);
        }
        let r = s.post_json("/tasks/claim", body);
        match r.status {
            200 => Some(r.json()["id"].as_str().unwrap().to_string()),
            204 => None,
            other => panic!("{other}: {}", r.text()),
        }
    };
    assert_eq!(next(Some("tasks")).as_deref(), Some(urgent.as_str()));
    let claimed = s.task(&urgent);
    assert_eq!(claimed["claimed_by"], "me");
    assert!(claimed["lease_expires_at"].as_f64().is_some());
    assert_eq!(next(None).as_deref(), Some(elsewhere.as_str()));
    assert_eq!(next(None).as_deref(), Some(mine.as_str()));
    assert_eq!(next(None).as_deref(), Some(old.as_str()));
    assert_eq!(next(None).as_deref(), Some(young.as_str()));
    assert_eq!(next(None).as_deref(), Some(low.as_str()));
    assert_eq!(
        next(None),
        None,
        "the task for another agent is never handed to me"
    );
    assert_eq!(s.task(&theirs)["status"], "open");
    // `exclude`: tasks the caller does not want back (say, ones it just failed).
    let a = s.create_task(json!({"from":"b","title":"a"}));
    let b = s.create_task(json!({"from":"b","title":"b"}));
    let r = s.post_json("/tasks/claim", json!({"from":"me","exclude":[a]}));
    assert_eq!(r.json()["id"], json!(b));
    let r = s.post_json("/tasks/claim", json!({"from":"me","exclude":[a]}));
    assert_eq!(r.status, 204);
    assert_eq!(s.task(&a)["status"], "open");
    for bad in [
        json!({}),
        json!({"from":"me","ch":"bad channel"}),
        json!({"from":"me","wait_s":-1}),
        json!({"from":"me","lease_s":-5}),
        json!({"from":"me","exclude":"nope"}),
        json!({"from":"me","exclude":["not-an-id"]}),
    ] {
        assert_eq!(
            s.post_json("/tasks/claim", bad.clone()).status,
            400,
            "{bad}"
        );
    }
}

#[test]
fn concurrent_claim_next_hands_each_task_out_exactly_once() {
    let s = Server::start();
    for i in 0..500 {
        s.create_task(json!({"from":"b","title":format!("t{i}"),"priority": i % 7}));
    }
    let callers = 50;
    let barrier = Arc::new(Barrier::new(callers));
    let got = Arc::new(Mutex::new(Vec::new()));
    let port = s.port;
    let handles: Vec<_> = (0..callers)
        .map(|n| {
            let (barrier, got) = (barrier.clone(), got.clone());
            std::thread::spawn(move || {
                let body = json!({"from": format!("w{n}")}).to_string();
                barrier.wait();
                loop {
                    let r = request(port, "POST", "/tasks/claim", &[], body.as_bytes());
                    match r.status {
                        200 => got
                            .lock()
                            .unwrap()
                            .push(r.json()["id"].as_str().unwrap().to_string()),
                        204 => break,
                        other => panic!("{other}: {}", r.text()),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = got.lock().unwrap();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), 500);
    assert_eq!(unique.len(), 500);
    assert_eq!(s.get("/tasks?status=open").json(), json!([]));
}

#[test]
fn a_long_poll_returns_as_soon_as_a_task_is_created() {
    let s = Server::start();
    let port = s.port;
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let body = json!({"from":"w","wait_s":30,"ch":"jobs"}).to_string();
        let r = request(port, "POST", "/tasks/claim", &[], body.as_bytes());
        (r.status, r.json(), started.elapsed())
    });
    wait_for(WAIT, "the claim to be waiting", || {
        (s.get("/status").json()["claims-waiting"] == 1).then_some(())
    });
    // A task on another channel does not satisfy it: it wakes, finds nothing, waits again.
    s.create_task(json!({"from":"b","title":"elsewhere"}));
    let id = s.create_task(json!({"from":"b","title":"wanted","ch":"jobs"}));
    let (status, body, waited) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["id"], json!(id));
    assert!(
        waited < Duration::from_secs(10),
        "woke on creation, not timeout: {waited:?}"
    );
    // With nothing to claim, wait_s bounds the wait and the answer is 204.
    let r = s.post_json("/tasks/claim", json!({"from":"w","wait_s":0.5,"ch":"jobs"}));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
}

/// The first schema, as the previous release wrote it.
const SCHEMA_V1: &str = "
    CREATE TABLE messages (id TEXT PRIMARY KEY, ch TEXT NOT NULL, type TEXT NOT NULL,
        envelope TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX messages_by_channel ON messages (ch, id);
    CREATE TABLE channels (name TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE tasks (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        created_by TEXT NOT NULL, assigned_to TEXT, claimed_by TEXT, claimed_at REAL,
        status TEXT NOT NULL, title TEXT NOT NULL, context TEXT NOT NULL, result TEXT,
        files TEXT NOT NULL, ch TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX tasks_by_status ON tasks (status, id);
    CREATE TABLE presence (agent_id TEXT PRIMARY KEY, last_seen REAL NOT NULL,
        channels TEXT NOT NULL, meta TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO messages VALUES ('01HZZZZZZZZZZZZZZZZZZZZZZ0', 'general', 'msg.old',
        '{\"id\":\"01HZZZZZZZZZZZZZZZZZZZZZZ0\",\"ts\":1717000000.0,\"from\":\"a\",\"ch\":\"general\",\"type\":\"msg.old\",\"v\":1,\"body\":{},\"files\":[],\"reply_to\":null}');
    INSERT INTO channels VALUES ('general');
    INSERT INTO tasks VALUES ('01HZZZZZZZZZZZZZZZZZZZZZZ1', 1717000000.0, 1717000001.0, 'boss',
        NULL, 'w', 1717000001.0, 'claimed', 'inherited', '{\"k\":1}', NULL, '[]', 'tasks');
    INSERT INTO tasks VALUES ('01HZZZZZZZZZZZZZZZZZZZZZZ2', 1717000000.0, 1717000002.0, 'boss',
        'x', 'x', 1717000001.0, 'done', 'finished', '{}', '{\"ok\":true}', '[]', 'tasks');
    PRAGMA user_version = 1;";

#[test]
fn a_database_from_the_first_schema_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
    }
    // Retention off: these rows are older than 30 days.
    let s = Server::start_with(&[
        ("DB_PATH", db.to_str().unwrap()),
        ("WORKSHOP_RETENTION_DAYS", "0"),
    ]);
    let history = s.history("/ch/general/history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["type"], "msg.old");
    let inherited = s.task("01HZZZZZZZZZZZZZZZZZZZZZZ1");
    assert_eq!(inherited["status"], "claimed");
    assert_eq!(inherited["claimed_by"], "w");
    assert_eq!(inherited["context"], json!({"k":1}));
    assert_eq!(inherited["attempts"], 0);
    assert_eq!(inherited["max_attempts"], 5);
    assert_eq!(inherited["priority"], 0);
    assert_eq!(inherited["lease_expires_at"], Value::Null);
    let finished = s.task("01HZZZZZZZZZZZZZZZZZZZZZZ2");
    assert_eq!(finished["result"], json!({"ok":true}));
    assert_eq!(s.get("/status").json()["tasks"], 2);
    // The old claim still works as it always did, and new ids sort after the old ones.
    let r = s.task_action("01HZZZZZZZZZZZZZZZZZZZZZZ1", "done", json!({"from":"w"}));
    assert_eq!(r.status, 200);
    let id = s.publish("general", "msg.new", json!({}));
    assert!(id.as_str() > "01HZZZZZZZZZZZZZZZZZZZZZZ1");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // Every migration ran, however many later issues add.
    assert_eq!(version, workshop::store::schema::VERSION as i64);
}
