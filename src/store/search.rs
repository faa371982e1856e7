//! Full-text search over messages: an FTS5 index of each message's type, sender, channel and
//! the string values of its body, written by the writer a batch at a time shortly after the
//! insert (`unindexed`: before any search reads it) and pruned with it.
//! The index is contentless: results are read back from `messages` through
//! `message_search_ids`, which gives each indexed message the integer rowid FTS5 needs.
use super::read::{Index, Prefix, index_row};
use rusqlite::{Connection, ToSql, Transaction, params};
use serde_json::Value;

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most words in one query: each is a term FTS5 intersects.
pub const MAX_QUERY_WORDS: usize = 16;

/// What the index holds of one message: its id and the four indexed columns.
#[derive(Debug)]
pub struct SearchDoc {
    pub id: String,
    pub kind: String,
    pub from: String,
    pub ch: String,
    /// Every string value of the body (`body_text`).
    pub text: String,
}

impl SearchDoc {
    pub fn new(id: &str, kind: &str, from: &str, ch: &str, body: &Value) -> SearchDoc {
        let mut text = String::new();
        body_text(body, &mut text);
        SearchDoc {
            id: id.to_string(),
            kind: kind.to_string(),
            from: from.to_string(),
            ch: ch.to_string(),
            text,
        }
    }

    /// About how much memory the document holds.
    pub fn size(&self) -> usize {
        self.id.len() + self.kind.len() + self.from.len() + self.ch.len() + self.text.len()
    }
}

/// Adds `doc` to the index. Documents must come in id order: search walks rows newest first.
pub fn index(tx: &Transaction, doc: &SearchDoc) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO message_search_ids (id, ch) VALUES (?1, ?2)")?
        .execute([&doc.id, &doc.ch])?;
    let row = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO message_search (rowid, kind, sender, ch, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![row, doc.kind, doc.from, doc.ch, doc.text])?;
    Ok(())
}

/// Indexes every stored message newer than the index's newest: those a crash (or a copy of
/// the database taken meanwhile) left committed but not yet indexed. How many.
pub fn index_unindexed(tx: &Transaction) -> rusqlite::Result<usize> {
    let mut select = tx.prepare(
        "SELECT id, type, envelope FROM messages
         WHERE id > coalesce((SELECT max(id) FROM message_search_ids), '') ORDER BY id",
    )?;
    let mut rows = select.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let (id, kind, envelope): (String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?);
        index(tx, &stored_doc(&id, &kind, &envelope))?;
        count += 1;
    }
    Ok(count)
}

/// The document of a stored envelope (which the server wrote, so it parses).
fn stored_doc(id: &str, kind: &str, envelope: &str) -> SearchDoc {
    let envelope: Value = serde_json::from_str(envelope).unwrap_or_default();
    let from = envelope["from"].as_str().unwrap_or_default();
    SearchDoc::new(
        id,
        kind,
        from,
        envelope["ch"].as_str().unwrap_or_default(),
        &envelope["body"],
    )
}

/// Every string value in `body` (nested too; not keys, not numbers), in document order and
/// separated by spaces: what the migration's `json_tree` query indexed for older messages.
/// Done here rather than in SQL, which would parse the envelope again for every insert.
fn body_text(body: &Value, text: &mut String) {
    match body {
        Value::String(s) => {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|item| body_text(item, text)),
        Value::Object(fields) => fields.values().for_each(|value| body_text(value, text)),
        _ => {}
    }
}

/// Drops every message older than `cutoff` (an id) from the index, as retention does.
pub fn prune(tx: &Transaction, cutoff: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM message_search WHERE rowid IN
         (SELECT row FROM message_search_ids WHERE id < ?1)",
        [cutoff],
    )?;
    tx.execute("DELETE FROM message_search_ids WHERE id < ?1", [cutoff])?;
    Ok(())
}

/// What `GET /search` asks for; `words` are already checked by `match_expression`.
#[derive(Debug, Default)]
pub struct SearchQuery {
    pub words: String,
    pub ch: Option<String>,
    pub from: Option<String>,
    /// Literal prefix of `type`, as in history.
    pub type_prefix: Option<String>,
    /// Only ids before this one.
    pub before: Option<String>,
    pub limit: usize,
}

/// The words of a query: split at whitespace and at control characters, which no word holds
/// (FTS5 ends a quoted string at a NUL, so one inside a word would be a syntax error).
pub fn query_words(q: &str) -> impl Iterator<Item = &str> {
    q.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
}

