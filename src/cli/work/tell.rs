//! Telling the hub how a task ended: done with its result, or `task.error` and abandon, or
//! abandon alone. Each post is retried through an outage under one Idempotency-Key.
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::client::{Result, exit, seg};
use super::super::idempotent;
use super::Ctx;
use super::report::{Ended, Outcome};

/// How long reporting an outcome keeps retrying while the server is unreachable.
const REPORT_PATIENCE: Duration = Duration::from_secs(300);

/// What there is to tell the hub once a task's command has ended.
pub enum Detail {
    Result(Value),
    /// Nothing to report: the task is no longer ours.
    Nothing,
    /// Given back, using one of its attempts (the command ran out of time).
    Abandon(&'static str),
    /// Given back for a reason of the worker's, not the task's (it was stopped, or asked to
    /// stop): no attempt used, so restarting workers never fails a task.
    GiveBack(&'static str),
    Error(Failure),
}

/// Why a task failed, as `task.error` says it.
pub struct Failure {
    pub reason: String,
    pub exit_code: Option<i32>,
    pub stderr: Vec<String>,
}

impl Failure {
    pub fn reason_only(reason: String) -> Failure {
        Failure {
            reason,
            exit_code: None,
            stderr: Vec::new(),
        }
    }
}

/// What the hub was told, for the outcome line.
pub struct Told {
    pub outcome: Outcome,
    /// Why it did not end `done` (the reason the server was given).
    reason: Option<String>,
    exit_code: Option<i32>,
    stderr_tail: Vec<String>,
    /// Whether the hub took it.
    report: Result<()>,
}

impl Told {
    fn plain(outcome: Outcome, reason: Option<String>, report: Result<()>) -> Told {
        Told {
            outcome,
            reason,
            exit_code: None,
            stderr_tail: Vec::new(),
            report,
        }
    }

    fn failed(outcome: Outcome, failure: Failure, report: Result<()>) -> Told {
        Told {
            outcome,
            reason: Some(failure.reason),
            exit_code: failure.exit_code,
            stderr_tail: failure.stderr,
            report,
        }
    }

    /// The outcome line of task `id`, which took `took`.
    pub fn ended<'a>(&'a self, id: &'a str, title: &'a str, took: Duration) -> Ended<'a> {
        Ended {
            id,
            title,
            outcome: self.outcome,
            took,
            exit_code: self.exit_code,
            reason: self.reason.as_deref(),
            stderr_tail: &self.stderr_tail,
            report_error: self.report.as_ref().err().map(|e| e.to_string()),
        }
    }
}

/// Tells the hub how `task` ended.
pub fn tell(ctx: &Ctx, task: &Value, outcome: Outcome, detail: Detail) -> Told {
    match detail {
        Detail::Result(result) => done(ctx, task, outcome, result),
        Detail::Nothing => Told::plain(outcome, None, Ok(())),
        Detail::Abandon(why) => {
            let report = abandon(ctx, task, why, true);
            Told::plain(outcome, Some(why.to_string()), report)
        }
        Detail::GiveBack(why) => {
            let report = abandon(ctx, task, why, false);
            Told::plain(outcome, Some(why.to_string()), report)
        }
        Detail::Error(failure) => {
            let report = fail(ctx, task, &failure);
            Told::failed(outcome, failure, report)
        }
    }
}

/// The task's id, as claim-next answered it.
pub(super) fn task_id(task: &Value) -> &str {
    task.get("id").and_then(Value::as_str).unwrap_or_default()
}

/// Marks the task done with its result. A result the server refuses (too large, say) fails
/// the task rather than hold it.
fn done(ctx: &Ctx, task: &Value, outcome: Outcome, result: Value) -> Told {
    let mut body = ctx.holder(task);
    body["result"] = result;
    match report(ctx, &format!("/tasks/{}/done", seg(task_id(task))), &body) {
        Err(e) if e.code == exit::USAGE => {
            let failure = Failure::reason_only(format!("could not mark done: {e}"));
            let report = fail(ctx, task, &failure);
            Told::failed(Outcome::Failed, failure, report)
        }
        other => Told::plain(outcome, None, other.map(|_| ())),
    }
}

fn abandon(ctx: &Ctx, task: &Value, reason: &str, count_attempt: bool) -> Result<()> {
    let mut body = ctx.holder(task);
    body["reason"] = json!(reason);
    body["count_attempt"] = json!(count_attempt);
    report(
        ctx,
        &format!("/tasks/{}/abandon", seg(task_id(task))),
        &body,
    )
    .map(|_| ())
}

/// Posts `task.error` on the task's channel, then abandons the task with the failure's reason.
fn fail(ctx: &Ctx, task: &Value, failure: &Failure) -> Result<()> {
    let ch = task.get("ch").and_then(Value::as_str).unwrap_or("tasks");
    let error = task_error(ctx, task, failure);
    if let Err(e) = report(ctx, &format!("/ch/{}", seg(ch)), &error) {
        eprintln!(
            "workshop work: posting task.error for {}: {e}",
            task_id(task)
        );
    }
    abandon(ctx, task, &failure.reason, true)
}

fn task_error(ctx: &Ctx, task: &Value, failure: &Failure) -> Value {
    json!({
        "from": ctx.agent,
        "type": "task.error",
        "body": {
            "task-id": task_id(task),
            "title": task.get("title"),
            "error": failure.reason,
            "exit-code": failure.exit_code,
            "stderr": failure.stderr,
        },
    })
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
