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
use crate::api::channels::MAX_BATCH_MESSAGES;
use crate::http::MAX_JSON_BODY;

/// Most bytes of messages in one request: the server's limit, less room for the array's
/// commas and brackets.
const MOST_BYTES: usize = MAX_JSON_BODY as usize - 4096;
/// How long a batch waits for more lines after its first.
const LINGER: Duration = Duration::from_millis(50);

/// Posts a message per line of stdin: `template` with the line (JSON) as its body; prints
/// each new id, in order. Blank lines are skipped; a line that is not JSON (or a failed read)
/// stops it, after the lines before it were posted.
pub fn publish(client: &Client, path: &str, template: &Value) -> Result<()> {
    let lines = read_lines();
    let mut sender = Sender {
        client,
        path,
        most: MAX_BATCH_MESSAGES,
    };
    let mut batch = Batch::default();
    while let Some(line) = next_line(&lines, None).transpose() {
        let mut added = line.and_then(|line| batch.add(template, line));
        let deadline = Instant::now() + LINGER;
        while added.is_ok() && !batch.full() {
            match next_line(&lines, Some(deadline)) {
                Ok(Some(line)) => added = batch.add(template, line),
                Ok(None) => break,
                Err(e) => added = Err(e),
            }
        }
        // The good lines before a bad one go out first, as the error says.
        sender.post(&batch.messages)?;
        added?;
        batch = Batch::default();
    }
    Ok(())
}

/// A line of stdin and its number (from 1).
type Line = (usize, String);

/// Stdin's lines, read on a thread of their own so a batch can stop waiting for the next.
fn read_lines() -> Receiver<io::Result<Line>> {
    let (tx, rx) = bounded(MAX_BATCH_MESSAGES);
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
    next.transpose().map_err(|e| {
        CliError::usage(format!(
            "reading stdin: {e}; the lines before it were posted"
        ))
    })
}

#[derive(Default)]
struct Batch {
    messages: Vec<Value>,
    /// The messages' size as sent.
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
        self.bytes += message.to_string().len() + 1;
        self.messages.push(message);
        Ok(())
    }

    /// Full once another message as large as the average could overflow the request.
    fn full(&self) -> bool {
        let average = self.bytes / self.messages.len().max(1);
        self.messages.len() >= MAX_BATCH_MESSAGES || self.bytes + 2 * average >= MOST_BYTES
    }
}

/// Posts batches, at most `most` messages each: halved, and remembered so, when the server
/// refuses one as too large (over its byte limit, or over the loop guard's burst).
struct Sender<'a> {
    client: &'a Client,
    path: &'a str,
    most: usize,
}

impl Sender<'_> {
    /// Posts `messages` in requests of at most `most`, printing their ids in order.
    fn post(&mut self, messages: &[Value]) -> Result<()> {
        let mut rest = messages;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(self.most));
            match self.post_one(now) {
                Err(e) if e.status == 413 && now.len() > 1 => self.most = now.len() / 2,
                Err(e) => return Err(e),
                Ok(()) => rest = later,
            }
        }
        Ok(())
    }

    fn post_one(&self, messages: &[Value]) -> Result<()> {
        let reply = idempotent::post(self.client, self.path, &Value::Array(messages.to_vec()))?;
        match reply.as_array() {
            Some(stamped) if stamped.len() == messages.len() => {
                stamped.iter().try_for_each(|m| emit(&id_of(m)?))
            }
            _ => Err(CliError::failure(format!(
                "the server answered {reply} to {} messages",
                messages.len()
            ))),
        }
    }
}
