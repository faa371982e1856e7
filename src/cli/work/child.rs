//! The command a task runs: checked once at start, started in a process group of its own, fed
//! the task, its stderr forwarded as updates, and stopped (SIGTERM, then SIGKILL after
//! `--grace`) on an interrupt, a timeout, a lost lease or the worker stopping. Every running
//! group is registered so a second Ctrl-C can kill them all before the worker exits.
use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use super::super::client::seg;
use super::super::signal::{SIGKILL, signal_group};
use super::super::supervise;
use super::report::Outcome;
use super::{Ctx, STDERR_TAIL, spawn};

/// Checks that `program` names an executable file, as `exec` would find it: a path when it
/// has a slash, else a search of PATH. The message says what to do about it.
pub fn check_executable(program: &str) -> Result<(), String> {
    if program.contains('/') {
        return match Path::new(program).metadata() {
            Err(e) => Err(format!("{program}: {e}")),
            Ok(m) if !m.is_file() => Err(format!("{program}: not a file")),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
                "{program}: not executable (make it so: chmod +x {program})"
            )),
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        dir.join(program)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "{program}: command not found in PATH (for a file here, write ./{program})"
        ))
    }
}

/// Process groups of the commands running now.
#[derive(Default)]
pub struct Children(Mutex<HashSet<u32>>);

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGKILLs every running command's group (the worker is about to exit).
    pub fn kill_all(&self) {
        for &pid in self.lock().iter() {
            let _ = signal_group(pid, SIGKILL);
        }
    }

    /// `try_wait`, forgetting the group in the same step it is reaped, so `kill_all` never
    /// signals a group id that may have been handed to someone else.
    fn try_wait(&self, child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
        let mut running = self.lock();
        let status = child.try_wait();
        if !matches!(status, Ok(None)) {
            running.remove(&child.id());
        }
        status
    }
}

/// How one command run ended.
pub struct Run {
    pub status: ExitStatus,
    pub stopped_by: Option<Outcome>,
    pub stdout: Vec<u8>,
    pub stderr_tail: Vec<String>,
}

/// Starts the command in its own process group, feeds it the task, forwards its stderr as
/// updates, and waits for it — stopping it when told to, or when `--timeout` runs out.
pub fn supervise(
    ctx: &Ctx,
    id: &str,
    task: &Value,
    stop: &Receiver<Outcome>,
) -> std::io::Result<Run> {
    let mut child = {
        // Registered while the lock is held: a second signal either finds it or comes after.
        let mut running = ctx.children.lock();
        let child = Command::new(&ctx.command[0])
            .args(&ctx.command[1..])
            .env("WORKSHOP_TASK_ID", id)
            .env("WORKSHOP_URL", ctx.client.base_url())
            .env("AGENT_ID", &ctx.agent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        running.insert(child.id());
        child
    };
    let stdin = child.stdin.take();
    let input = format!("{task}\n");
    spawn("stdin", move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(input.as_bytes()); // a command may ignore its input
        }
    });
    let stdout = child.stdout.take();
    let out_reader = reader(ctx, &mut child, "stdout", move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    })?;
    let stderr = child.stderr.take();
    let (client, agent, path) = (
        ctx.client.clone(),
        ctx.agent.clone(),
        format!("/tasks/{}/update", seg(id)),
    );
    let err_reader = reader(ctx, &mut child, "stderr", move || {
        let mut tail = VecDeque::new();
        let Some(stderr) = stderr else {
            return Vec::new();
        };
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.is_empty() {
                continue;
            }
            if let Err(e) = client.post_json(&path, &json!({"from": agent, "note": line})) {
                eprintln!("workshop work: posting update: {e}");
            }
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail.into()
    })?;
    let (status, stopped_by) = wait_or_stop(ctx, &mut child, stop)?;
    Ok(Run {
        status,
        stopped_by,
        stdout: out_reader.join().unwrap_or_default(),
        stderr_tail: err_reader.join().unwrap_or_default(),
    })
}

/// Starts a thread draining one of `child`'s pipes. If none can be had, the command could
/// block on a full pipe forever: it is killed instead, and the error reported as a failed start.
fn reader<T: Send + 'static>(
    ctx: &Ctx,
    child: &mut Child,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<thread::JoinHandle<T>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .inspect_err(|_| {
            let _ = signal_group(child.id(), SIGKILL);
            let _ = child.wait();
            ctx.children.lock().remove(&child.id());
        })
}

/// Waits for the child, polling so an interrupt, a timeout, a lost lease or a worker stop can
/// end it.
fn wait_or_stop(
    ctx: &Ctx,
    child: &mut Child,
    stop: &Receiver<Outcome>,
) -> std::io::Result<(ExitStatus, Option<Outcome>)> {
    let pid = child.id();
    let started = Instant::now();
    let (status, stopped_by) = supervise::wait_or_stop(
        "workshop work",
        || ctx.children.try_wait(child),
        |sig| signal_group(pid, sig),
        ctx.grace,
        |tick| match stop.recv_timeout(tick) {
            Ok(why) => Some(why),
            Err(_) if ctx.stop.load(Ordering::SeqCst) => Some(Outcome::Stopped),
            Err(_) if ctx.timeout.is_some_and(|t| started.elapsed() >= t) => {
                Some(Outcome::TimedOut)
            }
            Err(_) => None,
        },
    )?;
    if stopped_by.is_some() {
        // Leftovers of a stopped command (a script's background jobs) would hold its pipes
        // open. The group id cannot name another group while any member lives.
        let _ = signal_group(pid, SIGKILL);
    }
    Ok((status, stopped_by))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_like_exec_would() {
        assert!(check_executable("sh").is_ok());
        assert!(check_executable("/bin/sh").is_ok());
        let missing = check_executable("./hadnle.sh").unwrap_err();
        assert!(missing.starts_with("./hadnle.sh: "), "{missing}");
        assert!(
            check_executable("no-such-command-here")
                .unwrap_err()
                .contains("PATH")
        );
        assert!(check_executable("/").unwrap_err().contains("not a file"));
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("h.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = check_executable(script.to_str().unwrap()).unwrap_err();
        assert!(err.contains("chmod +x"), "{err}");
    }
}
