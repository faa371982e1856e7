//! `workshop wait`, `workshop inbox` and `workshop pub --to`, end to end: the built binary as
//! a subprocess against a real server, exit codes included.
mod cli_support;
mod common;

use cli_support::{Cli, json as parse, poll};
use common::Server;
use serde_json::{Value, json};

const ME: &str = "tester.alice";
const BOB: &str = "helper.bob";

/// Waits until the server holds `n` long-poll requests.
fn wait_for_waiting(hub: &Server, n: u64) {
    poll(&format!("{n} waiting requests"), || {
        (hub.status()["waiting"].as_u64() == Some(n)).then_some(())
    });
}

fn exit_code(bg: &mut cli_support::Background) -> Option<i32> {
    bg.wait().code()
}

fn ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| parse(l)["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn pub_to_addresses_one_agent_or_several() {
    let hub = Server::start();
    let one = hub.ok(ME, &["pub", "general", "msg.text", "{}", "--to", BOB]);
    let two = hub.ok(
        ME,
        &[
            "pub", "general", "msg.text", "{}", "--to", BOB, "--to", "c.carol",
        ],
    );
    let everyone = hub.ok(ME, &["pub", "general", "msg.text", "{}"]);
    let history = hub.channel_history("general", "");
    assert_eq!(history[0]["id"], one.as_str());
    assert_eq!(history[0]["to"], BOB);
    assert_eq!(history[1]["id"], two.as_str());
    assert_eq!(history[1]["to"], json!([BOB, "c.carol"]));
    assert_eq!(history[2]["id"], everyone.as_str());
    assert!(history[2].get("to").is_none());
    let err = hub.fails(ME, &["pub", "general", "msg.text", "{}", "--to", ""], 2);
    assert!(err.contains("to"), "{err}");
}

#[test]
fn wait_prints_what_comes_after_the_id_and_exits_3_on_timeout() {
    let hub = Server::start();
    let first = hub.publish("general", "msg.text", json!({"n": 1}));
    let second = hub.publish("general", "msg.text", json!({"n": 2}));
    // Already there: printed at once, oldest first.
    let out = hub.ok(
        ME,
        &["wait", "general", "--since", &first, "--timeout", "30"],
    );
    assert_eq!(ids(&out), [second.as_str()]);
    let out = hub.ok(ME, &["wait", "--since", &first, "--timeout", "30"]);
    assert_eq!(ids(&out), [second.as_str()]);
    // Nothing after it: exit 3 with nothing on stdout once the timeout passes.
    let out = hub.run(
        ME,
        &["wait", "general", "--since", &second, "--timeout", "1"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing new"));
    // Waiting: the publish that matches ends it; others of the wrong type do not.
    let mut bg = hub.spawn(
        ME,
        &[
            "wait",
            "general",
            "--since",
            &second,
            "--type",
            "task.",
            "--timeout",
            "60",
        ],
        &[],
    );
    wait_for_waiting(&hub, 1);
    hub.publish("general", "msg.text", json!({"not": "a task"}));
    let task = hub.publish("general", "task.done", json!({}));
    let line = bg.take_lines(1).remove(0);
    assert_eq!(parse(&line)["id"], task.as_str());
    assert_eq!(exit_code(&mut bg), Some(0));
}

#[test]
fn wait_without_since_waits_for_the_next_message() {
    let hub = Server::start();
    hub.publish("general", "msg.text", json!({"old": true}));
    let mut bg = hub.spawn(ME, &["wait", "general", "--timeout", "60"], &[]);
    wait_for_waiting(&hub, 1);
    let next = hub.publish("general", "msg.text", json!({"new": true}));
    let line = bg.take_lines(1).remove(0);
    assert_eq!(parse(&line)["id"], next.as_str());
    assert_eq!(exit_code(&mut bg), Some(0));
}

#[test]
fn inbox_prints_unread_marks_it_read_and_exits_3_when_empty() {
    let hub = Server::start();
    let err = hub.fails(BOB, &["inbox"], 3);
    assert!(err.contains("nothing unread"), "{err}");
    let a = hub.ok(
        ME,
        &["pub", "general", "msg.text", r#"{"q":1}"#, "--to", BOB],
    );
    hub.ok(ME, &["pub", "general", "msg.text", "{}", "--to", "c.carol"]);
    let task = hub.ok(ME, &["task", "create", "for bob", "--for", BOB]);
    // Without --mark-read nothing moves: the same two again.
    let first = hub.ok(BOB, &["inbox"]);
    assert_eq!(first, hub.ok(BOB, &["inbox"]));
    let lines: Vec<Value> = first.lines().map(parse).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], a.as_str());
    assert_eq!(lines[1]["body"]["task-id"], task.as_str());
    // Marked read only once printed: a run whose output fails (a full disk) marks nothing.
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let out = hub
        .cmd(BOB, &["inbox", "--mark-read"])
        .stdout(full)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(hub.ok(BOB, &["inbox"]), first);
    hub.ok(BOB, &["inbox", "--mark-read"]);
    hub.fails(BOB, &["inbox"], 3);
    assert_eq!(hub.ok(BOB, &["inbox", "--all"]).lines().count(), 2);
    // A fresh process waits for what comes next, and sees only that.
    let mut bg = hub.spawn(BOB, &["inbox", "--wait", "60", "--mark-read"], &[]);
    wait_for_waiting(&hub, 1);
    hub.ok(ME, &["pub", "general", "msg.text", "{}", "--to", "c.carol"]);
    let b = hub.ok(ME, &["pub", "other", "msg.text", r#"{"q":2}"#, "--to", BOB]);
    let line = bg.take_lines(1).remove(0);
    assert_eq!(parse(&line)["id"], b.as_str());
    assert_eq!(exit_code(&mut bg), Some(0));
    hub.fails(BOB, &["inbox", "--wait", "0.5"], 3);
    // The inbox is per agent, and needs one.
    assert_eq!(hub.ok("c.carol", &["inbox"]).lines().count(), 2);
    hub.fails("", &["inbox"], 2);
}

#[test]
fn wait_and_inbox_report_an_unreachable_server() {
    let mut hub = Server::start();
    hub.stop();
    hub.fails(
        ME,
        &[
            "wait",
            "--since",
            "01J4XYZ0000000000000000000",
            "--timeout",
            "1",
        ],
        5,
    );
    hub.fails(BOB, &["inbox"], 5);
}

#[test]
fn wait_and_inbox_have_help_with_an_example() {
    let hub = Server::start();
    for sub in ["wait", "inbox"] {
        let help = hub.ok(ME, &[sub, "--help"]);
        assert!(help.contains("Example"), "`{sub} --help`:\n{help}");
        assert!(help.contains("exit 3") || help.contains("Exit 3"), "{help}");
    }
    // `--timeout=-1`: spelled apart, clap takes -1 for a flag and never reaches the check.
    let err = hub.fails(ME, &["wait", "--timeout=-1"], 2);
    assert!(err.contains("not a number of seconds"), "{err}");
    let err = hub.fails(ME, &["wait", "--timeout", "1e19"], 2);
    assert!(err.contains("too long"), "{err}");
    let err = hub.fails(ME, &["inbox", "--wait", "NaN"], 2);
    assert!(err.contains("not a number of seconds"), "{err}");
    hub.fails(ME, &["inbox", "--all", "--mark-read"], 2);
}
