//! Harness for the CLI tests: the real `workshop` binary as the server (port 0, temp dir) and
//! as the client, both as subprocesses. Waiting is always "poll until true, or fail at a
//! deadline" — never a sleep standing in for an assertion.
#![allow(dead_code)] // not every test uses every helper

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_workshop");

/// Generous: the machine running the tests may be small and busy.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Hub {
    pub dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
}

impl Hub {
    pub fn start() -> Hub {
        let dir = tempfile::tempdir().expect("temp dir");
        let (server, port) = launch(dir.path(), 0, &[]);
        Hub {
            dir,
            port,
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SIGKILLs the server (no clean shutdown), keeping its files.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same files and the same port (via `workshop serve`).
    pub fn restart(&mut self) {
        self.kill();
        let (server, port) = launch(self.dir.path(), self.port, &["serve"]);
        assert_eq!(port, self.port);
        self.server = Some(server);
    }

    /// A client command line acting as `agent`, configured through the environment.
    pub fn cmd(&self, agent: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("WORKSHOP_URL", self.url())
            .env("AGENT_ID", agent)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, agent: &str, args: &[&str]) -> Output {
        self.cmd(agent, args).output().expect("run workshop")
    }

    pub fn run_with_stdin(&self, agent: &str, args: &[&str], input: &str) -> Output {
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

    /// Runs a client command that must succeed; returns its stdout, trimmed.
    pub fn ok(&self, agent: &str, args: &[&str]) -> String {
        let out = self.run(agent, args);
        assert_success(&out, args);
        String::from_utf8(out.stdout)
            .expect("utf-8 stdout")
            .trim()
            .to_string()
    }

    /// Runs a client command that must fail with `code`; returns its stderr.
    pub fn fails(&self, agent: &str, args: &[&str], code: i32) -> String {
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

    /// A JSON GET straight to the server, for checking state independently of the CLI.
    pub fn get(&self, path: &str) -> Value {
        ureq::get(&format!("{}{path}", self.url()))
            .call()
            .expect("GET")
            .into_json()
            .expect("JSON")
    }

    /// ndjson history, parsed.
    pub fn history(&self, ch: &str, query: &str) -> Vec<Value> {
        let text = ureq::get(&format!("{}/ch/{ch}/history?n=1000&{query}", self.url()))
            .call()
            .expect("GET history")
            .into_string()
            .expect("history body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("history line is JSON"))
            .collect()
    }

    pub fn task(&self, id: &str) -> Value {
        self.get(&format!("/tasks/{id}"))
    }

    /// Starts a long-running client (`tail`, `work`) whose stdout lines arrive on a channel.
    pub fn spawn(&self, agent: &str, args: &[&str], env: &[(&str, &Path)]) -> Background {
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
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `workshop [args]` as a server on `port` in `dir`; returns it and its port. A
/// restart may find the port still held for a moment, so a failed start is retried.
fn launch(dir: &Path, port: u16, args: &[&str]) -> (Child, u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut child = Command::new(BIN)
            .args(args)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", dir.join("w.db"))
            .env("BLOBS_DIR", dir.join("blobs"))
            .env_remove("WORKSHOP_VERBOSE")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        if let Some(port) = first
            .trim()
            .strip_prefix("workshop listening on http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
        {
            // Keep draining stdout so the server never blocks on a full pipe.
            thread::spawn(move || {
                let mut sink = String::new();
                while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
                    sink.clear();
                }
            });
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            Instant::now() < deadline,
            "server did not start on port {port}: {first:?}"
        );
        thread::sleep(Duration::from_millis(200));
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

    /// Sends SIGTERM; returns the exit code once it exits (failing at the deadline).
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = poll(&format!("pid {} to exit", self.child.id()), || {
            self.child.try_wait().ok().flatten()
        });
        status.code()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
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
pub fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
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
