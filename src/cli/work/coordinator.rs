//! The coordinator: the one thread that decides what to claim, what runs and what to stop.
//! Everything else reaches it as a `CoordinatorEvent`.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::super::client::{CliError, Result, seg};
use super::super::parse_secs;
use super::outage::Backoff;
use super::report::Outcome;
use super::retry::{GivenUp, wait_after};
use super::runner::run_task;
use super::{Ctx, spawn};
use crate::api::written::NEXT_READY_IN;

/// Claimed a moment after a delayed task's time, not on it: the hub rounds that time to the
/// millisecond, and a claim a hair early would find nothing.
const AFTER_READY: Duration = Duration::from_millis(10);

/// What the other threads tell the coordinator.
pub enum CoordinatorEvent {
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

pub struct Coordinator {
    ctx: Arc<Ctx>,
    tx: Sender<CoordinatorEvent>,
    /// Tasks being run, with the way to stop each and the attempts each had before.
    running: HashMap<String, (Sender<Outcome>, u32)>,
    /// Tasks this worker failed or was interrupted on: left to others for a while.
    given_up: GivenUp,
    /// Something may be claimable: set by the stream, the ticker and finished tasks; cleared
    /// when claim-next finds nothing.
    maybe_work: bool,
    /// Spaces claim attempts out while the hub is unreachable or failing.
    claim_backoff: Backoff,
    /// When the soonest delayed task we could take becomes claimable, as claim-next said:
    /// no stream event marks that moment, so we look again then rather than at the next poll.
    next_ready: Option<Instant>,
    /// The ticker's Poll is in the queue (cleared when it is taken out).
    poll_pending: Arc<AtomicBool>,
    /// An error that ends the worker once its running tasks have ended.
    fatal: Option<CliError>,
}

impl Coordinator {
    pub fn new(
        ctx: Arc<Ctx>,
        tx: Sender<CoordinatorEvent>,
        poll_pending: Arc<AtomicBool>,
    ) -> Coordinator {
        Coordinator {
            ctx,
            tx,
            running: HashMap::new(),
            given_up: GivenUp::default(),
            maybe_work: true,
            claim_backoff: Backoff::default(),
            next_ready: None,
            poll_pending,
            fatal: None,
        }
    }

