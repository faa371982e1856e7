//! The `--pretty` renderings: one compact human line per message, task or agent. What
//! other agents wrote is shown through `printable`: it goes to a person's terminal.
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const PREVIEW_CHARS: usize = 120;

/// `12:34:56 01J… harvester.alice · general · msg.text · hello` (UTC time, then the whole
/// message id, which `thread`, `wait --since` and `pub --reply-to` take). A body with a text
/// field (`text`, `msg`, `message` or `note`, as the UI shows it) is shown as that text, a
/// task event as its task and title; anything else as compact JSON. With `colour`, ANSI
/// colours set the time, sender and type apart.
pub fn message(envelope: &Value, colour: bool) -> String {
    let s = |key: &str| envelope.get(key).and_then(Value::as_str).unwrap_or("?");
    let time = envelope
        .get("ts")
        .and_then(Value::as_f64)
        .map(clock)
        .unwrap_or_else(|| "--:--:--".into());
    let body = envelope.get("body").map(body_text).unwrap_or_default();
    let paint = |code: &str, text: &str| paint(colour, code, &printable(text));
    let id = (envelope.get("id").and_then(Value::as_str))
        .map(|id| format!("{} ", paint("2", id)))
        .unwrap_or_default();
    format!(
        "{} {id}{} · {} · {} · {}{}",
        paint("2", &time),
        paint("1;36", s("from")),
        paint("33", s("ch")),
        paint("35", s("type")),
        printable(&body),
        files_note(envelope)
    )
}

/// `text` safe to print on a terminal. Any agent can put escape sequences in a message (to
/// clear the screen, retitle the window, hide text), and bidirectional overrides that show
/// text in another order than it is: each control character is shown as `\u{1b}`, and line
/// breaks and tabs as spaces.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => shown.push(' '),
            c if crate::text::is_hidden_control(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
            c => shown.push(c),
        }
    }
    shown
}

/// ` [2 files]` after a message that carries files; nothing otherwise.
fn files_note(envelope: &Value) -> String {
    match envelope.get("files").and_then(Value::as_array) {
        Some(f) if !f.is_empty() => format!(" [{} file{}]", f.len(), plural(f.len())),
        _ => String::new(),
    }
}

/// `text` in the ANSI colour `code`, or plain without `colour`.
fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The text a person wants to read from a body (see `message`).
fn body_text(body: &Value) -> String {
    if let Some(id) = body.get("task-id").and_then(Value::as_str) {
        return task_event_text(id, body);
    }
    readable_text(body).map_or_else(|| preview(body), |text| truncate(text, PREVIEW_CHARS))
}

/// The first of the fields people put their words in, if the body has one.
fn readable_text(body: &Value) -> Option<&str> {
    ["text", "msg", "message", "note"]
        .iter()
        .find_map(|k| body.get(k).and_then(Value::as_str))
}

/// A task event: the task's id, then its title, note, reason and error where given.
fn task_event_text(id: &str, body: &Value) -> String {
    let mut line = id.to_string();
    for key in ["title", "note", "reason", "error"] {
        if let Some(text) = body.get(key).and_then(Value::as_str) {
            line.push_str(&format!(" · {text}"));
        }
    }
    truncate(&line, PREVIEW_CHARS)
}

/// `task list --pretty`: a header and one aligned row per task.
pub fn task_table(tasks: &[Value], now: f64) -> Vec<String> {
    let header = ["ID", "STATUS", "PRI", "TRIES", "AGE", "WHO", "CH", "TITLE"].map(String::from);
    let rows: Vec<[String; 8]> = std::iter::once(header)
        .chain(tasks.iter().map(|t| task_row(t, now)))
        .collect();
    table(rows)
}

/// `rows` as lines whose columns line up (the last, free text, is never padded).
fn table<const N: usize>(rows: Vec<[String; N]>) -> Vec<String> {
    let rows: Vec<[String; N]> = (rows.into_iter())
        .map(|row| row.map(|cell| printable(&cell)))
        .collect();
    let rows: Vec<&[String; N]> = rows.iter().collect();
    let widths = column_widths(&rows);
    rows.iter().map(|row| aligned(&row[..], &widths)).collect()
}

