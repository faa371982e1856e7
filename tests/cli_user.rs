//! The CLI as a new user and an operator of agents meet it (issue 16): the worker says what
//! happened to each task, refuses a command that cannot run, times out, dies cleanly on a
//! second Ctrl-C and stays quiet while the hub is down; URLs, messages, tables, completions
//! and the server's start banner. Real server, real subprocesses.
mod cli_support;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{Cli, json, poll, script};
use common::{BIN, Server, pid_alive, signal, try_signal};
use serde_json::Value;

const ME: &str = "user.alice";

/// A command that fails with a telling stderr line on tasks titled `bad`, else prints a result.
const HANDLER: &str = r#"task=$(cat)
case "$task" in
  *'"title":"bad"'*) echo "opening input" >&2; echo "handle.sh: Permission denied" >&2; exit 3 ;;
esac
echo '{"ok":true}'
"#;

fn stderr_log(hub: &Server, agent: &str) -> String {
    std::fs::read_to_string(hub.path(&format!("{agent}.stderr"))).unwrap_or_default()
}

/// Polls the agent's stderr log until a line contains `needle`; returns the whole log.
fn wait_for_log(hub: &Server, agent: &str, needle: &str) -> String {
    poll(&format!("{agent} stderr to contain {needle:?}"), || {
        let log = stderr_log(hub, agent);
        log.contains(needle).then_some(log)
    })
}

fn task(hub: &Server, id: &str) -> Value {
    json(&hub.ok(ME, &["task", "show", id]))
}

#[test]
fn work_prints_one_line_per_outcome() {
    let hub = Server::start();
    let handler = script(hub.dir.path(), "handle.sh", HANDLER);
    let good = hub.ok(ME, &["task", "create", "good"]);
    let bad = hub.ok(ME, &["task", "create", "bad"]);
    let handler = handler.to_str().unwrap();
    let _worker = hub.spawn("worker.human", &["work", "--", handler], &[]);
    let log = wait_for_log(&hub, "worker.human", &format!("failed {bad}"));
    let log = if log.contains(&format!("done {good}")) {
        log
    } else {
        wait_for_log(&hub, "worker.human", &format!("done {good}"))
    };
    let failed = log
        .lines()
        .find(|l| l.contains(&format!("failed {bad}")))
        .unwrap();
    // Task id, title, duration, exit code and the last stderr line, all on the terminal.
    assert!(failed.contains("\"bad\" after "), "{failed}");
    assert!(
        failed.contains(" s: exit 3: handle.sh: Permission denied"),
        "{failed}"
    );
    let done = log
        .lines()
        .find(|l| l.contains(&format!("done {good}")))
        .unwrap();
    assert!(done.contains("\"good\" after "), "{done}");
}

