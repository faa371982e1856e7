//! The one place store results become HTTP: a `Written` becomes a status and body, a
//! `StoreError` an `ApiError`.
use crate::error::ApiError;
use crate::http::Reply;
use crate::store::idempotency::Kept;
use crate::store::locks::Lock;
use crate::store::{Failure, StoreError, Written};
use serde_json::{Value, json};

/// The reply to a change the store made.
pub fn reply(written: Written) -> Reply {
    match written {
        Written::NothingYet { .. } => Reply::Empty(204),
        written => Reply::json(status(&written), body(&written)),
    }
}

/// The reply to keep for an idempotency key, to answer its repeats with.
pub fn keep(written: &Written) -> Kept {
    Kept {
        status: status(written),
        body: body(written),
    }
}

fn status(written: &Written) -> u16 {
    match written {
        Written::Published { .. } | Written::TaskCreated { .. } => 201,
        Written::NothingYet { .. } => 204,
        Written::LockHeld(_) => 409,
        Written::Repeated(first) => first.status,
        _ => 200,
    }
}

fn body(written: &Written) -> Value {
    match written {
        Written::Published { id, ts } => json!({"id": id, "ts": ts}),
        Written::TaskCreated { id } => json!({"id": id}),
        Written::Taken {
            id,
            by,
            lease_expires_at,
        } => taken(id, by, *lease_expires_at),
        Written::Claimed(task) => json!(task),
        Written::NothingYet { next_ready } => json!({"next_ready": next_ready}),
        Written::LeaseExtended {
            id,
            lease_expires_at,
        } => json!({"id": id, "lease_expires_at": lease_expires_at}),
        Written::Updated { id } => json!({"id": id}),
        Written::Completed { id } => json!({"id": id, "status": "done"}),
        Written::Abandoned { id, status } => json!({"id": id, "status": status.as_str()}),
        Written::Interrupted { id } => json!({"id": id, "signalled": true}),
        Written::Retried { id } => json!({"id": id, "status": "open"}),
        Written::Seen => json!({"ok": true}),
        Written::ReadUpTo { agent, up_to } => json!({"agent": agent, "up_to": up_to}),
        Written::Pruned { deleted } => json!({"deleted": deleted}),
        Written::LockTaken { lock, renewed } => lock_taken(lock, *renewed),
        Written::LockHeld(lock) => lock_held(lock),
        Written::LockReleased { name } => json!({"name": name, "released": true}),
        Written::Repeated(first) => first.body.clone(),
    }
}

fn taken(id: &str, by: &str, lease_expires_at: Option<f64>) -> Value {
    let mut answer = json!({"id": id, "status": "claimed", "claimed-by": by});
    if let Some(expires) = lease_expires_at {
        answer["lease_expires_at"] = json!(expires);
    }
    answer
}

/// `renewed` tells a holder renewing its lock whether it still had it: false means the lock
/// had lapsed or been released in between, and was taken afresh (`lock -- CMD` treats that
/// as lost).
fn lock_taken(lock: &Lock, renewed: bool) -> Value {
    json!({"name": lock.name, "holder": lock.holder, "note": lock.note,
           "expires_at": lock.expires_at, "renewed": renewed})
}

/// The lock as it is, and who holds it until when.
fn lock_held(lock: &Lock) -> Value {
    let mut answer = json!(lock);
    answer["error"] = json!(format!(
        "lock {:?} is held by {} until {}",
        lock.name, lock.holder, lock.expires_at
    ));
    answer
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let message = err.message;
        match err.kind {
            Failure::NotFound => ApiError::not_found(message),
            Failure::Forbidden => ApiError::forbidden(message),
            Failure::Conflict => ApiError::conflict(message),
            Failure::Invalid => ApiError::bad_request(message),
            Failure::KeyReused => ApiError::unprocessable(message),
            Failure::ShuttingDown => ApiError::unavailable(message),
            Failure::Storage(fault) => ApiError {
                message,
                ..ApiError::from(fault)
            },
        }
    }
}
