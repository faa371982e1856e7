//! Idempotency keys: the first successful reply to a keyed request is kept for 24 hours per
//! (`from`, key), and a repeat gets that reply instead of running again. Check and store run
//! in the writer, in the request's own savepoint, so concurrent repeats cannot both run.
use super::clock::now;
use super::failure::{Failure, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

/// How long a key is remembered.
pub const KEEP_S: f64 = 24.0 * 3600.0;

/// A request's key: who sent it, the key, and a digest of what was asked (route and body).
#[derive(Debug, Clone)]
pub struct Key {
    pub from: String,
    pub key: String,
    pub fingerprint: String,
}

/// The reply kept for a key: made by the caller from what the first request wrote (a status
/// and body for HTTP); the store keeps it and gives it back without reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub status: u16,
    pub body: Value,
}

/// The first reply to `key`, if it is remembered; refused if the key came with another
/// request.
pub fn recall(tx: &Transaction, key: &Key) -> Result<Option<Kept>, StoreError> {
    let Some((fingerprint, status, body)) = first_use(tx, key)? else {
        return Ok(None);
    };
    if fingerprint != key.fingerprint {
        let (key, from) = (&key.key, &key.from);
        let message =
            format!("Idempotency-Key {key:?} was already used by {from:?} for a different request");
        return Err(StoreError::new(Failure::KeyReused, message));
    }
    let body = serde_json::from_str(&body)
        .map_err(|e| StoreError::internal(format!("stored reply is not JSON: {e}")))?;
    Ok(Some(Kept { status, body }))
}

/// The fingerprint, status and body (JSON) kept for `key`, unless expired.
fn first_use(tx: &Transaction, key: &Key) -> rusqlite::Result<Option<(String, u16, String)>> {
    let sql = "SELECT fingerprint, status, body FROM idempotency_keys
               WHERE sender = ?1 AND key = ?2 AND expires_at > ?3";
    let args = params![key.from, key.key, now()];
    let row = |row: &rusqlite::Row| Ok((row.get(0)?, row.get(1)?, row.get(2)?));
    tx.prepare_cached(sql)?.query_row(args, row).optional()
}

/// Whether a reply to `key` is remembered (whatever request it came with): a cheap read-only
/// look, so a retry can skip the loop guard. The writer still recalls it atomically.
pub fn is_remembered(conn: &Connection, key: &Key) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM idempotency_keys WHERE sender = ?1 AND key = ?2 AND expires_at > ?3",
    )?
    .query_row(params![key.from, key.key, now()], |_| Ok(()))
    .optional()
    .map(|row| row.is_some())
}

/// Keeps `kept` as the reply to `key` (replacing an expired use of the same key).
pub fn remember(tx: &Transaction, key: &Key, kept: &Kept) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO idempotency_keys
         (sender, key, fingerprint, status, body, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        key.from,
        key.key,
        key.fingerprint,
        kept.status,
        kept.body.to_string(),
        now() + KEEP_S
    ])?;
    Ok(())
}

/// Drops expired keys (run with retention).
pub fn forget_expired(tx: &Transaction) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM idempotency_keys WHERE expires_at <= ?1",
        [now()],
    )?;
    Ok(())
}
