//! One claimed task, start to end: keep its lease (`lease`), run the command (`child`), judge
//! how it ended, tell the hub (`tell`), and print the outcome line (`report`).
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};

use super::Ctx;
use super::child::{MAX_RESULT_BYTES, Run, supervise};
use super::lease::keep_lease;
use super::report::{Ended, Outcome};
use super::tell::{Detail, Failure, tell};

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
    ctx.args.output().started(id, title);
    // Dropping `_toucher` (when this function returns) stops the touching.
    let lease = ctx.args.claim_lease();
    let _toucher = lease.map(|lease| keep_lease(ctx, task, lease, stop_tx.clone()));
    let (outcome, detail) = run_command(ctx, id, task, stop_rx);
    let took = started.elapsed();
    let told = tell(ctx, task, outcome, detail);
    print_outcome(ctx, &told.ended(id, title, took));
    told.outcome
}

fn run_command(ctx: &Ctx, id: &str, task: &Value, stop: &Receiver<Outcome>) -> (Outcome, Detail) {
    match supervise(ctx, id, task, stop) {
        Ok(run) => judge(run),
        Err(e) => {
            let why = format!("cannot start {:?}: {e}", ctx.args.program());
            (Outcome::Failed, Detail::Error(Failure::reason_only(why)))
        }
    }
}

/// Prints the outcome line. A closed stdout (`work --json | head`) stops the worker
/// gracefully, rather than exiting with commands still running.
fn print_outcome(ctx: &Ctx, ended: &Ended) {
    if !ctx.args.output().ended(ended) && !ctx.stop.swap(true, Ordering::SeqCst) {
        eprintln!("workshop work: stdout closed: stopping (running commands are stopped)");
    }
}

fn judge(run: Run) -> (Outcome, Detail) {
    match run.stopped_by {
        Some(Outcome::Interrupted) => (Outcome::Interrupted, Detail::GiveBack("interrupted")),
        Some(Outcome::TimedOut) => (Outcome::TimedOut, Detail::Abandon("timeout")),
        Some(Outcome::Lost) => (Outcome::Lost, Detail::Nothing),
        Some(_) => (Outcome::Stopped, Detail::GiveBack("worker stopped")),
        None if run.status.success() && run.stdout.len() > MAX_RESULT_BYTES => {
            let reason = "command's result is over 1 MiB, more than the hub takes: write it to a \
                          file, `workshop upload` it, and print its hash";
            let stderr = run.stderr_tail;
            let failure = Failure {
                reason: reason.into(),
                exit_code: Some(0),
                stderr,
            };
            (Outcome::Failed, Detail::Error(failure))
        }
        None if run.status.success() => (Outcome::Done, Detail::Result(result_of(&run.stdout))),
        None => (Outcome::Failed, Detail::Error(failure(run))),
    }
}

/// Why a command that ended by itself failed.
fn failure(run: Run) -> Failure {
    use std::os::unix::process::ExitStatusExt;
    let reason = match (run.status.code(), run.status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(sig)) => format!("command killed by signal {sig}"),
        (None, None) => format!("command failed: {}", run.status),
    };
    let (exit_code, stderr) = (run.status.code(), run.stderr_tail);
    Failure {
        reason,
        exit_code,
        stderr,
    }
}

/// stdout as JSON when it parses, else `{"output": text}`.
fn result_of(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|_| json!({"output": text.trim_end_matches(['\n', '\r'])}))
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
