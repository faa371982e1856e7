//! Single messages and `reply_to` threads, read from the `reply_to` column and its index.
use super::read::{Index, index_row};
use rusqlite::{Connection, OptionalExtension};

/// Most messages a thread answer holds; also bounds the walk up to the root.
pub const MAX_THREAD: usize = 1000;

/// One stored envelope.
pub fn message(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT envelope FROM messages WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()
}

/// The thread `id` belongs to: the root of its `reply_to` chain (the highest ancestor still
/// stored) and every message replying to it, directly or not; oldest first, at most
/// `MAX_THREAD`, as an index (see `read::Index`). `None` when `id` is not stored.
pub fn thread(conn: &Connection, id: &str) -> rusqlite::Result<Option<Index>> {
    let root: Option<String> = conn
        .prepare_cached(
            "WITH RECURSIVE up (id, parent, depth) AS (
                SELECT id, reply_to, 0 FROM messages WHERE id = ?1
                UNION ALL
                SELECT m.id, m.reply_to, up.depth + 1 FROM messages m JOIN up ON m.id = up.parent
                WHERE up.depth < ?2
             )
             SELECT id FROM up ORDER BY depth DESC LIMIT 1",
        )?
        .query_row(rusqlite::params![id, MAX_THREAD as i64], |row| row.get(0))
        .optional()?;
    let Some(root) = root else {
        return Ok(None);
    };
    // UNION (not UNION ALL) visits each message once, so even a cycle of replies ends.
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE down (id) AS (
            SELECT ?1
            UNION
            SELECT m.id FROM messages m JOIN down ON m.reply_to = down.id
            LIMIT ?2
         )
         SELECT m.id, octet_length(m.envelope) FROM messages m JOIN down ON m.id = down.id
         ORDER BY m.id",
    )?;
    let index = stmt
        .query_map(rusqlite::params![root, MAX_THREAD as i64], index_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(index))
}
