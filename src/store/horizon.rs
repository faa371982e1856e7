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
    tx.execute(
        "INSERT INTO pruned (ch, through)
         SELECT ch, max(id) FROM messages WHERE id < ?1 GROUP BY ch
         ON CONFLICT (ch) DO UPDATE SET through = max(through, excluded.through)",
        [cutoff],
    )?;
    Ok(())
}

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
