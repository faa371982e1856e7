//! What `workshop work` tells the person (or script) running it: one line per task outcome
//! (human on stderr, or JSON on stdout with `--json`, or nothing with `--quiet`).
use std::time::Duration;

use serde_json::{Value, json};

/// How outcome lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One human line per task start and outcome, on stderr.
    Human,
    /// Outcomes as one JSON object per line on stdout; nothing else on stdout.
    Json,
    /// Only problems (on stderr).
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Interrupted,
    Stopped,
    /// `--timeout` ran out: the command was stopped and the task abandoned.
    TimedOut,
    /// The lease ran out: the task is someone else's now.
    Lost,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Stopped => "stopped",
            Outcome::TimedOut => "timeout",
            Outcome::Lost => "lost",
        }
    }

    /// This worker gave up on the task: it does not take it again.
    pub fn gives_up(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::Interrupted | Outcome::TimedOut
        )
    }
}

/// Everything one outcome line says.
pub struct Ended<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub outcome: Outcome,
    pub took: Duration,
    pub exit_code: Option<i32>,
    /// Why it did not end `done` (the reason the server was given).
    pub reason: Option<&'a str>,
    pub stderr_tail: &'a [String],
    /// Reporting the outcome to the hub failed with this.
    pub report_error: Option<String>,
}

impl Output {
    pub fn started(self, id: &str, title: &str) {
        if self == Output::Human {
            eprintln!("workshop work: running {id} {title:?}");
        }
    }

    /// Prints the outcome line. False when stdout is closed (`work --json | head`): the
    /// caller stops the worker gracefully, rather than exiting with commands still running.
    pub fn ended(self, e: &Ended) -> bool {
        match self {
            Output::Json => return print_json(e),
            Output::Human => eprintln!("workshop work: {}", human_line(e)),
            Output::Quiet => print_problem(e),
        }
        true
    }
}

/// The JSON line on stdout; false when stdout is closed.
fn print_json(e: &Ended) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", json_line(e)).and_then(|()| out.flush());
    !matches!(written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `--quiet`: a line only when reporting the outcome to the hub failed.
fn print_problem(e: &Ended) {
    if let Some(err) = &e.report_error {
        let (id, word) = (e.id, e.outcome.word());
        eprintln!("workshop work: {id} {word}: reporting failed: {err}");
    }
}

/// `failed 01J… "resize" after 0.3 s: exit 126: sh: ./handle.sh: Permission denied`
pub fn human_line(e: &Ended) -> String {
    let (word, id, title, secs) = (e.outcome.word(), e.id, e.title, e.took.as_secs_f64());
    let mut line = format!("{word} {id} {title:?} after {secs:.1} s");
    if e.outcome != Outcome::Done {
        line.push_str(&why_not_done(e));
    }
    if let Some(err) = &e.report_error {
        line.push_str(&format!(" (reporting it to the hub failed: {err})"));
    }
    line
}

/// `: exit 126: <last stderr line>`, or `: <reason>` when there is no exit code.
fn why_not_done(e: &Ended) -> String {
    let mut why = match (e.exit_code, e.reason) {
        (Some(code), _) => format!(": exit {code}"),
        (None, Some(reason)) => format!(": {reason}"),
        (None, None) => String::new(),
    };
    if let Some(last) = e.stderr_tail.last() {
        why.push_str(&format!(": {last}"));
    }
    why
}

pub fn json_line(e: &Ended) -> Value {
    json!({
        "task-id": e.id,
        "title": e.title,
        "outcome": e.outcome.word(),
        "duration_s": (e.took.as_secs_f64() * 1000.0).round() / 1000.0,
        "exit_code": e.exit_code,
        "reason": e.reason,
        "stderr": e.stderr_tail,
        "report_error": e.report_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: Outcome) -> Ended<'static> {
        Ended {
            id: "T1",
            title: "resize",
            outcome,
            took: Duration::from_millis(1250),
            exit_code: Some(126),
            reason: Some("command exited with status 126"),
            stderr_tail: &[],
            report_error: None,
        }
    }

    #[test]
    fn a_failure_line_names_the_task_exit_code_and_last_stderr_line() {
        let tail = [
            "first".to_string(),
            "sh: ./h.sh: Permission denied".to_string(),
        ];
        let e = Ended {
            stderr_tail: &tail,
            ..ended(Outcome::Failed)
        };
        assert_eq!(
            human_line(&e),
            "failed T1 \"resize\" after 1.2 s: exit 126: sh: ./h.sh: Permission denied"
        );
        assert_eq!(json_line(&e)["exit_code"], 126);
        assert_eq!(json_line(&e)["outcome"], "failed");
    }

    #[test]
    fn a_done_line_is_short() {
        assert_eq!(
            human_line(&ended(Outcome::Done)),
            "done T1 \"resize\" after 1.2 s"
        );
    }
}
