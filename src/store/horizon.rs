//! The prune horizon: per channel, the greatest message id retention has deleted. A replay
//! that starts before it has a hole, which the API then says instead of leaving it silent.
use rusqlite::{Connection, OptionalExtension, Transaction};

/// A replay that starts before what retention kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The id the client asked to resume after.
    pub since: String,
    /// The oldest message still stored (on the channel asked for); `None` if none is.
    pub oldest: Option<String>,
}

/// Records, before retention deletes every message with an id below `cutoff`, the greatest
/// one of each channel.
pub fn record(tx: &Transaction, cutoff: &str) -> rusqlite::Result<()> {
    tx.execute(RECORD, [cutoff])?;
    Ok(())
}

/// `+ch`: grouping by the plain column made SQLite walk all of `messages_by_channel` (it
/// is ordered by channel) on every prune; the unary plus keeps that index out, so this is a
/// primary-key range search over the deleted ids alone, grouped in a temporary b-tree
/// (86 us instead of 10 ms at 300k messages, retention deleting few). See the test below.
const RECORD: &str = "INSERT INTO pruned (ch, through)
         SELECT ch, max(id) FROM messages WHERE id < ?1 GROUP BY +ch
         ON CONFLICT (ch) DO UPDATE SET through = max(through, excluded.through)";

/// The gap a replay after `since` on `ch` (or every channel) would have, if any.
pub fn gap(conn: &Connection, ch: Option<&str>, since: &str) -> rusqlite::Result<Option<Gap>> {
    let through: Option<String> = match ch {
        Some(ch) => conn
            .prepare_cached("SELECT through FROM pruned WHERE ch = ?1")?
            .query_row([ch], |row| row.get(0))
            .optional()?,
        None => conn
            .prepare_cached("SELECT max(through) FROM pruned")?
            .query_row([], |row| row.get(0))?,
    };
    if through.is_none_or(|through| through.as_str() <= since) {
        return Ok(None);
    }
    let oldest: Option<String> = match ch {
        Some(ch) => conn
            .prepare_cached("SELECT min(id) FROM messages WHERE ch = ?1")?
            .query_row([ch], |row| row.get(0))?,
        None => conn
            .prepare_cached("SELECT min(id) FROM messages")?
            .query_row([], |row| row.get(0))?,
    };
    Ok(Some(Gap {
        since: since.to_string(),
        oldest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_searches_the_primary_key_for_the_deleted_range_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate_to(&conn, super::super::schema::VERSION).unwrap();
        let select = &RECORD[RECORD.find("SELECT").unwrap()..RECORD.find("ON CONFLICT").unwrap()];
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {select}"))
            .unwrap()
            .query_map(["01ZZ"], |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(
            plan.contains("SEARCH messages USING PRIMARY KEY (id<?)"),
            "{plan}"
        );
        assert!(!plan.contains("messages_by_channel"), "{plan}");
        // And it records the greatest deleted id of each channel.
        conn.execute_batch(
            "INSERT INTO messages (id, ch, type, envelope) VALUES
             ('01A', 'a', 't', '{}'), ('01B', 'b', 't', '{}'), ('01C', 'a', 't', '{}'),
             ('01D', 'b', 't', '{}');",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        record(&tx, "01D").unwrap();
        tx.commit().unwrap();
        let pruned: Vec<(String, String)> = conn
            .prepare("SELECT ch, through FROM pruned ORDER BY ch")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            pruned,
            [("a".into(), "01C".into()), ("b".into(), "01B".into())]
        );
    }
}
