//! What `workshop work` tells the person (or script) running it: one line per task outcome
//! (human on stderr, or JSON on stdout with `--json`, or nothing with `--quiet`), and hub
//! outages reported once when they start and once when they end, however long they last.
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
            Output::Json => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let written = writeln!(out, "{}", json_line(e)).and_then(|()| out.flush());
                return !matches!(written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
            }
            Output::Human => eprintln!("workshop work: {}", human_line(e)),
            Output::Quiet => {
                if let Some(err) = &e.report_error {
                    eprintln!(
                        "workshop work: {} {}: reporting failed: {err}",
                        e.id,
                        e.outcome.word()
                    );
                }
            }
        }
        true
    }
}

/// `failed 01J… "resize" after 0.3 s: exit 126: sh: ./handle.sh: Permission denied`
pub fn human_line(e: &Ended) -> String {
    let mut line = format!(
        "{} {} {:?} after {:.1} s",
        e.outcome.word(),
        e.id,
        e.title,
        e.took.as_secs_f64()
    );
    if e.outcome != Outcome::Done {
        if let Some(code) = e.exit_code {
            line.push_str(&format!(": exit {code}"));
        } else if let Some(reason) = e.reason {
            line.push_str(&format!(": {reason}"));
        }
        if let Some(last) = e.stderr_tail.last() {
            line.push_str(&format!(": {last}"));
        }
    }
    if let Some(err) = &e.report_error {
        line.push_str(&format!(" (reporting it to the hub failed: {err})"));
    }
    line
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

/// Whether the hub answers, shared by every thread that talks to it: the first failure of an
/// outage is printed, the rest are not, and the first success after it says so.
#[derive(Default)]
pub struct HubState {
    down_since: Mutex<Option<Instant>>,
}

impl HubState {
    pub fn failed(&self, doing: &str, error: &dyn std::fmt::Display) {
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            *down = Some(Instant::now());
            eprintln!("workshop work: hub unreachable ({doing}: {error}); retrying with backoff");
        }
    }

    pub fn answered(&self) {
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = down.take() {
            eprintln!(
                "workshop work: hub reconnected after {:.0} s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// Exponential backoff from a quarter second to five seconds, reset by a success.
pub struct Backoff {
    next: Duration,
    not_before: Instant,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
            not_before: Instant::now(),
        }
    }
}

impl Backoff {
    pub fn ready(&self) -> bool {
        Instant::now() >= self.not_before
    }
    pub fn failed(&mut self) {
        self.not_before = Instant::now() + self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
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

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        assert!(b.ready());
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.next, MAX_BACKOFF);
        assert!(!b.ready());
        b.succeeded();
        assert!(b.ready());
    }
}
