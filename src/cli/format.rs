//! The `--pretty` renderings: one compact human line per message, task or agent.
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const PREVIEW_CHARS: usize = 120;

/// `12:34:56 harvester.alice · general · task.claimed · {"task-id":"01J..."}` (UTC time).
pub fn message(envelope: &Value) -> String {
    let s = |key: &str| envelope.get(key).and_then(Value::as_str).unwrap_or("?");
    let time = envelope
        .get("ts")
        .and_then(Value::as_f64)
        .map(clock)
        .unwrap_or_else(|| "--:--:--".into());
    let body = envelope.get("body").map(preview).unwrap_or_default();
    let files = match envelope.get("files").and_then(Value::as_array) {
        Some(f) if !f.is_empty() => format!(" [{} file{}]", f.len(), plural(f.len())),
        _ => String::new(),
    };
    format!(
        "{time} {} · {} · {} · {body}{files}",
        s("from"),
        s("ch"),
        s("type")
    )
}

/// `01J...  claimed  by worker.a  [jobs]  resize images`
pub fn task(task: &Value) -> String {
    let s = |key: &str| task.get(key).and_then(Value::as_str);
    let who = match (s("claimed_by"), s("assigned_to")) {
        (Some(c), _) => format!("by {c}"),
        (None, Some(a)) => format!("for {a}"),
        (None, None) => "-".into(),
    };
    format!(
        "{}  {:<7}  {}  [{}]  {}",
        s("id").unwrap_or("?"),
        s("status").unwrap_or("?"),
        who,
        s("ch").unwrap_or("?"),
        s("title").unwrap_or("")
    )
}

/// `worker.a  seen 3s ago  jobs,general  {"jobs":2}`
pub fn agent(row: &Value) -> String {
    let name = row.get("agent_id").and_then(Value::as_str).unwrap_or("?");
    let ago = row
        .get("last_seen")
        .and_then(Value::as_f64)
        .map(|t| format!("seen {:.0}s ago", (now() - t).max(0.0)))
        .unwrap_or_else(|| "seen ?".into());
    let channels = row
        .get("channels")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "-".into());
    let meta = row.get("meta").map(preview).unwrap_or_default();
    format!("{name}  {ago}  {channels}  {meta}")
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

fn now() -> f64 {
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_line_is_compact() {
        let m = json!({"id":"X","ts":3661.5,"from":"a.b","ch":"general","type":"msg.text",
                       "body":{"msg":"hi"},"files":["sha256:00"],"reply_to":null});
        assert_eq!(
            message(&m),
            "01:01:01 a.b · general · msg.text · {\"msg\":\"hi\"} [1 file]"
        );
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let long = "é".repeat(500);
        let cut = truncate(&long, 10);
        assert_eq!(cut.chars().count(), 11);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn task_line_names_the_claimer() {
        let t = json!({"id":"T","status":"claimed","claimed_by":"w","assigned_to":null,
                       "ch":"tasks","title":"do it"});
        assert_eq!(task(&t), "T  claimed  by w  [tasks]  do it");
    }
}
