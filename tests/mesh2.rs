//! Issue 17, parts 3 and 5 against the real binary: full-text search (`GET /search`) and
//! advisory locks (`/locks`), including their migration, retention, expiry and races.
mod common;

use common::{Server, wait_for};
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn publish_as(s: &Server, ch: &str, from: &str, kind: &str, body: Value) -> String {
    let r = s.post_json(
        &format!("/ch/{ch}"),
        json!({"from": from, "type": kind, "body": body}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn search(s: &Server, query: &str) -> Vec<Value> {
    s.history(&format!("/search?{query}"))
}

fn ids(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

fn lock_types(s: &Server, ch: &str) -> Vec<String> {
    s.history(&format!("/ch/{ch}/history?type=lock."))
        .iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .collect()
}

// ---- search ---------------------------------------------------------------------------

#[test]
fn search_finds_every_word_best_match_first() {
    let s = Server::start();
    let weak = publish_as(
        &s,
        "jobs",
        "worker.a",
        "job.log",
        json!({"text": "the nightly backup wrote many files and then the disk was full of them, \
                        so it stopped, and somebody will have to look at it in the morning"}),
    );
    let strong = publish_as(
        &s,
        "jobs",
        "worker.b",
        "job.error",
        json!({"error": {"reason": "disk full", "detail": ["disk full again"]}, "code": 28}),
    );
    publish_as(
        &s,
        "jobs",
        "worker.a",
        "job.log",
        json!({"text": "disk ok"}),
    );
    publish_as(
        &s,
        "ops",
        "worker.c",
        "msg.text",
        json!({"text": "tank full"}),
    );
    // Indexed in the insert's transaction: searchable as soon as the 201 came back.
    let found = search(&s, "q=disk+full");
    assert_eq!(ids(&found), [strong.as_str(), weak.as_str()], "{found:#?}");
    assert_eq!(found[0]["body"]["code"], 28, "whole envelopes come back");
    // Words match regardless of case and order; punctuation inside a word is a phrase.
    assert_eq!(ids(&search(&s, "q=FULL%20Disk")).len(), 2);
    assert_eq!(ids(&search(&s, "q=disk-full")), [strong.as_str()]);
    // Type, sender and channel are indexed too; numbers and keys are not text.
    assert_eq!(ids(&search(&s, "q=error")), [strong.as_str()]);
    assert_eq!(ids(&search(&s, "q=worker.c")).len(), 1);
    assert_eq!(ids(&search(&s, "q=ops")).len(), 1);
    assert!(search(&s, "q=28").is_empty());
    assert!(search(&s, "q=reason").is_empty());
    assert!(search(&s, "q=disk+full+printer").is_empty());
}

#[test]
fn search_filters_and_limits() {
    let s = Server::start();
    let mut all = Vec::new();
    for i in 0..6 {
        let (ch, from, kind) = match i % 3 {
            0 => ("jobs", "worker.a", "job.log"),
            1 => ("jobs", "worker.b", "alert.disk"),
            _ => ("ops", "worker.a", "alert.disk"),
        };
        all.push(publish_as(&s, ch, from, kind, json!({"text": "disk full"})));
    }
    let found = |q: &str| -> Vec<String> {
        let mut got: Vec<String> = search(&s, &format!("q=disk+full&{q}"))
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        got
    };
    let pick = |idx: &[usize]| -> Vec<String> { idx.iter().map(|i| all[*i].clone()).collect() };
    assert_eq!(found(""), all);
    assert_eq!(found("ch=jobs"), pick(&[0, 1, 3, 4]));
    assert_eq!(found("from=worker.a"), pick(&[0, 2, 3, 5]));
    assert_eq!(found("type=alert."), pick(&[1, 2, 4, 5]));
    assert_eq!(found("ch=jobs&from=worker.b&type=alert"), pick(&[1, 4]));
    assert_eq!(found(&format!("before={}", all[3])), pick(&[0, 1, 2]));
    assert_eq!(found("n=2").len(), 2);
    assert_eq!(
        found("n=100000").len(),
        6,
        "a large n is capped, not refused"
    );
    // Equal matches (the same indexed text): the newest first.
    let tied = search(&s, "q=disk+full&ch=jobs&from=worker.a");
    assert_eq!(ids(&tied), [all[3].as_str(), all[0].as_str()]);
    assert!(found("ch=nowhere").is_empty());
}

#[test]
fn bad_searches_are_400_and_fts_syntax_is_plain_text() {
    let s = Server::start();
    publish_as(&s, "c", "a", "t", json!({"text": "AND OR NOT near"}));
    let long = "x".repeat(257);
    let many = vec!["w"; 17].join("+");
    for bad in [
        "",
        "q=",
        "q=+++",
        "q=***",
        &format!("q={long}"),
        &format!("q={many}"),
        "q=x&n=0",
        "q=x&n=abc",
        "q=x&before=nope",
        "q=x&ch=a%2Fb",
    ] {
        let r = s.get(&format!("/search?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(!r.error().is_empty());
    }
    // What FTS5 would read as operators, columns or syntax errors is just words here.
    for q in [
        "AND",
        "OR+NOT",
        "near%28",
        "%22",
        "kind%3Ax",
        "a*",
        "%28%29",
        "%5E",
        "NEAR%28a+b%29",
    ] {
        let r = s.get(&format!("/search?q={q}"));
        assert!(matches!(r.status, 200 | 400), "{q}: {}", r.text());
    }
    assert_eq!(search(&s, "q=AND+OR+NOT").len(), 1);
    // Control characters separate words (FTS5 would end a quoted word at a NUL: a 500).
    for q in ["AND%00OR", "%00AND", "NOT%00", "AND%01OR%1fNOT%7f"] {
        let r = s.get(&format!("/search?q={q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
    }
    assert_eq!(search(&s, "q=AND%00OR").len(), 1);
    assert_eq!(s.post("/search?q=x", "").status, 405);
}

/// An existing database (as a release before search left it) gets every stored message
/// indexed by the migration, with the same text a live insert indexes.
#[test]
fn search_index_is_built_for_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let before = workshop::store::schema::version_before("message_search").expect("migration");
    workshop::store::schema::migrate_to(&conn, before).unwrap();
    let stored = [
        (
            "01J0000000000000000000000A",
            "old.agent",
            "msg.note",
            json!({"a": {"b": ["legacy", {"c": "zeppelin"}]}, "n": 7}),
        ),
        (
            "01J0000000000000000000000B",
            "old.agent",
            "msg.text",
            json!("zeppelin"),
        ),
        (
            "01J0000000000000000000000C",
            "zeppelin.fan",
            "msg.text",
            json!({"n": 1}),
        ),
    ];
    for (id, from, kind, body) in &stored {
        let envelope = json!({"id": id, "ts": 1.0, "from": from, "ch": "ops", "type": kind,
            "v": 1, "body": body, "files": [], "reply_to": null});
        conn.execute(
            "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, 'ops', ?2, ?3)",
            rusqlite::params![id, kind, envelope.to_string()],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO channels (name) VALUES ('ops')", [])
        .unwrap();
    drop(conn);
    let s = Server::start_with_options(common::Options {
        db_path: Some(db),
        // The made-up ids are from 2024: keep them through start-up's retention.
        env: &[("WORKSHOP_RETENTION_DAYS", "0")],
        ..Default::default()
    });
    let found = |q: &str| -> Vec<String> {
        let mut got: Vec<String> = search(&s, q)
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        got
    };
    let [a, b, c] = [stored[0].0, stored[1].0, stored[2].0];
    assert_eq!(found("q=legacy+zeppelin"), [a], "nested string values");
    assert_eq!(
        found("q=zeppelin"),
        [a, b, c],
        "a string body, and the sender"
    );
    assert!(found("q=7").is_empty(), "numbers are not text");
    // New messages are indexed after the migrated ones.
    let new = publish_as(&s, "ops", "new.agent", "msg.text", json!({"t": "zeppelin"}));
    assert_eq!(found("q=zeppelin").len(), 4);
    assert!(found("q=new.agent").contains(&new));
    assert_eq!(s.get("/locks").json(), json!([]));
}

/// The writer indexes new messages a batch at a time, shortly after their commit; a search
/// first has it index what is pending, so a search finds every message published before it,
/// however soon after the 201 it comes.
#[test]
fn a_search_finds_a_message_the_moment_its_publish_is_answered() {
    let s = Server::start();
    for n in 0..40 {
        let word = format!("quokka{n}");
        let id = publish_as(&s, "zoo", "keeper", "msg.text", json!({"text": word}));
        assert_eq!(ids(&search(&s, &format!("q={word}"))), [id.as_str()]);
    }
    // And while eight other publishers keep the writer busy.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..8)
        .map(|t| {
            let (port, stop) = (s.port, stop.clone());
            std::thread::spawn(move || {
                let body = json!({"from": "noise", "type": "msg.text", "body": {"text": t}});
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = common::try_post_json(port, "/ch/noise", &body).expect("answer");
                    assert_eq!(r.status, 201, "{}", r.text());
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    for n in 0..40 {
        let word = format!("wombat{n}");
        let id = publish_as(&s, "zoo", "keeper", "msg.text", json!({"text": word}));
        assert_eq!(ids(&search(&s, &format!("q={word}"))), [id.as_str()]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: usize = noise.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(sent > 0, "the other publishers published");
}

/// A crash loses the writer's list of messages not yet indexed, never the messages: start-up
/// indexes every stored message the index lacks.
#[test]
fn messages_a_crash_left_unindexed_are_indexed_at_start_up() {
    let mut s = Server::start();
    let before = publish_as(&s, "c", "a", "t", json!({"text": "narwhal before"}));
    s.stop();
    // What a crash between a commit and its indexing leaves: a stored message, no index rows.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = ulid::Ulid::from_parts(now_ms, 1).to_string();
    let envelope = json!({"id": id, "ts": 1.0, "from": "deep.sea", "ch": "c", "type": "t",
        "v": 1, "body": {"text": "narwhal after"}, "files": [], "reply_to": null});
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    conn.execute(
        "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, 'c', 't', ?2)",
        rusqlite::params![id, envelope.to_string()],
    )
    .unwrap();
    let indexed = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM message_search_ids", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(indexed(&conn), 1, "only the message published before");
    drop(conn);
    s.restart_stopped();
    let mut found = ids(&search(&s, "q=narwhal"))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    found.sort();
    assert_eq!(found, [before.clone(), id.clone()]);
    assert_eq!(
        ids(&search(&s, "q=deep.sea")),
        [id.as_str()],
        "its sender too"
    );
    assert!(
        s.stderr().contains("indexed 1 messages for search"),
        "{}",
        s.stderr()
    );

    // And a real crash right after a burst of publishes.
    let burst: Vec<String> = (0..50)
        .map(|n| {
            publish_as(
                &s,
                "c",
                "a",
                "t",
                json!({"text": format!("orca number {n}")}),
            )
        })
        .collect();
    s.kill();
    s.restart_stopped();
    let found = search(&s, "q=orca&n=500");
    let mut found: Vec<String> = ids(&found).into_iter().map(String::from).collect();
    found.sort();
    assert_eq!(
        found, burst,
        "every acknowledged message is searchable after the crash"
    );
}

/// Retention deletes old messages from the index too (in the same prune).
#[test]
fn search_index_is_pruned_with_retention() {
    let mut s = Server::start();
    let kept = publish_as(&s, "c", "a", "t", json!({"text": "walrus kept"}));
    s.stop();
    // A message from 40 days ago, indexed as the server would have indexed it then.
    let old_ms = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64)
        - 40 * 86_400_000;
    let old_id = ulid::Ulid::from_parts(old_ms, 1).to_string();
    let envelope = json!({"id": old_id, "ts": old_ms as f64 / 1000.0, "from": "a", "ch": "c",
        "type": "t", "v": 1, "body": {"text": "walrus old"}, "files": [], "reply_to": null});
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    conn.execute(
        "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, 'c', 't', ?2)",
        rusqlite::params![old_id, envelope.to_string()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO message_search_ids (id, ch) VALUES (?1, 'c')",
        [&old_id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO message_search (rowid, kind, sender, ch, text)
         VALUES (last_insert_rowid(), 't', 'a', 'c', 'walrus old')",
        [],
    )
    .unwrap();
    let rows = |conn: &rusqlite::Connection| -> (i64, i64) {
        let ids = conn
            .query_row("SELECT count(*) FROM message_search_ids", [], |r| r.get(0))
            .unwrap();
        let fts = conn
            .query_row(
                "SELECT count(*) FROM message_search WHERE message_search MATCH 'walrus'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (ids, fts)
    };
    assert_eq!(rows(&conn), (2, 2));
    drop(conn);
    // Start-up runs retention (30 days by default).
    s.restart_stopped();
    assert_eq!(ids(&search(&s, "q=walrus")), [kept.as_str()]);
    s.stop();
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    assert_eq!(
        rows(&conn),
        (1, 1),
        "the index rows of the pruned message are gone"
    );
}

// ---- locks ----------------------------------------------------------------------------

fn acquire(s: &Server, body: Value) -> common::Response {
    s.post_json("/locks/acquire", body)
}

#[test]
fn lock_acquire_renew_release_with_announcements() {
    let s = Server::start();
    let mut stream = s.sse("/ch/locks", &[]);
    let r = acquire(
        &s,
        json!({"from": "coder.a", "name": "src/main.rs", "ttl_s": 600, "note": "refactor"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    assert_eq!(first["name"], "src/main.rs");
    assert_eq!(first["holder"], "coder.a");
    assert_eq!(first["note"], "refactor");
    assert_eq!(first["renewed"], false);
    let expires = first["expires_at"].as_f64().unwrap();
    let (_, announced) = stream
        .next_message(DEADLINE)
        .expect("lock.acquired on the stream");
    assert_eq!(announced["type"], "lock.acquired");
    assert_eq!(announced["from"], "coder.a");
    assert_eq!(announced["body"]["name"], "src/main.rs");
    assert_eq!(announced["body"]["expires_at"], first["expires_at"]);

    // Someone else: 409 naming the holder; nothing changes, nothing is announced.
    let r = acquire(
        &s,
        json!({"from": "coder.b", "name": "src/main.rs", "ttl_s": 5}),
    );
    assert_eq!(r.status, 409);
    assert!(r.error().contains("coder.a"), "{}", r.text());
    assert_eq!(r.json()["holder"], "coder.a");
    assert_eq!(r.json()["expires_at"], first["expires_at"]);

    // The holder renews: later deadline, note kept when not given.
    let r = acquire(
        &s,
        json!({"from": "coder.a", "name": "src/main.rs", "ttl_s": 900}),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["expires_at"].as_f64().unwrap() > expires);
    assert_eq!(r.json()["note"], "refactor");
    assert_eq!(r.json()["renewed"], true);

    let listed = s.get("/locks").json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["holder"], "coder.a");
    assert_eq!(listed[0]["ch"], "locks");
    assert_eq!(listed[0]["expires_at"], r.json()["expires_at"]);

    let r = s.post_json(
        "/locks/release",
        json!({"from": "coder.b", "name": "src/main.rs"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = s.post_json(
        "/locks/release",
        json!({"from": "coder.a", "name": "src/main.rs"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.post_json(
        "/locks/release",
        json!({"from": "coder.a", "name": "src/main.rs"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(s.get("/locks").json(), json!([]));
    assert_eq!(
        lock_types(&s, "locks"),
        ["lock.acquired", "lock.acquired", "lock.released"]
    );
    let history = s.history("/ch/locks/history");
    assert_eq!(history[1]["body"]["renewed"], true);
    assert_eq!(history[2]["from"], "coder.a");
    // Free again: anyone may take it.
    let r = acquire(
        &s,
        json!({"from": "coder.b", "name": "src/main.rs", "ttl_s": 5}),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn locks_announce_on_their_channel_and_list_by_prefix() {
    let s = Server::start();
    for (name, ch) in [
        ("src/a.rs", "dev"),
        ("src/b/c.rs", "dev"),
        ("docs/x.md", "docs"),
    ] {
        let r = acquire(
            &s,
            json!({"from": "a", "name": name, "ttl_s": 60, "ch": ch}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let names = |q: &str| -> Vec<String> {
        s.get(&format!("/locks{q}"))
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["docs/x.md", "src/a.rs", "src/b/c.rs"]);
    assert_eq!(names("?prefix=src/"), ["src/a.rs", "src/b/c.rs"]);
    assert_eq!(names("?prefix=src/b"), ["src/b/c.rs"]);
    assert!(
        names("?prefix=%25").is_empty(),
        "% is literal, not a wildcard"
    );
    assert_eq!(lock_types(&s, "dev"), ["lock.acquired", "lock.acquired"]);
    assert_eq!(lock_types(&s, "docs"), ["lock.acquired"]);
    // Release announces on the lock's own channel.
    let r = s.post_json("/locks/release", json!({"from": "a", "name": "docs/x.md"}));
    assert_eq!(r.status, 200);
    assert_eq!(lock_types(&s, "docs"), ["lock.acquired", "lock.released"]);
    assert_eq!(s.get("/channels").json(), json!(["dev", "docs"]));
}

#[test]
fn bad_lock_requests_are_400_and_change_nothing() {
    let s = Server::start();
    let long = "x".repeat(257);
    let long_note = "n".repeat(1025);
    // Blank clears a note, but the length bound holds for blank text too.
    let long_blank_note = " ".repeat(1025);
    let cases = [
        json!({"name": "a", "ttl_s": 5}),
        json!({"from": "a", "ttl_s": 5}),
        json!({"from": "a", "name": "", "ttl_s": 5}),
        json!({"from": "a", "name": "   ", "ttl_s": 5}),
        json!({"from": "a", "name": long, "ttl_s": 5}),
        json!({"from": "a", "name": "a\u{1b}[2J", "ttl_s": 5}),
        json!({"from": "a", "name": "src/\u{202e}sr.niam", "ttl_s": 5}),
        json!({"from": "a", "name": ["a"], "ttl_s": 5}),
        json!({"from": "a", "name": "a"}),
        json!({"from": "a", "name": "a", "ttl_s": 0.5}),
        json!({"from": "a", "name": "a", "ttl_s": 86_401}),
        json!({"from": "a", "name": "a", "ttl_s": "60"}),
        json!({"from": "a", "name": "a", "ttl_s": 5, "note": 3}),
        json!({"from": "a", "name": "a", "ttl_s": 5, "note": long_note}),
        json!({"from": "a", "name": "a", "ttl_s": 5, "note": long_blank_note}),
        json!({"from": "a", "name": "a", "ttl_s": 5, "ch": "no/slash"}),
        json!({"from": "a", "name": "a", "ttl_s": 5, "ch": 1}),
    ];
    for body in cases {
        let r = acquire(&s, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(!r.error().is_empty());
    }
    for raw in ["", "{", "[]"] {
        assert_eq!(s.post("/locks/acquire", raw).status, 400, "{raw:?}");
        assert_eq!(s.post("/locks/release", raw).status, 400, "{raw:?}");
    }
    assert_eq!(
        s.post_json("/locks/release", json!({"name": "a"})).status,
        400
    );
    assert_eq!(
        s.get(&format!("/locks?prefix={}", "p".repeat(257))).status,
        400
    );
    assert_eq!(s.get("/locks/acquire").status, 405);
    assert_eq!(s.post("/locks", "{}").status, 405);
    assert_eq!(s.post("/locks/steal", "{}").status, 404);
    assert_eq!(s.get("/locks").json(), json!([]));
    assert_eq!(s.status()["messages"], 0);
}

#[test]
fn exactly_one_of_fifty_concurrent_acquirers_wins() {
    let s = Arc::new(Server::start());
    let barrier = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let body = json!({"from": format!("agent.{i}"), "name": "deploy", "ttl_s": 60});
                let r = common::try_post_json(s.port, "/locks/acquire", &body).expect("answer");
                (r.status, r.json())
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(st, _)| *st == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let holder = winners[0]["holder"].as_str().unwrap();
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 409), "{status} {body}");
        assert_eq!(body["holder"], holder);
    }
    assert_eq!(lock_types(&s, "locks"), ["lock.acquired"]);
}

#[test]
fn a_lock_expires_within_a_second_of_its_deadline() {
    let s = Server::start();
    let mut stream = s.sse("/ch/locks?type=lock.expired", &[]);
    let r = acquire(
        &s,
        json!({"from": "a", "name": "short", "ttl_s": 1, "note": "n"}),
    );
    assert_eq!(r.status, 200);
    let deadline = r.json()["expires_at"].as_f64().unwrap();
    let (_, expired) = stream
        .next_message(DEADLINE)
        .expect("lock.expired on the stream");
    assert_eq!(expired["from"], "workshop");
    assert_eq!(expired["body"]["name"], "short");
    assert_eq!(expired["body"]["holder"], "a");
    // The server stamped the announcement when it expired the lock.
    let late = expired["ts"].as_f64().unwrap() - deadline;
    assert!(
        (0.0..=1.0).contains(&late),
        "expired {late:.3} s after the deadline"
    );
    assert_eq!(s.get("/locks").json(), json!([]));
    // Taken again by someone else at once, and renewal of a lock that ran out is a new lock.
    let r = acquire(&s, json!({"from": "b", "name": "short", "ttl_s": 60}));
    assert_eq!(r.status, 200);
    assert_eq!(
        lock_types(&s, "locks"),
        ["lock.acquired", "lock.expired", "lock.acquired"]
    );
}

#[test]
fn locks_that_ran_out_while_the_server_was_down_expire_at_start_up() {
    let mut s = Server::start();
    let r = acquire(&s, json!({"from": "a", "name": "nightly", "ttl_s": 1}));
    assert_eq!(r.status, 200);
    let deadline = r.json()["expires_at"].as_f64().unwrap();
    let r = acquire(&s, json!({"from": "a", "name": "long", "ttl_s": 3600}));
    assert_eq!(r.status, 200);
    s.stop();
    wait_for(DEADLINE, "the lock's deadline to pass", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        (now > deadline + 0.1).then_some(())
    });
    s.restart_stopped();
    let expired = wait_for(DEADLINE, "lock.expired after start-up", || {
        s.history("/ch/locks/history?type=lock.expired")
            .into_iter()
            .next()
    });
    assert_eq!(expired["body"]["name"], "nightly");
    let listed = s.get("/locks").json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "long", "a live lock survives a restart");
}

/// `GET /locks` answers the first `n` by name (100 unless given, at most 1000).
#[test]
fn the_lock_list_is_bounded_by_n() {
    let s = Server::start();
    for i in 0..105 {
        let r = acquire(
            &s,
            json!({"from": "a", "name": format!("f{i:03}"), "ttl_s": 600}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let names = |path: &str| s.list_field(path, "name");
    let all: Vec<String> = (0..105).map(|i| format!("f{i:03}")).collect();
    assert_eq!(names("/locks"), all[..100]);
    assert_eq!(names("/locks?n=2"), all[..2]);
    assert_eq!(names("/locks?n=5000"), all);
    assert_eq!(names("/locks?prefix=f10&n=3"), all[100..103]);
    for bad in ["0", "-1", "x"] {
        assert_eq!(s.get(&format!("/locks?n={bad}")).status, 400, "{bad}");
    }
    let listed = s.get("/locks?n=1").json();
    assert_eq!(listed[0]["holder"], "a");
    assert_eq!(listed[0]["ch"], "locks");
    s.assert_no_panic();
}

/// Acquiring announces on a channel, so the loop guard holds back an agent that acquires in
/// a loop, as it does one that publishes in a loop; releasing is never held back.
#[test]
fn the_loop_guard_throttles_lock_acquires() {
    // 0.1 per second: a burst of one, then one more every 10 s.
    let s = Server::start_with(&[("WORKSHOP_RATE", "0.1")]);
    let mut passed = 0;
    let refused = loop {
        let r = acquire(
            &s,
            json!({"from": "looper", "name": "hot", "ttl_s": 600, "ch": "work"}),
        );
        if r.status != 200 {
            break r;
        }
        passed += 1;
        assert!(passed < 50, "never throttled");
    };
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    let other = acquire(&s, json!({"from": "calm", "name": "cold", "ttl_s": 600}));
    assert_eq!(other.status, 200, "others are not held back");
    let r = s.post_json("/locks/release", json!({"from": "looper", "name": "hot"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let history = s.history("/ch/work/history");
    let acquired = history
        .iter()
        .filter(|m| m["type"] == "lock.acquired")
        .count();
    assert_eq!(acquired, passed, "a refused acquire is not announced");
    let throttled: Vec<&Value> = history
        .iter()
        .filter(|m| m["type"] == "workshop.throttled")
        .collect();
    assert_eq!(throttled.len(), 1, "{history:?}");
    assert_eq!(throttled[0]["body"]["agent"], "looper");
    s.assert_no_panic();
}
