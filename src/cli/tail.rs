//! `workshop tail`: the live stream, printed as it comes, kept alive across reconnects and
//! server restarts without showing a message twice or skipping one.
use std::ops::ControlFlow;

use clap::Args;
use serde_json::Value;

use super::client::{Client, Result};
use super::output::{colour_wanted, emit_envelope};
use super::request::{history_path, push_opt, stream_path};
use super::sse::{self, Stream, StreamEvent};

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Channel (all channels when omitted)
    ch: Option<String>,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    kind: Option<String>,
    /// Replay everything after this message id first
    #[arg(long, value_name = "ID")]
    since: Option<String>,
    /// Print the last N stored messages first (like `tail -n N -f`)
    #[arg(short, value_name = "N", conflicts_with = "since")]
    n: Option<u32>,
    /// Compact human format: time from · ch · type · body
    #[arg(long)]
    pretty: bool,
}

pub fn tail(client: &Client, args: TailArgs) -> Result<()> {
    let colour = args.pretty && colour_wanted();
    let print = |line: &str| emit_envelope(line, args.pretty, colour);
    // Without --since, start at the newest stored message rather than "live": that way a
    // reconnect that happens before anything was printed still replays what it missed.
    let mut cursor = match &args.since {
        Some(id) => id.clone(),
        None => sse::newest_id(client, args.ch.as_deref())?,
    };
    print_last(client, &args, &mut cursor, &print)?;
    let stream = Stream {
        path: stream_path(args.ch.as_deref()),
        type_prefix: args.kind.clone(),
        cursor: Some(cursor),
    };
    sse::follow(client, stream, |event| on_event(event, &print), || {})
}

/// `-n N`: prints the last N stored messages, and moves `cursor` past what it printed so the
/// stream starts after it.
fn print_last(
    client: &Client,
    args: &TailArgs,
    cursor: &mut String,
    print: &impl Fn(&str) -> Result<()>,
) -> Result<()> {
    let Some(n) = args.n else { return Ok(()) };
    let mut query = vec![("n", n.to_string())];
    push_opt(&mut query, "type", args.kind.clone());
    let text = client.get_text(&history_path(args.ch.as_deref()), &query)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        print(line)?;
        if let Some(id) = id_in(line).filter(|id| id.as_str() > cursor.as_str()) {
            *cursor = id;
        }
    }
    Ok(())
}

/// The `id` of an envelope line, if it is one.
fn id_in(line: &str) -> Option<String> {
    let envelope: Value = serde_json::from_str(line).ok()?;
    envelope.get("id")?.as_str().map(str::to_string)
}

/// A gap notice goes to stderr; every other event is a message to print.
fn on_event(event: &StreamEvent, print: &impl Fn(&str) -> Result<()>) -> ControlFlow<Result<()>> {
    if event.event.as_deref() == Some("gap") {
        eprintln!("workshop: {}", sse::gap_notice(&event.data));
        return ControlFlow::Continue(());
    }
    match print(&event.data) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(Err(e)),
    }
}
