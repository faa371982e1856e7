//! `workshop work`: the worker loop. One coordinator thread owns all decisions (what to claim,
//! what runs, what to stop); helper threads only feed it events:
//!
//! - the stream thread follows `task.*` messages live (new and abandoned tasks, interrupts),
//! - the ticker asks for a periodic claim-next check (the fallback that misses nothing),
//! - one runner thread per claimed task (`runner`) runs the command (`child`) and reports
//!   the outcome to the hub and the terminal (`report`),
//! - the heartbeat thread keeps the agent visible in `who`,
//! - the signal thread turns a first SIGINT/SIGTERM into a graceful stop and a second one into
//!   killing every command's process group and exiting 130.
//!
//! Claims carry a lease that a toucher thread per task keeps extending while the command
//! runs, so the task of a worker that dies goes back to the pool when the lease runs out.
//! Claiming is one function (`claim_next`): the server picks the task (highest priority, then
//! oldest), and the worker passes the tasks it gave up on as `exclude`.
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use serde_json::{Value, json};

use super::client::{CliError, Client, Result, seg};
use super::sse::{self, Stream};

mod child;
mod report;
mod runner;

pub use report::Output;
use report::{Backoff, HubState, Outcome};

pub const HELP: &str = "\
For each task it can claim (open, and unassigned or assigned to AGENT_ID; on the --ch channels,
or any), runs COMMAND with the task's JSON on stdin and WORKSHOP_TASK_ID, WORKSHOP_URL and
AGENT_ID in its environment:
  - each line COMMAND writes to stderr is posted as a task update (note);
  - exit 0: the task is done, with stdout as its result (JSON if it parses, else {\"output\": text});
  - any other exit: task.error is posted on the task's channel and the task is abandoned;
  - task.interrupt for a running task: COMMAND's process group gets SIGTERM, SIGKILL after
    --grace seconds, and the task is abandoned with reason \"interrupted\";
  - running longer than --timeout seconds: stopped the same way, abandoned with reason \"timeout\".
COMMAND is checked before anything is claimed: if it is not an executable file (a typo, or a
script without chmod +x), work exits 2 at once.
One line per task outcome on stderr (done/failed/interrupted/stopped/timeout/lost, task id,
title, duration, and for a failure the exit code and last stderr line); --json prints them as
JSON objects on stdout instead, --quiet prints only problems. While the hub is unreachable,
work retries with backoff (up to 5 s apart) and says so once, then once more when it is back.
Claims are leased for --lease seconds and touched every third of that while COMMAND runs: if
this worker dies, the task returns to the pool when the lease runs out; if the lease is lost
anyway (the server unreachable for too long), COMMAND is stopped and nothing is reported.
A task this worker failed, timed out or was interrupted on is not taken again by it. Tasks are
claimed with claim-next (highest priority first, then oldest) as soon as the live stream shows
one, and also every --poll seconds and whenever a slot frees. Heartbeats every 30 s.
SIGINT/SIGTERM: stop claiming, stop running commands, abandon their tasks (reason \"worker
stopped\"), exit 0; a second signal kills every running command's process group and exits 130.

Examples:
  workshop work --ch jobs -- ./handle.sh
  workshop work --jobs 4 --timeout 600 -- python3 agent.py --model small
  workshop work --json -- ./handle.sh | jq -c 'select(.outcome != \"done\")'
  # handle.sh (chmod +x): read the task, report progress on stderr, print the result on stdout
  #   task=$(cat); echo 'fetching' >&2; printf '{\"rows\": %d}' 42";

const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Tasks a worker remembers giving up on (sent as claim-next's `exclude`).
const MAX_GIVEN_UP: usize = 500;
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
    /// Longest a command may run; `None`: no limit.
    pub timeout: Option<Duration>,
    pub output: Output,
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

/// What every runner needs, shared.
struct Ctx {
    client: Client,
    agent: String,
    command: Vec<String>,
    grace: Duration,
    lease: Option<Duration>,
    timeout: Option<Duration>,
    output: Output,
    stop: Arc<AtomicBool>,
    children: child::Children,
    hub: Arc<HubState>,
}

pub fn run(client: &Client, opts: Options) -> Result<()> {
    let agent = client.agent()?.to_string();
    // Before anything is claimed: a typo must not burn an attempt of every queued task.
    child::check_executable(&opts.command[0]).map_err(CliError::usage)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        agent,
        command: opts.command,
        grace: opts.grace,
        lease: opts.lease,
        timeout: opts.timeout,
        output: opts.output,
        stop: Arc::clone(&stop),
        children: child::Children::default(),
        hub: Arc::new(HubState::default()),
    });
    watch_signals(&ctx)?;
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
    // At most one Poll waits in the queue: a coordinator busy for longer than --poll finds
    // one, not a pile of them.
    let poll_pending = Arc::new(AtomicBool::new(false));
    spawn("ticker", {
        let (tx, every, pending) = (tx.clone(), opts.poll, Arc::clone(&poll_pending));
        move || {
            loop {
                if !pending.swap(true, Ordering::SeqCst) && tx.send(Event::Poll).is_err() {
                    return;
                }
                thread::sleep(every)
            }
        }
    });
    if ctx.output != Output::Quiet {
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
    }
    Coordinator {
        ctx,
        channels: opts.channels,
        jobs: opts.jobs,
        tx,
        running: HashMap::new(),
        given_up: HashSet::new(),
        maybe_work: true,
        claim_backoff: Backoff::default(),
        poll_pending,
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
    /// Spaces claim attempts out while the hub is unreachable or failing.
    claim_backoff: Backoff,
    /// The ticker's Poll is in the queue (cleared when it is taken out).
    poll_pending: Arc<AtomicBool>,
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
                Event::Candidate => self.maybe_work = true,
                Event::Poll => {
                    self.poll_pending.store(false, Ordering::SeqCst);
                    self.maybe_work = true;
                }
                Event::Interrupt(id) => {
                    if let Some(stop) = self.running.get(&id) {
                        let _ = stop.try_send(Outcome::Interrupted);
                    }
                }
                Event::Finished(id, outcome) => {
                    self.running.remove(&id);
                    if matches!(
                        outcome,
                        Outcome::Failed | Outcome::Interrupted | Outcome::TimedOut
                    ) {
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
        while self.maybe_work && self.running.len() < self.jobs && self.claim_backoff.ready() {
            // Running ones too: a runner abandons its task before it reports back, and the
            // stream may show the task open again before that report arrives.
            let exclude: Vec<&String> = self.given_up.iter().chain(self.running.keys()).collect();
            match claim_next(&self.ctx, &self.channels, &exclude) {
                Ok(found) => {
                    self.ctx.hub.answered();
                    self.claim_backoff.succeeded();
                    match found {
                        Some((id, task)) => self.start(id, task),
                        None => self.maybe_work = false,
                    }
                }
                Err(e) if e.is_transient() => {
                    self.ctx.hub.failed("claiming", &e);
                    self.claim_backoff.failed();
                    return; // tried again once the backoff has passed
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
            let outcome = runner::run_task(&ctx, &task_id, &task, &stop_tx, &stop_rx);
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
                ctx.hub.failed("reading the newest message", &e);
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
        match ctx.client.post_json("/presence", &body) {
            Ok(_) => ctx.hub.answered(),
            Err(e) if e.is_transient() => ctx.hub.failed("heartbeat", &e),
            Err(e) => eprintln!("workshop work: heartbeat: {e}"),
        }
        thread::sleep(HEARTBEAT_EVERY);
    }
}

/// The first SIGINT/SIGTERM asks for a graceful stop (the coordinator and runners watch
/// `ctx.stop`); a second one kills every running command's process group, so nothing is left
/// running with its task claimed, and exits 130 at once.
fn watch_signals(ctx: &Arc<Ctx>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    let ctx = Arc::clone(ctx);
    let started = spawn("signals", move || {
        for _ in signals.forever() {
            if ctx.stop.swap(true, Ordering::SeqCst) {
                ctx.children.kill_all();
                eprintln!("workshop work: second signal: running commands killed");
                std::process::exit(130);
            }
            eprintln!("workshop work: stopping (a second signal kills running commands)");
        }
    });
    if started {
        Ok(())
    } else {
        Err(CliError::failure("cannot handle signals: no thread"))
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
