//! Queries, run on read-only connections (and by the writer at start-up).
use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use serde::Serialize;
use serde_json::value::RawValue;
use ulid::Ulid;

mod by_type;
use by_type::typed_ids;

/// Which messages a history page or an SSE replay wants.
#[derive(Debug, Default, Clone)]
pub struct MessageQuery {
    pub ch: Option<String>,
    /// Only ids after this one, oldest first (paging forward).
    pub since: Option<String>,
    /// Only ids before this one.
    pub before: Option<String>,
    /// Literal prefix of `type`.
    pub type_prefix: Option<String>,
    pub limit: usize,
}

/// Message ids and their envelope sizes in bytes, in the order an answer sends them: enough
/// to size an answer and to fetch it in batches (see `batches`), without holding every
/// envelope at once.
pub type Index = Vec<(String, u64)>;

/// One entry of an `Index` from a row of `id, octet_length(envelope)` (octet_length reads the
/// size from the record header, not the overflow text).
pub(super) fn index_row(row: &Row) -> rusqlite::Result<(String, u64)> {
    Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64))
}

/// `(id, envelope)` of a row selected as `id, envelope`.
fn envelope_row(row: &Row) -> rusqlite::Result<(String, String)> {
    Ok((row.get(0)?, row.get(1)?))
}

/// A literal prefix of a text column, as a query filter: substr, not LIKE, so `%` and `_` in
/// it are literal characters.
pub(super) struct Prefix<'a> {
    /// In characters, as SQLite's substr counts them.
    len: i64,
    text: &'a str,
}

impl<'a> Prefix<'a> {
    pub(super) fn new(text: &'a str) -> Prefix<'a> {
        Prefix {
            len: text.chars().count() as i64,
            text,
        }
    }

    /// Appends ` AND substr(column, 1, len) = prefix` to `sql`, and its two arguments.
    pub(super) fn push<'b>(
        &'b self,
        column: &str,
        sql: &mut String,
        args: &mut Vec<&'b dyn ToSql>,
    ) {
        sql.push_str(&format!(" AND substr({column}, 1, ?) = ?"));
        args.push(&self.len);
        args.push(&self.text);
    }
}

/// The index of the messages `q` selects, oldest first.
pub fn message_index(conn: &Connection, q: &MessageQuery) -> rusqlite::Result<Index> {
    select_messages(conn, q, "id, octet_length(envelope)", index_row)
}

/// `(id, envelope)` of the messages `q` selects whose ids lie from `first` to `last` (both
/// included), oldest first: a stretch of a `message_index`, in one range scan. Only for a
/// query without a type prefix (`batches` fetches a typed page by its ids).
pub fn messages_between(
    conn: &Connection,
    q: &MessageQuery,
    first: &str,
    last: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    scan_messages(conn, q, "id, envelope", Some((first, last)), envelope_row)
}

/// `(id, envelope)` of the stored messages among `ids`, in no particular order (a missing one
/// is left out): a stretch of an index in any order, one primary-key lookup each.
pub fn messages_by_ids(conn: &Connection, ids: &[&str]) -> rusqlite::Result<Vec<(String, String)>> {
    let ids = id_list(ids);
    conn.prepare_cached(
        "SELECT id, envelope FROM messages WHERE id IN (SELECT value FROM json_each(?1))",
    )?
    .query_map([ids], envelope_row)?
    .collect()
}

/// `ids` as the one parameter of `IN (SELECT value FROM json_each(?))`: a JSON array, not `?`
/// per id, so one cached statement serves whatever the count.
pub(crate) fn id_list<S: serde::Serialize>(ids: &[S]) -> String {
    serde_json::to_string(ids).expect("strings serialize")
}

/// `columns` of the messages `q` selects, oldest first. A type prefix in a channel is
/// answered through `messages_by_type` (see `typed_ids`); anything else walks the channel (or
/// all messages) in id order.
pub(super) fn select_messages<T>(
    conn: &Connection,
    q: &MessageQuery,
    columns: &str,
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    match typed_ids(conn, q)? {
        Some(ids) => rows_by_ids(conn, columns, &ids, map),
        None => scan_messages(conn, q, columns, None, map),
    }
}

/// `columns` of the messages `ids`, oldest first.
fn rows_by_ids<T>(
    conn: &Connection,
    columns: &str,
    ids: &[String],
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let ids = id_list(ids);
    let sql = format!(
        "SELECT {columns} FROM messages WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
    );
    conn.prepare_cached(&sql)?.query_map([ids], map)?.collect()
}

/// Whether `q` wants the newest of what it selects (then shown oldest first), rather than the
/// oldest: paging forward (`since`) or reading a range (`within`) wants the oldest.
fn newest_first(q: &MessageQuery, within: Option<(&str, &str)>) -> bool {
    q.since.is_none() && within.is_none()
}

/// Appends `q`'s id conditions (`since`, `before`, the `within` range), its order and its
/// limit to `sql`, and their arguments.
fn push_id_bounds<'b>(
    q: &'b MessageQuery,
    within: &'b Option<(&'b str, &'b str)>,
    limit: &'b i64,
    sql: &mut String,
    args: &mut Vec<&'b dyn ToSql>,
) {
    push_id_conditions(q, within, sql, args);
    sql.push_str(if newest_first(q, *within) {
        " ORDER BY id DESC LIMIT ?"
    } else {
        " ORDER BY id ASC LIMIT ?"
    });
    args.push(limit);
}