/// The width of each column: its widest cell, in characters.
fn column_widths<const N: usize>(rows: &[&[String; N]]) -> [usize; N] {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One row: each cell padded to its column and two spaces, but the title, last, never padded.
fn aligned(row: &[String], widths: &[usize]) -> String {
    let Some((title, cells)) = row.split_last() else {
        return String::new();
    };
    let mut line: String = cells
        .iter()
        .zip(widths)
        .map(|(cell, &width)| format!("{cell:<width$}  "))
        .collect();
    line.push_str(title);
    line.trim_end().to_string()
}

fn task_row(task: &Value, now: f64) -> [String; 8] {
    let s = |key: &str| task.get(key).and_then(Value::as_str);
    let n = |key: &str| task.get(key).and_then(Value::as_i64);
    let who = match (s("claimed_by"), s("assigned_to")) {
        (Some(c), _) => format!("by {c}"),
        (None, Some(a)) => format!("for {a}"),
        (None, None) => "-".into(),
    };
    let tries = match (n("attempts"), n("max_attempts")) {
        (Some(a), Some(m)) => format!("{a}/{m}"),
        (Some(a), None) => a.to_string(),
        _ => "-".into(),
    };
    let age = task
        .get("created_at")
        .and_then(Value::as_f64)
        .map(|t| age(now - t))
        .unwrap_or_else(|| "-".into());
    [
        s("id").unwrap_or("?").to_string(),
        s("status").unwrap_or("?").to_string(),
        n("priority").unwrap_or(0).to_string(),
        tries,
        age,
        who,
        s("ch").unwrap_or("?").to_string(),
        truncate(s("title").unwrap_or(""), PREVIEW_CHARS),
    ]
}

/// The units `age` shows, largest first, each with its length in seconds. Under a second
/// matches none and still counts in seconds: `0s`.
const AGE_UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];

/// `42s`, `5m`, `3h`, `2d`: the largest whole unit.
pub fn age(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    let (size, unit) = AGE_UNITS
        .iter()
        .find(|(size, _)| secs >= *size)
        .unwrap_or(&(1, "s"));
    format!("{}{unit}", secs / size)
}

/// Presence rows as aligned lines: `worker.a  seen 3s ago  jobs,general  {"jobs":2}`.
pub fn agent_table(rows: &[Value]) -> Vec<String> {
    table(rows.iter().map(agent_cells).collect())
}

fn agent_cells(row: &Value) -> [String; 4] {
    let name = row.get("agent_id").and_then(Value::as_str).unwrap_or("?");
    let meta = row.get("meta").map(preview).unwrap_or_default();
    [name.to_string(), seen_ago(row), channel_list(row), meta]
}

/// `seen 3s ago`, or `seen ?` when the row has no time.
fn seen_ago(row: &Value) -> String {
    row.get("last_seen")
        .and_then(Value::as_f64)
        .map(|t| format!("seen {:.0}s ago", (now() - t).max(0.0)))
        .unwrap_or_else(|| "seen ?".into())
}

/// An agent's channels, comma-separated, or `-` for none.
fn channel_list(row: &Value) -> String {
    let names: Vec<&str> = row
        .get("channels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match names.join(",") {
        none if none.is_empty() => "-".into(),
        joined => joined,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Compact JSON, cut to a line's worth of characters.
fn preview(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    truncate(&text, PREVIEW_CHARS)
}

fn truncate(text: &str, max: usize) -> String {
    let text = text.replace('\n', " ");
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Locks as aligned lines: `src/main.rs  held by coder.a  570s left  [locks]  refactoring`.
pub fn lock_table(locks: &[Value]) -> Vec<String> {
    table(locks.iter().map(lock_cells).collect())
}

fn lock_cells(lock: &Value) -> [String; 5] {
    let s = |key: &str| lock.get(key).and_then(Value::as_str).unwrap_or("");
    [
        s("name").to_string(),
        format!("held by {}", s("holder")),
        format!("{:.0}s left", seconds_left(lock)),
        format!("[{}]", s("ch")),
        s("note").to_string(),
    ]
}

/// Seconds until a lock expires (0 once it has).
fn seconds_left(lock: &Value) -> f64 {
    let expires = lock.get("expires_at").and_then(Value::as_f64);
    expires.map(|t| t - now()).unwrap_or(0.0).max(0.0)
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Unix seconds → `HH:MM:SS` (UTC).
fn clock(ts: f64) -> String {
    let secs = ts.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests;
