//! Advisory locks with a TTL ("I am working on src/main.rs for ten minutes"). Acquire,
//! release and expiry run in the writer, so they cannot race, and each is announced on the
//! lock's channel in the same transaction. Expiry shares the task leases' wake-up: the
//! writer wakes at the soonest of both deadlines (`earliest`) and calls `expire`.
use super::clock::now;
use super::failure::StoreError;
use super::messages;
pub use super::protocol::{Lock, LockOp};
use super::protocol::{NewMessage, Written};
use super::read::Prefix;
use super::step::{SERVER_IDENTITY, Step};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde_json::{Value, json};

/// The channel lock announcements go to unless the acquirer names one.
pub const DEFAULT_CHANNEL: &str = "locks";

const COLUMNS: &str = "name, holder, note, ch, acquired_at, expires_at";

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Lock> {
    Ok(Lock {
        name: row.get(0)?,
        holder: row.get(1)?,
        note: row.get(2)?,
        ch: row.get(3)?,
        acquired_at: row.get(4)?,
        expires_at: row.get(5)?,
    })
}

pub(super) fn run(step: &mut Step, op: &LockOp) -> Result<Written, StoreError> {
    match op {
        LockOp::Acquire {
            from,
            name,
            ttl_s,
            note,
            ch,
        } => acquire(step, from, name, *ttl_s, note.as_deref(), ch.as_deref()),
        LockOp::Release { from, name } => release(step, from, name),
    }
}

fn acquire(
    step: &mut Step,
    from: &str,
    name: &str,
    ttl_s: f64,
    note: Option<&str>,
    ch: Option<&str>,
) -> Result<Written, StoreError> {
    let now = now();
    let held = match live_lock(step, name, now)? {
        Some(lock) if lock.holder != from => return Ok(Written::LockHeld(lock)),
        held => held,
    };
    let renewed = held.is_some();
    let lock = taken(held, from, name, (note, ch), (now, now + ttl_s));
    upsert(step, &lock)?;
    let body = json!({
        "name": name, "holder": from, "note": lock.note, "expires_at": lock.expires_at,
        "ttl_s": ttl_s, "renewed": renewed,
    });
    announce(step, &lock.ch, from, "lock.acquired", body)?;
    Ok(Written::LockTaken { lock, renewed })
}

/// The lock `from` takes at `now` until `expires_at`: a renewal keeps when it was first
/// taken, and without a note or channel, the ones it had.
fn taken(
    held: Option<Lock>,
    from: &str,
    name: &str,
    (note, ch): (Option<&str>, Option<&str>),
    (now, expires_at): (f64, f64),
) -> Lock {
    let (old_note, old_ch, acquired_at) = match held {
        Some(held) => (held.note, Some(held.ch), held.acquired_at),
        None => (None, None, now),
    };
    Lock {
        name: name.to_string(),
        holder: from.to_string(),
        note: note.map(str::to_string).or(old_note),
        ch: ch
            .map(str::to_string)
            .or(old_ch)
            .unwrap_or_else(|| DEFAULT_CHANNEL.to_string()),
        acquired_at,
        expires_at,
    }
}

fn upsert(step: &mut Step, lock: &Lock) -> Result<(), StoreError> {
    step.tx
        .prepare_cached(
            "INSERT INTO locks (name, holder, note, ch, acquired_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO UPDATE SET holder = ?2, note = ?3, ch = ?4,
             acquired_at = ?5, expires_at = ?6",
        )?
        .execute(params![
            lock.name,
            lock.holder,
            lock.note,
            lock.ch,
            lock.acquired_at,
            lock.expires_at
        ])?;
    step.effects.leases_changed = true;
    Ok(())
}

fn release(step: &mut Step, from: &str, name: &str) -> Result<Written, StoreError> {
    let lock = live_lock(step, name, now())?
        .ok_or_else(|| StoreError::not_found(format!("lock {name:?} is not held")))?;
    if lock.holder != from {
        return Err(StoreError::forbidden(format!(
            "lock {name:?} is held by {}, not {from}",
            lock.holder
        )));
    }
    delete(step, name)?;
    let body = json!({"name": name, "holder": from});
    announce(step, &lock.ch, from, "lock.released", body)?;
    Ok(Written::LockReleased {
        name: name.to_string(),
    })
}

/// The lock called `name` unless it has run out; one that has is expired here first, so its
/// expiry is announced before anything else happens to the name.
fn live_lock(step: &mut Step, name: &str, now: f64) -> Result<Option<Lock>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM locks WHERE name = ?1");
    let lock = step
        .tx
        .prepare_cached(&sql)?
        .query_row([name], from_row)
        .optional()?;
    match lock {
        Some(lock) if lock.expires_at <= now => {
            expire_one(step, &lock)?;
            Ok(None)
        }
        other => Ok(other),
    }
}

/// Removes every lock whose time has run out, announcing each as `lock.expired`.
pub(super) fn expire(step: &mut Step) -> Result<(), StoreError> {
    for lock in &run_out(step)? {
        expire_one(step, lock)?;
    }
    Ok(())
}

/// The locks whose time has run out, soonest first.
fn run_out(step: &Step) -> Result<Vec<Lock>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM locks WHERE expires_at <= ?1 ORDER BY expires_at");
    let mut stmt = step.tx.prepare_cached(&sql)?;
    let due = stmt.query_map([now()], from_row)?;
    Ok(due.collect::<rusqlite::Result<_>>()?)
}

fn expire_one(step: &mut Step, lock: &Lock) -> Result<(), StoreError> {
    delete(step, &lock.name)?;
    let body = json!({"name": lock.name, "holder": lock.holder, "note": lock.note,
                      "expired_at": lock.expires_at});
    announce(step, &lock.ch, SERVER_IDENTITY, "lock.expired", body)
}

fn delete(step: &mut Step, name: &str) -> Result<(), StoreError> {
    step.tx
        .prepare_cached("DELETE FROM locks WHERE name = ?1")?
        .execute([name])?;
    step.effects.leases_changed = true;
    Ok(())
}

fn announce(
    step: &mut Step,
    ch: &str,
    from: &str,
    kind: &str,
    body: Value,
) -> Result<(), StoreError> {
    messages::announce(step, &NewMessage::announcement(ch, from, kind, body))
}

/// When the soonest lock runs out (unix seconds), for the writer's wake-up.
pub(super) fn earliest(conn: &Connection) -> Option<f64> {
    conn.query_row("SELECT min(expires_at) FROM locks", [], |row| row.get(0))
        .ok()
        .flatten()
}

/// The first `limit` live locks (not yet run out) by name; with `prefix`, only names
/// starting with it. Each as the JSON the API answers, made straight from its row.
pub fn list(conn: &Connection, prefix: Option<&str>, limit: usize) -> rusqlite::Result<Vec<Value>> {
    let now = now();
    let limit = limit as i64;
    let mut sql = format!("SELECT {COLUMNS} FROM locks WHERE expires_at > ?");
    let mut args: Vec<&dyn ToSql> = vec![&now];
    let prefix = prefix.map(Prefix::new);
    if let Some(prefix) = &prefix {
        prefix.push("name", &mut sql, &mut args);
    }
    sql.push_str(" ORDER BY name LIMIT ?");
    args.push(&limit);
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(args.as_slice(), |row| Ok(json!(from_row(row)?)))?
        .collect()
}
