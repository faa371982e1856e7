//! Commands for agents that act in turns, one shell command per turn: `wait` (a long-poll
//! for what comes after an id) and `inbox` (what is addressed to you, with a read cursor
//! kept on the server, so the next run picks up where this one stopped).
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::client::{CliError, Client, Result, from_ureq, seg};
use super::output::emit;
use super::request::history_path;
// The longest wait the server holds one request for; longer timeouts ask again.
use crate::api::longpoll::MAX_WAIT_S;

/// Extra time for the answer to arrive once the server's wait is over.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Channel (all channels when omitted)
    pub ch: Option<String>,
    /// Only messages after this id (default: the newest now)
    #[arg(long, value_name = "ID")]
    pub since: Option<String>,
    /// Give up after SECS (exit 3)
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = super::parse_secs)]
    pub timeout: Duration,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    pub kind: Option<String>,
}

/// Prints the messages after `since` (the newest now, if not given) as soon as there are
/// any; exit 3 when `timeout` seconds pass with none.
pub fn wait(client: &Client, q: WaitArgs) -> Result<()> {
    let since = match q.since {
        Some(id) => id,
        None => super::sse::newest_id(client, q.ch.as_deref())?,
    };
    let mut query = vec![("since", since), ("n", "1000".to_string())];
    query.extend(q.kind.map(|kind| ("type", kind)));
    let lines = long_poll(client, &history_path(q.ch.as_deref()), &query, q.timeout)?;
    print_all(&lines, "nothing new before the timeout")
}

/// Prints your unread inbox (everything with `all`), waiting up to `wait` seconds for
/// something to arrive; exit 3 when it is empty. With `mark_read`, what was printed is then
/// marked read, so the next call starts after it.
pub fn inbox(client: &Client, wait: Duration, mark_read: bool, all: bool) -> Result<()> {
    let path = format!("/inbox/{}", seg(client.agent()?));
    let mut query = vec![("n", "1000".to_string())];
    if !all {
        query.push(("unread", "1".to_string()));
    }
    let lines = long_poll(client, &path, &query, wait)?;
    let none = if all {
        "inbox is empty"
    } else {
        "nothing unread"
    };
    print_all(&lines, none)?;
    // Marked only once printed: a run that dies in between sees the messages again.
    match newest_id(&lines) {
        Some(up_to) if mark_read => mark_read_up_to(client, &path, up_to),
        _ => Ok(()),
    }
}

/// Prints `lines`, one JSON message each; none is a 404 (exit 3) that says `none`.
fn print_all(lines: &[String], none: &str) -> Result<()> {
    if lines.is_empty() {
        return Err(CliError::http(404, none));
    }
    lines.iter().try_for_each(|line| emit(line))
}

/// The newest message id among `lines`.
fn newest_id(lines: &[String]) -> Option<String> {
    let messages = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok());
    let ids = messages.filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
    ids.max()
}

fn mark_read_up_to(client: &Client, inbox: &str, up_to: String) -> Result<()> {
    let body = json!({ "up_to": up_to });
    client
        .post_json(&format!("{inbox}/read"), &body)
        .map(|_| ())
}

/// GETs `path` with `?wait=` until it answers something or `timeout` is used up (asking
/// again every minute for longer timeouts); the answer's non-blank lines.
fn long_poll(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
    timeout: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let lines = ask(client, path, query, left.as_secs_f64().min(MAX_WAIT_S))?;
        if !lines.is_empty() || Instant::now() >= deadline {
            return Ok(lines);
        }
    }
}

/// One GET the server holds for up to `wait` seconds; the answer's non-blank lines.
fn ask(client: &Client, path: &str, query: &[(&str, String)], wait: f64) -> Result<Vec<String>> {
    let mut req = client
        .request("GET", path)
        .timeout(Duration::from_secs_f64(wait) + ANSWER_SLACK)
        .query("wait", &format!("{wait:.3}"));
    for (k, v) in query {
        req = req.query(k, v);
    }
    let text = req.call().map_err(from_ureq)?.into_string();
    let text = text.map_err(|e| CliError::unreachable(format!("reading response: {e}")))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}
