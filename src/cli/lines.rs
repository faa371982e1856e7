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
/// commas and brackets. The server refuses a larger body from its Content-Length, without
/// reading it, so a batch must never be sent over it.
const MOST_BYTES: usize = MAX_JSON_BODY as usize - 4096;
/// How long a batch waits for more lines after its first.
const LINGER: Duration = Duration::from_millis(50);

/// Posts a message per line of stdin: `template` with the line (JSON) as its body; prints
/// each new id, in order. Blank lines are skipped; a line that is not JSON (or too large, or
/// a failed read) stops it, after the lines before it were posted.
pub fn publish(client: &Client, path: &str, template: &Value) -> Result<()> {
    let lines = read_lines();
    let mut sender = Sender {
        client,
        path,
        most: MAX_BATCH_MESSAGES,
    };
    // A message that did not fit the last batch: the first of the next.
    let mut carried: Option<Pending> = None;
    loop {
        let mut batch = Batch::default();
        let mut next = match carried.take() {
            Some(message) => Ok(Some(message)),
            None => next_message(&lines, template, None),
        };
        let deadline = Instant::now() + LINGER;
        let outcome = loop {
            match next {
                Ok(Some(message)) if batch.fits(&message) => batch.push(message),
                Ok(Some(message)) => {
                    carried = Some(message);
                    break Ok(());
                }
                // The end of stdin, or of this batch's wait.
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if batch.is_full() {
                break Ok(());
            }
            next = next_message(&lines, template, Some(deadline));
        };
        // Empty only at the end of stdin or at a bad first line: a carried message always
        // fits an empty batch.
        if batch.messages.is_empty() {
            return outcome;
        }
        // The good lines before a bad one go out first, as the error says.
        sender.post(&batch.messages)?;
        outcome?;
    }
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

/// A message to send, and its size as sent.
struct Pending {
    message: Value,
    bytes: usize,
}

/// The message of the next line that is not blank, waiting until `deadline` if there is
/// one; `None` at the end of stdin or the deadline.
fn next_message(
    lines: &Receiver<io::Result<Line>>,
    template: &Value,
    deadline: Option<Instant>,
) -> Result<Option<Pending>> {
    loop {
        let next = match deadline {
            None => lines.recv().ok(),
            // Timed out or at the end: either way this batch is done.
            Some(at) => lines.recv_deadline(at).ok(),
        };
        let Some(line) = next else {
            return Ok(None);
        };
        let (number, text) = line.map_err(|e| {
            CliError::usage(format!(
                "reading stdin: {e}; the lines before it were posted"
            ))
        })?;
        if !text.trim().is_empty() {
            return message(template, number, &text).map(Some);
        }
    }
}

/// `template` with line `number` as its body.
fn message(template: &Value, number: usize, text: &str) -> Result<Pending> {
    let stop = |why: String| {
        CliError::usage(format!(
            "stdin line {number}: {why}; the lines before it were posted"
        ))
    };
    let body: Value = serde_json::from_str(text).map_err(|e| stop(format!("not JSON ({e})")))?;
    let mut message = template.clone();
    message["body"] = body;
    let bytes = message.to_string().len() + 1;
    if bytes > MOST_BYTES {
        return Err(stop(format!(
            "{bytes} bytes is over the server's 1 MiB limit"
        )));
    }
    Ok(Pending { message, bytes })
}

#[derive(Default)]
struct Batch {
    messages: Vec<Value>,
    /// The messages' size as sent.
    bytes: usize,
}

impl Batch {
    /// Whether `message` may join without the request growing over what the server takes.
    fn fits(&self, message: &Pending) -> bool {
        self.bytes + message.bytes <= MOST_BYTES
    }

    fn push(&mut self, Pending { message, bytes }: Pending) {
        self.bytes += bytes;
        self.messages.push(message);
    }

    fn is_full(&self) -> bool {
        self.messages.len() >= MAX_BATCH_MESSAGES
    }
}

/// Posts batches, at most `most` messages each. A batch is never over the server's byte
/// limit (`Batch::fits`), so a 413 means the loop guard's burst is smaller: the batch is
/// halved, and the smaller size kept for the rest of the run.
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
        let reply = idempotent::post(self.client, self.path, messages)?;
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
