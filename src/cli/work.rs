//! `workshop work`: the worker loop. One coordinator thread owns all decisions (what to claim,
//! what runs, what to stop); helper threads only feed it events:
//!
//! - the stream thread follows `task.*` messages live (new and abandoned tasks, interrupts),
//! - the ticker asks for a periodic claim-next check (the fallback that misses nothing),
//! - one runner thread per claimed task runs the command and reports the outcome,
//! - the heartbeat thread keeps the agent visible in `who`.
//!
//! Claims carry a lease that a toucher thread per task keeps extending while the command
//! runs, so the task of a worker that dies goes back to the pool when the lease runs out.
//! Claiming is one function (`claim_next`): the server picks the task (highest priority, then
//! oldest), and the worker passes the tasks it gave up on as `exclude`.
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use serde_json::{Value, json};

use super::client::{CliError, Client, Result, seg};
use super::idempotent;
use super::signal::{SIGKILL, SIGTERM, signal_group};
use super::sse::{self, Stream};

pub const HELP: &str = "\
For each task it can claim (open, and unassigned or assigned to AGENT_ID; on the --ch channels,
or any), runs COMMAND with the task's JSON on stdin and WORKSHOP_TASK_ID, WORKSHOP_URL and
AGENT_ID in its environment:
  - each line COMMAND writes to stderr is posted as a task update (note);
  - exit 0: the task is done, with stdout as its result (JSON if it parses, else {\"output\": text});
  - any other exit: task.error is posted on the task's channel and the task is abandoned;
  - task.interrupt for a running task: COMMAND's process group gets SIGTERM, SIGKILL after
    --grace seconds, and the task is abandoned with reason \"interrupted\".
Claims are leased for --lease seconds and touched every third of that while COMMAND runs: if
this worker dies, the task returns to the pool when the lease runs out; if the lease is lost
anyway (the server unreachable for too long), COMMAND is stopped and nothing is reported.
A task this worker failed or was interrupted on is not taken again by it. Tasks are claimed
with claim-next (highest priority first, then oldest) as soon as the live stream shows one,
and also every --poll seconds and whenever a slot frees. Heartbeats every 30 s. SIGINT/SIGTERM: stop claiming, stop running commands, abandon their tasks
(reason \"worker stopped\"), exit 0; a second signal exits at once (status 130).

Examples:
  workshop work --ch jobs -- ./handle.sh
  workshop work --jobs 4 -- python3 agent.py --model small
  # handle.sh: read the task, report progress on stderr, print the result on stdout
  #   task=$(cat); echo 'fetching' >&2; printf '{\"rows\": %d}' 42";

const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Tasks a worker remembers giving up on (sent as claim-next's `exclude`).
const MAX_GIVEN_UP: usize = 500;
/// How often a runner looks at its child and its interrupt signal.
const RUNNER_TICK: Duration = Duration::from_millis(50);
/// How long reporting an outcome keeps retrying while the server is unreachable.
const REPORT_PATIENCE: Duration = Duration::from_secs(300);
/// stderr lines kept for the `task.error` message.
const STDERR_TAIL: usize = 20;

pub struct Options {
    pub channels: Vec<String>,
    pub jobs: usize,
    pub grace: Duration,
    pub poll: Duration,
    /// Claim lease; `None` claims without one (the claim never expires).
    pub lease: Option<Duration>,
    pub command: Vec<String>,
}

enum Event {
    /// A task became claimable (the stream saw it created or back in the pool).
    Candidate,
    /// `task.interrupt` for this task id.
    Interrupt(String),
    /// Time for the periodic claim-next check.
    Poll,
    /// A runner ended.
    Finished(String, Outcome),
    /// The stream hit an error retrying cannot fix (a bad channel name).
    Fatal(CliError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    Interrupted,
    Stopped,
    /// The lease ran out: the task is someone else's now.
    Lost,
}

/// What every runner needs, shared.
struct Ctx {
    client: Client,
    agent: String,
    command: Vec<String>,
    grace: Duration,
    lease: Option<Duration>,
    stop: Arc<AtomicBool>,
}

pub fn run(client: &Client, opts: Options) -> Result<()> {
    let agent = client.agent()?.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal starts a graceful stop; a second one (the flag already set) exits
        // at once. The shutdown hook must be registered first to see the flag unset.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        agent,
        command: opts.command,
        grace: opts.grace,
        lease: opts.lease,
        stop: Arc::clone(&stop),
    });
    let (tx, rx) = unbounded();
    spawn("heartbeat", {
        let (ctx, channels) = (Arc::clone(&ctx), opts.channels.clone());
        let jobs = opts.jobs;
        move || heartbeat(&ctx, &channels, jobs)
    });
    spawn("stream", {
        let (ctx, channels, tx) = (Arc::clone(&ctx), opts.channels.clone(), tx.clone());
        move || stream(&ctx, &channels, &tx)
    });
    spawn("ticker", {
        let (tx, every) = (tx.clone(), opts.poll);
        move || {
            while tx.send(Event::Poll).is_ok() {
                thread::sleep(every)
            }
        }
    });
    eprintln!(
        "workshop work: {} taking tasks on {} (jobs {})",
        ctx.agent,
        if opts.channels.is_empty() {
            "every channel".to_string()
        } else {
            opts.channels.join(", ")
        },
        opts.jobs
    );
    Coordinator {
        ctx,
        channels: opts.channels,
        jobs: opts.jobs,
        tx,
        running: HashMap::new(),
        given_up: HashSet::new(),
        maybe_work: true,
    }
    .run(&rx)
}

struct Coordinator {
    ctx: Arc<Ctx>,
    channels: Vec<String>,
    jobs: usize,
    tx: Sender<Event>,
    /// Tasks being run, with the way to stop each.
    running: HashMap<String, Sender<Outcome>>,
    /// Tasks this worker failed or was interrupted on: never taken again by it.
    given_up: HashSet<String>,
    /// Something may be claimable: set by the stream, the ticker and finished tasks; cleared
    /// when claim-next finds nothing.
    maybe_work: bool,
}

impl Coordinator {
    fn run(mut self, rx: &Receiver<Event>) -> Result<()> {
        let mut fatal = None;
        loop {
            let stopping = fatal.is_some() || self.ctx.stop.load(Ordering::SeqCst);
            if stopping && self.running.is_empty() {
                return fatal.map_or(Ok(()), Err);
            }
            if !stopping {
                self.fill_slots(&mut fatal);
            }
            let event = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match event {
                Event::Candidate | Event::Poll => self.maybe_work = true,
                Event::Interrupt(id) => {
                    if let Some(stop) = self.running.get(&id) {
                        let _ = stop.try_send(Outcome::Interrupted);
                    }
                }
                Event::Finished(id, outcome) => {
                    self.running.remove(&id);
                    if matches!(outcome, Outcome::Failed | Outcome::Interrupted) {
                        // The server takes at most 1000 exclusions; old ones have long been
                        // taken by others or failed for good.
                        if self.given_up.len() >= MAX_GIVEN_UP {
                            self.given_up.clear();
                        }
                        self.given_up.insert(id);
                    }
                    self.maybe_work = true;
                }
                Event::Fatal(e) => fatal = Some(e),
            }
        }
    }

    /// Claims tasks while there are free slots and the server has some for us.
    fn fill_slots(&mut self, fatal: &mut Option<CliError>) {
        while self.maybe_work && self.running.len() < self.jobs {
            // Running ones too: a runner abandons its task before it reports back, and the
            // stream may show the task open again before that report arrives.
            let exclude: Vec<&String> = self.given_up.iter().chain(self.running.keys()).collect();
            match claim_next(&self.ctx, &self.channels, &exclude) {
                Ok(Some((id, task))) => self.start(id, task),
                Ok(None) => self.maybe_work = false,
                Err(e) if e.is_transient() => {
                    eprintln!("workshop work: claiming: {e}");
                    return; // the next tick tries again
                }
                Err(e) => {
                    *fatal = Some(e);
                    return;
                }
            }
        }
    }

    fn start(&mut self, id: String, task: Value) {
        let (stop_tx, stop_rx) = bounded(1);
        self.running.insert(id.clone(), stop_tx.clone());
        let (ctx, tx, task_id) = (Arc::clone(&self.ctx), self.tx.clone(), id.clone());
        let started = spawn("runner", move || {
            let outcome = run_task(&ctx, &task_id, &task, &stop_tx, &stop_rx);
            let _ = tx.send(Event::Finished(task_id, outcome));
        });
        if !started {
            self.running.remove(&id);
            let body = json!({"from": self.ctx.agent, "reason": "worker out of threads"});
            let path = format!("/tasks/{}/abandon", seg(&id));
            if let Err(e) = self.ctx.client.post_json(&path, &body) {
                eprintln!("workshop work: abandoning {id}: {e}");
            }
        }
    }
}

/// Asks the server for the best task this agent may take (claim-next: highest priority, then
/// oldest; on each `--ch` channel in turn, or any), leased when `--lease` is set, leaving out
/// the tasks this worker gave up on. `Ok(None)` when there is nothing to take now.
fn claim_next(
    ctx: &Ctx,
    channels: &[String],
    exclude: &[&String],
) -> Result<Option<(String, Value)>> {
    let channels: Vec<Option<&String>> = if channels.is_empty() {
        vec![None]
    } else {
        channels.iter().map(Some).collect()
    };
    for ch in channels {
        let mut body = json!({"from": ctx.agent, "exclude": exclude});
        if let Some(lease) = ctx.lease {
            body["lease_s"] = json!(lease.as_secs_f64());
        }
        if let Some(ch) = ch {
            body["ch"] = json!(ch);
        }
        let task = ctx.client.post_json("/tasks/claim", &body)?;
        if let Some(id) = task.get("id").and_then(Value::as_str) {
            return Ok(Some((id.to_string(), task)));
        }
    }
    Ok(None)
}

/// Follows `task.*` messages and turns them into events for the coordinator.
fn stream(ctx: &Ctx, channels: &[String], tx: &Sender<Event>) {
    let single = match channels {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let cursor = loop {
        match sse::newest_id(&ctx.client, single) {
            Ok(id) => break id,
            Err(e) if e.is_transient() => {
                eprintln!("workshop work: {e}; retrying");
                thread::sleep(Duration::from_secs(2));
            }
            Err(e) => {
                let _ = tx.send(Event::Fatal(e));
                return;
            }
        }
    };
    let stream = Stream {
        path: single.map_or_else(|| "/".to_string(), |ch| format!("/ch/{}", seg(ch))),
        type_prefix: Some("task.".into()),
        cursor: Some(cursor),
    };
    let result = sse::follow(
        &ctx.client,
        stream,
        |event| {
            let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                return ControlFlow::Continue(());
            };
            let ch = msg.get("ch").and_then(Value::as_str).unwrap_or_default();
            if !channels.is_empty() && !channels.iter().any(|c| c == ch) {
                return ControlFlow::Continue(());
            }
            if let Some(event) = task_event(&msg, &ctx.agent)
                && tx.send(event).is_err()
            {
                return ControlFlow::Break(Ok(()));
            }
            ControlFlow::Continue(())
        },
        // Whatever happened while disconnected was replayed, but a list check costs little.
        || {
            let _ = tx.send(Event::Poll);
        },
    );
    if let Err(e) = result {
        let _ = tx.send(Event::Fatal(e));
    }
}

/// The coordinator's view of one `task.*` message.
fn task_event(msg: &Value, agent: &str) -> Option<Event> {
    let body = msg.get("body")?;
    let id = body.get("task-id").and_then(Value::as_str)?.to_string();
    match msg.get("type").and_then(Value::as_str)? {
        "task.created" => {
            let assigned = body.get("for").and_then(Value::as_str);
            assigned
                .is_none_or(|a| a == agent)
                .then_some(Event::Candidate)
        }
        // Back in the pool: given up, lease expired, or revived from failed.
        "task.abandoned" | "task.expired" | "task.retried" => Some(Event::Candidate),
        "task.interrupt" => Some(Event::Interrupt(id)),
        _ => None,
    }
}

fn heartbeat(ctx: &Ctx, channels: &[String], jobs: usize) {
    let program = ctx.command.first().cloned().unwrap_or_default();
    let body = json!({
        "from": ctx.agent,
        "channels": channels,
        "meta": {"worker": true, "jobs": jobs, "command": program},
    });
    loop {
        if let Err(e) = ctx.client.post_json("/presence", &body) {
            eprintln!("workshop work: heartbeat: {e}");
        }
        thread::sleep(HEARTBEAT_EVERY);
    }
}

/// Runs the command for one claimed task and reports the outcome to the server.
fn run_task(
    ctx: &Ctx,
    id: &str,
    task: &Value,
    stop_tx: &Sender<Outcome>,
    stop_rx: &Receiver<Outcome>,
) -> Outcome {
    let title = task
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default();
    eprintln!("workshop work: running {id} {title:?}");
    // Dropping `_toucher` (when this function returns) stops the touching.
    let _toucher = ctx
        .lease
        .map(|lease| keep_lease(ctx, id, lease, stop_tx.clone()));
    let (mut outcome, detail) = match supervise(ctx, id, task, stop_rx) {
        Ok(run) => judge(run),
        Err(e) => (
            Outcome::Failed,
            Detail::Error {
                reason: format!("cannot start {:?}: {e}", ctx.command[0]),
                exit_code: None,
                stderr: Vec::new(),
            },
        ),
    };
    let path = format!("/tasks/{}", seg(id));
    let report = match detail {
        Detail::Result(result) => {
            let body = json!({"from": ctx.agent, "result": result});
            match report(ctx, &format!("{path}/done"), &body) {
                // The result was refused (too large, say): fail the task rather than hold it.
                Err(e) if e.code == super::client::exit::USAGE => {
                    outcome = Outcome::Failed;
                    fail(ctx, task, &format!("could not mark done: {e}"), None, &[])
                }
                other => other.map(|_| ()),
            }
        }
        Detail::Nothing => Ok(()),
        Detail::Abandon(reason) => report(
            ctx,
            &format!("{path}/abandon"),
            &json!({"from": ctx.agent, "reason": reason}),
        )
        .map(|_| ()),
        Detail::Error {
            reason,
            exit_code,
            stderr,
        } => fail(ctx, task, &reason, exit_code, &stderr),
    };
    match report {
        Ok(()) => eprintln!("workshop work: {id} {outcome:?}"),
        Err(e) => eprintln!("workshop work: {id} {outcome:?}, but reporting it failed: {e}"),
    }
    outcome
}

enum Detail {
    Result(Value),
    /// Nothing to report: the task is no longer ours.
    Nothing,
    Abandon(&'static str),
    Error {
        reason: String,
        exit_code: Option<i32>,
        stderr: Vec<String>,
    },
}

/// Posts `task.error` on the task's channel, then abandons the task with `reason`.
fn fail(
    ctx: &Ctx,
    task: &Value,
    reason: &str,
    exit_code: Option<i32>,
    stderr: &[String],
) -> Result<()> {
    let id = task.get("id").and_then(Value::as_str).unwrap_or_default();
    let ch = task.get("ch").and_then(Value::as_str).unwrap_or("tasks");
    let error = json!({
        "from": ctx.agent,
        "type": "task.error",
        "body": {
            "task-id": id,
            "title": task.get("title"),
            "error": reason,
            "exit-code": exit_code,
            "stderr": stderr,
        },
    });
    if let Err(e) = report(ctx, &format!("/ch/{}", seg(ch)), &error) {
        eprintln!("workshop work: posting task.error for {id}: {e}");
    }
    report(
        ctx,
        &format!("/tasks/{}/abandon", seg(id)),
        &json!({"from": ctx.agent, "reason": reason}),
    )
    .map(|_| ())
}

/// How one command run ended.
struct Run {
    status: ExitStatus,
    stopped_by: Option<Outcome>,
    stdout: Vec<u8>,
    stderr_tail: Vec<String>,
}

fn judge(run: Run) -> (Outcome, Detail) {
    match run.stopped_by {
        Some(Outcome::Interrupted) => (Outcome::Interrupted, Detail::Abandon("interrupted")),
        Some(Outcome::Lost) => (Outcome::Lost, Detail::Nothing),
        Some(_) => (Outcome::Stopped, Detail::Abandon("worker stopped")),
        None if run.status.success() => (Outcome::Done, Detail::Result(result_of(&run.stdout))),
        None => {
            let reason = match (run.status.code(), run.status.signal()) {
                (Some(code), _) => format!("command exited with status {code}"),
                (None, Some(sig)) => format!("command killed by signal {sig}"),
                (None, None) => format!("command failed: {}", run.status),
            };
            (
                Outcome::Failed,
                Detail::Error {
                    reason,
                    exit_code: run.status.code(),
                    stderr: run.stderr_tail,
                },
            )
        }
    }
}

/// stdout as JSON when it parses, else `{"output": text}`.
fn result_of(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|_| json!({"output": text.trim_end_matches(['\n', '\r'])}))
}

/// Starts the command in its own process group, feeds it the task, forwards its stderr as
/// updates, and waits for it — stopping it (SIGTERM, then SIGKILL after the grace period) on
/// an interrupt or when the worker is stopping.
fn supervise(ctx: &Ctx, id: &str, task: &Value, stop: &Receiver<Outcome>) -> std::io::Result<Run> {
    let mut child = Command::new(&ctx.command[0])
        .args(&ctx.command[1..])
        .env("WORKSHOP_TASK_ID", id)
        .env("WORKSHOP_URL", ctx.client.base_url())
        .env("AGENT_ID", &ctx.agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take();
    let input = format!("{task}\n");
    spawn("stdin", move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(input.as_bytes()); // a command may ignore its input
        }
    });
    let stdout = child.stdout.take();
    let out_reader = reader(&mut child, "stdout", move || {
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
    let err_reader = reader(&mut child, "stderr", move || {
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
        })
}

/// Waits for the child, polling so an interrupt, a lost lease or a worker stop can end it.
fn wait_or_stop(
    ctx: &Ctx,
    child: &mut Child,
    stop: &Receiver<Outcome>,
) -> std::io::Result<(ExitStatus, Option<Outcome>)> {
    let pid = child.id();
    let mut stopped_by = None;
    let mut kill_at = None;
    loop {
        if let Some(status) = child.try_wait()? {
            if stopped_by.is_some() {
                // Leftovers of a stopped command (a script's background jobs) would hold its
                // pipes open. The group id cannot name another group while any member lives.
                let _ = signal_group(pid, SIGKILL);
            }
            return Ok((status, stopped_by));
        }
        match stopped_by {
            None => {
                let why = match stop.recv_timeout(RUNNER_TICK) {
                    Ok(why) => Some(why),
                    Err(_) if ctx.stop.load(Ordering::SeqCst) => Some(Outcome::Stopped),
                    Err(_) => None,
                };
                if let Some(why) = why {
                    stopped_by = Some(why);
                    kill_at = Some(Instant::now() + ctx.grace);
                    if let Err(e) = signal_group(pid, SIGTERM) {
                        eprintln!("workshop work: SIGTERM to {pid}: {e}");
                    }
                }
            }
            Some(_) => {
                thread::sleep(RUNNER_TICK);
                if kill_at.is_some_and(|t| Instant::now() >= t) {
                    kill_at = None;
                    if let Err(e) = signal_group(pid, SIGKILL) {
                        eprintln!("workshop work: SIGKILL to {pid}: {e}");
                    }
                }
            }
        }
    }
}

/// Touches the task's lease every third of its length until the returned sender is dropped.
/// A 409 or 403 means the lease ran out and the task went to someone else: stop the command.
/// A 404 means a server without leases: nothing to keep.
fn keep_lease(ctx: &Ctx, id: &str, lease: Duration, stop: Sender<Outcome>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let (client, agent) = (ctx.client.clone(), ctx.agent.clone());
    let path = format!("/tasks/{}/touch", seg(id));
    let body = json!({"from": agent, "lease_s": lease.as_secs_f64()});
    spawn("lease", move || {
        while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(lease / 3) {
            match client.post_json(&path, &body) {
                Ok(_) => {}
                Err(e) if matches!(e.status, 403 | 409) => {
                    eprintln!("workshop work: lost the claim on {path}: {e}");
                    let _ = stop.try_send(Outcome::Lost);
                    return;
                }
                Err(e) if e.status == 404 => return,
                Err(e) => eprintln!("workshop work: touching {path}: {e}"),
            }
        }
    });
    done_tx
}

/// Posts an outcome under one Idempotency-Key for all its retries, so a report whose answer
/// was lost is not applied twice (a second `task.error`, a 409 for a second `done`).
fn report(ctx: &Ctx, path: &str, body: &Value) -> Result<Value> {
    let key = idempotent::fresh_key();
    with_retry(|| idempotent::post_with_key(&ctx.client, path, body, &key))
}

/// Retries `f` while the server is unreachable or failing, for up to `REPORT_PATIENCE`:
/// an outcome must not be lost to a server restart.
fn with_retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let give_up = Instant::now() + REPORT_PATIENCE;
    let mut wait = Duration::from_millis(250);
    loop {
        match f() {
            Err(e) if e.is_transient() && Instant::now() < give_up => {
                thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Starts a named thread; false (and a note on stderr) when the system refuses.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    match thread::Builder::new().name(name.into()).spawn(f) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("workshop work: cannot start {name} thread: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_becomes_the_result() {
        assert_eq!(result_of(b"{\"rows\": 3}\n"), json!({"rows": 3}));
        assert_eq!(result_of(b"hello\n"), json!({"output": "hello"}));
        assert_eq!(result_of(b""), json!({"output": ""}));
    }

    #[test]
    fn task_messages_become_events() {
        let created = json!({"type":"task.created","body":{"task-id":"T","title":"x","for":null}});
        assert!(matches!(task_event(&created, "me"), Some(Event::Candidate)));
        let theirs = json!({"type":"task.created","body":{"task-id":"T","for":"other"}});
        assert!(task_event(&theirs, "me").is_none());
        let mine = json!({"type":"task.created","body":{"task-id":"T","for":"me"}});
        assert!(task_event(&mine, "me").is_some());
        let stop = json!({"type":"task.interrupt","body":{"task-id":"T"}});
        assert!(matches!(task_event(&stop, "me"), Some(Event::Interrupt(_))));
        let done = json!({"type":"task.done","body":{"task-id":"T"}});
        assert!(task_event(&done, "me").is_none());
    }
}