/// Appends `q`'s id conditions (`since`, `before`, the `within` range) to `sql`, and their
/// arguments.
fn push_id_conditions<'b>(
    q: &'b MessageQuery,
    within: &'b Option<(&'b str, &'b str)>,
    sql: &mut String,
    args: &mut Vec<&'b dyn ToSql>,
) {
    if let Some(since) = &q.since {
        sql.push_str(" AND id > ?");
        args.push(since);
    }
    if let Some(before) = &q.before {
        sql.push_str(" AND id < ?");
        args.push(before);
    }
    if let Some((first, last)) = within {
        sql.push_str(" AND id >= ? AND id <= ?");
        args.push(first);
        args.push(last);
    }
}

/// `q` answered by walking the channel's (or every) message in id order, filtering as it goes.
fn scan_messages<T>(
    conn: &Connection,
    q: &MessageQuery,
    columns: &str,
    within: Option<(&str, &str)>,
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut sql = format!("SELECT {columns} FROM messages WHERE 1");
    let mut args: Vec<&dyn ToSql> = Vec::new();
    if let Some(ch) = &q.ch {
        sql.push_str(" AND ch = ?");
        args.push(ch);
    }
    let prefix = q.type_prefix.as_deref().map(Prefix::new);
    if let Some(prefix) = &prefix {
        prefix.push("type", &mut sql, &mut args);
    }
    let limit = q.limit as i64;
    push_id_bounds(q, &within, &limit, &mut sql, &mut args);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<T> = stmt
        .query_map(args.as_slice(), map)?
        .collect::<rusqlite::Result<_>>()?;
    if newest_first(q, within) {
        rows.reverse();
    }
    Ok(rows)
}

pub fn channels(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM channels ORDER BY name")?;
    stmt.query_map([], |row| row.get(0))?.collect()
}

/// A task as the API shows it, keys in the documented order.
#[derive(Debug, Serialize)]
pub struct Task {
    pub id: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub created_by: String,
    pub assigned_to: Option<String>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<f64>,
    pub status: String,
    pub title: String,
    pub context: Box<RawValue>,
    pub result: Box<RawValue>,
    pub files: Box<RawValue>,
    pub ch: String,
    pub priority: i64,
    pub not_before: Option<f64>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_expires_at: Option<f64>,
    /// How many times it has been claimed; while claimed, the claim's number.
    pub claims: i64,
}

pub(super) const TASK_COLUMNS: &str = "id, created_at, updated_at, created_by, assigned_to, claimed_by, \
    claimed_at, status, title, context, result, files, ch, priority, not_before, attempts, \
    max_attempts, lease_expires_at, claims";

/// A stored JSON column as it is, unparsed (it is only ever sent on); `null` when absent or
/// not JSON.
pub(super) fn raw_json(text: Option<String>) -> Box<RawValue> {
    text.and_then(|t| RawValue::from_string(t).ok())
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"))
}

pub(super) fn task_from_row(row: &Row) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        created_at: row.get(1)?,
        updated_at: row.get(2)?,
        created_by: row.get(3)?,
        assigned_to: row.get(4)?,
        claimed_by: row.get(5)?,
        claimed_at: row.get(6)?,
        status: row.get(7)?,
        title: row.get(8)?,
        context: raw_json(row.get(9)?),
        result: raw_json(row.get(10)?),
        files: raw_json(row.get(11)?),
        ch: row.get(12)?,
        priority: row.get(13)?,
        not_before: row.get(14)?,
        attempts: row.get(15)?,
        max_attempts: row.get(16)?,
        lease_expires_at: row.get(17)?,
        claims: row.get(18)?,
    })
}

pub fn task(conn: &Connection, id: &str) -> rusqlite::Result<Option<Task>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], task_from_row)
        .optional()
}

#[derive(Debug, Default)]
pub struct TaskQuery {
    pub status: Option<String>,
    /// Assigned to or claimed by this agent.
    pub agent: Option<String>,
    pub ch: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Serialize)]
pub struct Agent {
    pub agent_id: String,
    pub last_seen: f64,
    pub channels: Box<RawValue>,
    pub meta: Box<RawValue>,
}

pub fn agents_live(conn: &Connection, seen_after: f64) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM presence WHERE last_seen > ?1")?
        .query_row([seen_after], |row| row.get(0))
}

/// Row counts at start-up; afterwards the writer keeps them.
pub fn counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let count = |table: &str| -> rusqlite::Result<u64> {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = conn.query_row(&sql, [], |row| row.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok((count("messages")?, count("tasks")?))
}

/// The greatest id ever handed out that is still stored, so new ids sort after it.
pub fn greatest_id(conn: &Connection) -> rusqlite::Result<Option<Ulid>> {
    let greatest: Option<String> = conn.query_row(
        "SELECT max(id) FROM (SELECT max(id) AS id FROM messages UNION ALL
         SELECT max(id) FROM tasks)",
        [],
        |row| row.get(0),
    )?;
    Ok(greatest.and_then(|id| Ulid::from_string(&id).ok()))
}
