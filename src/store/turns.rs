//! Queries for agents that work in turns: whether a long-poll can answer yet, the inbox
//! (messages addressed to an agent) and its read cursor. The writes run in the writer's
//! transaction, so a cursor or a recipient row commits with what it belongs to.
use super::read::{Index, MessageQuery, index_row, select_messages};
use rusqlite::{Connection, OptionalExtension, params};

/// Whether any stored message matches `q`'s channel, type prefix and `since` (the condition
/// a waiting history request waits for; `before` and `limit` play no part).
pub fn any_message(conn: &Connection, q: &MessageQuery) -> rusqlite::Result<bool> {
    let q = MessageQuery {
        before: None,
        limit: 1,
        ..q.clone()
    };
    Ok(!select_messages(conn, &q, "1", |_| Ok(()))?.is_empty())
}

/// Which part of an agent's inbox to read.
#[derive(Debug, Clone)]
pub struct InboxQuery {
    pub agent: String,
    /// Only ids after this one, oldest first; without it, the newest `limit`.
    pub since: Option<String>,
    pub limit: usize,
}

/// The index of an agent's inbox, oldest first.
pub fn inbox(conn: &Connection, q: &InboxQuery) -> rusqlite::Result<Index> {
    let limit = q.limit as i64;
    let mut index: Index = match &q.since {
        Some(since) => conn
            .prepare_cached(
                "SELECT m.id, octet_length(m.envelope) FROM recipients r JOIN messages m ON m.id = r.id
                 WHERE r.agent = ?1 AND r.id > ?2 ORDER BY r.id LIMIT ?3",
            )?
            .query_map(params![q.agent, since, limit], index_row)?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(
                "SELECT m.id, octet_length(m.envelope) FROM recipients r JOIN messages m ON m.id = r.id
                 WHERE r.agent = ?1 ORDER BY r.id DESC LIMIT ?2",
            )?
            .query_map(params![q.agent, limit], index_row)?
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
        "SELECT EXISTS (SELECT 1 FROM recipients
         WHERE agent = ?1 AND (?2 IS NULL OR id > ?2))",
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
/// The writer clamps `up_to` to the greatest id issued first (see `Op::MarkRead`).
pub fn mark_read(conn: &Connection, agent: &str, up_to: &str) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO inbox_cursors (agent, up_to) VALUES (?1, ?2)
         ON CONFLICT (agent) DO UPDATE SET up_to = max(up_to, excluded.up_to)
         RETURNING up_to",
    )?
    .query_row([agent, up_to], |row| row.get(0))
}

/// Files a new message in its recipients' inboxes.
pub fn insert_recipients(
    conn: &Connection,
    id: &str,
    recipients: &[String],
) -> rusqlite::Result<()> {
    if recipients.is_empty() {
        return Ok(());
    }
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO recipients (agent, id) VALUES (?1, ?2)")?;
    for agent in recipients {
        insert.execute([agent, id])?;
    }
    Ok(())
}

/// Retention: forgets inbox entries of messages older than `cutoff`, as they are deleted,
/// and read cursors below it: such a cursor reads exactly like none (every message after it
/// is stored, so `unread=1` answers the same), and without this one row per agent ever
/// addressed would stay for good.
pub fn prune(conn: &Connection, cutoff: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM recipients WHERE id < ?1")?
        .execute([cutoff])?;
    conn.prepare_cached("DELETE FROM inbox_cursors WHERE up_to < ?1")?
        .execute([cutoff])?;
    Ok(())
}
