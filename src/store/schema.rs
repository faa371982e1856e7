//! The SQLite schema, its pragmas, and in-place upgrades (recorded in `PRAGMA user_version`).
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Each entry upgrades the schema by one version; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: messages (the envelope stored as sent, so history and SSE are byte-identical),
    // the channel list, tasks and presence.
    "CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        ch TEXT NOT NULL,
        type TEXT NOT NULL,
        envelope TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX messages_by_channel ON messages (ch, id);
     CREATE TABLE channels (name TEXT PRIMARY KEY) WITHOUT ROWID;
     CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        assigned_to TEXT,
        claimed_by TEXT,
        claimed_at REAL,
        status TEXT NOT NULL,
        title TEXT NOT NULL,
        context TEXT NOT NULL,
        result TEXT,
        files TEXT NOT NULL,
        ch TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX tasks_by_status ON tasks (status, id);
     CREATE TABLE presence (
        agent_id TEXT PRIMARY KEY,
        last_seen REAL NOT NULL,
        channels TEXT NOT NULL,
        meta TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 2: task leases, priority, delay, attempts and dead letters (status 'failed').
    // `not_before` NULL means claimable now; `lease_expires_at` is set only while claimed.
    "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tasks ADD COLUMN not_before REAL;
     ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 5;
     ALTER TABLE tasks ADD COLUMN lease_s REAL;
     ALTER TABLE tasks ADD COLUMN lease_expires_at REAL;
     CREATE INDEX tasks_claimable ON tasks (status, priority DESC, id);
     CREATE INDEX tasks_by_lease ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;",
    // Inboxes: who each addressed message (`to`, or a task.created's `for`) is for, and each
    // agent's read cursor. Only task announcements predate `to`, so only they are backfilled.
    "CREATE TABLE recipients (
        agent TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (agent, id)
     ) WITHOUT ROWID;
     CREATE INDEX recipients_by_id ON recipients (id);
     CREATE TABLE inbox_cursors (
        agent TEXT PRIMARY KEY,
        up_to TEXT NOT NULL
     ) WITHOUT ROWID;
     INSERT OR IGNORE INTO recipients (agent, id)
        SELECT json_extract(envelope, '$.body.for'), id FROM messages
        WHERE type = 'task.created' AND json_extract(envelope, '$.body.for') IS NOT NULL;",
    // Idempotency keys (a repeat within 24 h answers the first reply), threads (`reply_to`
    // as a column, backfilled from the envelopes) and the prune horizon (the greatest id
    // retention deleted, per channel, so a replay can say it has a hole).
    "CREATE TABLE idempotency_keys (
        sender TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (sender, key)
     ) WITHOUT ROWID;
     CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_at);
     ALTER TABLE messages ADD COLUMN reply_to TEXT;
     UPDATE messages SET reply_to = json_extract(envelope, '$.reply_to')
        WHERE json_extract(envelope, '$.reply_to') IS NOT NULL;
     CREATE INDEX messages_by_reply ON messages (reply_to) WHERE reply_to IS NOT NULL;
     CREATE TABLE pruned (ch TEXT PRIMARY KEY, through TEXT NOT NULL) WITHOUT ROWID;",
    // Full-text search (src/store/search.rs) and advisory locks (src/store/locks.rs).
    // `message_search` is contentless (the envelope stays in `messages`); its integer rowid
    // maps to a message id through `message_search_ids`, since `messages` has no rowid; the
    // channel is kept there too, so a search in one channel does not read every candidate.
    // The text column is every string value of the body, as `search::body_text` makes it.
    // Existing messages are indexed here, oldest first: row numbers follow id order (new ids
    // always sort last), which lets search walk the index newest first.
    "CREATE TABLE message_search_ids (
        row INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ch TEXT NOT NULL
     );
     CREATE VIRTUAL TABLE message_search USING fts5 (
        kind, sender, ch, text, content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
     );
     INSERT INTO message_search_ids (id, ch) SELECT id, ch FROM messages ORDER BY id;
     INSERT INTO message_search (rowid, kind, sender, ch, text)
        SELECT s.row, m.type, json_extract(m.envelope, '$.from'), m.ch,
               (SELECT group_concat(value, ' ') FROM json_tree(m.envelope, '$.body')
                WHERE type = 'text')
        FROM message_search_ids s JOIN messages m ON m.id = s.id;
     CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        note TEXT,
        ch TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX locks_by_expiry ON locks (expires_at);",
    // History by type (`?type=` in a channel): one index walk per distinct type under the
    // prefix, instead of a channel scan that reads every message when the type is rare (see
    // `read::typed_ids`).
    "CREATE INDEX messages_by_type ON messages (ch, type, id);",
    // How many times each task has been claimed: the current claim's number is the fencing
    // token its holder sends back, so a worker whose claim ended cannot act on the next one
    // even under the same agent id.
    "ALTER TABLE tasks ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this build writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Opens (creating if needed) the database for the writer thread and brings it up to date.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    create_parent_dir(path)?;
    let conn = Connection::open(path)?;
    set_writer_pragmas(&conn)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Waiting on a busy database, WAL, and durable commits.
