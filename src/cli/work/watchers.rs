//! The threads around the coordinator: the stream and the ticker feed it events, the
//! heartbeat keeps the agent visible in `who`, and the signal watcher stops the worker.
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Value, json};
use signal_hook::iterator::Signals;

use super::super::client::{CliError, Result};
use super::super::request::stream_path;
use super::super::sse::{self, Stream};
use super::coordinator::CoordinatorEvent;
use super::{Ctx, spawn};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Starts the heartbeat, the stream and the ticker. Returns the flag that says the ticker's
/// Poll is in the queue, which the coordinator clears when it takes the Poll out.
pub fn start(ctx: &Arc<Ctx>, tx: &Sender<CoordinatorEvent>) -> Arc<AtomicBool> {
    let heartbeat_ctx = Arc::clone(ctx);
    spawn("heartbeat", move || heartbeat(&heartbeat_ctx));
    let (stream_ctx, stream_tx) = (Arc::clone(ctx), tx.clone());
    spawn("stream", move || stream(&stream_ctx, &stream_tx));
    let pending = Arc::new(AtomicBool::new(false));
    let (tick_tx, tick_pending, every) = (tx.clone(), Arc::clone(&pending), ctx.args.poll);
    spawn("ticker", move || tick(&tick_tx, &tick_pending, every));
    pending
}

/// Sends a Poll every `every`. At most one Poll waits in the queue: a coordinator busy for
/// longer than --poll finds one, not a pile of them.
fn tick(tx: &Sender<CoordinatorEvent>, pending: &AtomicBool, every: Duration) {
    loop {
        if !pending.swap(true, Ordering::SeqCst) && tx.send(CoordinatorEvent::Poll).is_err() {
            return;
        }
        thread::sleep(every)
    }
}

/// Follows `task.*` messages and turns them into events for the coordinator.
fn stream(ctx: &Ctx, tx: &Sender<CoordinatorEvent>) {
    let followed = newest_cursor(ctx).and_then(|cursor| follow_tasks(ctx, cursor, tx));
    if let Err(e) = followed {
        let _ = tx.send(CoordinatorEvent::Fatal(e));
    }
}

/// The id of the newest message now (the stream starts after it), asked again while the hub
/// is unreachable.
fn newest_cursor(ctx: &Ctx) -> Result<String> {
    loop {
        match sse::newest_id(&ctx.client, ctx.args.single_channel()) {
            Err(e) if e.is_transient() => {
                ctx.hub.failed("reading the newest message", &e);
                thread::sleep(Duration::from_secs(2));
            }
            newest => return newest,
        }
    }
}

fn follow_tasks(ctx: &Ctx, cursor: String, tx: &Sender<CoordinatorEvent>) -> Result<()> {
    sse::follow(
        &ctx.client,
        task_stream(ctx, cursor),
        |event| forward(ctx, &event.data, tx),
        // Whatever happened while disconnected was replayed, but a list check costs little.
        || drop(tx.send(CoordinatorEvent::Poll)),
    )
}

/// `task.*` messages after `cursor`: on the one `--ch` channel, or on every channel.
fn task_stream(ctx: &Ctx, cursor: String) -> Stream {
    let single = ctx.args.single_channel();
    Stream {
        path: stream_path(single),
        type_prefix: Some("task.".into()),
        cursor: Some(cursor),
    }
}

/// Passes a message on to the coordinator if it is about a task for us; `Break` once the
/// coordinator is gone.
fn forward(ctx: &Ctx, data: &str, tx: &Sender<CoordinatorEvent>) -> ControlFlow<Result<()>> {
    let event = serde_json::from_str::<Value>(data)
        .ok()
        .filter(|msg| ctx.args.takes_from(text(msg, "ch")))
        .and_then(|msg| task_event(&msg, &ctx.agent));
    match event.map(|event| tx.send(event)) {
        Some(Err(_)) => ControlFlow::Break(Ok(())),
        _ => ControlFlow::Continue(()),
    }
}

fn text<'a>(msg: &'a Value, field: &str) -> &'a str {
    msg.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// The coordinator's view of one `task.*` message.
fn task_event(msg: &Value, agent: &str) -> Option<CoordinatorEvent> {
    let body = msg.get("body")?;
    let id = body.get("task-id").and_then(Value::as_str)?.to_string();
    match msg.get("type").and_then(Value::as_str)? {
        "task.created" => is_for(body, agent).then_some(CoordinatorEvent::Candidate),
        // Back in the pool: given up, lease expired, or revived from failed.
        "task.abandoned" | "task.expired" | "task.retried" => Some(CoordinatorEvent::Candidate),
        "task.interrupt" => Some(CoordinatorEvent::Interrupt(id)),
        _ => None,
    }
}

/// Whether a new task may be taken by `agent`: assigned to nobody, or to it.
fn is_for(task: &Value, agent: &str) -> bool {
    let assigned = task.get("for").and_then(Value::as_str);
    assigned.is_none_or(|a| a == agent)
}

/// Says every `HEARTBEAT_EVERY` that this agent is here, and a worker.
fn heartbeat(ctx: &Ctx) {
    let body = presence(ctx);
    loop {
        let sent = Instant::now();
        match ctx.client.post_json("/presence", &body) {
            Ok(_) => {
                ctx.hub.answered(sent);
            }
            Err(e) if e.is_transient() => ctx.hub.failed("heartbeat", &e),
            Err(e) => eprintln!("workshop work: heartbeat: {e}"),
        }
        thread::sleep(HEARTBEAT_EVERY);
    }
}

/// What the heartbeat says: `who` shows the agent as a worker, with its jobs and program.
fn presence(ctx: &Ctx) -> Value {
    json!({
        "from": ctx.agent,
        "channels": ctx.args.channels,
        "meta": {"worker": true, "jobs": ctx.args.jobs, "command": ctx.args.program()},
    })
}

/// The first SIGINT/SIGTERM asks for a graceful stop (the coordinator and runners watch
/// `ctx.stop`); a second one kills every running command's process group, so nothing is left
/// running with its task claimed, and exits 130 at once.
pub fn watch_signals(ctx: &Arc<Ctx>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    let ctx = Arc::clone(ctx);
    if spawn("signals", move || on_signals(&ctx, signals)) {
        Ok(())
    } else {
        Err(CliError::failure("cannot handle signals: no thread"))
    }
}

fn on_signals(ctx: &Ctx, mut signals: Signals) {
    for _ in signals.forever() {
        if ctx.stop.swap(true, Ordering::SeqCst) {
            ctx.children.kill_all();
            eprintln!("workshop work: second signal: running commands killed");
            std::process::exit(130);
        }
        eprintln!("workshop work: stopping (a second signal kills running commands)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_messages_become_events() {
        let created = json!({"type":"task.created","body":{"task-id":"T","title":"x","for":null}});
        assert!(matches!(
            task_event(&created, "me"),
            Some(CoordinatorEvent::Candidate)
        ));
        let theirs = json!({"type":"task.created","body":{"task-id":"T","for":"other"}});
        assert!(task_event(&theirs, "me").is_none());
        let mine = json!({"type":"task.created","body":{"task-id":"T","for":"me"}});
        assert!(task_event(&mine, "me").is_some());
        let stop = json!({"type":"task.interrupt","body":{"task-id":"T"}});
        assert!(matches!(
            task_event(&stop, "me"),
            Some(CoordinatorEvent::Interrupt(_))
        ));
        let done = json!({"type":"task.done","body":{"task-id":"T"}});
        assert!(task_event(&done, "me").is_none());
    }
}
