//! Storage errors come once per request while storage fails (every publish, on a full disk),
//! and logging each one filled the log with thousands of lines a second, on the disk that
//! was full. So each kind of error (its `key`: what failed and why, without the file or
//! request that differs each time) is said at most once per `QUIET`, with how many times it
//! came meanwhile.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_secs(10);
/// Kinds remembered at once; past it, the oldest said is forgotten (and may be said again).
const MOST_KINDS: usize = 64;

/// When a kind of error was last said, and how many times it came since.
struct Said {
    at: Instant,
    held: u64,
}

static SAID: Mutex<BTreeMap<String, Said>> = Mutex::new(BTreeMap::new());

/// Says `line` on stderr, unless an error of the same `key` was said less than `QUIET` ago.
pub fn say_storage_error(key: &str, line: &str) {
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(line) = line_to_say(&mut said, key, line, Instant::now()) {
        say!("{line}");
    }
}

/// What to say for an error of `key` coming at `now`, given what was said before (`said`,
/// updated): `line`, with how many like it were held back since the last time.
fn line_to_say(
    said: &mut BTreeMap<String, Said>,
    key: &str,
    line: &str,
    now: Instant,
) -> Option<String> {
    if let Some(last) = said.get_mut(key) {
        if now.duration_since(last.at) < QUIET {
            last.held += 1;
            return None;
        }
        let held = std::mem::take(&mut last.held);
        last.at = now;
        return Some(match held {
            0 => line.to_string(),
            held => format!(
                "{line} (and {held} more like it in the last {} s)",
                QUIET.as_secs()
            ),
        });
    }
    if said.len() >= MOST_KINDS {
        let oldest = said
            .iter()
            .min_by_key(|(_, s)| s.at)
            .map(|(k, _)| k.clone());
        oldest.map(|k| said.remove(&k));
    }
    said.insert(key.to_string(), Said { at: now, held: 0 });
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_said_once_in_a_while_with_a_count() {
        let mut said = BTreeMap::new();
        let start = Instant::now();
        let mut say = |key: &str, line: &str, after_s: u64| {
            line_to_say(&mut said, key, line, start + Duration::from_secs(after_s))
        };
        assert_eq!(say("full", "disk full", 0).as_deref(), Some("disk full"));
        assert_eq!(say("full", "disk full", 1), None);
        // Another kind in between does not reset the first.
        assert_eq!(say("ro", "read-only a", 2).as_deref(), Some("read-only a"));
        assert_eq!(say("ro", "read-only b", 3), None);
        assert_eq!(say("full", "disk full", 4), None);
        assert_eq!(
            say("full", "disk full", 11).as_deref(),
            Some("disk full (and 2 more like it in the last 10 s)")
        );
        assert_eq!(say("full", "disk full", 22).as_deref(), Some("disk full"));
    }

    #[test]
    fn kinds_past_the_most_remembered_forget_the_oldest() {
        let mut said = BTreeMap::new();
        let start = Instant::now();
        for n in 0..=MOST_KINDS {
            let at = start + Duration::from_millis(n as u64);
            assert!(line_to_say(&mut said, &n.to_string(), "x", at).is_some());
        }
        assert_eq!(said.len(), MOST_KINDS);
        assert!(!said.contains_key("0"), "the oldest went");
    }
}
