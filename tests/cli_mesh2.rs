//! `workshop search`, `lock`, `unlock` and `locks` (issue 17, parts 3 and 5): the built binary
//! as a subprocess against a real server.
mod cli_support;
mod common;

use cli_support::{Cli, json, poll, script};
use common::Server;
use serde_json::{Value, json};

const ME: &str = "coder.alice";

fn lock_messages(hub: &Server) -> Vec<Value> {
    hub.channel_history("locks", "type=lock.")
}

fn live_locks(hub: &Server) -> Vec<Value> {
    hub.get("/locks").json().as_array().unwrap().clone()
}

/// `lock deploy --ttl TTL -- sh -c '…sleep 600'` as ME, once CMD has started.
fn lock_around_a_sleep(hub: &Server, ttl: &str) -> cli_support::Background {
    let cmd = ["sh", "-c", "echo started; exec sleep 600"];
    let args = [&["lock", "deploy", "--ttl", ttl, "--"][..], &cmd].concat();
    let run = hub.spawn(ME, &args, &[]);
    assert_eq!(run.take_lines(1), ["started"]);
    run
}

#[test]
fn new_subcommands_have_help_with_an_example() {
    let hub = Server::start();
    for sub in ["search", "lock", "unlock", "locks"] {
        let help = hub.ok(ME, &[sub, "--help"]);
        assert!(help.contains("Example"), "{sub}: {help}");
    }
}

