//! Queries for agents that work in turns: whether a long-poll can answer yet, the inbox
//! (messages addressed to an agent) and its read cursor. The writes run in the writer's
//! transaction, so a cursor or a recipient row commits with what it belongs to.
use super::read::MessageQuery;
use rusqlite::{Connection, OptionalExtension, ToSql, params};

/// Whether any stored message matches `q`'s channel, type prefix and `since` (the condition
/// a waiting history request waits for; `before` and `limit` play no part).
pub fn any_message(conn: &Connection, q: &MessageQuery) -> rusqlite::Result<bool> {
    let mut sql = String::from("SELECT EXISTS (SELECT 1 FROM messages WHERE 1");
    let mut args: Vec<&dyn ToSql> = Vec::new();
    if let Some(ch) = &q.ch {
        sql.push_str(" AND ch = ?");
        args.push(ch);
    }
    if let Some(since) = &q.since {
        sql.push_str(" AND id > ?");
        args.push(since);
    }
    if let Some(prefix) = &q.type_prefix {
        // substr, not LIKE: `%` and `_` in a prefix are literal characters.
        sql.push_str(" AND substr(type, 1, length(?)) = ?");
        args.push(prefix);
        args.push(prefix);
    }
    sql.push(')');
    conn.prepare_cached(&sql)?
        .query_row(args.as_slice(), |row| row.get(0))
}

/// Which part of an agent's inbox to read.
#[derive(Debug, Clone)]
pub struct InboxQuery {
    pub agent: String,
    /// Only ids after this one, oldest first; without it, the newest `limit`.
    pub since: Option<String>,
    pub limit: usize,
}

/// The `(id, envelope size)` index of an agent's inbox, oldest first (see `batches`).
pub fn inbox(conn: &Connection, q: &InboxQuery) -> rusqlite::Result<Vec<(String, u64)>> {
    let limit = q.limit as i64;
    let row = |row: &rusqlite::Row| Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64));
    // octet_length reads the size from the record header, not the (overflow) text.
    let mut index: Vec<(String, u64)> = match &q.since {
        Some(since) => conn
            .prepare_cached(
                "SELECT m.id, octet_length(m.envelope) FROM recipients r JOIN messages m ON m.id = r.id
                 WHERE r.agent = ?1 AND r.id > ?2 ORDER BY r.id LIMIT ?3",
            )?
            .query_map(params![q.agent, since, limit], row)?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(
                "SELECT m.id, octet_length(m.envelope) FROM recipients r JOIN messages m ON m.id = r.id
                 WHERE r.agent = ?1 ORDER BY r.id DESC LIMIT ?2",
            )?
            .query_map(params![q.agent, limit], row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    if q.since.is_none() {
        index.reverse();
    }
    Ok(index)
}

/// Whether the agent's inbox holds anything after `since` (everything, without it).
pub fn any_in_inbox(conn: &Connection, agent: &str, since: Option<&str>) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM recipients r JOIN messages m ON m.id = r.id
         WHERE r.agent = ?1 AND (?2 IS NULL OR r.id > ?2))",
    )?
    .query_row(params![agent, since], |row| row.get(0))
}

/// The last id the agent marked read, if it ever did.
pub fn read_cursor(conn: &Connection, agent: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT up_to FROM inbox_cursors WHERE agent = ?1")?
        .query_row([agent], |row| row.get(0))
        .optional()
}

/// Moves the agent's cursor to `up_to` unless it is already further; returns where it is.
pub fn mark_read(conn: &Connection, agent: &str, up_to: &str) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO inbox_cursors (agent, up_to) VALUES (?1, ?2)
         ON CONFLICT (agent) DO UPDATE SET up_to = max(up_to, excluded.up_to)",
    )?
    .execute([agent, up_to])?;
    conn.prepare_cached("SELECT up_to FROM inbox_cursors WHERE agent = ?1")?
        .query_row([agent], |row| row.get(0))
}

/// Files a new message in its recipients' inboxes.
pub fn insert_recipients(
    conn: &Connection,
    id: &str,
    recipients: &[String],
) -> rusqlite::Result<()> {
    for agent in recipients {
        conn.prepare_cached("INSERT OR IGNORE INTO recipients (agent, id) VALUES (?1, ?2)")?
            .execute([agent, id])?;
    }
    Ok(())
}

/// Retention: forgets inbox entries of messages older than `cutoff`, as they are deleted.
pub fn prune_recipients(conn: &Connection, cutoff: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM recipients WHERE id < ?1")?
        .execute([cutoff])?;
    Ok(())
}