/// Turns what a user typed into an FTS5 expression that matches messages containing every
/// word. Each word is quoted, so FTS5 syntax (`AND`, `*`, `:`, parentheses) is plain text and
/// no input is a syntax error; punctuation inside a word makes it a phrase (`disk-full`).
/// `None` when there is no word at all.
pub fn match_expression(q: &str) -> Option<String> {
    let words: Vec<String> = query_words(q)
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// How many of the newest matches are ranked: `n`'s maximum. Ranking every match of two
/// common words (tens of thousands in a million messages) takes 100+ ms; the newest 500 take
/// a few, and a mesh searching its chatter wants the relevant recent messages.
pub const RANKED_MATCHES: i64 = 500;

/// The index (see `read::Index`) of stored messages matching `q`: of the newest
/// `RANKED_MATCHES` that pass the filters, the best (bm25) first, newer first on a tie. FTS5
/// walks the index newest first, so the window costs what it holds, not what matches.
pub fn search(conn: &Connection, q: &SearchQuery) -> rusqlite::Result<Index> {
    let mut filters = String::new();
    let mut args: Vec<&dyn ToSql> = vec![&q.words];
    let prefix = q.type_prefix.as_deref().map(Prefix::new);
    push_filters(q, &prefix, &mut filters, &mut args);
    let limit = q.limit as i64;
    args.push(&RANKED_MATCHES);
    args.push(&limit);
    let mut stmt = conn.prepare_cached(&search_sql(q, &filters))?;
    stmt.query_map(args.as_slice(), index_row)?.collect()
}

/// Appends `q`'s filters (`before`, `ch`, `from`, the type prefix) to `filters`, and their
/// arguments.
fn push_filters<'b>(
    q: &'b SearchQuery,
    prefix: &'b Option<Prefix<'b>>,
    filters: &mut String,
    args: &mut Vec<&'b dyn ToSql>,
) {
    if let Some(before) = &q.before {
        filters.push_str(" AND s.id < ?");
        args.push(before);
    }
    if let Some(ch) = &q.ch {
        filters.push_str(" AND s.ch = ?");
        args.push(ch);
    }
    if let Some(from) = &q.from {
        filters.push_str(" AND json_extract(m.envelope, '$.from') = ?");
        args.push(from);
    }
    if let Some(prefix) = prefix {
        prefix.push("m.type", filters, args);
    }
}

/// The query of `search`, with `filters` (see `push_filters`).
fn search_sql(q: &SearchQuery, filters: &str) -> String {
    let needs_message = q.from.is_some() || q.type_prefix.is_some();
    let join_message = if needs_message {
        "JOIN messages m ON m.id = s.id"
    } else {
        ""
    };
    // MATERIALIZED: the window is cut (LIMIT) before the final sort by score.
    format!(
        "WITH hits AS MATERIALIZED (
            SELECT f.rowid AS row, bm25(message_search) AS score, s.id AS id
            FROM message_search f JOIN message_search_ids s ON s.row = f.rowid {join_message}
            WHERE message_search MATCH ?{filters}
            ORDER BY f.rowid DESC LIMIT ?)
         SELECT m.id, octet_length(m.envelope) FROM hits JOIN messages m ON m.id = hits.id
         ORDER BY hits.score, hits.row DESC LIMIT ?"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_text_is_every_string_value() {
        let body = serde_json::json!({"b": ["disk", {"c": "full"}, 3, true], "a": "x", "n": null});
        let mut text = String::new();
        body_text(&body, &mut text);
        // Document order, as the migration's `json_tree` walks it (serde_json keeps it:
        // `preserve_order`; it sorted the keys before, "x disk full").
        assert_eq!(text, "disk full x");
        let mut text = String::new();
        body_text(&serde_json::json!("plain"), &mut text);
        assert_eq!(text, "plain");
    }

    #[test]
    fn queries_are_quoted_words() {
        assert_eq!(
            match_expression("disk full").as_deref(),
            Some(r#""disk" "full""#)
        );
        assert_eq!(
            match_expression(r#"a"b OR c*"#).as_deref(),
            Some(r#""a""b" "OR" "c*""#)
        );
        assert_eq!(match_expression("  - * \"\" "), None);
        assert_eq!(
            match_expression("disk\0full\u{1f}x\u{7f}").as_deref(),
            Some(r#""disk" "full" "x""#)
        );
        assert_eq!(match_expression(""), None);
    }
}
