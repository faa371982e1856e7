//! The `workshop` client, end to end: the built binary as a subprocess against a real server
//! (itself the built binary, on port 0 in a temp dir).
mod cli_support;
mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

use cli_support::{Cli, json, poll, script};
use common::Server;
use serde_json::{Value, json};

const ME: &str = "tester.alice";

#[test]
fn every_subcommand_has_help_with_an_example() {
    let hub = Server::start();
    let top = hub.ok(ME, &["--help"]);
    assert!(top.contains("Exit status"), "{top}");
    for sub in [
        "serve",
        "pub",
        "tail",
        "history",
        "upload",
        "download",
        "heartbeat",
        "who",
        "status",
        "channels",
        "work",
        "task",
        "task create",
        "task list",
        "task show",
        "task claim",
        "task update",
        "task done",
        "task abandon",
        "task interrupt",
        "task next",
        "task touch",
        "task retry",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let help = hub.ok(ME, &args);
        assert!(
            help.contains("Example"),
            "`{sub} --help` has no example:\n{help}"
        );
    }
}

#[test]
fn exit_codes_tell_failures_apart() {
    let hub = Server::start();
    // 2: usage (bad arguments, bad JSON, missing identity, server 400)
    hub.fails(ME, &["pub"], 2);
    hub.fails(ME, &["no-such-command"], 2);
    hub.fails(ME, &["pub", "general", "t", "{not json"], 2);
    hub.fails("", &["pub", "general", "t"], 2);
    let err = hub.fails(ME, &["pub", "bad channel!", "t"], 2);
    assert!(
        err.contains("channel"),
        "server error text on stderr: {err}"
    );
    // 3: not found
    hub.fails(ME, &["task", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"], 3);
    hub.fails(ME, &["download", &format!("sha256:{}", "0".repeat(64))], 3);
    // 4: conflict / forbidden
    let id = hub.ok(ME, &["task", "create", "contested"]);
    hub.ok(ME, &["task", "claim", &id]);
    let err = hub.fails("other.bob", &["task", "claim", &id], 4);
    assert!(!err.trim().is_empty());
    hub.fails("other.bob", &["task", "done", &id], 4);
    // 5: unreachable
    let out = hub
        .cmd(ME, &["status"])
        .env("WORKSHOP_URL", "http://127.0.0.1:1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
    // --url and --as override the environment.
    let out = hub
        .cmd(
            "",
            &["--url", &hub.url(), "--as", "flag.agent", "pub", "g", "t"],
        )
        .env("WORKSHOP_URL", "http://127.0.0.1:1")
        .output()
        .expect("run");
    cli_support::assert_success(&out, &["pub via flags"]);
    let last = hub.channel_history("g", "");
    assert_eq!(last[0]["from"], "flag.agent");
}

/// `pub --lines`: a message per line of stdin, sent in batches of up to 1000 (not a request
/// per line), each id printed in order; blank lines skipped; a line that is not JSON stops
/// it after the good lines before it went out.
#[test]
fn pub_lines_posts_a_message_per_line_in_batches() {
    let hub = Server::start();
    let input: String = (0..1200).map(|n| format!("{{\"n\":{n}}}\n\n")).collect();
    let out = hub.run_with_stdin(ME, &["pub", "logs", "log.line", "--lines"], &input);
    cli_support::assert_success(&out, &["pub --lines"]);
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(printed.len(), 1200);
    assert!(printed.windows(2).all(|w| w[0] < w[1]), "ids in order");
    let requests = hub.metric("workshop_http_requests_total{route=\"publish\",code=\"2xx\"}");
    // 2 when stdin is read at once; more if a busy machine makes a batch wait out its 50 ms.
    assert!(
        (2.0..=100.0).contains(&requests),
        "{requests} requests for 1200 lines"
    );
    let stored = hub.channel_history("logs", "n=1000");
    let newest: Vec<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(newest, printed[200..]);
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(m["body"], json!({"n": i + 200}));
        assert_eq!(
            (m["from"].as_str(), m["type"].as_str()),
            (Some(ME), Some("log.line"))
        );
    }

    let out = hub.run_with_stdin(
        ME,
        &["pub", "bad", "t", "--lines"],
        "{\"a\":1}\n{\"a\":2}\nnope\n{\"a\":3}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdin line 3: not JSON"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let bodies: Vec<Value> = hub
        .channel_history("bad", "")
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!({"a": 1}), json!({"a": 2})]);
    hub.assert_no_panic();
}

/// Lines that together are over the server's 1 MiB limit go out in several requests, each
/// under it (the server refuses a larger body from its Content-Length, unread); a single line
/// over it stops the run with a usage error once the lines before it were posted.
#[test]
fn pub_lines_keeps_each_request_under_the_byte_limit() {
    let hub = Server::start();
    let text = "x".repeat(100_000);
    let input: String = (0..25)
        .map(|n| format!("{{\"n\":{n},\"text\":\"{text}\"}}\n"))
        .collect();
    let out = hub.run_with_stdin(ME, &["pub", "big", "log.big", "--lines"], &input);
    cli_support::assert_success(&out, &["pub --lines"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 25);
    let requests = hub.metric("workshop_http_requests_total{route=\"publish\",code=\"2xx\"}");
    assert!(
        (3.0..=25.0).contains(&requests),
        "{requests} requests for 2.5 MB"
    );
    assert_eq!(
        hub.metric("workshop_http_requests_total{route=\"publish\",code=\"4xx\"}"),
        0.0
    );
    assert_eq!(hub.status()["messages"], 25);

    let huge = format!("{{\"ok\":1}}\n{{\"text\":\"{}\"}}\n", "y".repeat(1_100_000));
    let out = hub.run_with_stdin(ME, &["pub", "huge", "t", "--lines"], &huge);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdin line 2:") && stderr.contains("1 MiB"),
        "{stderr}"
    );
    assert_eq!(hub.channel_history("huge", "").len(), 1);
    hub.assert_no_panic();
}

/// Under the loop guard a batch larger than a sender's burst is a 413: `pub --lines` halves
/// it until the halves fit, and waits out the 429s, so every line still goes out once.
#[test]
fn pub_lines_fits_its_batches_to_the_loop_guard() {
    // 10 per second, bursts of 100: 250 lines need halving (250, 125, 62) and some waiting.
    let hub = Server::start_with(&[("WORKSHOP_RATE", "10")]);
    let input: String = (0..250).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    let out = hub.run_with_stdin(ME, &["pub", "logs", "log.line", "--lines"], &input);
    cli_support::assert_success(&out, &["pub --lines"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 250);
    let stored = hub.channel_history("logs", "n=1000&type=log.line");
    let ns: Vec<u64> = stored
        .iter()
        .map(|m| m["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..250).collect::<Vec<u64>>());
    assert!(hub.metric("workshop_http_requests_total{route=\"publish\",code=\"4xx\"}") >= 1.0);
    hub.assert_no_panic();
}

#[test]
fn pub_history_and_channels() {
    let hub = Server::start();
    let first = hub.ok(ME, &["pub", "general", "msg.text", r#"{"msg":"hi"}"#]);
    assert_eq!(first.len(), 26, "prints the new id: {first}");
    let out = hub.run_with_stdin(ME, &["pub", "general", "msg.stdin", "-"], r#"{"n":2}"#);
    cli_support::assert_success(&out, &["pub -"]);
    fs::write(hub.path("a.txt"), "attached").expect("write");
    let reply = hub.ok(
        ME,
        &[
            "pub",
            "other",
            "file.shared",
            "--file",
            "a.txt",
            "--reply-to",
            &first,
        ],
    );

    let general = hub.ok(ME, &["history", "general"]);
    let lines: Vec<Value> = general.lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], first.as_str());
    assert_eq!(lines[0]["body"], json!({"msg": "hi"}));
    assert_eq!(lines[1]["body"], json!({"n": 2}));

    let other = json(&hub.ok(ME, &["history", "other"]));
    assert_eq!(other["id"], reply.as_str());
    assert_eq!(other["reply_to"], first.as_str());
    let hash = other["files"][0].as_str().expect("attached file");
    assert_eq!(hub.ok(ME, &["download", hash]), "attached");

    // Filters: -n, --since, --before, --type, all channels, --pretty.
    let all = hub.ok(ME, &["history"]);
    assert_eq!(all.lines().count(), 3);
    let newest = json(&hub.ok(ME, &["history", "-n", "1"]));
    assert_eq!(newest["id"], reply.as_str());
    let after = hub.ok(ME, &["history", "general", "--since", &first]);
    assert_eq!(json(&after)["type"], "msg.stdin");
    let before = hub.ok(ME, &["history", "--before", &reply]);
    assert_eq!(before.lines().count(), 2);
    let typed = hub.ok(ME, &["history", "--type", "file."]);
    assert_eq!(json(&typed)["id"], reply.as_str());
    let pretty = hub.ok(ME, &["history", "general", "--pretty"]);
    assert!(
        pretty.contains(&format!("{ME} · general · msg.text · hi")),
        "{pretty}"
    );
    assert_eq!(hub.ok(ME, &["channels"]), "general\nother");
    let status = json(&hub.ok(ME, &["status"]));
    assert_eq!(status["messages"], 3);
}

#[test]
fn task_lifecycle() {
    let hub = Server::start();
    let id = hub.ok(
        ME,
        &[
            "task",
            "create",
            "resize",
            "--context",
            r#"{"dir":"/in"}"#,
            "--ch",
            "jobs",
        ],
    );
    let assigned = hub.ok(ME, &["task", "create", "for bob", "--for", "bob.b"]);

    let open: Vec<Value> = hub
        .ok(ME, &["task", "list", "--status", "open"])
        .lines()
        .map(json)
        .collect();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0]["id"], assigned.as_str(), "newest first");
    let pretty = hub.ok(ME, &["task", "list", "--pretty"]);
    assert!(pretty.contains(&format!("{id}  open")), "{pretty}");
    assert!(pretty.contains("for bob.b"), "{pretty}");
    let bobs = hub.ok("bob.b", &["task", "list", "--mine"]);
    assert_eq!(json(&bobs)["id"], assigned.as_str());
    let jobs = hub.ok(ME, &["task", "list", "--ch", "jobs"]);
    assert_eq!(json(&jobs)["id"], id.as_str());

    let shown = json(&hub.ok(ME, &["task", "show", &id]));
    assert_eq!(shown["context"], json!({"dir": "/in"}));
    assert_eq!(shown["status"], "open");

    hub.fails(ME, &["task", "claim", &assigned], 4); // for bob only
    let claimed = json(&hub.ok(ME, &["task", "claim", &id]));
    assert_eq!(claimed["status"], "claimed");
    hub.ok(
        ME,
        &[
            "task",
            "update",
            &id,
            r#"{"progress":0.5}"#,
            "--note",
            "half",
        ],
    );
    let abandoned = json(&hub.ok(ME, &["task", "abandon", &id, "--reason", "later"]));
    assert_eq!(abandoned["status"], "open");
    hub.ok(ME, &["task", "claim", &id]);
    let signalled = json(&hub.ok("boss.c", &["task", "interrupt", &id, "--reason", "stop"]));
    assert_eq!(signalled["signalled"], true);
    fs::write(hub.path("out.csv"), "a,b\n1,2\n").expect("write");
    let done = json(&hub.ok(
        ME,
        &[
            "task",
            "done",
            &id,
            "--result",
            r#"{"rows":1}"#,
            "--file",
            "out.csv",
        ],
    ));
    assert_eq!(done["status"], "done");

    let task = hub.task(&id);
    assert_eq!(task["result"]["rows"], 1);
    assert_eq!(task["claimed_by"], ME);
    assert_eq!(task["files"].as_array().map(Vec::len), Some(1));
    // The file's original name travels with the result (the UI links it under that name).
    let hash = task["files"][0].as_str().expect("hash");
    assert_eq!(task["result"]["file_names"], json!({hash: "out.csv"}));
    let events: Vec<String> = hub
        .channel_history("jobs", "")
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        events,
        [
            "task.created",
            "task.claimed",
            "task.updated",
            "task.abandoned",
            "task.claimed",
            "task.interrupt",
            "task.done"
        ]
    );
    let updated = &hub.channel_history("jobs", "type=task.updated")[0]["body"];
    assert_eq!(updated["note"], "half");
    assert_eq!(updated["progress"], 0.5);
}

#[test]
fn upload_and_verified_download() {
    let hub = Server::start();
    fs::write(hub.path("one.bin"), b"one\x00\xff").expect("write");
    fs::write(hub.path("two.txt"), "two").expect("write");
    let hashes: Vec<String> = hub
        .ok(ME, &["upload", "one.bin", "two.txt"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_eq!(
        hashes[1],
        "sha256:3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
    );
    hub.ok(ME, &["download", &hashes[0], "-o", "copy.bin"]);
    assert_eq!(
        fs::read(hub.path("copy.bin")).expect("read"),
        b"one\x00\xff"
    );
    // Bare hex is accepted too.
    let bare = hashes[1].trim_start_matches("sha256:");
    assert_eq!(hub.ok(ME, &["download", bare]), "two");
    hub.fails(ME, &["upload", "missing.txt"], 1); // a local I/O failure
    hub.fails(ME, &["download", "sha256:../../etc/passwd"], 2);

    // Corrupt the stored blob: the download must notice and leave no output file.
    fs::write(hub.path("blobs").join(&hashes[1]), "tampered").expect("tamper");
    let err = hub.fails(ME, &["download", &hashes[1], "-o", "bad.txt"], 1);
    assert!(err.contains("corrupt"), "{err}");
    assert!(!hub.path("bad.txt").exists());
}

#[test]
fn heartbeat_and_who() {
    let hub = Server::start();
    hub.ok(
        "agent.one",
        &[
            "heartbeat",
            "--channels",
            "jobs,general",
            "--meta",
            r#"{"model":"small"}"#,
        ],
    );
    hub.ok("agent.two", &["heartbeat"]);
    let rows: HashMap<String, Value> = hub
        .ok(ME, &["who"])
        .lines()
        .map(json)
        .map(|r| (r["agent_id"].as_str().unwrap_or("?").to_string(), r))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows["agent.one"]["channels"], json!(["jobs", "general"]));
    assert_eq!(rows["agent.one"]["meta"], json!({"model": "small"}));
    let pretty = hub.ok(ME, &["who", "--pretty"]);
    assert!(pretty.contains("agent.one  seen"), "{pretty}");
    assert!(pretty.contains("jobs,general"), "{pretty}");
}

#[test]
fn tail_filters_and_formats() {
    let hub = Server::start();
    let old = hub.ok(ME, &["pub", "a", "old.one", "{}"]);
    let since = hub.spawn("tail.since", &["tail", "--since", &old], &[]);
    let typed = hub.spawn(
        "tail.typed",
        &["tail", "a", "--type", "keep.", "--since", &old],
        &[],
    );
    let pretty = hub.spawn("tail.pretty", &["tail", "--pretty", "--since", &old], &[]);
    let last = hub.spawn("tail.last", &["tail", "a", "-n", "1"], &[]);
    assert_eq!(
        json(&last.take_lines(1)[0])["id"],
        old.as_str(),
        "-n: stored first"
    );
    hub.ok(ME, &["pub", "a", "drop.me", "{}"]);
    hub.ok(ME, &["pub", "b", "keep.other-channel", "{}"]);
    let kept = hub.ok(ME, &["pub", "a", "keep.me", r#"{"k":1}"#]);

    let all: Vec<Value> = since.take_lines(3).iter().map(|l| json(l)).collect();
    let types: Vec<&str> = all.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(types, ["drop.me", "keep.other-channel", "keep.me"]);
    let then: Vec<Value> = last.take_lines(2).iter().map(|l| json(l)).collect();
    assert_eq!(then[0]["type"], "drop.me", "then live, nothing twice");
    assert_eq!(then[1]["id"], kept.as_str());
    let only = json(&typed.take_lines(1)[0]);
    assert_eq!(only["id"], kept.as_str());
    let lines = pretty.take_lines(3);
    assert!(
        lines[2].ends_with(&format!("{ME} · a · keep.me · {{\"k\":1}}")),
        "{lines:?}"
    );
    assert!(
        lines[2].chars().nth(2) == Some(':'),
        "starts with a time: {lines:?}"
    );
}

/// A `tail` started without --since shows only what comes after it, and across a server
/// crash and restart shows every message exactly once, in order.
#[test]
fn tail_survives_a_server_restart() {
    let mut hub = Server::start();
    let before = hub.ok(ME, &["pub", "r", "m.before", "{}"]);
    let tail = hub.spawn("tail.restart", &["tail", "r"], &[]);
    // Ping until the tail shows it is connected; how many pings that takes does not matter.
    let first_seen = poll("tail to connect", || {
        hub.ok(ME, &["pub", "r", "ping", "{}"]);
        tail.lines.recv_timeout(Duration::from_millis(200)).ok()
    });
    let mut seen = vec![first_seen];
    let mut expect = Vec::new();
    for i in 1..=5 {
        expect.push(hub.ok(ME, &["pub", "r", "m", &format!(r#"{{"n":{i}}}"#)]));
    }
    let marker = expect[4].clone();
    collect_until(&tail, &mut seen, &marker);

    hub.kill();
    hub.restart_stopped_with(&["serve"]);
    for i in 6..=10 {
        expect.push(hub.ok(ME, &["pub", "r", "m", &format!(r#"{{"n":{i}}}"#)]));
    }
    let end = hub.ok(ME, &["pub", "r", "end", "{}"]);
    collect_until(&tail, &mut seen, &end);

    let msgs: Vec<Value> = seen.iter().map(|l| json(l)).collect();
    let ids: Vec<&str> = msgs.iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(
        !ids.contains(&before.as_str()),
        "nothing from before the tail started"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats: {ids:?}"
    );
    let numbered: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "m")
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(numbered, expect, "each message exactly once");
    let ns: Vec<i64> = msgs
        .iter()
        .filter(|m| m["type"] == "m")
        .filter_map(|m| m["body"]["n"].as_i64())
        .collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
}

fn collect_until(tail: &cli_support::Background, seen: &mut Vec<String>, id: &str) {
    while !seen.iter().any(|l| json(l)["id"] == id) {
        seen.extend(tail.take_lines(1));
    }
}

/// Three workers, two jobs each, race over 30 tasks: each runs exactly once and its result
/// is stored; stderr lines become updates; the command sees the task on stdin.
#[test]
fn three_workers_do_thirty_tasks_exactly_once() {
    let hub = Server::start();
    let out = hub.path("out");
    fs::create_dir(&out).expect("mkdir");
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"input=$(cat)
printf '%s\n' "$input" > "$OUT/$WORKSHOP_TASK_ID.json"
echo "$WORKSHOP_TASK_ID" >> "$OUT/runs.log"
echo "working on $WORKSHOP_TASK_ID" >&2
printf '{"task":"%s","agent":"%s","url":"%s"}\n' "$WORKSHOP_TASK_ID" "$AGENT_ID" "$WORKSHOP_URL"
"#,
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(hub.ok(ME, &["task", "create", &format!("job {i}"), "--ch", "race"]));
    }
    let handler = handler.to_str().expect("utf-8 path");
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| {
            hub.spawn(
                w,
                &[
                    "work", "--ch", "race", "--jobs", "2", "--poll", "1", "--", handler,
                ],
                &[("OUT", &out)],
            )
        })
        .collect();
    for i in 10..30 {
        ids.push(hub.ok(ME, &["task", "create", &format!("job {i}"), "--ch", "race"]));
    }
    // A task on another channel is none of their business.
    let elsewhere = hub.ok(ME, &["task", "create", "elsewhere", "--ch", "other"]);

    let done = poll("30 tasks done", || {
        let done = hub.get("/tasks?status=done&ch=race&n=100").json();
        (done.as_array().map(Vec::len) == Some(30)).then_some(done)
    });
    let runs = fs::read_to_string(out.join("runs.log")).expect("runs log");
    let runs: Vec<&str> = runs.lines().collect();
    assert_eq!(runs.len(), 30, "each task ran exactly once: {runs:?}");
    let unique: HashSet<&str> = runs.iter().copied().collect();
    assert_eq!(unique, ids.iter().map(String::as_str).collect());

    for task in done.as_array().into_iter().flatten() {
        let id = task["id"].as_str().expect("id");
        assert_eq!(task["result"]["task"], id);
        assert_eq!(task["result"]["agent"], task["claimed_by"]);
        assert_eq!(task["result"]["url"], hub.url().as_str());
        let stdin = json(&fs::read_to_string(out.join(format!("{id}.json"))).expect("stdin"));
        assert_eq!(stdin["id"], id);
        assert_eq!(stdin["title"], task["title"]);
    }
    let count = |t: &str| hub.channel_history("race", &format!("type={t}")).len();
    assert_eq!(count("task.claimed"), 30, "no task claimed twice");
    assert_eq!(count("task.done"), 30);
    assert_eq!(count("task.abandoned"), 0);
    let notes: HashSet<String> = hub
        .channel_history("race", "type=task.updated")
        .iter()
        .filter_map(|m| m["body"]["note"].as_str().map(str::to_string))
        .collect();
    assert_eq!(notes.len(), 30);
    assert!(notes.contains(&format!("working on {}", ids[0])));
    assert_eq!(hub.task(&elsewhere)["status"], "open");

    let who: Vec<String> = hub
        .ok(ME, &["who"])
        .lines()
        .map(|l| json(l)["agent_id"].as_str().unwrap_or("?").to_string())
        .collect();
    for w in ["w1", "w2", "w3"] {
        assert!(who.contains(&w.to_string()), "{w} heartbeats: {who:?}");
    }
    for mut w in workers {
        assert_eq!(w.terminate(), Some(0), "a stopped worker exits 0");
    }
}

/// A command that fails: task.error is posted, the task abandoned (and not retried by the
/// same worker within --retry-after), and the worker goes on with the next task — taking only
/// tasks for it.
#[test]
fn a_failing_command_abandons_the_task() {
    let hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"input=$(cat)
echo "$WORKSHOP_TASK_ID" >> "$OUT/runs.log"
case "$input" in *'"title":"fail me"'*) echo "boom" >&2; exit 3;; esac
echo "plain text result"
"#,
    );
    let out = hub.dir.path().to_path_buf();
    let _worker = hub.spawn(
        "w.fail",
        &[
            "work",
            "--poll",
            "1",
            "--retry-after",
            "600",
            "--",
            handler.to_str().expect("path"),
        ],
        &[("OUT", &out)],
    );
    let bad = hub.ok(ME, &["task", "create", "fail me", "--ch", "f"]);
    let abandoned = hub.first_of_type("f", "task.abandoned");
    assert_eq!(abandoned["body"]["task-id"], bad.as_str());
    assert_eq!(abandoned["body"]["reason"], "command exited with status 3");
    let error = &hub.channel_history("f", "type=task.error")[0];
    assert_eq!(error["from"], "w.fail");
    assert_eq!(error["body"]["task-id"], bad.as_str());
    assert_eq!(error["body"]["exit-code"], 3);
    assert_eq!(error["body"]["stderr"], json!(["boom"]));
    let task = hub.task(&bad);
    assert_eq!(task["status"], "open");

    // Assigned tasks: only their agent takes them.
    let theirs = hub.ok(
        ME,
        &["task", "create", "theirs", "--ch", "f", "--for", "x.y"],
    );
    let good = hub.ok(
        ME,
        &["task", "create", "fine", "--ch", "f", "--for", "w.fail"],
    );
    let task = poll("second task done", || {
        let t = hub.task(&good);
        (t["status"] == "done").then_some(t)
    });
    assert_eq!(task["result"], json!({"output": "plain text result"}));
    let runs = fs::read_to_string(out.join("runs.log")).expect("runs");
    assert_eq!(runs.lines().filter(|l| *l == bad).count(), 1, "{runs}");
    assert_eq!(hub.task(&bad)["status"], "open");
    assert_eq!(hub.task(&theirs)["status"], "open");
    assert!(!runs.contains(&theirs));
}

/// A command whose result is over what the hub takes fails its task with a reason that says
/// what to do, and a command flooding stderr posts a few updates a second, not one per line.
#[test]
fn an_oversized_result_fails_the_task_and_a_stderr_flood_is_thinned() {
    let hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"cat >/dev/null
i=0; while [ $i -lt 300 ]; do echo "progress $i" >&2; i=$((i+1)); done
head -c 3000000 /dev/zero | tr '\0' a
"#,
    );
    let _worker = hub.spawn(
        "w.big",
        &["work", "--poll", "1", "--", handler.to_str().expect("path")],
        &[],
    );
    let id = hub.ok(ME, &["task", "create", "too big", "--ch", "big"]);
    let error = hub.first_of_type("big", "task.error");
    assert_eq!(error["body"]["task-id"], id.as_str());
    let says = error["body"]["error"].as_str().unwrap_or_default();
    assert!(says.contains("over 1 MiB"), "{error}");
    assert_eq!(error["body"]["exit-code"], 0);
    let abandoned = hub.first_of_type("big", "task.abandoned");
    assert_eq!(abandoned["body"]["task-id"], id.as_str());
    let updates = hub.channel_history("big", "type=task.updated");
    assert!(
        (1..=30).contains(&updates.len()),
        "300 stderr lines in well under 3 s made {} updates",
        updates.len()
    );
}

/// task.interrupt: the command's process group gets SIGTERM (SIGKILL after the grace period
/// if it ignores that) and the task is given back with reason "interrupted". Stopping the
/// worker itself does the same with reason "worker stopped". Neither uses an attempt.
#[test]
fn interrupt_stops_the_command_and_abandons_the_task() {
    let hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"input=$(cat)
echo "$WORKSHOP_TASK_ID" >> "$OUT/runs.log"
case "$input" in
  *'"title":"stubborn"'*) trap '' TERM; touch "$OUT/started.$WORKSHOP_TASK_ID"; sleep 60;;
  *) trap 'touch "$OUT/term.$WORKSHOP_TASK_ID"; exit 143' TERM
     touch "$OUT/started.$WORKSHOP_TASK_ID"; sleep 60 & wait $!;;
esac
"#,
    );
    let out = hub.dir.path().to_path_buf();
    let mut worker = hub.spawn(
        "w.intr",
        &[
            "work",
            "--jobs",
            "3",
            "--grace",
            "1",
            "--poll",
            "1",
            "--retry-after",
            "600",
            "--",
            handler.to_str().expect("path"),
        ],
        &[("OUT", &out)],
    );
    let polite = hub.ok(ME, &["task", "create", "polite", "--ch", "i"]);
    let stubborn = hub.ok(ME, &["task", "create", "stubborn", "--ch", "i"]);
    let last = hub.ok(ME, &["task", "create", "at shutdown", "--ch", "i"]);
    for id in [&polite, &stubborn, &last] {
        poll("command to start", || {
            out.join(format!("started.{id}")).exists().then_some(())
        });
    }

    hub.ok(
        "boss",
        &["task", "interrupt", &polite, "--reason", "wrong input"],
    );
    hub.ok("boss", &["task", "interrupt", &stubborn]);
    let reason_of = |id: &str| {
        hub.channel_history("i", "type=task.abandoned")
            .into_iter()
            .find(|m| m["body"]["task-id"] == id)
            .map(|m| m["body"]["reason"].clone())
    };
    assert_eq!(
        poll("polite abandoned", || reason_of(&polite)),
        "interrupted"
    );
    assert!(
        out.join(format!("term.{polite}")).exists(),
        "child got SIGTERM"
    );
    assert_eq!(
        poll("stubborn abandoned", || reason_of(&stubborn)),
        "interrupted"
    );
    assert!(!out.join(format!("term.{stubborn}")).exists());
    assert_eq!(hub.task(&last)["status"], "claimed", "other tasks run on");

    assert_eq!(worker.terminate(), Some(0));
    assert_eq!(reason_of(&last), Some(json!("worker stopped")));
    assert!(out.join(format!("term.{last}")).exists());
    // Given back for the worker's reasons, not the task's: no attempt used, so stopping
    // and restarting workers never fails a task.
    for id in [&polite, &stubborn, &last] {
        let task = hub.task(id);
        assert_eq!(task["status"], "open");
        assert_eq!(task["attempts"], 0, "{task}");
    }
    assert!(
        hub.channel_history("i", "type=task.error").is_empty(),
        "an interrupt is no error"
    );
    let runs = fs::read_to_string(out.join("runs.log")).expect("runs");
    assert_eq!(runs.lines().count(), 3, "none was run again: {runs}");
}

/// A worker outlives a server crash: the outcome of a command that finishes while the server
/// is down is reported once it is back, and tasks created after the restart are still seen.
#[test]
fn work_survives_a_server_restart() {
    let mut hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"touch "$OUT/started.$WORKSHOP_TASK_ID"
while [ ! -e "$OUT/gate" ]; do sleep 0.05; done
echo '{"ok":true}'
"#,
    );
    let out = hub.dir.path().to_path_buf();
    let _worker = hub.spawn(
        "w.restart",
        &["work", "--poll", "1", "--", handler.to_str().expect("path")],
        &[("OUT", &out)],
    );
    let during = hub.ok(ME, &["task", "create", "spans the crash"]);
    poll("command to start", || {
        out.join(format!("started.{during}")).exists().then_some(())
    });
    hub.kill();
    fs::write(out.join("gate"), "").expect("open the gate");
    hub.restart_stopped_with(&["serve"]);
    let task = poll("task done after the restart", || {
        let t = hub.task(&during);
        (t["status"] == "done").then_some(t)
    });
    assert_eq!(task["result"], json!({"ok": true}));

    let after = hub.ok(ME, &["task", "create", "after the crash"]);
    poll("new task done", || {
        (hub.task(&after)["status"] == "done").then_some(())
    });
    assert_eq!(hub.channel_history("tasks", "type=task.claimed").len(), 2);
}

/// The lease side of tasks: priority and delay for `task next`, leases kept by `touch`,
/// attempts running out into `failed`, and `retry`.
#[test]
fn task_next_leases_and_dead_letters() {
    let hub = Server::start();
    let low = hub.ok(ME, &["task", "create", "low", "--ch", "q"]);
    let high = hub.ok(
        ME,
        &["task", "create", "high", "--ch", "q", "--priority", "5"],
    );
    let later = hub.ok(
        ME,
        &["task", "create", "later", "--ch", "q", "--delay", "3600"],
    );
    let once = hub.ok(
        ME,
        &[
            "task",
            "create",
            "once",
            "--ch",
            "other",
            "--max-attempts",
            "1",
        ],
    );

    let first = json(&hub.ok(ME, &["task", "next", "--ch", "q", "--lease", "600"]));
    assert_eq!(first["id"], high.as_str(), "highest priority first");
    assert_eq!(first["status"], "claimed");
    assert!(first["lease_expires_at"].as_f64().is_some());
    let second = json(&hub.ok(ME, &["task", "next", "--ch", "q"]));
    assert_eq!(second["id"], low.as_str());
    hub.fails(ME, &["task", "next", "--ch", "q"], 3); // `later` is delayed
    hub.fails(ME, &["task", "next", "--ch", "q", "--wait", "0.2"], 3);
    assert_eq!(hub.task(&later)["status"], "open");

    hub.ok(ME, &["task", "touch", &high, "--lease", "900"]);
    hub.fails("other.bob", &["task", "touch", &high], 4);
    hub.ok(ME, &["task", "abandon", &low, "--delay", "3600"]);
    hub.fails(ME, &["task", "claim", &low], 4); // delayed again

    hub.ok(ME, &["task", "claim", &once, "--lease", "600"]);
    hub.ok(ME, &["task", "abandon", &once, "--reason", "no luck"]);
    let failed = json(&hub.ok(ME, &["task", "list", "--status", "failed"]));
    assert_eq!(failed["id"], once.as_str());
    hub.ok(ME, &["task", "retry", &once]);
    let revived = hub.task(&once);
    assert_eq!(revived["status"], "open");
    assert_eq!(revived["attempts"], 0);
}

/// A worker SIGKILLed mid-task leaves a leased claim; once the lease runs out another worker
/// takes the task and completes it.
#[test]
fn a_killed_workers_task_is_finished_by_another_after_its_lease() {
    let hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handler.sh",
        r#"if [ "$AGENT_ID" = "w.doomed" ]; then
  touch "$OUT/started"
  i=0  # bounded, so an orphan cannot outlive a failed test by much
  while [ ! -e "$OUT/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
  exit 1
fi
printf '{"by":"%s"}' "$AGENT_ID"
"#,
    );
    let out = hub.dir.path().to_path_buf();
    let handler = handler.to_str().expect("path");
    let args = ["work", "--lease", "1", "--poll", "1", "--", handler];
    let mut doomed = hub.spawn("w.doomed", &args, &[("OUT", &out)]);
    let id = hub.ok(ME, &["task", "create", "survive me"]);
    poll("doomed worker to start", || {
        out.join("started").exists().then_some(())
    });
    doomed.child.kill().expect("SIGKILL the worker");
    doomed.child.wait().expect("reap");

    let _rescuer = hub.spawn("w.rescuer", &args, &[("OUT", &out)]);
    let task = poll("task done by the rescuer", || {
        let t = hub.task(&id);
        (t["status"] == "done").then_some(t)
    });
    fs::write(out.join("release"), "").expect("let the orphaned command end");
    assert_eq!(task["claimed_by"], "w.rescuer");
    assert_eq!(task["result"], json!({"by": "w.rescuer"}));
    let expired = hub.channel_history("tasks", "type=task.expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["body"]["claimed-by"], "w.doomed");
}

/// A worker that loses its lease (the server was down past it, and expired the claim at
/// start-up) stops the command and reports nothing: the task is no longer its own.
#[test]
fn a_lost_lease_stops_the_command() {
    let mut hub = Server::start();
    let (out, _worker) = spawn_sleeper_worker(&hub, "w.lost", &["--lease", "1"]);
    let id = hub.ok(ME, &["task", "create", "outlived"]);
    poll("command to start", || {
        out.join("started").exists().then_some(())
    });
    hub.kill();
    // Let the lease run out while the server is down (the condition under test, not a guess).
    // The last touch came before the kill, so the 1 s lease is over 1.5 s after it.
    let lease_over = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < lease_over {
        std::thread::sleep(Duration::from_millis(50));
    }
    hub.restart_stopped_with(&["serve"]);
    poll("command to get SIGTERM", || {
        out.join("term").exists().then_some(())
    });
    let expired = hub.first_of_type("tasks", "task.expired");
    assert_eq!(expired["body"]["task-id"], id.as_str());
    let types: Vec<String> = hub
        .channel_history("tasks", "")
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(
        !types
            .iter()
            .any(|t| t == "task.abandoned" || t == "task.done" || t == "task.error"),
        "nothing reported for a lost task: {types:?}"
    );
}

/// A worker whose claim ended while its command ran, and whose task was claimed again under
/// the same agent id (a second process, as after a restart under a fixed id), is fenced off
/// by its claim's number: its lease keeper's touch is refused, the command is stopped, and
/// nothing it says reaches the new claim.
#[test]
fn a_worker_whose_claim_ended_cannot_touch_or_finish_the_next_claim() {
    let hub = Server::start();
    let (out, _worker) = spawn_sleeper_worker(&hub, "w.same", &["--lease", "3", "--ch", "fence"]);
    let id = hub.ok(ME, &["task", "create", "once only", "--ch", "fence"]);
    poll("command to start", || {
        out.join("started").exists().then_some(())
    });
    // What a second process under the same id sees after the first one's lease ran out.
    let from = json!({"from": "w.same"});
    assert_eq!(hub.task_action(&id, "abandon", from.clone()).status, 200);
    let again = hub.task_action(&id, "claim", from);
    assert_eq!(again.json()["claim"], 2, "{}", again.text());
    poll("the fenced command to get SIGTERM", || {
        out.join("term").exists().then_some(())
    });
    let task = hub.task(&id);
    assert_eq!(task["status"], "claimed");
    assert_eq!(task["claims"], 2);
    assert_eq!(task["result"], Value::Null);
    // The worker's claim, then this test's abandon and claim: nothing from the ended claim.
    let said: Vec<String> = hub
        .channel_history("fence", "")
        .iter()
        .filter(|m| m["from"] == "w.same")
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(said, ["task.claimed", "task.abandoned", "task.claimed"]);
}

/// A worker as `agent` (`work_args` before `--`) whose command marks `$OUT/started`, sleeps,
/// and marks `$OUT/term` when it gets SIGTERM; `$OUT` is the hub's folder, returned.
fn spawn_sleeper_worker(
    hub: &Server,
    agent: &str,
    work_args: &[&str],
) -> (std::path::PathBuf, cli_support::Background) {
    let handler = script(
        hub.dir.path(),
        "sleeper.sh",
        r#"trap 'touch "$OUT/term"; exit 143' TERM
touch "$OUT/started"
sleep 60 & wait $!
"#,
    );
    let out = hub.dir.path().to_path_buf();
    let mut args = vec!["work"];
    args.extend_from_slice(work_args);
    args.extend(["--", handler.to_str().expect("path")]);
    let worker = hub.spawn(agent, &args, &[("OUT", &out)]);
    (out, worker)
}
