//! `--pretty` is for people, and people follow up: `thread ID`, `wait --since ID`, `pub
//! --reply-to ID`, `task claim ID`, `unlock NAME`, `--for AGENT`. Every pretty form shows
//! what those follow-ups take, whole.
mod cli_support;
mod common;

use cli_support::{Cli, json};
use common::Server;

const ME: &str = "pretty.alice";

/// Each line of `out` that mentions `marker` also carries `id`.
fn lines_show(out: &str, marker: &str, id: &str) {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(marker)).collect();
    assert!(!lines.is_empty(), "no line with {marker:?} in {out:?}");
    for line in lines {
        assert!(line.contains(id), "{line:?} lacks {id}");
    }
}

#[test]
fn pretty_message_lines_show_the_message_id() {
    let hub = Server::start();
    let root = hub.ok(
        ME,
        &["pub", "general", "msg.text", r#"{"text":"root words"}"#],
    );
    let reply = hub.ok(
        ME,
        &[
            "pub",
            "general",
            "msg.text",
            r#"{"text":"reply words"}"#,
            "--reply-to",
            &root,
        ],
    );
    let history = hub.ok(ME, &["history", "general", "--pretty"]);
    lines_show(&history, "root words", &root);
    lines_show(&history, "reply words", &reply);
    let thread = hub.ok(ME, &["thread", &reply, "--pretty"]);
    lines_show(&thread, "root words", &root);
    lines_show(&thread, "reply words", &reply);
    let found = hub.ok(ME, &["search", "reply", "--pretty"]);
    lines_show(&found, "reply words", &reply);
    let tail = hub.spawn(
        "tail.pretty",
        &["tail", "general", "-n", "1", "--pretty"],
        &[],
    );
    let lines = tail.take_lines(1).join("\n");
    lines_show(&lines, "reply words", &reply);
    // What was shown works as what follow-ups take.
    let shown = history.lines().last().expect("a line");
    let id = shown
        .split_whitespace()
        .nth(1)
        .expect("the id after the time");
    assert_eq!(id, reply, "{shown:?}");
}

#[test]
fn pretty_tasks_agents_and_locks_show_what_follow_ups_take() {
    let hub = Server::start();
    let id = hub.ok(ME, &["task", "create", "tidy up", "--for", "pretty.bob"]);
    lines_show(&hub.ok(ME, &["task", "list", "--pretty"]), "tidy up", &id);
    let shown = hub.ok(ME, &["task", "show", &id, "--pretty"]);
    assert_eq!(json(&shown)["id"], id.as_str(), "{shown}");
    hub.ok(ME, &["heartbeat", "--channels", "jobs"]);
    lines_show(&hub.ok(ME, &["who", "--pretty"]), "jobs", ME);
    hub.ok(
        ME,
        &[
            "lock",
            "src/main.rs",
            "--ttl",
            "60",
            "--note",
            "refactoring",
        ],
    );
    lines_show(
        &hub.ok(ME, &["locks", "--pretty"]),
        "refactoring",
        "src/main.rs",
    );
}