    /// Claims and handles events until the worker stops (a signal, a closed stdout or a fatal
    /// error) and its last running task has ended.
    pub fn run(mut self, rx: &Receiver<CoordinatorEvent>) -> Result<()> {
        loop {
            let stopping = self.fatal.is_some() || self.ctx.stop.load(Ordering::SeqCst);
            if stopping && self.running.is_empty() {
                return self.fatal.map_or(Ok(()), Err);
            }
            if !stopping {
                self.release_given_up();
                self.wake_for_delayed();
                self.fill_slots();
            }
            match rx.recv_timeout(self.idle_wait()) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// How long to wait for an event before looking around again: 200 ms, or until a
    /// delayed task is due, if sooner (one already due is left alone while stopping).
    fn idle_wait(&self) -> Duration {
        let tick = Duration::from_millis(200);
        let until = |at: Instant| at.saturating_duration_since(Instant::now());
        let due_in = self.next_ready.map(until).filter(|d| !d.is_zero());
        due_in.map_or(tick, |d| d.min(tick))
    }

    fn handle(&mut self, event: CoordinatorEvent) {
        match event {
            CoordinatorEvent::Candidate => self.maybe_work = true,
            CoordinatorEvent::Poll => self.poll_due(),
            CoordinatorEvent::Interrupt(id) => self.interrupt(&id),
            CoordinatorEvent::Finished(id, outcome) => self.finished(id, outcome),
            CoordinatorEvent::Fatal(e) => self.fatal = Some(e),
        }
    }

    /// The ticker's Poll, taken out of the queue: the ticker may send the next one.
    fn poll_due(&mut self) {
        self.poll_pending.store(false, Ordering::SeqCst);
        self.maybe_work = true;
    }

    fn interrupt(&self, id: &str) {
        if let Some((stop, _)) = self.running.get(id) {
            let _ = stop.try_send(Outcome::Interrupted);
        }
    }

    fn finished(&mut self, id: String, outcome: Outcome) {
        let attempts_before = self.running.remove(&id).map_or(0, |(_, n)| n);
        if outcome.gives_up() {
            // Waited on as one more attempt, though an interrupt or a stop uses none.
            let wait = wait_after(self.ctx.args.retry_after, attempts_before.saturating_add(1));
            self.given_up.insert(id, Instant::now() + wait);
        }
        self.maybe_work = true;
    }

    /// Tasks given up on whose wait is over may be claimed again.
    fn release_given_up(&mut self) {
        if self.given_up.release(Instant::now()) {
            self.maybe_work = true;
        }
    }

    /// A delayed task claim-next told us of is claimable now: look again.
    fn wake_for_delayed(&mut self) {
        if self.next_ready.is_some_and(|at| Instant::now() >= at) {
            self.next_ready = None;
            self.maybe_work = true;
        }
    }

    /// Claims tasks while there are free slots and the server has some for us.
    fn fill_slots(&mut self) {
        while self.maybe_work && self.has_free_slot() && self.claim_backoff.ready() {
            match self.claim() {
                Ok(Claimed::Task(id, task)) => self.start(id, task),
                Ok(Claimed::Nothing { ready_in }) => {
                    self.maybe_work = false;
                    self.next_ready = ready_in.map(|wait| Instant::now() + wait + AFTER_READY);
                }
                Err(e) => return self.claim_failed(e),
            }
        }
    }

    fn has_free_slot(&self) -> bool {
        self.running.len() < self.ctx.args.jobs as usize
    }

    fn claim(&mut self) -> Result<Claimed> {
        // Running ones too: a runner abandons its task before it reports back, and the
        // stream may show the task open again before that report arrives.
        let exclude: Vec<&String> = self.given_up.ids().chain(self.running.keys()).collect();
        let sent = Instant::now();
        let found = claim_next(&self.ctx, &exclude)?;
        self.ctx.hub.answered(sent);
        self.claim_backoff.succeeded();
        Ok(found)
    }

    fn claim_failed(&mut self, e: CliError) {
        if e.is_transient() {
            self.ctx.hub.failed("claiming", &e);
            self.claim_backoff.failed(); // tried again once the backoff has passed
        } else {
            self.fatal = Some(e);
        }
    }

    /// Starts a runner thread for a claimed task.
    fn start(&mut self, id: String, task: Value) {
        let (stop_tx, stop_rx) = bounded(1);
        let attempts = task.get("attempts").and_then(Value::as_u64).unwrap_or(0);
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        self.running.insert(id.clone(), (stop_tx.clone(), attempts));
        let holder = self.ctx.holder(&task);
        let (ctx, tx, task_id) = (Arc::clone(&self.ctx), self.tx.clone(), id.clone());
        let runner = move || {
            let outcome = run_task(&ctx, &task_id, &task, &stop_tx, &stop_rx);
            let _ = tx.send(CoordinatorEvent::Finished(task_id, outcome));
        };
        if !spawn("runner", runner) {
            self.running.remove(&id);
            abandon_unstarted(&self.ctx, &id, holder);
        }
    }
}

/// What claim-next answered.
enum Claimed {
    /// The task's id, and the task.
    Task(String, Value),
    /// Nothing to take now; a delayed task we could take is claimable `ready_in` from now.
    Nothing { ready_in: Option<Duration> },
}

/// Asks the server for the best task this agent may take (claim-next: highest priority, then
/// oldest; on each `--ch` channel in turn, or any), leased when `--lease` is set, leaving out
/// the tasks this worker gave up on lately.
fn claim_next(ctx: &Ctx, exclude: &[&String]) -> Result<Claimed> {
    if ctx.args.channels.is_empty() {
        return claim_on(ctx, None, exclude);
    }
    let mut soonest: Option<Duration> = None;
    for ch in &ctx.args.channels {
        match claim_on(ctx, Some(ch), exclude)? {
            Claimed::Nothing { ready_in } => soonest = soonest.into_iter().chain(ready_in).min(),
            found => return Ok(found),
        }
    }
    Ok(Claimed::Nothing { ready_in: soonest })
}

/// One claim-next request: on `ch`, or on any channel.
fn claim_on(ctx: &Ctx, ch: Option<&str>, exclude: &[&String]) -> Result<Claimed> {
    let mut body = json!({"from": ctx.agent, "exclude": exclude});
    if let Some(lease) = ctx.args.claim_lease() {
        body["lease_s"] = json!(lease.as_secs_f64());
    }
    if let Some(ch) = ch {
        body["ch"] = json!(ch);
    }
    let (task, ready_in) = ctx
        .client
        .post_json_header("/tasks/claim", &body, NEXT_READY_IN)?;
    Ok(match task.get("id").and_then(Value::as_str) {
        Some(id) => Claimed::Task(id.to_string(), task),
        None => Claimed::Nothing {
            // A value we cannot read is as good as none: the ticker still polls.
            ready_in: ready_in.and_then(|secs| parse_secs(&secs).ok()),
        },
    })
}

/// A task claimed but not started (no thread for its runner) goes back to the pool at once,
/// as its claim's `holder` (`Ctx::holder`), using no attempt.
fn abandon_unstarted(ctx: &Ctx, id: &str, mut body: Value) {
    body["reason"] = json!("worker out of threads");
    body["count_attempt"] = json!(false);
    let path = format!("/tasks/{}/abandon", seg(id));
    if let Err(e) = ctx.client.post_json(&path, &body) {
        eprintln!("workshop work: abandoning {id}: {e}");
    }
}
