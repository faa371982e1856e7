//! The child-process supervisor: the command a task runs, checked once at start, started in a
//! process group of its own under a guard (`guard`: if the worker dies, it stops the group),
//! fed the task, its stderr forwarded as updates, and stopped (SIGTERM, then SIGKILL after
//! `--grace`) on an interrupt, a timeout, a lost lease or the worker stopping. Every running
//! group is registered so a second Ctrl-C can kill them all before the worker exits.
use std::collections::{HashSet, VecDeque};
use std::fs::Metadata;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use super::super::client::{Client, seg};
use super::super::signal::{SIGKILL, signal_group};
use super::super::supervise;
use super::report::Outcome;
use super::{Ctx, guard, spawn};

/// stderr lines kept for the `task.error` message.
const STDERR_TAIL: usize = 20;
/// The most of a command's stdout kept: the server takes no larger request, so a result
/// over it fails the task. The rest is read and dropped, so the command never blocks.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
/// The most of one stderr line kept; the rest of the line is dropped.
const MAX_LINE_BYTES: usize = 4096;
/// Updates posted at most per second: a command that floods stderr must not flood the
/// task's channel (`yes >&2` made 30,000 messages in 10 s). Lines past it are counted in
/// the next update.
const UPDATES_PER_SECOND: u32 = 10;

/// Checks that `program` names an executable file, as `exec` would find it: a path when it
/// has a slash, else a search of PATH. The message says what to do about it.
pub fn check_executable(program: &str) -> Result<(), String> {
    if program.contains('/') {
        check_file(program)
    } else if found_in_path(program) {
        Ok(())
    } else {
        Err(format!(
            "{program}: command not found in PATH (for a file here, write ./{program})"
        ))
    }
}

fn check_file(program: &str) -> Result<(), String> {
    match Path::new(program).metadata() {
        Err(e) => Err(format!("{program}: {e}")),
        Ok(m) if !m.is_file() => Err(format!("{program}: not a file")),
        Ok(m) if !is_executable(&m) => Err(format!(
            "{program}: not executable (make it so: chmod +x {program})"
        )),
        Ok(_) => Ok(()),
    }
}

fn found_in_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        let meta = dir.join(program).metadata();
        meta.is_ok_and(|m| m.is_file() && is_executable(&m))
    })
}

fn is_executable(meta: &Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// Process groups of the commands running now.
#[derive(Default)]
pub struct Children(Mutex<HashSet<u32>>);

impl Children {
    fn lock(&self) -> MutexGuard<'_, HashSet<u32>> {
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
    fn try_wait(&self, child: &mut Child) -> io::Result<Option<ExitStatus>> {
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

/// Starts the command (under its guard) in its own process group, feeds it the task, forwards
/// its stderr as updates, and waits for it — stopping it when told to, or when `--timeout`
/// runs out.
pub fn supervise(ctx: &Ctx, id: &str, task: &Value, stop: &Receiver<Outcome>) -> io::Result<Run> {
    let mut child = start(ctx, id)?;
    feed(&mut child, task);
    let stdout = read_stdout(ctx, &mut child)?;
    let stderr = forward_stderr(ctx, task, &mut child)?;
    let (status, stopped_by) = wait_or_stop(ctx, &mut child, stop)?;
    Ok(Run {
        status,
        stopped_by,
        stdout: stdout.join().unwrap_or_default(),
        stderr_tail: stderr.join().unwrap_or_default(),
    })
}

/// Starts the command, registered while the lock is held: a second signal either finds it or
/// comes after. The guard's parent is the thread that starts it, this runner's, which lives
/// until the guard is reaped: only the worker's death ends it sooner.
fn start(ctx: &Ctx, id: &str) -> io::Result<Child> {
    let mut running = ctx.children.lock();
    let child = command(ctx, id).spawn()?;
    running.insert(child.id());
    Ok(child)
}

/// The command line under its guard, its environment, its pipes, and a process group of its
/// own, which the guard leads and the command joins. Should the worker die, the guard gives
/// the command `--grace` to stop, but at most half the lease: it is gone before the task can
/// be claimed again (at least two thirds of a lease after the last touch).
fn command(ctx: &Ctx, id: &str) -> Command {
    let lease = ctx.args.claim_lease();
    let grace = lease.map_or(ctx.args.grace, |lease| ctx.args.grace.min(lease / 2));
    let mut command = guard::command(grace, &ctx.args.command);
    command
        .env("WORKSHOP_TASK_ID", id)
        .env("WORKSHOP_URL", ctx.client.base_url())
        .env("AGENT_ID", &ctx.agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command
}

/// Writes the task's JSON to the command's stdin, from a thread of its own.
fn feed(child: &mut Child, task: &Value) {
    let stdin = child.stdin.take();
    let input = format!("{task}\n");
    spawn("stdin", move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(input.as_bytes()); // a command may ignore its input
        }
    });
}

/// Collects the command's stdout (its result).
fn read_stdout(ctx: &Ctx, child: &mut Child) -> io::Result<JoinHandle<Vec<u8>>> {
    let stdout = child.stdout.take();
    reader(ctx, child, "stdout", move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            // One byte past the limit tells a result that is too long.
            let _ = (&mut s)
                .take(MAX_RESULT_BYTES as u64 + 1)
                .read_to_end(&mut buf);
            let _ = io::copy(&mut s, &mut io::sink());
        }
        buf
    })
}

