//! `GET /tasks` and `GET /presence`: JSON arrays whose rows are fetched a batch at a time as
//! the client reads them. A task's `context` and `result`, or an agent's `meta`, can each be
//! nearly a megabyte, and a list holds up to 1,000: built whole, one answer could take
//! gigabytes of memory. This way an answer holds one batch.
//!
//! The keys (and each row's stored size) are selected before the first byte is sent, so a
//! failure is still a clean error. Rows are fetched by key afterwards, with the list's filters
//! applied again: a row that stopped matching meanwhile (a task claimed while `?status=open`
//! was being sent) is left out, so every row sent matches the list as it was when sent.
use super::batches::batch_len;
use super::read::{Agent, TASK_COLUMNS, TaskQuery, id_list, task_from_row};
use super::{Reader, StoreError};
use rusqlite::{Connection, Row, ToSql};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, Read};

/// Rows fetched at most per batch.
const BATCH_ROWS: usize = 64;
/// Bytes of stored JSON fetched per batch (one row, however large, at least).
const BATCH_BYTES: u64 = 256 * 1024;
/// Agents `GET /presence` lists at most, most recently seen first.
pub const MAX_AGENTS: usize = 1000;

/// A list's rows: which keys it selects, and the rows of some of those keys.
pub trait Listing: Send + 'static {
    type Row: Serialize;
    /// `(key, stored bytes)` of every row, in answer order.
    fn keys(&self, conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>>;
    /// The rows of `keys` (a JSON array) that still match, in any order, with their keys.
    fn rows(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, Self::Row)>>;
}

/// A JSON array answer, produced as it is read.
pub struct JsonList<L: Listing> {
    reader: Reader,
    listing: L,
    keys: Vec<(String, u64)>,
    /// How many of `keys` have been fetched.
    fetched: usize,
    /// Encoded and not yet read.
    out: Vec<u8>,
    at: usize,
    /// Whether a row has been written (the next needs a comma).
    wrote_row: bool,
    /// Whether the closing `]` has been written.
    closed: bool,
}

impl<L: Listing> JsonList<L> {
    /// Selects the keys now, so that a failure is known before the answer begins.
    pub fn select(reader: Reader, listing: L) -> Result<JsonList<L>, StoreError> {
        let keys = reader.read(|conn| listing.keys(conn))?;
        Ok(JsonList {
            reader,
            listing,
            keys,
            fetched: 0,
            out: b"[".to_vec(),
            at: 0,
            wrote_row: false,
            closed: false,
        })
    }

    /// Encodes the next batch into `out`, or the closing `]` after the last.
    fn refill(&mut self) -> Result<(), StoreError> {
        self.out.clear();
        self.at = 0;
        let wanted = self.next_keys();
        if wanted.is_empty() {
            self.out.push(b']');
            self.closed = true;
            return Ok(());
        }
        let keys = id_list(&wanted.iter().map(|(key, _)| key).collect::<Vec<_>>());
        let mut rows: HashMap<String, L::Row> = self
            .reader
            .read(|conn| self.listing.rows(conn, &keys))?
            .into_iter()
            .collect();
        for (key, _) in wanted {
            if let Some(row) = rows.remove(&key) {
                if self.wrote_row {
                    self.out.push(b',');
                }
                serde_json::to_writer(&mut self.out, &row)
                    .map_err(|e| StoreError::internal(format!("cannot encode a row: {e}")))?;
                self.wrote_row = true;
            }
        }
        Ok(())
    }

    /// The next batch's keys: up to `BATCH_ROWS` or `BATCH_BYTES` of stored JSON.
    fn next_keys(&mut self) -> Vec<(String, u64)> {
        let rest = &self.keys[self.fetched..];
        let count = batch_len(rest, BATCH_ROWS, BATCH_BYTES);
        self.fetched += count;
        rest[..count].to_vec()
    }
}

impl<L: Listing> Read for JsonList<L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if self.closed {
                return Ok(0);
            }
            if let Err(e) = self.refill() {
                // The status line is long gone: all the client can see is the cut.
                eprintln!("workshop: list answer cut short: {}", e.message);
                return Err(io::Error::other(e.message));
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `GET /tasks`: newest first, filtered by `TaskQuery`.
pub struct Tasks(pub TaskQuery);

impl Tasks {
    /// The query's `AND ...` conditions and their arguments.
    fn filters(&self) -> (String, Vec<&dyn ToSql>) {
        let q = &self.0;
        let mut sql = String::new();
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(status) = &q.status {
            sql.push_str(" AND status = ?");
            args.push(status);
        }
        if let Some(agent) = &q.agent {
            sql.push_str(" AND (assigned_to = ? OR claimed_by = ?)");
            args.push(agent);
            args.push(agent);
        }
        if let Some(ch) = &q.ch {
            sql.push_str(" AND ch = ?");
            args.push(ch);
        }
        (sql, args)
    }
}

impl Listing for Tasks {
    type Row = super::read::Task;

    fn keys(&self, conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
        let (filters, mut args) = self.filters();
        let sql = format!(
            "SELECT id, octet_length(title) + IFNULL(octet_length(context), 0)
                    + IFNULL(octet_length(result), 0) + IFNULL(octet_length(files), 0)
             FROM tasks WHERE 1{filters} ORDER BY id DESC LIMIT ?"
        );
        let limit = self.0.limit as i64;
        args.push(&limit);
        let mut stmt = conn.prepare_cached(&sql)?;
        stmt.query_map(args.as_slice(), key_row)?.collect()
    }

    fn rows(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, Self::Row)>> {
        let (filters, mut args) = self.filters();
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE id IN (SELECT value FROM json_each(?)){filters}"
        );
        args.insert(0, &keys);
        let mut stmt = conn.prepare_cached(&sql)?;
        stmt.query_map(args.as_slice(), |row| {
            task_from_row(row).map(|task| (task.id.clone(), task))
        })?
        .collect()
    }
}

/// `GET /presence`: agents seen after a time, most recently seen first, `MAX_AGENTS` at most.
pub struct Presence {
    pub seen_after: f64,
}

impl Listing for Presence {
    type Row = Agent;

    fn keys(&self, conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, octet_length(channels) + octet_length(meta) FROM presence
             WHERE last_seen > ?1 ORDER BY last_seen DESC LIMIT ?2",
        )?;
        let args: [&dyn ToSql; 2] = [&self.seen_after, &(MAX_AGENTS as i64)];
        stmt.query_map(args.as_slice(), key_row)?.collect()
    }

    fn rows(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, Self::Row)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, last_seen, channels, meta FROM presence
             WHERE agent_id IN (SELECT value FROM json_each(?1)) AND last_seen > ?2",
        )?;
        let json = |text: String| serde_json::from_str(&text).unwrap_or(Value::Null);
        let args: [&dyn ToSql; 2] = [&keys, &self.seen_after];
        stmt.query_map(args.as_slice(), |row| {
            let agent = Agent {
                agent_id: row.get(0)?,
                last_seen: row.get(1)?,
                channels: json(row.get(2)?),
                meta: json(row.get(3)?),
            };
            Ok((agent.agent_id.clone(), agent))
        })?
        .collect()
    }
}

/// A `(key, stored bytes)` row.
fn key_row(row: &Row) -> rusqlite::Result<(String, u64)> {
    let bytes: Option<i64> = row.get(1)?;
    Ok((row.get(0)?, bytes.unwrap_or(0).max(0) as u64))
}
