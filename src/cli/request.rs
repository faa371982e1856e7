//! Requests built from arguments: JSON arguments (`-` reads stdin), optional body fields and
//! query pairs, the routes more than one command reads, and the id a creating reply names.
use std::io::{self, Read};

use serde_json::{Value, json};

use super::client::{CliError, Result, seg};

/// Parses a JSON argument; `-` reads it from stdin.
pub fn json_arg(text: &str, what: &str) -> Result<Value> {
    let text = if text == "-" {
        read_stdin(what)?
    } else {
        text.to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{what}: not JSON ({e}); a string needs JSON quotes: '\"text\"'"
        ))
    })
}

fn read_stdin(what: &str) -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::usage(format!("{what}: reading stdin: {e}")))?;
    Ok(s)
}

/// The `id` of a reply that created something (a message, a task).
pub fn id_of(reply: &Value) -> Result<String> {
    reply
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError::failure(format!("reply has no id: {reply}")))
}

/// Sets `body[key]` when the option was given.
pub fn set_opt(body: &mut Value, key: &str, value: Option<impl serde::Serialize>) {
    if let Some(v) = value {
        body[key] = json!(v);
    }
}

/// Adds `key=value` to a query when the option was given.
pub fn push_opt(
    query: &mut Vec<(&'static str, String)>,
    key: &'static str,
    value: Option<impl ToString>,
) {
    if let Some(v) = value {
        query.push((key, v.to_string()));
    }
}

/// Where a channel's stored messages are read (or every channel's, without one).
pub fn history_path(ch: Option<&str>) -> String {
    match ch {
        Some(ch) => format!("/ch/{}/history", seg(ch)),
        None => "/history".to_string(),
    }
}

/// Where a channel's live stream is followed (or every channel's, without one).
pub fn stream_path(ch: Option<&str>) -> String {
    match ch {
        Some(ch) => format!("/ch/{}", seg(ch)),
        None => "/".to_string(),
    }
}
