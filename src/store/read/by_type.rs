//! History by type in a channel, through the `messages_by_type` index `(ch, type, id)`.
use super::{MessageQuery, newest_first, push_id_bounds};
use rusqlite::{Connection, OptionalExtension, ToSql};

/// Most distinct types under one prefix in a channel that `typed_ids` walks one by one; past
/// it, the channel scan answers (types are a small vocabulary in practice: `task.created`,
/// `review.done`, ...).
const MAX_TYPES: usize = 64;

/// The ids `q` selects, oldest first, when it has a channel and a type prefix: for each
/// distinct type under the prefix, the first `limit` ids of that type in the wanted order
/// (one seek and a short walk of the `(ch, type, id)` index each), merged. Costs the number of
/// types times the page, whatever share of the channel matches: a channel scan instead reads
/// every message until `limit` match, all of it when the type is rare. Holds at most two
/// pages of ids at a time. `None` when the plan does not apply.
pub(super) fn typed_ids(
    conn: &Connection,
    q: &MessageQuery,
) -> rusqlite::Result<Option<Vec<String>>> {
    let (Some(ch), Some(prefix)) = (&q.ch, &q.type_prefix) else {
        return Ok(None);
    };
    let Some(types) = types_under(conn, ch, prefix)? else {
        return Ok(None);
    };
    let mut ids = Vec::new();
    for kind in &types {
        ids.extend(ids_of_type(conn, q, kind)?);
        ids = page(ids, q.limit, newest_first(q, None));
    }
    Ok(Some(ids))
}

/// The `limit` newest (or oldest) of `ids`, oldest first.
fn page(mut ids: Vec<String>, limit: usize, newest: bool) -> Vec<String> {
    ids.sort_unstable();
    let keep = ids.len().min(limit);
    if newest {
        ids.drain(..ids.len() - keep);
    } else {
        ids.truncate(keep);
    }
    ids
}

/// The distinct types in channel `ch` that start with `prefix`, in order, one index seek
/// each; `None` past `MAX_TYPES`. Text compares bytewise in SQLite as in Rust, so the types
/// with a prefix are the ones from the prefix on that still start with it.
fn types_under(conn: &Connection, ch: &str, prefix: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let mut types = Vec::new();
    let mut found = next_type(conn, ch, ">=", prefix)?;
    while let Some(kind) = found.filter(|kind: &String| kind.starts_with(prefix)) {
        if types.len() == MAX_TYPES {
            return Ok(None);
        }
        found = next_type(conn, ch, ">", &kind)?;
        types.push(kind);
    }
    Ok(Some(types))
}

/// The first type in channel `ch` after (`op` `>`) or from (`>=`) `after`.
fn next_type(
    conn: &Connection,
    ch: &str,
    op: &str,
    after: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(&next_type_sql(op))?
        .query_row([ch, after], |row| row.get(0))
        .optional()
}

/// The first `q.limit` ids of type `kind` in `q`'s channel, in `q`'s order, from the index.
fn ids_of_type(conn: &Connection, q: &MessageQuery, kind: &str) -> rusqlite::Result<Vec<String>> {
    let (mut sql, mut args) = (String::new(), Vec::new());
    let limit = q.limit as i64;
    ids_of_type_sql(q, &kind, &limit, &mut sql, &mut args);
    conn.prepare_cached(&sql)?
        .query_map(args.as_slice(), |row| row.get(0))?
        .collect()
}

/// `next_type`'s query.
fn next_type_sql(op: &str) -> String {
    format!(
        "SELECT type FROM messages INDEXED BY messages_by_type
         WHERE ch = ?1 AND type {op} ?2 ORDER BY type LIMIT 1"
    )
}

/// `ids_of_type`'s query and arguments.
fn ids_of_type_sql<'b>(
    q: &'b MessageQuery,
    kind: &'b &'b str,
    limit: &'b i64,
    sql: &mut String,
    args: &mut Vec<&'b dyn ToSql>,
) {
    sql.push_str("SELECT id FROM messages INDEXED BY messages_by_type WHERE ch = ? AND type = ?");
    args.push(&q.ch);
    args.push(kind);
    push_id_bounds(q, &None, limit, sql, args);
}

#[cfg(test)]
mod tests {
    use super::super::{MessageQuery, index_row, scan_messages, select_messages};
    use crate::store::schema;
    use rusqlite::Connection;

