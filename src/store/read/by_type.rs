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
/// every message until `limit` match, all of it when the type is rare. `None` when the plan
/// does not apply.
pub(super) fn typed_ids(
    conn: &Connection,
    q: &MessageQuery,
    within: Option<(&str, &str)>,
) -> rusqlite::Result<Option<Vec<String>>> {
    let (Some(ch), Some(prefix)) = (&q.ch, &q.type_prefix) else {
        return Ok(None);
    };
    let Some(types) = types_under(conn, ch, prefix)? else {
        return Ok(None);
    };
    let mut ids = Vec::new();
    for kind in &types {
        ids.extend(ids_of_type(conn, q, within, kind)?);
    }
    ids.sort_unstable();
    let keep = ids.len().min(q.limit);
    if newest_first(q, within) {
        ids.drain(..ids.len() - keep);
    } else {
        ids.truncate(keep);
    }
    Ok(Some(ids))
}

/// The distinct types in channel `ch` that start with `prefix`, in order, one index seek
/// each; `None` past `MAX_TYPES`. Text compares bytewise in SQLite as in Rust, so the types
/// with a prefix are the ones from the prefix on that still start with it.
fn types_under(conn: &Connection, ch: &str, prefix: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let next = |op: &str, after: &str| -> rusqlite::Result<Option<String>> {
        conn.prepare_cached(&next_type_sql(op))?
            .query_row([ch, after], |row| row.get(0))
            .optional()
    };
    let mut types = Vec::new();
    let mut found = next(">=", prefix)?;
    while let Some(kind) = found.filter(|kind: &String| kind.starts_with(prefix)) {
        if types.len() == MAX_TYPES {
            return Ok(None);
        }
        found = next(">", &kind)?;
        types.push(kind);
    }
    Ok(Some(types))
}

/// The first `q.limit` ids of type `kind` in `q`'s channel, in `q`'s order, from the index.
fn ids_of_type(
    conn: &Connection,
    q: &MessageQuery,
    within: Option<(&str, &str)>,
    kind: &str,
) -> rusqlite::Result<Vec<String>> {
    let (mut sql, mut args) = (String::new(), Vec::new());
    let limit = q.limit as i64;
    ids_of_type_sql(q, &within, &kind, &limit, &mut sql, &mut args);
    conn.prepare_cached(&sql)?
        .query_map(args.as_slice(), |row| row.get(0))?
        .collect()
}

/// The first type in a channel after (`>`) or from (`>=`) a string.
fn next_type_sql(op: &str) -> String {
    format!(
        "SELECT type FROM messages INDEXED BY messages_by_type
         WHERE ch = ?1 AND type {op} ?2 ORDER BY type LIMIT 1"
    )
}

/// `ids_of_type`'s query and arguments.
fn ids_of_type_sql<'b>(
    q: &'b MessageQuery,
    within: &'b Option<(&'b str, &'b str)>,
    kind: &'b &'b str,
    limit: &'b i64,
    sql: &mut String,
    args: &mut Vec<&'b dyn ToSql>,
) {
    sql.push_str("SELECT id FROM messages INDEXED BY messages_by_type WHERE ch = ? AND type = ?");
    args.push(&q.ch);
    args.push(kind);
    push_id_bounds(q, within, limit, sql, args);
}

#[cfg(test)]
mod tests {
    use super::super::{MessageQuery, index_row, scan_messages, select_messages};
    use crate::store::schema;
    use rusqlite::Connection;

    /// 300 messages over two channels: `task.created` 1 in 30, `review.asked` and
    /// `review.done` 1 in 10 each, the rest `msg.text`, `msg.note` or one of 70 `many.N`.
    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        schema::migrate_to(&conn, schema::VERSION).unwrap();
        let mut insert = conn
            .prepare("INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for i in 0..300 {
            let kind = match i % 30 {
                0 => "task.created".to_string(),
                1..=3 => "review.asked".into(),
                4..=6 => "review.done".into(),
                7..=16 => format!("many.{}", i % 70),
                k if k % 2 == 0 => "msg.text".into(),
                _ => "msg.note".into(),
            };
            let id = format!("01{i:04}");
            let ch = ["a", "b"][i % 7 % 2];
            insert.execute([&id, ch, &kind, &"x".repeat(i)]).unwrap();
        }
        drop(insert);
        conn
    }

    fn both(conn: &Connection, q: &MessageQuery, within: Option<(&str, &str)>) {
        let cols = "id, octet_length(envelope)";
        let typed = select_messages(conn, q, cols, within, index_row).unwrap();
        let scanned = scan_messages(conn, q, cols, within, index_row).unwrap();
        assert_eq!(typed, scanned, "{q:?} within {within:?}");
    }

    /// Whatever the prefix, page size, bounds and order, the index plan answers what the
    /// channel scan answers.
    #[test]
    fn the_type_index_answers_what_the_channel_scan_answers() {
        let conn = store();
        let prefixes = [
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
        for prefix in prefixes {
            for (since, before, within) in [
                (None, None, None),
                (Some("010050"), None, None),
                (None, Some("010200"), None),
                (Some("010010"), Some("010250"), None),
                (None, None, Some(("010020", "010180"))),
            ] {
                for limit in [1, 7, 50, 1000] {
                    let q = MessageQuery {
                        ch: Some("a".into()),
                        since: since.map(String::from),
                        before: before.map(String::from),
                        type_prefix: Some(prefix.into()),
                        limit,
                    };
                    both(&conn, &q, within);
                }
            }
        }
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

    /// Each step is a seek into the index, none sorts, and the channel scan keeps
    /// `messages_by_channel`.
    #[test]
    fn the_plans_seek_and_do_not_sort() {
        let conn = store();
        let next = plan(&conn, &super::next_type_sql(">"), &[&"a", &"task."]);
        assert_eq!(
            next,
            "SEARCH messages USING COVERING INDEX messages_by_type (ch=? AND type>?)"
        );
        let q = MessageQuery {
            ch: Some("a".into()),
            before: Some("010200".into()),
            type_prefix: Some("task.".into()),
            limit: 200,
            ..MessageQuery::default()
        };
        let mut sql = String::new();
        let mut args = Vec::new();
        let limit = 200;
        super::ids_of_type_sql(&q, &None, &"task.created", &limit, &mut sql, &mut args);
        let walk = plan(&conn, &sql, &args);
        assert_eq!(
            walk,
            "SEARCH messages USING COVERING INDEX messages_by_type (ch=? AND type=? AND id<?)"
        );
        // The page is then read by primary key, already in order.
        let fetch = "SELECT id, octet_length(envelope) FROM messages
                     WHERE id IN (SELECT value FROM json_each('[]')) ORDER BY id";
        assert!(!plan(&conn, fetch, &[]).contains("TEMP B-TREE"));
        // The channel scan (no type, or too many types) keeps walking the channel in order.
        let scan = "SELECT id FROM messages WHERE 1 AND ch = 'a' AND substr(type, 1, 5) = 'task.'
                    ORDER BY id DESC LIMIT 200";
        assert_eq!(
            plan(&conn, scan, &[]),
            "SEARCH messages USING INDEX messages_by_channel (ch=?)"
        );
    }
}
