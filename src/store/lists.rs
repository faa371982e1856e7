//! `GET /tasks` and `GET /presence`: JSON arrays whose rows are fetched a batch at a time as
//! the client reads them. A task's `context` and `result`, or an agent's `meta`, can each be
//! nearly a megabyte, and a list holds up to 1,000: built whole, one answer could take
//! gigabytes of memory. This way an answer holds one batch, its JSON values kept as the text
//! they are stored as (`RawValue`), never parsed into a tree many times their size.
//!
//! The keys (and each row's stored size) are selected before the first byte is sent, so a
//! failure is still a clean error. Each batch is then read in one snapshot: the rows' sizes
//! again (a heartbeat or a completed task may have grown a row since; a batch takes what
//! fits its budget now), and the rows, with the list's filters applied again, so a row that
//! stopped matching meanwhile (a task claimed while `?status=open` was being sent) is left out.
use super::batches::batch_len;
use super::read::{Agent, TASK_COLUMNS, TaskQuery, id_list, raw_json, task_from_row};
use super::{Reader, StoreError};
use rusqlite::{Connection, Row, ToSql};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Read};

/// Rows fetched at most per batch.
const BATCH_ROWS: usize = 64;
/// Bytes of stored JSON fetched per batch (one row, however large, at least).
const BATCH_BYTES: u64 = 256 * 1024;
/// Agents `GET /presence` lists at most, most recently seen first.
const MAX_AGENTS: usize = 1000;

/// A list's rows in the store: which keys it selects, how large rows are, and the rows.
pub trait Listing: Send + 'static {
    type Row: Serialize;
    /// `(key, stored bytes)` of every row, in answer order.
    fn keys(&self, conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>>;
    /// `(key, stored bytes)` of the rows of `keys` (a JSON array) as they are now.
    fn sizes(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, u64)>>;
    /// The rows of `keys` (a JSON array) that still match, in any order, with their keys.
    fn rows(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, Self::Row)>>;
}

/// Where a JSON array's rows come from: a batch at a time, each row encoded; `None` after
/// the last. A batch may be empty (every row of it stopped matching).
trait Batches: Send + 'static {
    fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>, StoreError>;
}

/// Selects `listing`'s keys now, and answers its rows as a JSON array as it is read.
pub fn select<L: Listing>(reader: Reader, listing: L) -> Result<JsonArray, StoreError> {
    let keys = reader.read(|conn| listing.keys(conn))?;
    let rows = Fetched {
        reader,
        listing,
        keys,
        fetched: 0,
    };
    Ok(JsonArray::new(Box::new(rows)))
}

/// A JSON array answer, encoded as it is read.
pub struct JsonArray {
    batches: Box<dyn Batches>,
    /// Encoded and not yet read.
    out: Vec<u8>,
    at: usize,
    /// Whether a row has been written (the next needs a comma).
    wrote_row: bool,
    /// Whether the closing `]` has been written.
    closed: bool,
}

impl JsonArray {
    fn new(batches: Box<dyn Batches>) -> JsonArray {
        JsonArray {
            batches,
            out: b"[".to_vec(),
            at: 0,
            wrote_row: false,
            closed: false,
        }
    }

    /// Encodes the next batch into `out`, or the closing `]` after the last.
    fn refill(&mut self) -> Result<(), StoreError> {
        self.out.clear();
        self.at = 0;
        let Some(rows) = self.batches.next_batch()? else {
            self.out.push(b']');
            self.closed = true;
            return Ok(());
        };
        for row in rows {
            if self.wrote_row {
                self.out.push(b',');
            }
            self.out.extend_from_slice(&row);
            self.wrote_row = true;
        }
        Ok(())
    }
}

