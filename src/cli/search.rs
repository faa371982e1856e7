//! `workshop search WORDS`: full-text search of stored messages, best match first.
use super::client::{Client, Result};
use super::commands::emit_envelopes;

pub struct SearchQuery {
    pub words: String,
    pub ch: Option<String>,
    pub from: Option<String>,
    pub kind: Option<String>,
    pub n: Option<u32>,
    pub before: Option<String>,
}

pub fn search(client: &Client, q: SearchQuery, pretty: bool) -> Result<()> {
    let mut query = vec![("q", q.words)];
    let optional = [
        ("ch", q.ch),
        ("from", q.from),
        ("type", q.kind),
        ("n", q.n.map(|n| n.to_string())),
        ("before", q.before),
    ];
    query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    emit_envelopes(&client.get_text("/search", &query)?, pretty)
}
