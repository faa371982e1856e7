//! What only the CLI tests need, on top of `common`: the real `workshop` binary as the client,
//! run as a subprocess against a `common::Server`. Waiting is always "poll until true, or fail
//! at a deadline" — never a sleep standing in for an assertion.
#![allow(dead_code)] // not every test uses every helper

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{BIN, Server, signal, try_signal, wait_for};

/// Generous: the machine running the tests may be small and busy.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What the CLI tests do with a running server: run client command lines against it, and
/// read a channel's history to check what they did.
pub trait Cli {
    /// A client command line acting as `agent`, configured through the environment.
    fn cmd(&self, agent: &str, args: &[&str]) -> Command;
    fn run(&self, agent: &str, args: &[&str]) -> Output;
    fn run_with_stdin(&self, agent: &str, args: &[&str], input: &str) -> Output;
    /// Runs a client command that must succeed; returns its stdout, trimmed.
    fn ok(&self, agent: &str, args: &[&str]) -> String;
    /// Runs a client command that must fail with `code`; returns its stderr.
    fn fails(&self, agent: &str, args: &[&str], code: i32) -> String;
    /// Starts a long-running client (`tail`, `work`) whose stdout lines arrive on a channel.
    fn spawn(&self, agent: &str, args: &[&str], env: &[(&str, &Path)]) -> Background;
    /// A channel's ndjson history (up to 1000 messages), `query` added to the URL.
    fn channel_history(&self, ch: &str, query: &str) -> Vec<Value>;
    /// Waits (to the deadline) for the first message of type `kind` on `ch`.
    fn first_of_type(&self, ch: &str, kind: &str) -> Value {
        poll(kind, || {
            self.channel_history(ch, &format!("type={kind}"))
                .into_iter()
                .next()
        })
    }
}

impl Cli for Server {
    fn cmd(&self, agent: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("WORKSHOP_URL", self.url())
            .env("AGENT_ID", agent)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, agent: &str, args: &[&str]) -> Output {
        self.cmd(agent, args).output().expect("run workshop")
    }

    fn run_with_stdin(&self, agent: &str, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(agent, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn workshop");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait workshop")
    }

    fn ok(&self, agent: &str, args: &[&str]) -> String {
        let out = self.run(agent, args);
        assert_success(&out, args);
        String::from_utf8(out.stdout)
            .expect("utf-8 stdout")
            .trim()
            .to_string()
    }

    fn fails(&self, agent: &str, args: &[&str], code: i32) -> String {
        let out = self.run(agent, args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "workshop {args:?}: want exit {code}; stdout {:?} stderr {stderr:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    fn spawn(&self, agent: &str, args: &[&str], env: &[(&str, &Path)]) -> Background {
        let mut cmd = self.cmd(agent, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(self.path(&format!("{agent}.stderr"))).expect("log");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn workshop");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background { child, lines: rx }
    }

    fn channel_history(&self, ch: &str, query: &str) -> Vec<Value> {
        self.history(&format!("/ch/{ch}/history?n=1000&{query}"))
    }
}

/// A running `tail` or `work`; SIGTERMed (then killed) when dropped.
pub struct Background {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Background {
    /// The next `n` stdout lines, failing at the deadline.
    pub fn take_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => panic!("wanted {n} lines, got {}: {got:#?}", got.len()),
            }
        }
        got
    }

    /// Waits for it to exit by itself (failing at the deadline).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        poll(&format!("pid {} to exit", self.child.id()), || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// Sends SIGTERM; returns the exit code once it exits (failing at the deadline).
    pub fn terminate(&mut self) -> Option<i32> {
        signal(self.child.id(), "TERM");
        self.wait().code()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            try_signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it returns `Some`, failing with `what` at the deadline.
pub fn poll<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for(DEADLINE, what, f)
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "workshop {args:?} failed ({:?}): stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Writes an executable shell script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
