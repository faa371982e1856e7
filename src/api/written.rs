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
        Written::NothingYet { next_ready } => nothing_yet(next_ready),
        written => Reply::json(status(&written), body(&written)),
    }
}

/// The header of claim-next's empty answer that says when the soonest delayed task the caller
/// could claim becomes claimable, in seconds from now: no stream event marks that moment, so
/// a worker would otherwise find the task only at its next poll. Relative, not a time of day,
/// so a caller whose clock differs from the hub's still asks at the right moment.
pub const NEXT_READY_IN: &str = "Workshop-Next-Ready-In";

/// Claim-next found nothing: 204, with `NEXT_READY_IN` when a delayed task is coming.
pub fn nothing_yet(next_ready: Option<f64>) -> Reply {
    let Some(at) = next_ready else {
        return Reply::Empty(204);
    };
    let secs = (at - crate::store::now()).max(0.0);
    Reply::Headed(
        vec![
            (NEXT_READY_IN, format!("{secs:.3}")),
            ("Access-Control-Expose-Headers", NEXT_READY_IN.into()),
        ],
        Box::new(Reply::Empty(204)),
    )
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
        Written::Published { .. } | Written::PublishedBatch(_) | Written::TaskCreated { .. } => 201,
        Written::NothingYet { .. } => 204,
        Written::LockHeld(_) => 409,
        Written::Repeated(first) => first.status,
        _ => 200,
    }
}

fn body(written: &Written) -> Value {
    match written {
        Written::Published { id, ts } => json!({"id": id, "ts": ts}),
        Written::PublishedBatch(stamped) => stamped
            .iter()
            .map(|(id, ts)| json!({"id": id, "ts": ts}))
            .collect(),
        Written::TaskCreated { id } => json!({"id": id}),
        Written::Taken {
            id,
            by,
            claim,
            lease_expires_at,
        } => taken(id, by, *claim, *lease_expires_at),
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
        Written::Seen | Written::Indexed => json!({"ok": true}),
        Written::ReadUpTo { agent, up_to } => json!({"agent": agent, "up_to": up_to}),
        Written::Pruned { deleted } => json!({"deleted": deleted}),
        Written::LockTaken { lock, renewed } => lock_taken(lock, *renewed),
        Written::LockHeld(lock) => lock_held(lock),
        Written::LockReleased { name } => json!({"name": name, "released": true}),
        Written::Repeated(first) => first.body.clone(),
    }
}

fn taken(id: &str, by: &str, claim: i64, lease_expires_at: Option<f64>) -> Value {
    let mut answer = json!({"id": id, "status": "claimed", "claimed-by": by, "claim": claim});
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
    // Seconds from now, rounded up: people read this; `expires_at` is there for programs.
    let left = (lock.expires_at - crate::store::now()).ceil().max(1.0);
    let mut error = format!(
        "lock {:?} is held by {} for another {left:.0} s",
        lock.name, lock.holder
    );
    // The note says why it is held, which is what the one refused wants to know next.
    if let Some(note) = lock.note.as_deref().filter(|n| !n.trim().is_empty()) {
        error.push_str(&format!(": {}", crate::error::shown(note)));
    }
    answer["error"] = json!(error);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    fn lock() -> Lock {
        Lock {
            name: "src/main.rs".into(),
            holder: "alice".into(),
            note: None,
            ch: "locks".into(),
            acquired_at: 1.0,
            expires_at: 2.5,
        }
    }

    #[test]
    fn created_things_are_201_and_a_held_lock_409_naming_its_holder() {
        let published = keep(&Written::Published {
            id: "01A".into(),
            ts: 1.5,
        });
        assert_eq!(
            published,
            Kept {
                status: 201,
                body: json!({"id": "01A", "ts": 1.5})
            }
        );
        let held = keep(&Written::LockHeld(lock()));
        assert_eq!(held.status, 409);
        assert_eq!(held.body["holder"], "alice");
        // Held until 2.5 (long past): never less than a second, never a time in the past.
        assert_eq!(
            held.body["error"],
            "lock \"src/main.rs\" is held by alice for another 1 s"
        );
        let later = Lock {
            expires_at: crate::store::now() + 89.5,
            ..lock()
        };
        let held = keep(&Written::LockHeld(later));
        assert_eq!(
            held.body["error"], "lock \"src/main.rs\" is held by alice for another 90 s",
            "seconds from now, rounded up"
        );
        let noted = Lock {
            note: Some("splitting the parser".into()),
            ..lock()
        };
        let held = keep(&Written::LockHeld(noted));
        assert_eq!(
            held.body["error"],
            "lock \"src/main.rs\" is held by alice for another 1 s: \"splitting the parser\""
        );
    }

    #[test]
    fn a_claim_shows_its_lease_only_when_it_has_one() {
        let claim = |lease_expires_at| Written::Taken {
            id: "01A".into(),
            by: "bob".into(),
            claim: 2,
            lease_expires_at,
        };
        let body = keep(&claim(None)).body;
        assert_eq!(
            body,
            json!({"id": "01A", "status": "claimed", "claimed-by": "bob", "claim": 2})
        );
        assert_eq!(keep(&claim(Some(9.0))).body["lease_expires_at"], 9.0);
    }

    #[test]
    fn nothing_to_claim_is_an_empty_204_and_a_repeat_its_first_reply() {
        let nothing = reply(Written::NothingYet { next_ready: None });
        assert_eq!(nothing.status(), 204);
        let first = Kept {
            status: 201,
            body: json!({"id": "01A"}),
        };
        assert_eq!(keep(&Written::Repeated(first.clone())), first);
    }

    #[test]
    fn refusals_map_to_their_statuses_with_the_store_s_words() {
        let cases = [
            (Failure::NotFound, 404),
            (Failure::Forbidden, 403),
            (Failure::Conflict, 409),
            (Failure::Invalid, 400),
            (Failure::KeyReused, 422),
            (Failure::ShuttingDown, 503),
            (Failure::Storage(Fault::DiskFull), 507),
            (Failure::Storage(Fault::Busy), 503),
            (Failure::Storage(Fault::Internal), 500),
        ];
        for (kind, status) in cases {
            let err = ApiError::from(StoreError::new(kind, "why"));
            assert_eq!(err, ApiError::new(status, "why"), "{kind:?}");
        }
    }
}
