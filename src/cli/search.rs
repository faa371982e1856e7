//! `workshop search WORDS`: full-text search of stored messages, best match first.
use clap::Args;

use super::client::{Client, Result};
use super::output::emit_envelopes;

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Words to find, e.g. 'disk full'
    #[arg(value_name = "WORDS")]
    pub words: String,
    /// Only this channel
    #[arg(long, value_name = "CH")]
    pub ch: Option<String>,
    /// Only messages from this agent
    #[arg(long, value_name = "AGENT")]
    pub from: Option<String>,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    pub kind: Option<String>,
    /// At most N (server default 50, at most 500)
    #[arg(short, value_name = "N")]
    pub n: Option<u32>,
    /// Only messages older than this id
    #[arg(long, value_name = "ID")]
    pub before: Option<String>,
    /// Compact human format
    #[arg(long)]
    pub pretty: bool,
}

pub fn search(client: &Client, q: SearchArgs) -> Result<()> {
    let mut query = vec![("q", q.words)];
    let optional = [
        ("ch", q.ch),
        ("from", q.from),
        ("type", q.kind),
        ("n", q.n.map(|n| n.to_string())),
        ("before", q.before),
    ];
    query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    emit_envelopes(&client.get_text("/search", &query)?, q.pretty)
}
