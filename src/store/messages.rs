//! Messages in the writer: insert one (with its channel and inbox rows; its search entry
//! follows, see `unindexed`), post
//! the server's own announcements, and prune by age.
use super::clock::now_ms;
use super::failure::StoreError;
use super::protocol::{NewMessage, Written};
use super::search::SearchDoc;
use super::step::Step;
use crate::hub::Event;
use rusqlite::params;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use ulid::Ulid;

/// The envelope exactly as stored and sent; field order is the documented one.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    ts: f64,
    from: &'a str,
    ch: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    v: i64,
    body: &'a Value,
    files: &'a [String],
    reply_to: Option<&'a str>,
    /// Last, and left out when absent, so envelopes without it are what they always were.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a Value>,
}

impl<'a> Envelope<'a> {
    fn of(m: &'a NewMessage, id: &'a str, ts: f64) -> Envelope<'a> {
        Envelope {
            id,
            ts,
            from: &m.from,
            ch: &m.ch,
            kind: &m.kind,
            v: m.v,
            body: &m.body,
            files: &m.files,
            reply_to: m.reply_to.as_deref(),
            to: m.to.as_ref(),
        }
    }
}

/// Stores `m` with a new id; its id and timestamp.
pub(super) fn insert(step: &mut Step, m: &NewMessage) -> Result<(String, f64), StoreError> {
    let (id, ts) = stamp(step);
    let envelope = encode(m, &id, ts)?;
    insert_rows(step, m, &id, &envelope)?;
    let doc = SearchDoc::new(&id, &m.kind, &m.from, &m.ch, &m.body);
    step.effects.search_docs.push(doc);
    step.effects.messages_delta += 1;
    step.effects.events.push(Arc::new(event(m, &id, &envelope)));
    Ok((id, ts))
}

/// A new message's id and timestamp.
fn stamp(step: &mut Step) -> (String, f64) {
    let ulid = step.next_id();
    // The timestamp is the id's: monotonic with the ids and exact to the millisecond.
    let ts = ulid.timestamp_ms() as f64 / 1000.0;
    (ulid.to_string(), ts)
}

/// The envelope of `m` as stored and sent: its JSON text.
fn encode(m: &NewMessage, id: &str, ts: f64) -> Result<String, StoreError> {
    serde_json::to_string(&Envelope::of(m, id, ts))
        .map_err(|e| StoreError::internal(format!("cannot encode message: {e}")))
}

/// What the hub sends for the stored message.
fn event(m: &NewMessage, id: &str, envelope: &str) -> Event {
    let mut event = Event::new(id.to_string(), m.ch.clone(), m.kind.clone(), envelope);
    event.recipients = m.recipients.clone();
    event
}

/// The message's row, its channel and its recipients' inbox rows.
fn insert_rows(step: &Step, m: &NewMessage, id: &str, envelope: &str) -> Result<(), StoreError> {
    step.tx
        .prepare_cached(
            "INSERT INTO messages (id, ch, type, envelope, reply_to)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, m.ch, m.kind, envelope, m.reply_to])?;
    step.tx
        .prepare_cached("INSERT OR IGNORE INTO channels (name) VALUES (?1)")?
        .execute([&m.ch])?;
    super::turns::insert_recipients(step.tx, id, &m.recipients)?;
    Ok(())
}

/// Posts a message the server makes about a change (a task or lock transition), in the
/// change's transaction.
pub(super) fn announce(step: &mut Step, message: &NewMessage) -> Result<(), StoreError> {
    insert(step, message).map(|_| ())
}

/// Retention: deletes messages older than `retention_days` (0 keeps them), presence rows
/// older than a week and expired idempotency keys.
pub(super) fn prune(step: &mut Step, retention_days: u64) -> Result<Written, StoreError> {
    let now_ms = now_ms();
    let deleted = if retention_days > 0 {
        // Ids start with their millisecond, so "older than" is a range of the primary key.
        let cutoff_ms = now_ms.saturating_sub(retention_days.saturating_mul(86_400_000));
        delete_before(step, &Ulid::from_parts(cutoff_ms, 0).to_string())?
    } else {
        0
    };
    forget_presence_before(step, (now_ms as f64 / 1000.0) - 7.0 * 86_400.0)?;
    super::idempotency::forget_expired(step.tx)?;
    step.effects.messages_delta -= deleted as i64;
    Ok(Written::Pruned { deleted })
}

/// Deletes the messages before id `cutoff` and what hangs on them; how many.
fn delete_before(step: &Step, cutoff: &str) -> Result<usize, StoreError> {
    super::horizon::record(step.tx, cutoff)?;
    let deleted = step
        .tx
        .execute("DELETE FROM messages WHERE id < ?1", [cutoff])?;
    super::turns::prune(step.tx, cutoff)?;
    super::search::prune(step.tx, cutoff)?;
    if deleted > 0 {
        step.tx.execute(
            "DELETE FROM channels WHERE NOT EXISTS
             (SELECT 1 FROM messages WHERE messages.ch = channels.name)",
            [],
        )?;
    }
    Ok(deleted)
}

/// Drops the presence of agents last seen before `cutoff` (unix seconds).
fn forget_presence_before(step: &Step, cutoff: f64) -> Result<(), StoreError> {
    let sql = "DELETE FROM presence WHERE last_seen < ?1";
    step.tx.execute(sql, [cutoff])?;
    Ok(())
}
