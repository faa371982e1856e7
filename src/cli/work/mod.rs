//! `workshop work`: the worker loop, in three jobs.
//!
//! - The coordinator (`coordinator`) is the one thread that decides what to claim, what runs
//!   and what to stop; the threads around it (`watchers`) only feed it events: the stream
//!   follows `task.*` messages live (new and abandoned tasks, interrupts), the ticker asks for
//!   a periodic claim-next check (the fallback that misses nothing), the heartbeat keeps the
//!   agent visible in `who`, and the signal watcher turns a first SIGINT/SIGTERM into a
//!   graceful stop and a second one into killing every command's process group and exiting 130.
//! - The child-process supervisor (`child`) runs one task's command: one runner thread per
//!   claimed task (`runner`) starts it, waits for it, and judges how it ended. The command runs
//!   under a guard (`guard`), which stops it and its children if the worker dies.
//! - The reporter tells the hub (`tell`) and the terminal (`report`) each outcome, and says
//!   when the hub is unreachable and back (`outage`); its lease keeper (`lease`) extends the
//!   claim while the command runs, so the task of a worker that dies goes back to the pool
//!   when the lease runs out.
//!
//! Claiming is one function (`claim_next`): the server picks the task (highest priority, then
//! oldest), and the worker passes the tasks it gave up on lately as `exclude` (`retry`).
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;

use crossbeam_channel::unbounded;
use serde_json::{Value, json};

use super::client::{CliError, Client, Result};

mod args;
mod child;
mod coordinator;
mod guard;
mod lease;
mod outage;
mod report;
mod retry;
mod runner;
mod tell;
mod watchers;

pub use args::{HELP, WorkArgs};
use coordinator::Coordinator;
pub use guard::run_if_asked as run_guard;
use report::Output;

/// What every thread of the worker needs, shared.
struct Ctx {
    client: Client,
    agent: String,
    args: WorkArgs,
    /// Set by a signal or a closed stdout: claim nothing more, stop the running commands.
    stop: AtomicBool,
    children: child::Children,
    hub: Arc<outage::HubState>,
}

/// `workshop work [OPTIONS] -- COMMAND...`
pub fn run(client: &Client, args: WorkArgs) -> Result<()> {
    let agent = client.agent()?.to_string();
    // Before anything is claimed: a typo must not burn an attempt of every queued task.
    child::check_executable(args.program()).map_err(CliError::usage)?;
    let ctx = Arc::new(Ctx::new(client, agent, args));
    watchers::watch_signals(&ctx)?;
    let (tx, rx) = unbounded();
    let poll_pending = watchers::start(&ctx, &tx);
    announce(&ctx);
    Coordinator::new(ctx, tx, poll_pending).run(&rx)
}

impl Ctx {
    fn new(client: &Client, agent: String, args: WorkArgs) -> Ctx {
        Ctx {
            client: client.clone(),
            agent,
            args,
            stop: AtomicBool::new(false),
            children: child::Children::default(),
            hub: Arc::new(outage::HubState::default()),
        }
    }

    /// What every call on a claimed task starts with: who this worker is, and which claim of
    /// `task` is its own (the `claims` claim-next answered with), so that if the claim ends
    /// and the task is claimed again, even under this agent id by another process, the hub
    /// refuses what this one still says about it.
    fn holder(&self, task: &Value) -> Value {
        json!({"from": self.agent, "claim": task.get("claims")})
    }
}

/// The start line: who takes tasks from where.
fn announce(ctx: &Ctx) {
    if ctx.args.output() != Output::Quiet {
        let (agent, jobs) = (&ctx.agent, ctx.args.jobs);
        let channels = ctx.args.described_channels();
        eprintln!("workshop work: {agent} taking tasks on {channels} (jobs {jobs})");
    }
}

/// Starts a named thread; false (and a note on stderr) when the system refuses.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .inspect_err(|e| eprintln!("workshop work: cannot start {name} thread: {e}"))
        .is_ok()
}
