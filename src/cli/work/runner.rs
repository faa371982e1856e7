//! One claimed task, start to end: keep its lease, run the command (`child`), judge how it
//! ended, tell the hub (done, or task.error and abandon), and print the outcome line.
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::super::client::{Result, exit, seg};
use super::super::idempotent;
use super::child::{Run, supervise};
use super::report::{Ended, Outcome};
use super::{Ctx, REPORT_PATIENCE, spawn};

/// Runs the command for one claimed task and reports the outcome to the hub and the terminal.
pub fn run_task(
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
    let started = Instant::now();
    ctx.output.started(id, title);
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
    let took = started.elapsed();
    let path = format!("/tasks/{}", seg(id));
    let mut reason = None;
    let (mut exit_code, mut stderr_tail) = (None, Vec::new());
    let report = match detail {
        Detail::Result(result) => {
            let body = json!({"from": ctx.agent, "result": result});
            match report(ctx, &format!("{path}/done"), &body) {
                // The result was refused (too large, say): fail the task rather than hold it.
                Err(e) if e.code == exit::USAGE => {
                    outcome = Outcome::Failed;
                    let why = format!("could not mark done: {e}");
                    let report = fail(ctx, task, &why, None, &[]);
                    reason = Some(why);
                    report
                }
                other => other.map(|_| ()),
            }
        }
        Detail::Nothing => Ok(()),
        Detail::Abandon(why) => {
            reason = Some(why.to_string());
            report(
                ctx,
                &format!("{path}/abandon"),
                &json!({"from": ctx.agent, "reason": why}),
            )
            .map(|_| ())
        }
        Detail::Error {
            reason: why,
            exit_code: code,
            stderr,
        } => {
            let report = fail(ctx, task, &why, code, &stderr);
            (reason, exit_code, stderr_tail) = (Some(why), code, stderr);
            report
        }
    };
    let printed = ctx.output.ended(&Ended {
        id,
        title,
        outcome,
        took,
        exit_code,
        reason: reason.as_deref(),
        stderr_tail: &stderr_tail,
        report_error: report.err().map(|e| e.to_string()),
    });
    if !printed && !ctx.stop.swap(true, Ordering::SeqCst) {
        eprintln!("workshop work: stdout closed: stopping (running commands are stopped)");
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

fn judge(run: Run) -> (Outcome, Detail) {
    use std::os::unix::process::ExitStatusExt;
    match run.stopped_by {
        Some(Outcome::Interrupted) => (Outcome::Interrupted, Detail::Abandon("interrupted")),
        Some(Outcome::TimedOut) => (Outcome::TimedOut, Detail::Abandon("timeout")),
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

/// Touches the task's lease every third of its length until the returned sender is dropped.
/// A 409 or 403 means the lease ran out and the task went to someone else: stop the command.
/// A 404 means a server without leases: nothing to keep.
fn keep_lease(ctx: &Ctx, id: &str, lease: Duration, stop: Sender<Outcome>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let (client, agent, hub) = (ctx.client.clone(), ctx.agent.clone(), ctx.hub.clone());
    let path = format!("/tasks/{}/touch", seg(id));
    let body = json!({"from": agent, "lease_s": lease.as_secs_f64()});
    spawn("lease", move || {
        while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(lease / 3) {
            match client.post_json(&path, &body) {
                Ok(_) => hub.answered(),
                Err(e) if matches!(e.status, 403 | 409) => {
                    eprintln!("workshop work: lost the claim on {path}: {e}");
                    let _ = stop.try_send(Outcome::Lost);
                    return;
                }
                Err(e) if e.status == 404 => return,
                Err(e) if e.is_transient() => hub.failed("touching the lease", &e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_becomes_the_result() {
        assert_eq!(result_of(b"{\"rows\": 3}\n"), json!({"rows": 3}));
        assert_eq!(result_of(b"hello\n"), json!({"output": "hello"}));
        assert_eq!(result_of(b""), json!({"output": ""}));
    }
}