#[test]
fn work_json_and_quiet_are_for_scripts() {
    let hub = Server::start();
    let handler = script(hub.dir.path(), "handle.sh", HANDLER);
    let bad = hub.ok(ME, &["task", "create", "bad"]);
    let handler = handler.to_str().unwrap();
    let worker = hub.spawn("worker.json", &["work", "--json", "--", handler], &[]);
    let line = json(&worker.take_lines(1)[0]);
    assert_eq!(line["task-id"], bad.as_str());
    assert_eq!(line["title"], "bad");
    assert_eq!(line["outcome"], "failed");
    assert_eq!(line["exit_code"], 3);
    assert_eq!(line["stderr"][1], "handle.sh: Permission denied");
    assert!(line["duration_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["reason"], "command exited with status 3");

    let good = hub.ok(ME, &["task", "create", "good"]);
    let _quiet = hub.spawn("worker.quiet", &["work", "--quiet", "--", handler], &[]);
    poll("the quiet worker to finish its task", || {
        (task(&hub, &good)["status"] == "done").then_some(())
    });
    assert_eq!(
        stderr_log(&hub, "worker.quiet"),
        "",
        "--quiet prints nothing when all is well"
    );
}

/// Shell that writes its own pid to `pidfile` whole (via a rename), for `saved_pid`.
fn save_pid(pidfile: &Path) -> String {
    format!("echo $$ > {0}.tmp && mv {0}.tmp {0}", pidfile.display())
}

/// The pid `save_pid` wrote, once it has.
fn saved_pid(pidfile: &Path, what: &str) -> String {
    let pid = poll(what, || std::fs::read_to_string(pidfile).ok());
    pid.trim().to_string()
}

/// `work --json | head -1`: once stdout is closed, the worker stops the way a first Ctrl-C
/// does (commands stopped, tasks abandoned). It used to exit on the spot, leaving the other
/// commands running, their tasks claimed by a worker that was gone.
#[test]
fn work_json_into_a_closed_pipe_stops_gracefully() {
    let hub = Server::start();
    let pidfile = hub.path("slow.pid");
    let handler = script(
        hub.dir.path(),
        "handle.sh",
        &format!(
            "case \"$(cat)\" in\n  *'\"title\":\"slow\"'*) {}; exec sleep 300 ;;\nesac\necho '{{}}'\n",
            save_pid(&pidfile)
        ),
    );
    let slow = hub.ok(ME, &["task", "create", "slow"]);
    let mut child = hub
        .cmd(
            "worker.pipe",
            &[
                "work",
                "--json",
                "--jobs",
                "2",
                "--",
                handler.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone, as `head` is after its line
    // A Background, for its clean-up on a failure; it has no stdout lines.
    let mut worker = cli_support::Background {
        child,
        lines: std::sync::mpsc::channel().1,
    };
    let pid = saved_pid(&pidfile, "the slow command to start");
    hub.ok(ME, &["task", "create", "quick"]);
    assert_eq!(worker.wait().code(), Some(0));
    assert!(!pid_alive(&pid), "the slow command was left running");
    let slow = task(&hub, &slow);
    assert_eq!(
        slow["status"], "open",
        "abandoned, not left claimed: {slow}"
    );
}

/// Each poll is a claim request: `--poll 0` flooded the hub (64k requests in 6 s).
#[test]
fn work_poll_has_a_minimum() {
    let hub = Server::start();
    for poll in ["0", "0.1", "-1", "NaN"] {
        let err = hub.fails(ME, &["work", &format!("--poll={poll}"), "--", "true"], 2);
        assert!(err.contains("--poll"), "{poll}: {err}");
    }
    for bad in [["--grace", "1e19"], ["--lease", "inf"], ["--timeout", "-5"]] {
        let flag = format!("{}={}", bad[0], bad[1]);
        hub.fails(ME, &["work", &flag, "--", "true"], 2);
    }
}

#[test]
fn a_command_that_cannot_run_claims_nothing() {
    let hub = Server::start();
    let ids: Vec<String> = (0..3)
        .map(|i| hub.ok(ME, &["task", "create", &format!("queued {i}")]))
        .collect();
    let err = hub.fails(ME, &["work", "--", "./hadnle.sh"], 2);
    assert!(err.contains("./hadnle.sh: No such file"), "{err}");
    std::fs::write(hub.path("handle.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let err = hub.fails(ME, &["work", "--", "./handle.sh"], 2);
    assert!(err.contains("chmod +x ./handle.sh"), "{err}");
    let err = hub.fails(ME, &["work", "--", "no-such-program-anywhere"], 2);
    assert!(err.contains("not found in PATH"), "{err}");
    for id in &ids {
        let t = task(&hub, id);
        assert_eq!(t["status"], "open", "{t}");
        assert_eq!(t["attempts"], 0, "{t}");
    }
}

#[test]
fn timeout_stops_the_command_and_abandons_the_task() {
    let hub = Server::start();
    let pidfile = hub.path("pid");
    let hang = script(
        hub.dir.path(),
        "hang.sh",
        &format!("echo $$ > {}\nexec sleep 300\n", pidfile.display()),
    );
    let id = hub.ok(ME, &["task", "create", "hangs"]);
    let args = [
        "work",
        "--timeout",
        "1",
        "--grace",
        "1",
        "--retry-after",
        "600",
        "--",
        hang.to_str().unwrap(),
    ];
    let _worker = hub.spawn("worker.t", &args, &[]);
    let abandoned = poll("task.abandoned with reason timeout", || {
        hub.channel_history("tasks", "type=task.abandoned")
            .into_iter()
            .find(|m| m["body"]["task-id"] == id.as_str())
    });
    assert_eq!(abandoned["body"]["reason"], "timeout");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(!pid_alive(pid.trim()), "the hung command was stopped");
    let log = wait_for_log(&hub, "worker.t", &format!("timeout {id}"));
    assert!(log.contains("\"hangs\" after "), "{log}");
    // It does not take the task it timed out on straight back: the task stays open.
    assert_eq!(task(&hub, &id)["status"], "open");
}

#[test]
fn a_second_signal_kills_the_command_and_exits_130() {
    let hub = Server::start();
    let pidfile = hub.path("pid");
    // Ignores SIGTERM: only the second signal's SIGKILL ends it.
    let stubborn = script(
        hub.dir.path(),
        "stubborn.sh",
        &format!(
            "trap '' TERM\n{}\nwhile :; do sleep 1; done\n",
            save_pid(&pidfile)
        ),
    );
    let id = hub.ok(ME, &["task", "create", "stubborn"]);
    let args = ["work", "--grace", "600", "--", stubborn.to_str().unwrap()];
    let mut worker = hub.spawn("worker.s", &args, &[]);
    let pid = saved_pid(&pidfile, "the command to start");
    signal(worker.child.id(), "INT");
    wait_for_log(&hub, "worker.s", "stopping");
    assert!(
        pid_alive(&pid),
        "the first signal is polite: the command may go on"
    );
    assert_eq!(worker.terminate(), Some(130));
    poll("the command to be killed", || {
        (!pid_alive(&pid)).then_some(())
    });
    assert_eq!(
        task(&hub, &id)["claimed_by"],
        "worker.s",
        "left to its lease"
    );
}

/// `kill -9` of a worker stops its command and the command's own children (SIGTERM, then
/// SIGKILL after --grace or half the lease, if shorter), so when the lease runs out and another
/// worker takes the task, the first run is over. They used to run on, orphaned: the task ran
/// twice at once.
#[test]
fn a_killed_workers_command_and_its_children_stop() {
    let hub = Server::start();
    let (command_pid, child_pid) = (hub.path("command.pid"), hub.path("child.pid"));
    // The command's child ignores SIGTERM: only the SIGKILL after the grace ends it.
    let handler = script(
        hub.dir.path(),
        "handle.sh",
        &format!(
            "sh -c 'trap \"\" TERM; {}; exec sleep 300' &\n{}\nwait\n",
            save_pid(&child_pid),
            save_pid(&command_pid)
        ),
    );
    let id = hub.ok(ME, &["task", "create", "outlive me"]);
    // Half the lease (2 s), not the 600 s grace, is what the child gets after its SIGTERM.
    let handler = handler.to_str().unwrap();
    let args = ["work", "--grace", "600", "--lease", "4", "--", handler];
    let mut worker = hub.spawn("worker.k", &args, &[]);
    let command = saved_pid(&command_pid, "the command to start");
    let child = saved_pid(&child_pid, "the command's child to start");
    worker.child.kill().expect("SIGKILL the worker");
    worker.child.wait().expect("reap the worker");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (pid_alive(&command) || pid_alive(&child)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&String> = [&command, &child]
        .into_iter()
        .filter(|pid| pid_alive(pid))
        .collect();
    for pid in &left {
        try_signal(pid.parse().unwrap(), "KILL"); // not left behind by a failed test
    }
    assert!(
        left.is_empty(),
        "still running 10 s after the worker died: {left:?}"
    );
    // Nobody touches the lease (4 s) any more: the task comes back to the pool by expiry,
    // one attempt used, with nothing from the killed run stored on it.
    let back = poll("the task back in the pool", || {
        let task = task(&hub, &id);
        (task["status"] == "open").then_some(task)
    });
    assert_eq!(back["claimed_by"], Value::Null, "{back}");
    assert_eq!(back["result"], Value::Null, "{back}");
    assert_eq!(back["attempts"], 1, "{back}");
    let types: Vec<Value> = hub
        .channel_history("tasks", "")
        .into_iter()
        .map(|m| m["type"].clone())
        .collect();
    assert!(types.contains(&"task.expired".into()), "{types:?}");
    assert!(
        !types.iter().any(|t| t == "task.done" || t == "task.error"),
        "a dead worker reports nothing: {types:?}"
    );
}

/// A command's exit reaches the hub as it was: its exit code, or the signal that killed it.
#[test]
fn a_commands_exit_code_and_signal_are_reported_as_they_were() {
    let hub = Server::start();
    let handler = script(
        hub.dir.path(),
        "handle.sh",
        "case \"$(cat)\" in\n  *'\"title\":\"exit 42\"'*) exit 42 ;;\n  *) kill -USR1 $$ ;;\nesac\n",
    );
    let code = hub.ok(ME, &["task", "create", "exit 42"]);
    let signalled = hub.ok(ME, &["task", "create", "signal"]);
    let _worker = hub.spawn("worker.x", &["work", "--", handler.to_str().unwrap()], &[]);
    let reason_of = |id: &str| {
        hub.channel_history("tasks", "type=task.abandoned")
            .into_iter()
            .find(|m| m["body"]["task-id"] == id)
            .map(|m| m["body"]["reason"].clone())
    };
    let reason = poll("exit 42 abandoned", || reason_of(&code));
    assert_eq!(reason, "command exited with status 42");
    let reason = poll("signal abandoned", || reason_of(&signalled));
    assert_eq!(
        reason,
        format!("command killed by signal {}", libc::SIGUSR1)
    );
    let errors = hub.channel_history("tasks", "type=task.error");
    let exit_code = |id: &str| {
        let error = errors.iter().find(|m| m["body"]["task-id"] == id);
        error.map(|m| m["body"]["exit-code"].clone())
    };
    assert_eq!(exit_code(&code), Some(Value::from(42)));
    assert_eq!(exit_code(&signalled), Some(Value::Null));
}

/// A worker on its own takes back a task it failed once `--retry-after` times the task's
/// attempts has passed: a failure that clears by itself is retried with no second worker. It
/// used to leave the task open until it restarted.
#[test]
fn a_lone_worker_retries_a_task_it_failed_after_a_backoff() {
    let hub = Server::start();
    let (runs, failed) = (hub.path("runs.log"), hub.path("failed"));
    let handler = script(
        hub.dir.path(),
        "handle.sh",
        &format!(
            "cat >/dev/null\ndate +%s.%N >> {runs}\n\
             if [ ! -e {failed} ]; then touch {failed}; echo 'transient' >&2; exit 1; fi\n\
             echo '{{\"ok\":true}}'\n",
            runs = runs.display(),
            failed = failed.display()
        ),
    );
    let id = hub.ok(ME, &["task", "create", "flaky once"]);
    let args = [
        "work",
        "--retry-after",
        "1",
        "--",
        handler.to_str().unwrap(),
    ];
    let _worker = hub.spawn("worker.r", &args, &[]);
    let done = poll("the task done on its second run", || {
        let t = task(&hub, &id);
        (t["status"] == "done").then_some(t)
    });
    assert_eq!(done["claimed_by"], "worker.r");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["result"], serde_json::json!({"ok": true}));
    let starts: Vec<f64> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    // Not straight back: 1 s × 1 attempt after the first run ended (clocks differ a little).
    assert!(starts[1] - starts[0] >= 0.9, "{starts:?}");
}

#[test]
fn hub_down_is_reported_once_then_reconnection() {
    let mut hub = Server::start();
    let handler = script(hub.dir.path(), "handle.sh", HANDLER);
    let _worker = hub.spawn("worker.d", &["work", "--", handler.to_str().unwrap()], &[]);
    wait_for_log(&hub, "worker.d", "taking tasks");
    hub.stop();
    wait_for_log(&hub, "worker.d", "hub unreachable");
    // An outage of several seconds: without backoff and once-per-outage reporting this
    // printed a line every 200 ms. Time itself is the condition under test (how much a worker
    // says over a long outage), and nothing observable marks "long enough": so a plain sleep.
    std::thread::sleep(Duration::from_secs(4));
    hub.restart_stopped();
    let log = wait_for_log(&hub, "worker.d", "hub reconnected");
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("hub unreachable"), 1, "{log}");
    assert!(count("stream interrupted") <= 1, "{log}");
    assert!(
        log.lines().count() <= 6,
        "a few lines per outage, not one per try:\n{log}"
    );
    // And it works again.
    let id = hub.ok(ME, &["task", "create", "after the outage"]);
    poll("the task done after the outage", || {
        (task(&hub, &id)["status"] == "done").then_some(())
    });
}

#[test]
fn urls_may_be_host_port_or_https() {
    let hub = Server::start();
    let hostport = format!("127.0.0.1:{}", hub.port);
    let status = hub.ok(ME, &["--url", &hostport, "status"]);
    assert!(json(&status)["uptime-s"].is_number(), "{status}");
    let err = hub.fails(ME, &["--url", "ftp://example", "status"], 2);
    assert!(err.contains("http:// or https://"), "{err}");
    // https is spoken: against a TLS server with a self-signed certificate the client gets
    // as far as checking the certificate, and refuses it.
    let dir = hub.dir.path();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .args(["/CN=localhost", "-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)");
    assert!(made.success());
    let port = free_port();
    let mut tls = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-www", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &port.to_string()])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let url = format!("https://localhost:{port}");
    let err = poll("the TLS server to answer", || {
        let out = hub.cmd(ME, &["--url", &url, "status"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (!err.contains("Connection refused")).then_some(err)
    });
    let _ = tls.kill();
    let _ = tls.wait();
    assert!(!err.contains("TLS backend"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn messages_and_output_are_for_people() {
    let hub = Server::start();
    // A delay is said in seconds from now, not as an epoch.
    let id = hub.ok(ME, &["task", "create", "later", "--delay", "60"]);
    let err = hub.fails(ME, &["task", "claim", &id], 4);
    assert!(err.contains("claimable in "), "{err}");
    let secs: f64 = err
        .split("claimable in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!((1.0..=60.0).contains(&secs), "{err}");
    // task show: one JSON object on one line (the README's rule), --pretty to read it.
    let shown = hub.ok(ME, &["task", "show", &id]);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert_eq!(json(&shown)["id"], id.as_str());
    assert!(
        hub.ok(ME, &["task", "show", &id, "--pretty"])
            .lines()
            .count()
            > 5
    );
    // task list --pretty: a header and aligned columns with priority, attempts, age, who.
    hub.ok(
        ME,
        &[
            "task",
            "create",
            "urgent",
            "--priority",
            "7",
            "--for",
            "bob.b",
        ],
    );
    let table = hub.ok(ME, &["task", "list", "--pretty"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    let title_at = lines[0].find("TITLE").unwrap();
    assert_eq!(&lines[1][title_at..], "urgent", "{table}");
    assert_eq!(&lines[2][title_at..], "later", "{table}");
    let who_at = lines[0].find("WHO").unwrap();
    assert!(lines[1][who_at..].starts_with("for bob.b"), "{table}");
    let pri_at = lines[0].find("PRI").unwrap();
    assert!(lines[1][pri_at..].starts_with("7 "), "{table}");
    let tries_at = lines[0].find("TRIES").unwrap();
    assert!(lines[1][tries_at..].starts_with("0/5 "), "{table}");
    // tail --pretty and history --pretty show a text body as its text.
    hub.ok(
        ME,
        &["pub", "general", "msg.text", r#"{"text":"hello there"}"#],
    );
    let pretty = hub.ok(ME, &["history", "general", "--pretty"]);
    assert!(pretty.ends_with("· msg.text · hello there"), "{pretty}");
    assert!(
        !pretty.contains('\x1b'),
        "no colour into a pipe: {pretty:?}"
    );
    // Another agent's escape sequences are shown, not obeyed by the terminal.
    let hostile = serde_json::json!({"text": "\u{1b}]0;pwned\u{7}\u{1b}[2Jcleared"});
    hub.ok(ME, &["pub", "general", "msg.text", &hostile.to_string()]);
    let pretty = hub.ok(ME, &["history", "general", "-n", "1", "--pretty"]);
    assert!(
        pretty.ends_with(r"· \u{1b}]0;pwned\u{7}\u{1b}[2Jcleared"),
        "{pretty:?}"
    );
    // An unreadable input file is a local I/O failure: exit 1, as the table says.
    let err = hub.fails(ME, &["upload", "no-such-file.bin"], 1);
    assert!(err.contains("no-such-file.bin"), "{err}");
    hub.fails(
        ME,
        &["pub", "general", "t", "--file", "no-such-file.bin"],
        1,
    );
}

/// Runs `workshop ARGS` under a pseudo-terminal (util-linux `script`), as a person would.
fn on_a_terminal(hub: &Server, args: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .env("WORKSHOP_URL", hub.url())
        .env("AGENT_ID", ME)
        .env_remove("NO_COLOR")
        .current_dir(hub.dir.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn on_a_terminal_colour_and_no_binary() {
    let hub = Server::start();
    hub.ok(
        ME,
        &["pub", "general", "msg.text", r#"{"text":"colourful"}"#],
    );
    let (code, out) = on_a_terminal(&hub, "history general --pretty", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\x1b[1;36muser.alice\x1b[0m"), "{out:?}");
    let (_, plain) = on_a_terminal(&hub, "history general --pretty", &[("NO_COLOR", "1")]);
    assert!(
        plain.contains("colourful") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    std::fs::write(hub.path("blob.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    let hash = hub.ok(ME, &["upload", "blob.bin"]);
    let (code, out) = on_a_terminal(&hub, &format!("download {hash}"), &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("refusing to write a file to the terminal"),
        "{out}"
    );
    // Into a pipe or a file it still works.
    let out = hub.run(ME, &["download", &hash]);
    assert_eq!(out.stdout, [0u8, 159, 146, 150, 255]);
}

#[test]
fn completions_and_version() {
    let hub = Server::start();
    for shell in ["bash", "zsh", "fish"] {
        let script = hub.ok(ME, &["completions", shell]);
        assert!(script.contains("workshop"), "{shell}");
        assert!(script.contains("claim"), "{shell}: subcommands completed");
    }
    hub.fails(ME, &["completions", "tcsh"], 2);
    let version = hub.ok(ME, &["--version"]);
    assert_eq!(version, format!("workshop {}", env!("CARGO_PKG_VERSION")));
}

/// Starts `workshop ARGS` in `dir` and reads its start banner (up to the `stream:` line).
fn banner(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let last = line.trim_start().starts_with("stream:");
        lines.push(line);
        if last {
            break;
        }
    }
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    lines
}

#[test]
fn the_server_says_what_it_runs_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("data/w.db");
    let blobs = d.join("files");
    let (db_s, blobs_s) = (db.to_str().unwrap(), blobs.to_str().unwrap());
    // Flags win over the environment.
    let env = [
        ("DB_PATH", "ignored.db"),
        ("PORT", "1"),
        ("WORKSHOP_RETENTION_DAYS", "7"),
        ("WORKSHOP_MAX_FILE_BYTES", "1048576"),
    ];
    let args = [
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--db",
        db_s,
        "--blobs",
        blobs_s,
    ];
    let lines = banner(d, &args, &env);
    let text = lines.join("\n");
    assert!(
        lines[0].starts_with("workshop listening on http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("version:   {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(&format!("database:  {db_s}")), "{text}");
    assert!(text.contains(&format!("blobs:     {blobs_s}")), "{text}");
    assert!(text.contains("messages deleted after 7 days"), "{text}");
    assert!(text.contains("up to 1 MiB"), "{text}");
    assert!(db.is_file() && blobs.is_dir() && !d.join("ignored.db").exists());
    // On every interface: the machine's addresses, not 0.0.0.0.
    let lines = banner(d, &["serve", "--port", "0", "--host", "0.0.0.0"], &[]);
    let text = lines.join("\n");
    let urls: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert!(
        urls.iter()
            .any(|u| u.starts_with("http://127.0.0.1:") && u.ends_with("/ui")),
        "{text}"
    );
    assert!(!lines[1..].iter().any(|l| l.contains("0.0.0.0")), "{text}");
    // serve --help lists every variable with its default.
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (var, default) in [
        ("PORT", "4242"),
        ("HOST", "0.0.0.0"),
        ("DB_PATH", "workshop.db"),
        ("BLOBS_DIR", "blobs"),
        ("WORKSHOP_RETENTION_DAYS", "30"),
        ("WORKSHOP_MAX_FILE_BYTES", "104857600"),
        ("WORKSHOP_VERBOSE", "false"),
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(var))
            .unwrap_or_else(|| panic!("{var}:\n{help}"));
        let block = help.lines().skip(line).take(2).collect::<String>();
        assert!(
            block.contains(&format!("[default: {default}]")),
            "{var}: {block}"
        );
    }
    // And so does every variable of README's configuration table, so a new one cannot be
    // left out of either.
    let documented = readme_variables();
    assert!(
        documented.len() >= 10 && documented.iter().any(|v| v == "WORKSHOP_RATE"),
        "README's configuration table not found: {documented:?}"
    );
    for var in documented {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var} is in README but not in serve --help:\n{help}"));
        let block = help.lines().skip(line).take(2).collect::<String>();
        assert!(block.contains("[default: "), "{var}: {block}");
    }
    for flag in ["--port", "--host", "--db", "--blobs"] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
    // The client's --url and --as mean nothing to the server: not in its help, and refused
    // rather than ignored (`serve --url http://0.0.0.0:80` would listen on 4242).
    assert!(!help.contains("--url") && !help.contains("--as"), "{help}");
    for args in [
        &["serve", "--url", "http://0.0.0.0:9"][..],
        &["--as", "me"],
        &["backup", "/tmp/nowhere", "--url", "http://h:1"],
    ] {
        let refused = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--url and --as are for commands that talk to a hub"),
            "{stderr}"
        );
    }
}

/// The variables in README's `## Configuration` table (its `| \`NAME\` | ...` rows).
fn readme_variables() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    readme
        .lines()
        .skip_while(|l| l.trim() != "## Configuration")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// `lock NAME -- CMD` typed at a terminal, CMD reading the terminal (a confirmation prompt):
/// CMD must get the input and finish. When CMD ran in a process group of its own it was a
/// background job of the terminal: its read stopped it (SIGTTIN) and `lock` waited, holding
/// the lock, forever.
#[test]
fn lock_runs_a_command_that_reads_the_terminal() {
    let hub = Server::start();
    // Killing `script` on a failure hangs the terminal up, which ends what runs on it.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut session = KillOnDrop(
        Command::new("script")
            .args([
                "-qec",
                &format!("{BIN} lock deploy --ttl 60 -- sh -c 'read answer; echo \"got $answer\"'"),
                "/dev/null",
            ])
            .env("WORKSHOP_URL", hub.url())
            .env("AGENT_ID", ME)
            .current_dir(hub.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux)"),
    );
    let mut stdout = session.0.stdout.take().expect("stdout");
    let output = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    // Typed once the lock is held and CMD runs (the terminal keeps it until read).
    poll("the lock to be taken", || {
        let held = hub.get("/locks").json();
        (held.as_array().is_some_and(|l| l.len() == 1)).then_some(())
    });
    std::io::Write::write_all(&mut session.0.stdin.take().expect("stdin"), b"yes\n").expect("type");
    let status = poll("lock to exit", || session.0.try_wait().ok().flatten());
    let out = output.join().unwrap();
    assert_eq!(status.code(), Some(0), "{out:?}");
    assert!(out.contains("got yes"), "{out:?}");
    assert!(hub.get("/locks").json().as_array().unwrap().is_empty());
}

/// `workshop pub general 'hello there'` stored a message of type "hello there" with an empty
/// body. The type with blanks is a usage error that shows the right form, and stores nothing.
#[test]
fn a_type_with_blanks_is_a_usage_error_showing_the_right_form() {
    let hub = Server::start();
    let out = hub.run(ME, &["pub", "general", "hello there"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("workshop pub general msg.text"), "{stderr}");
    assert_eq!(hub.status()["messages"], 0, "nothing was stored");
}

/// `workshop completions bash | head` panicked on the closed pipe.
#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    // A pipe whose reading end is already closed: every write to it fails (EPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `lock NAME --ttl 0` was refused by the hub as "ttl_s must be ...", a name the user never
/// typed: the CLI checks it and names the flag.
#[test]
fn a_lock_ttl_out_of_range_is_a_usage_error_naming_the_flag() {
    let hub = Server::start();
    for ttl in ["0", "86401"] {
        let out = hub.run(ME, &["lock", "deploy", "--ttl", ttl]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--ttl") && !stderr.contains("ttl_s"),
            "{stderr}"
        );
    }
    assert_eq!(
        hub.get("/locks").json(),
        serde_json::json!([]),
        "nothing taken"
    );
}
