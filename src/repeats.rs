//! Storage errors come once per request while storage fails (every publish, on a full disk),
//! and logging each one filled the log with thousands of lines a second, on the disk that
//! was full. So a line equal to the one before is said again only `QUIET` later, with how
//! many times it came meanwhile.
use std::sync::Mutex;
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_secs(10);

/// The last line said, and how many times it came since.
struct Said {
    line: String,
    at: Instant,
    held: u64,
}

static LAST: Mutex<Option<Said>> = Mutex::new(None);

/// Says `line` on stderr, unless it was the last line said and that was less than `QUIET`
/// ago.
pub fn say_storage_error(line: String) {
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    for line in lines_to_say(&mut last, line, Instant::now()) {
        say!("{line}");
    }
}

/// What to say for `line` coming at `now`, given what was said before (`last`, updated).
fn lines_to_say(last: &mut Option<Said>, line: String, now: Instant) -> Vec<String> {
    let mut out = Vec::new();
    match last {
        Some(said) if said.line == line => {
            if now.duration_since(said.at) < QUIET {
                said.held += 1;
                return out;
            }
            out.push(match said.held {
                0 => line,
                held => format!("{line} (and {held} times more since it was last said)"),
            });
            (said.at, said.held) = (now, 0);
        }
        _ => {
            if let Some(said) = last.as_ref().filter(|said| said.held > 0) {
                out.push(format!("{} ({} times more)", said.line, said.held));
            }
            out.push(line.clone());
            *last = Some(Said {
                line,
                at: now,
                held: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_said_once_in_a_while_with_a_count() {
        let mut last = None;
        let start = Instant::now();
        let say = |last: &mut Option<Said>, line: &str, after_s: u64| {
            lines_to_say(last, line.into(), start + Duration::from_secs(after_s))
        };
        assert_eq!(say(&mut last, "disk full", 0), ["disk full"]);
        assert!(say(&mut last, "disk full", 1).is_empty());
        assert!(say(&mut last, "disk full", 2).is_empty());
        assert_eq!(
            say(&mut last, "disk full", 11),
            ["disk full (and 2 times more since it was last said)"]
        );
        assert_eq!(say(&mut last, "disk full", 22), ["disk full"]);
        assert!(say(&mut last, "disk full", 23).is_empty());
        assert_eq!(
            say(&mut last, "read-only", 24),
            ["disk full (1 times more)", "read-only"]
        );
        assert_eq!(say(&mut last, "disk full", 25), ["disk full"]);
    }
}