impl Read for JsonArray {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if self.closed {
                return Ok(0);
            }
            if let Err(e) = self.refill() {
                // The status line is long gone: all the client can see is the cut. Nothing
                // more is sent, even if asked again.
                self.closed = true;
                self.out.clear();
                say!("list answer cut short: {}", e.message);
                return Err(io::Error::other(e.message));
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A listing's rows, fetched from the store a batch at a time.
struct Fetched<L: Listing> {
    reader: Reader,
    listing: L,
    keys: Vec<(String, u64)>,
    /// How many of `keys` have been fetched.
    fetched: usize,
}

impl<L: Listing> Batches for Fetched<L> {
    fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let rest = &self.keys[self.fetched..];
        if rest.is_empty() {
            return Ok(None);
        }
        let wanted = &rest[..batch_len(rest, BATCH_ROWS, BATCH_BYTES)];
        let (count, mut rows) = self.reader.read(|conn| {
            // One snapshot for the sizes and the rows.
            let snapshot = conn.unchecked_transaction()?;
            let now: HashMap<String, u64> = self
                .listing
                .sizes(&snapshot, &id_list(&keys_of(wanted)))?
                .into_iter()
                .collect();
            let sized: Vec<(String, u64)> = (wanted.iter())
                .map(|(key, _)| (key.clone(), now.get(key).copied().unwrap_or(0)))
                .collect();
            let count = batch_len(&sized, BATCH_ROWS, BATCH_BYTES);
            let rows = self
                .listing
                .rows(&snapshot, &id_list(&keys_of(&sized[..count])))?;
            Ok((count, rows.into_iter().collect::<HashMap<_, _>>()))
        })?;
        let encoded = rest[..count]
            .iter()
            .filter_map(|(key, _)| rows.remove(key))
            .map(|row| {
                serde_json::to_vec(&row)
                    .map_err(|e| StoreError::internal(format!("cannot encode a row: {e}")))
            })
            .collect::<Result<_, _>>()?;
        self.fetched += count;
        Ok(Some(encoded))
    }
}

fn keys_of(sized: &[(String, u64)]) -> Vec<&str> {
    sized.iter().map(|(key, _)| key.as_str()).collect()
}

/// `GET /tasks`: newest first, filtered by `TaskQuery`.
pub struct Tasks(pub TaskQuery);

/// The bytes of a task's stored text.
const TASK_BYTES: &str = "octet_length(title) + IFNULL(octet_length(context), 0)
    + IFNULL(octet_length(result), 0) + IFNULL(octet_length(files), 0)";

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
        let sql =
            format!("SELECT id, {TASK_BYTES} FROM tasks WHERE 1{filters} ORDER BY id DESC LIMIT ?");
        let limit = self.0.limit as i64;
        args.push(&limit);
        let mut stmt = conn.prepare_cached(&sql)?;
        stmt.query_map(args.as_slice(), key_row)?.collect()
    }

    fn sizes(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, u64)>> {
        let sql = format!(
            "SELECT id, {TASK_BYTES} FROM tasks WHERE id IN (SELECT value FROM json_each(?1))"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        stmt.query_map([keys], key_row)?.collect()
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

    fn sizes(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, u64)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, octet_length(channels) + octet_length(meta) FROM presence
             WHERE agent_id IN (SELECT value FROM json_each(?1))",
        )?;
        stmt.query_map([keys], key_row)?.collect()
    }

    fn rows(&self, conn: &Connection, keys: &str) -> rusqlite::Result<Vec<(String, Self::Row)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, last_seen, channels, meta FROM presence
             WHERE agent_id IN (SELECT value FROM json_each(?1)) AND last_seen > ?2",
        )?;
        let args: [&dyn ToSql; 2] = [&keys, &self.seen_after];
        stmt.query_map(args.as_slice(), |row| {
            let agent = Agent {
                agent_id: row.get(0)?,
                last_seen: row.get(1)?,
                channels: raw_json(row.get(2)?),
                meta: raw_json(row.get(3)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches given up front; each row is its number.
    struct Given(std::vec::IntoIter<Vec<u32>>);

    impl Batches for Given {
        fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
            let batch = self.0.next();
            Ok(batch.map(|rows| rows.iter().map(|n| n.to_string().into_bytes()).collect()))
        }
    }

    fn read_all(batches: Vec<Vec<u32>>) -> String {
        let mut array = JsonArray::new(Box::new(Given(batches.into_iter())));
        let mut text = String::new();
        array.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn rows_are_joined_by_commas_across_batches_and_empty_batches() {
        assert_eq!(read_all(vec![]), "[]");
        assert_eq!(read_all(vec![vec![], vec![]]), "[]");
        assert_eq!(read_all(vec![vec![1, 2], vec![3]]), "[1,2,3]");
        // A batch whose rows all stopped matching, and one whose first did.
        assert_eq!(read_all(vec![vec![1], vec![], vec![3, 4]]), "[1,3,4]");
        assert_eq!(read_all(vec![vec![], vec![2]]), "[2]");
    }

    struct Failing;

    impl Batches for Failing {
        fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
            Err(StoreError::internal("disk gone"))
        }
    }

    #[test]
    fn a_failed_batch_ends_the_answer_for_good() {
        let mut array = JsonArray::new(Box::new(Failing));
        let mut buf = [0u8; 16];
        assert_eq!(array.read(&mut buf).unwrap(), 1, "the opening bracket");
        assert!(array.read(&mut buf).is_err());
        assert_eq!(array.read(&mut buf).unwrap(), 0, "nothing after the cut");
    }
}