fn set_writer_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so a 201 survives power loss, not just a
    // crash of the process. Group commit in the writer keeps this affordable.
    conn.pragma_update(None, "synchronous", "FULL")
}

/// Creates the folder the database goes in, if it has one.
fn create_parent_dir(path: &Path) -> rusqlite::Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(parent).map_err(|e| cannot_create(parent, &e))
}

/// The folder could not be made: reported as SQLite's own "cannot open".
fn cannot_create(parent: &Path, e: &std::io::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
        Some(format!("cannot create {}: {e}", parent.display())),
    )
}

/// A read-only connection for request threads; WAL lets it read while the writer commits.
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Brings the database up to `VERSION`; one written by a newer build is refused, since
/// this build would write to tables it does not know the shape of (a downgrade).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > VERSION as i64 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "it has schema {version}, from a newer workshop; this build knows up to \
                 {VERSION}: run the newer build"
            )),
        ));
    }
    migrate_to(conn, VERSION)
}

/// The schema version just before the first migration whose SQL contains `marker`, so a test
/// can build a database as an older release left it (`migrate_to`) and watch it upgrade.
pub fn version_before(marker: &str) -> Option<usize> {
    MIGRATIONS.iter().position(|sql| sql.contains(marker))
}

/// Applies the migrations up to `target` (at most `VERSION`) that the database lacks.
pub fn migrate_to(conn: &Connection, target: usize) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let pending = MIGRATIONS.iter().enumerate().take(target);
    for (index, sql) in pending.skip(version.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before the type index gets it when opened, over its messages.
    #[test]
    fn older_databases_get_the_type_index() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, version_before("messages_by_type").unwrap()).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (id, ch, type, envelope) VALUES ('01A', 'c', 't', '{}')",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages INDEXED BY messages_by_type WHERE ch = 'c' AND type = 't'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
    }

    /// Messages stored before `reply_to` became a column get it from their envelopes.
    #[test]
    fn the_reply_to_column_is_backfilled_from_stored_envelopes() {
        let conn = Connection::open_in_memory().unwrap();
        let added = version_before("ADD COLUMN reply_to").unwrap();
        migrate_to(&conn, added).unwrap();
        conn.execute_batch(
            r#"INSERT INTO messages VALUES ('01A', 'c', 't', '{"id":"01A","reply_to":null}');
               INSERT INTO messages VALUES ('01B', 'c', 't', '{"id":"01B","reply_to":"01A"}');"#,
        )
        .unwrap();
        migrate(&conn).unwrap();
        let replies: Vec<(String, Option<String>)> = conn
            .prepare("SELECT id, reply_to FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want = vec![("01A".into(), None), ("01B".into(), Some("01A".into()))];
        assert_eq!(replies, want);
    }
}
