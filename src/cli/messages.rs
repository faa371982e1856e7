//! `workshop pub` and `workshop history`: writing a message to a channel, and reading the
//! stored ones back.
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::client::{CliError, Client, Result, seg};
use super::files;
use super::idempotent;
use super::lines;
use super::output::{emit, emit_envelopes};
use super::request::{history_path, id_of, json_arg, push_opt};

#[derive(Args, Debug)]
pub struct PubArgs {
    /// Channel name
    ch: String,
    /// Message type, dot-namespaced (e.g. msg.text)
    #[arg(value_name = "TYPE")]
    kind: String,
    /// JSON body, or `-` to read it from stdin (default {})
    body: Option<String>,
    /// A message per line of stdin, each line its JSON body, posted in batches (up to 1000
    /// per request, sent once 50 ms pass without a full one); prints each id
    #[arg(long, conflicts_with_all = ["body", "files"])]
    lines: bool,
    /// Upload a file and attach its hash (repeatable); its name goes into the body's
    /// `file_names` (when the body is an object)
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Id of the message this replies to
    #[arg(long, value_name = "ID")]
    reply_to: Option<String>,
    /// Address it to AGENT (repeatable); it lands in their inbox
    #[arg(long = "to", value_name = "AGENT")]
    to: Vec<String>,
}

/// Posts the message (under an idempotency key); prints its id.
pub fn publish(client: &Client, args: PubArgs) -> Result<()> {
    let (path, msg) = (format!("/ch/{}", seg(&args.ch)), message(client, &args)?);
    if args.lines {
        return lines::publish(client, &path, &msg);
    }
    let reply = idempotent::post(client, &path, &msg)?;
    emit(&id_of(&reply)?)
}

/// The message to post: `from`, `type`, `body`, and the files, reply and addressees given.
fn message(client: &Client, args: &PubArgs) -> Result<Value> {
    // `workshop pub general 'hello there'` stored a message of type "hello there" and an
    // empty body: the hub takes any type, but one with blanks is this mistake.
    if args.kind.chars().any(char::is_whitespace) {
        return Err(CliError::usage(format!(
            "TYPE {:?} has blanks: it names the kind of message, such as msg.text; to send \
             text: workshop pub {} msg.text '{{\"text\": \"...\"}}'",
            args.kind, args.ch
        )));
    }
    let from = client.agent()?;
    let mut body = match &args.body {
        Some(text) => json_arg(text, "BODY")?,
        None => json!({}),
    };
    let mut msg = json!({"from": from, "type": args.kind});
    if !args.files.is_empty() {
        msg["files"] = json!(files::attach(client, &args.files, &mut body)?);
    }
    msg["body"] = body;
    if let Some(r) = &args.reply_to {
        msg["reply_to"] = json!(r);
    }
    if let Some(to) = addressees(&args.to) {
        msg["to"] = to;
    }
    Ok(msg)
}

/// One addressee is sent as a plain identity, several as a list.
fn addressees(to: &[String]) -> Option<Value> {
    match to {
        [] => None,
        [one] => Some(json!(one)),
        many => Some(json!(many)),
    }
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Channel (all channels when omitted)
    ch: Option<String>,
    /// How many messages (server default 200 for a channel, 100 for all; at most 1000)
    #[arg(short, value_name = "N")]
    n: Option<u32>,
    /// The oldest N messages after this id (page forward)
    #[arg(long, value_name = "ID")]
    since: Option<String>,
    /// The newest N messages before this id (page backward)
    #[arg(long, value_name = "ID")]
    before: Option<String>,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    kind: Option<String>,
    /// Compact human format
    #[arg(long)]
    pretty: bool,
}

pub fn history(client: &Client, args: HistoryArgs) -> Result<()> {
    let path = history_path(args.ch.as_deref());
    let query = history_query(&args);
    emit_envelopes(&client.get_text(&path, &query)?, args.pretty)
}

/// The options that narrow the history, as query parameters (those given).
fn history_query(args: &HistoryArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    push_opt(&mut query, "n", args.n);
    push_opt(&mut query, "since", args.since.as_deref());
    push_opt(&mut query, "before", args.before.as_deref());
    push_opt(&mut query, "type", args.kind.as_deref());
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_addressee_is_an_identity_and_several_a_list() {
        assert_eq!(addressees(&[]), None);
        assert_eq!(addressees(&["a.b".into()]), Some(json!("a.b")));
        let two = ["a.b".to_string(), "c.d".to_string()];
        assert_eq!(addressees(&two), Some(json!(["a.b", "c.d"])));
    }
}