/// Posts each stderr line as a task update; the last `STDERR_TAIL` lines.
fn forward_stderr(
    ctx: &Ctx,
    task: &Value,
    child: &mut Child,
) -> io::Result<JoinHandle<Vec<String>>> {
    let stderr = child.stderr.take();
    let id = super::tell::task_id(task);
    let poster = UpdatePoster {
        client: ctx.client.clone(),
        holder: ctx.holder(task),
        path: format!("/tasks/{}/update", seg(id)),
    };
    reader(ctx, child, "stderr", move || {
        stderr.map(|s| poster.forward(s)).unwrap_or_default()
    })
}

/// Posts a task's updates (`/tasks/ID/update`).
struct UpdatePoster {
    client: Client,
    /// `from` and `claim` (`Ctx::holder`).
    holder: Value,
    path: String,
}

impl UpdatePoster {
    /// Posts every non-blank line as a note, `UPDATES_PER_SECOND` at most (a note says how
    /// many lines were skipped before it); the last `STDERR_TAIL` lines.
    fn forward(&self, stderr: ChildStderr) -> Vec<String> {
        let mut tail = VecDeque::new();
        let (mut second, mut posted, mut skipped) = (Instant::now(), 0, 0);
        for line in non_blank_lines(stderr) {
            if second.elapsed() >= Duration::from_secs(1) {
                (second, posted) = (Instant::now(), 0);
            }
            if posted < UPDATES_PER_SECOND {
                match skipped {
                    0 => self.post(&line),
                    n => self.post(&format!("({n} lines skipped) {line}")),
                }
                (posted, skipped) = (posted + 1, 0);
            } else {
                skipped += 1;
            }
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail.into()
    }

    fn post(&self, note: &str) {
        let mut body = self.holder.clone();
        body["note"] = json!(note);
        if let Err(e) = self.client.post_json(&self.path, &body) {
            eprintln!("workshop work: posting update: {e}");
        }
    }
}

/// The lines of `input`, each cut at `MAX_LINE_BYTES`, trailing blanks trimmed, empty ones
/// left out, until it ends or fails.
fn non_blank_lines(input: impl Read) -> impl Iterator<Item = String> {
    let mut input = BufReader::new(input);
    std::iter::from_fn(move || bounded_line(&mut input))
        .map(|line| String::from_utf8_lossy(&line).trim_end().to_string())
        .filter(|line| !line.is_empty())
}

/// The next line of `input` without its newline, at most `MAX_LINE_BYTES` of it kept (the
/// rest of a longer line is read and dropped); `None` at the end or on a failed read.
fn bounded_line(input: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let available = input.fill_buf().ok()?;
        if available.is_empty() {
            return (!line.is_empty()).then_some(line);
        }
        let (piece, ends) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], at + 1),
            None => (available, available.len()),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        let found_newline = ends > piece.len();
        input.consume(ends);
        if found_newline {
            return Some(line);
        }
    }
}

/// Starts a thread draining one of `child`'s pipes. If none can be had, the command could
/// block on a full pipe forever: it is killed instead, and the error reported as a failed start.
fn reader<T: Send + 'static>(
    ctx: &Ctx,
    child: &mut Child,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
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
) -> io::Result<(ExitStatus, Option<Outcome>)> {
    let pid = child.id();
    let started = Instant::now();
    let (status, stopped_by) = supervise::wait_or_stop(
        "workshop work",
        || ctx.children.try_wait(child),
        |sig| signal_group(pid, sig),
        ctx.args.grace,
        |tick| why_stop(ctx, stop, started, tick),
    )?;
    if stopped_by.is_some() {
        // Leftovers of a stopped command (a script's background jobs) would hold its pipes
        // open. The group id cannot name another group while any member lives.
        let _ = signal_group(pid, SIGKILL);
    }
    Ok((status, stopped_by))
}

/// Why the command started at `started` must stop now, if it must: waits up to `tick` for
/// an interrupt or a lost lease, then looks at the worker's stop and the `--timeout`.
fn why_stop(
    ctx: &Ctx,
    stop: &Receiver<Outcome>,
    started: Instant,
    tick: Duration,
) -> Option<Outcome> {
    match stop.recv_timeout(tick) {
        Ok(why) => Some(why),
        Err(_) if ctx.stop.load(Ordering::SeqCst) => Some(Outcome::Stopped),
        Err(_) if ctx.args.timeout.is_some_and(|t| started.elapsed() >= t) => {
            Some(Outcome::TimedOut)
        }
        Err(_) => None,
    }
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

    #[test]
    fn stderr_lines_are_trimmed_and_blank_ones_left_out() {
        let input: &[u8] = b"first  \n\n   \nsecond\r\nlast";
        let lines: Vec<String> = non_blank_lines(input).collect();
        assert_eq!(lines, ["first", "second", "last"]);
    }

    #[test]
    fn a_stderr_line_is_kept_to_its_first_4_kib() {
        let long = "x".repeat(3 * MAX_LINE_BYTES);
        let input = format!("{long}\nnext\n{long}");
        let lines: Vec<String> = non_blank_lines(input.as_bytes()).collect();
        let cut = "x".repeat(MAX_LINE_BYTES);
        assert_eq!(lines, [cut.as_str(), "next", cut.as_str()]);
    }
}