#[test]
fn search_prints_best_matches_first_with_filters() {
    let hub = Server::start();
    let mut ids = Vec::new();
    for (ch, text) in [
        ("jobs", "disk full"),
        (
            "jobs",
            "the disk of the build box was found to be full today",
        ),
        ("ops", "disk full"),
        ("jobs", "disk fine"),
    ] {
        let body = json!({"text": text}).to_string();
        ids.push(hub.ok(ME, &["pub", ch, "job.log", &body]));
    }
    let out = hub.ok(ME, &["search", "disk full", "--ch", "jobs"]);
    let found: Vec<String> = out
        .lines()
        .map(|l| json(l)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(found, [ids[0].clone(), ids[1].clone()], "{out}");
    let out = hub.ok(ME, &["search", "disk full", "-n", "1", "--pretty"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(" · job.log · "), "{out}");
    let out = hub.ok(ME, &["search", "disk", "--from", "nobody.else"]);
    assert!(out.is_empty(), "{out}");
    let out = hub.ok(
        ME,
        &["search", "full", "--before", &ids[2], "--type", "job."],
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    hub.fails(ME, &["search", "  "], 2);
    hub.fails(ME, &["search", "disk", "--before", "not-an-id"], 2);
}

#[test]
fn lock_unlock_and_locks() {
    let hub = Server::start();
    let out = hub.ok(
        ME,
        &["lock", "src/main.rs", "--ttl", "600", "--note", "refactor"],
    );
    let held = json(&out);
    assert_eq!(held["holder"], ME);
    assert_eq!(held["note"], "refactor");
    // Someone else: exit 4, told who holds it.
    let err = hub.fails("coder.bob", &["lock", "src/main.rs", "--ttl", "60"], 4);
    assert!(err.contains(ME), "{err}");
    hub.ok(ME, &["lock", "docs/readme.md", "--ch", "docs"]);
    let out = hub.ok("coder.bob", &["locks"]);
    let names: Vec<String> = out
        .lines()
        .map(|l| json(l)["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["docs/readme.md", "src/main.rs"]);
    let out = hub.ok("coder.bob", &["locks", "--prefix", "src/", "--pretty"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("src/main.rs  held by coder.alice  "),
        "{out}"
    );
    assert!(out.contains("refactor"), "{out}");
    hub.fails("coder.bob", &["unlock", "src/main.rs"], 4);
    let out = hub.ok(ME, &["unlock", "src/main.rs"]);
    assert_eq!(json(&out)["released"], true);
    hub.fails(ME, &["unlock", "src/main.rs"], 3);
    hub.fails(ME, &["lock", "x", "--ttl", "0"], 2);
    hub.fails("", &["lock", "x"], 2);
    let types: Vec<Value> = lock_messages(&hub)
        .iter()
        .map(|m| m["type"].clone())
        .collect();
    assert_eq!(types, [json!("lock.acquired"), json!("lock.released")]);
}

/// `lock NAME -- CMD` keeps the lock past its TTL while CMD runs, gives CMD the lock's name,
/// releases it when CMD exits, and exits with CMD's status.
#[test]
fn lock_with_a_command_holds_and_renews_it_then_releases() {
    let hub = Server::start();
    let go = hub.path("go");
    let seen = hub.path("seen");
    let cmd = script(
        hub.dir.path(),
        "job.sh",
        &format!(
            "echo \"$WORKSHOP_LOCK\" > {seen}\nwhile [ ! -e {go} ]; do sleep 0.05; done\nexit 7\n",
            seen = seen.display(),
            go = go.display()
        ),
    );
    let mut run = hub.spawn(
        ME,
        &["lock", "deploy", "--ttl", "2", "--", cmd.to_str().unwrap()],
        &[],
    );
    let first = poll("the lock to be taken", || {
        live_locks(&hub).into_iter().next()
    });
    assert_eq!(first["holder"], ME);
    let first_deadline = first["expires_at"].as_f64().unwrap();
    poll("CMD to see WORKSHOP_LOCK", || {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|s| s.trim() == "deploy")
    });
    // Past the first deadline, the lock is still ours, renewed, and never expired.
    poll("two renewals past the first deadline", || {
        let renewed = lock_messages(&hub)
            .iter()
            .filter(|m| m["body"]["renewed"] == true)
            .count();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        (renewed >= 2 && now > first_deadline + 0.5).then_some(())
    });
    let live = live_locks(&hub);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["holder"], ME);
    assert!(live[0]["expires_at"].as_f64().unwrap() > first_deadline);
    let err = hub.fails("coder.bob", &["lock", "deploy"], 4);
    assert!(err.contains(ME), "{err}");
    std::fs::write(&go, "").unwrap();
    let status = run.wait();
    assert_eq!(status.code(), Some(7), "CMD's status is lock's");
    assert!(live_locks(&hub).is_empty());
    let types: Vec<String> = lock_messages(&hub)
        .iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("lock.acquired"));
    assert_eq!(types.last().map(String::as_str), Some("lock.released"));
    assert!(!types.contains(&"lock.expired".to_string()), "{types:?}");
}

#[test]
fn lock_with_a_command_does_not_run_it_when_the_lock_is_held() {
    let hub = Server::start();
    hub.ok("coder.bob", &["lock", "deploy", "--ttl", "600"]);
    let ran = hub.path("ran");
    let err = hub.fails(
        ME,
        &["lock", "deploy", "--", "touch", ran.to_str().unwrap()],
        4,
    );
    assert!(err.contains("coder.bob"), "{err}");
    assert!(!ran.exists(), "CMD ran without the lock");
}

#[test]
fn a_stopped_lock_command_stops_cmd_and_releases() {
    let hub = Server::start();
    let mut run = lock_around_a_sleep(&hub, "60");
    assert_eq!(live_locks(&hub).len(), 1);
    let code = run.terminate();
    assert_eq!(code, Some(128 + 15), "CMD was ended by SIGTERM");
    assert!(live_locks(&hub).is_empty());
    let last = lock_messages(&hub).pop().unwrap();
    assert_eq!(last["type"], "lock.released");
}

/// If someone else gets the lock while CMD runs (here: it was released behind our back and
/// taken), the next renewal finds out: CMD is stopped and `lock` exits 4.
#[test]
fn a_lock_lost_while_cmd_runs_stops_cmd() {
    let hub = Server::start();
    let mut run = lock_around_a_sleep(&hub, "3");
    hub.ok(ME, &["unlock", "deploy"]);
    // A renewal landing between the unlock and bob's lock takes it afresh; that renewal
    // finds it was lost (it had to take it anew), stops CMD and releases: bob then gets it.
    poll("bob to take the lock", || {
        hub.run("coder.bob", &["lock", "deploy", "--ttl", "600"])
            .status
            .success()
            .then_some(())
    });
    let status = run.wait();
    assert_eq!(status.code(), Some(4));
    // Not ours any more: not released (which only earned a 403 line).
    let log = std::fs::read_to_string(hub.path(&format!("{ME}.stderr"))).unwrap();
    assert!(log.contains("lost the lock"), "{log}");
    assert!(!log.contains("releasing"), "{log}");
    let live = live_locks(&hub);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["holder"], "coder.bob", "the new holder keeps it");
}

/// No renewal succeeding for a whole --ttl (here: the hub is down) means the lock may have
/// lapsed and gone to someone else: CMD is stopped and `lock` exits 4. It used to keep CMD
/// running, unprotected, for as long as the outage lasted.
#[test]
fn a_lock_not_renewed_for_its_ttl_stops_cmd() {
    let mut hub = Server::start();
    let mut run = lock_around_a_sleep(&hub, "2");
    hub.stop();
    let status = run.wait();
    assert_eq!(status.code(), Some(4));
    let log = std::fs::read_to_string(hub.path(&format!("{ME}.stderr"))).unwrap();
    assert!(log.contains("no renewal succeeded"), "{log}");
}