    /// The type of the `i`th test message: `task.created` 1 in 30, `review.asked` and
    /// `review.done` 1 in 10 each, a third `many.<i>` (more types than `MAX_TYPES`), the
    /// rest `msg.text` or `msg.note`.
    fn kind(i: usize) -> String {
        match i % 30 {
            0 => "task.created".to_string(),
            1..=3 => "review.asked".into(),
            4..=6 => "review.done".into(),
            7..=16 => format!("many.{i}"),
            k if k % 2 == 0 => "msg.text".into(),
            _ => "msg.note".into(),
        }
    }

    /// 600 messages of `kind`s over channels `a` and `b`, ids `010000`…`010599`.
    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        schema::migrate_to(&conn, schema::VERSION).unwrap();
        let sql = "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, ?3, ?4)";
        for i in 0..600 {
            let values = [format!("01{i:04}"), ["a", "b"][i % 7 % 2].into(), kind(i)];
            conn.execute(sql, [&values[0], &values[1], &values[2], &"x".repeat(i)])
                .unwrap();
        }
        conn
    }

    fn both(conn: &Connection, q: &MessageQuery) {
        let cols = "id, octet_length(envelope)";
        let typed = select_messages(conn, q, cols, index_row).unwrap();
        let scanned = scan_messages(conn, q, cols, None, index_row).unwrap();
        assert_eq!(typed, scanned, "{q:?}");
    }

    const PREFIXES: [&str; 10] = [
        "task.",
        "task.created",
        "review.",
        "msg.",
        "msg.text",
        "m",
        "many.",
        "",
        "zzz",
        "review.done.x",
    ];

    /// `since` and `before` of each shape of query.
    type Bounds = (Option<&'static str>, Option<&'static str>);
    const BOUNDS: [Bounds; 4] = [
        (None, None),
        (Some("010050"), None),
        (None, Some("010400")),
        (Some("010010"), Some("010500")),
    ];

    fn query(prefix: &str, (since, before): Bounds, limit: usize) -> MessageQuery {
        MessageQuery {
            ch: Some("a".into()),
            since: since.map(String::from),
            before: before.map(String::from),
            type_prefix: Some(prefix.into()),
            limit,
        }
    }

    /// Whatever the prefix, page size, bounds and order, the index plan answers what the
    /// channel scan answers.
    #[test]
    fn the_type_index_answers_what_the_channel_scan_answers() {
        let conn = store();
        for (prefix, bounds) in PREFIXES.iter().flat_map(|p| BOUNDS.map(|b| (p, b))) {
            for limit in [1, 7, 50, 1000] {
                both(&conn, &query(prefix, bounds, limit));
            }
        }
    }

    /// Past `MAX_TYPES` types under the prefix, the channel scan answers.
    #[test]
    fn many_types_under_a_prefix_are_left_to_the_scan() {
        let conn = store();
        let typed = |prefix| super::typed_ids(&conn, &query(prefix, BOUNDS[0], 10));
        assert!(typed("many.").unwrap().is_none());
        assert_eq!(typed("review.").unwrap().unwrap().len(), 10);
    }

    fn plan(conn: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> String {
        let rows: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(args, |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows.join("; ")
    }

    /// Finding the next type and walking one are seeks into the index, neither sorts.
    #[test]
    fn the_index_steps_seek_and_do_not_sort() {
        let conn = store();
        let next = plan(&conn, &super::next_type_sql(">"), &[&"a", &"task."]);
        let want = "SEARCH messages USING COVERING INDEX messages_by_type (ch=? AND type>?)";
        assert_eq!(next, want);
        let q = query("task.", BOUNDS[2], 200);
        let (mut sql, mut args, limit) = (String::new(), Vec::new(), 200);
        super::ids_of_type_sql(&q, &"task.created", &limit, &mut sql, &mut args);
        let want =
            "SEARCH messages USING COVERING INDEX messages_by_type (ch=? AND type=? AND id<?)";
        assert_eq!(plan(&conn, &sql, &args), want);
    }

    /// The page is then read by primary key, already in order; the channel scan (no type, or
    /// too many types) keeps walking `messages_by_channel` in order.
    #[test]
    fn the_page_and_the_scan_keep_their_plans() {
        let conn = store();
        let fetch = "SELECT id, octet_length(envelope) FROM messages
                     WHERE id IN (SELECT value FROM json_each('[]')) ORDER BY id";
        assert!(!plan(&conn, fetch, &[]).contains("TEMP B-TREE"));
        let scan = "SELECT id FROM messages WHERE 1 AND ch = 'a' AND substr(type, 1, 5) = 'task.'
                    ORDER BY id DESC LIMIT 200";
        assert_eq!(
            plan(&conn, scan, &[]),
            "SEARCH messages USING INDEX messages_by_channel (ch=?)"
        );
    }
}
