//! `workshop pub --lines`: a message per line of stdin, posted in batches (`POST /ch/:ch`
//! with an array), so a script that emits many messages gets them stored with one commit per
//! batch instead of one per message, and a slow trickle still goes out within moments.
use std::io::{self, BufRead};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use serde_json::Value;

use super::client::{CliError, Client, Result};
use super::idempotent;
use super::output::emit;
use super::request::id_of;

/// Most messages in one request (the server's limit).
const MOST_MESSAGES: usize = 1000;
/// Most bytes of bodies in one request: half the server's 1 MiB, leaving room for the rest
/// of each message.
const MOST_BYTES: usize = 512 * 1024;
/// How long a batch waits for more lines after its first.
const LINGER: Duration = Duration::from_millis(50);

/// Posts a message per line of stdin: `template` with the line (JSON) as its body; prints
/// each new id, in order. Blank lines are skipped; a line that is not JSON stops it, after
/// the lines before it were posted.
pub fn publish(client: &Client, path: &str, template: &Value) -> Result<()> {
    let lines = read_lines();
    let mut batch = Batch::default();
    while let Some(line) = next_line(&lines, None)? {
        let mut added = batch.add(template, line);
        let deadline = Instant::now() + LINGER;
        while added.is_ok() && !batch.full() {
            match next_line(&lines, Some(deadline))? {
                Some(line) => added = batch.add(template, line),
                None => break,
            }
        }
        // The good lines before a bad one go out first, as the error says.
        post(client, path, &batch.messages)?;
        added?;
        batch = Batch::default();
    }
    Ok(())
}

/// A line of stdin and its number (from 1).
type Line = (usize, String);

/// Stdin's lines, read on a thread of their own so a batch can stop waiting for the next.
fn read_lines() -> Receiver<io::Result<Line>> {
    let (tx, rx) = bounded(MOST_MESSAGES);
    thread::spawn(move || {
        for (i, line) in io::stdin().lock().lines().enumerate() {
            let failed = line.is_err();
            if tx.send(line.map(|text| (i + 1, text))).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The next line, waiting until `deadline` if there is one; `None` at the end of stdin or
/// the deadline.
fn next_line(
    lines: &Receiver<io::Result<Line>>,
    deadline: Option<Instant>,
) -> Result<Option<Line>> {
    let next = match deadline {
        None => lines.recv().ok(),
        // Timed out or at the end: either way this batch is done.
        Some(at) => lines.recv_deadline(at).ok(),
    };
    next.transpose()
        .map_err(|e| CliError::usage(format!("reading stdin: {e}")))
}

#[derive(Default)]
struct Batch {
    messages: Vec<Value>,
    bytes: usize,
}

impl Batch {
    /// Adds the message whose body is `line`; a blank line is skipped.
    fn add(&mut self, template: &Value, (number, text): Line) -> Result<()> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            CliError::usage(format!(
                "stdin line {number}: not JSON ({e}); the lines before it were posted"
            ))
        })?;
        let mut message = template.clone();
        message["body"] = body;
        self.bytes += text.len();
        self.messages.push(message);
        Ok(())
    }

    fn full(&self) -> bool {
        self.messages.len() >= MOST_MESSAGES || self.bytes >= MOST_BYTES
    }
}

/// Posts `messages` as one batch and prints their ids. Refused as too large (over the
/// server's byte limit, or over the loop guard's burst), it is posted as two halves.
fn post(client: &Client, path: &str, messages: &[Value]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    match idempotent::post(client, path, &Value::Array(messages.to_vec())) {
        Err(e) if e.status == 413 && messages.len() > 1 => {
            let (first, second) = messages.split_at(messages.len() / 2);
            post(client, path, first)?;
            post(client, path, second)
        }
        Err(e) => Err(e),
        Ok(Value::Array(stamped)) => stamped.iter().try_for_each(|m| emit(&id_of(m)?)),
        Ok(other) => Err(CliError::failure(format!("the server answered {other}"))),
    }
}
