//! What the store is asked and what it answers: the writer's protocol. A change is an `Op`;
//! what it wrote comes back as a `Written`, or a `StoreError` saying why not.
use super::failure::StoreError;
use super::idempotency::{Kept, Key};
use super::read::Task;
use crossbeam_channel::Sender;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// One change for the writer, and where its answer goes.
pub struct Command {
    pub op: Op,
    pub reply: Sender<Result<Written, StoreError>>,
}

/// Every change the server makes. Task changes carry the acting agent (`from`).
#[derive(Debug)]
pub enum Op {
    Publish(NewMessage),
    /// Several messages to one channel from one sender, committed together, in order.
    PublishBatch(Vec<NewMessage>),
    CreateTask(NewTask),
    /// Claim one task; with a lease it returns to the queue unless touched in time.
    Claim {
        id: String,
        from: String,
        lease_s: Option<f64>,
    },
    /// Claim the best claimable task for `from` (highest priority, then oldest).
    ClaimNext {
        from: String,
        ch: Option<String>,
        lease_s: Option<f64>,
        /// Task ids the caller does not want (say, ones it just failed), as the JSON array the
        /// query takes (`read::id_list`): encoded once and shared, though a long poll may look
        /// many times.
        exclude: Arc<str>,
    },
    /// Extend the claimer's lease.
    Touch {
        id: String,
        from: String,
        claim: Option<i64>,
        lease_s: Option<f64>,
    },
    /// Put a failed task back in the queue with its attempts reset.
    Retry {
        id: String,
        from: String,
    },
    Update {
        id: String,
        from: String,
        claim: Option<i64>,
        fields: Map<String, Value>,
    },
    Complete {
        id: String,
        from: String,
        claim: Option<i64>,
        result: Value,
        files: Vec<String>,
    },
    Abandon {
        id: String,
        from: String,
        claim: Option<i64>,
        reason: Value,
        delay_s: f64,
        /// Whether this counts as an attempt: not when the claimer gives the task back for a
        /// reason of its own (its worker stopping), rather than the task failing.
        counted: bool,
    },
    Interrupt {
        id: String,
        from: String,
        reason: Value,
    },
    Heartbeat {
        from: String,
        channels: Value,
        meta: Value,
    },
    /// Moves an agent's inbox read cursor forward to `up_to` (never back).
    MarkRead {
        agent: String,
        up_to: String,
    },
    /// Retention: delete messages older than `retention_days` (0 keeps them) and presence
    /// rows older than a week.
    Prune {
        retention_days: u64,
    },
    /// `op` under an Idempotency-Key: a repeat of a remembered key answers the first reply,
    /// which `keep` made from what `op` wrote (the store keeps it without reading it).
    Idempotent {
        key: Key,
        op: Box<Op>,
        keep: fn(&Written) -> Kept,
    },
    /// Acquire or release an advisory lock (src/store/locks.rs).
    Lock(LockOp),
    /// Index every message not yet in the search index, before a search reads it.
    IndexSearch,
}

impl Op {
    /// What the command weighs in a commit: the messages it publishes, or 1.
    pub fn weight(&self) -> usize {
        match self {
            Op::PublishBatch(batch) => batch.len(),
            Op::Idempotent { op, .. } => op.weight(),
            _ => 1,
        }
    }

    /// Whether running it may refuse it (a task that is not open, a lock held...), so it needs
    /// a savepoint to leave no trace. A publish is checked whole before it is queued.
    pub fn can_be_refused(&self) -> bool {
        !matches!(self, Op::Publish(_) | Op::PublishBatch(_))
    }

    /// Whether the search index must hold every stored message before this runs: a search
    /// about to read it, or retention about to prune it.
    pub fn needs_search_index(&self) -> bool {
        matches!(self, Op::IndexSearch | Op::Prune { .. })
    }
}

/// What a committed change did, for the caller to answer with.
#[derive(Debug)]
pub enum Written {
    Published {
        id: String,
        ts: f64,
    },
    /// Each message's id and timestamp, in the order given.
    PublishedBatch(Vec<(String, f64)>),
    TaskCreated {
        id: String,
    },
    /// A task claimed by its id.
    Taken {
        id: String,
        by: String,
        claim: i64,
        lease_expires_at: Option<f64>,
    },
    /// The task claim-next found and claimed, as it is now.
    Claimed(Box<Task>),
    /// Claim-next found nothing claimable; a delayed task becomes claimable at `next_ready`.
    NothingYet {
        next_ready: Option<f64>,
    },
    LeaseExtended {
        id: String,
        lease_expires_at: Option<f64>,
    },
    Updated {
        id: String,
    },
    Completed {
        id: String,
    },
    /// Abandoned: back to `Open`, or `Failed` once out of attempts.
    Abandoned {
        id: String,
        status: Status,
    },
    Interrupted {
        id: String,
    },
    Retried {
        id: String,
    },
    /// A heartbeat was recorded.
    Seen,
    ReadUpTo {
        agent: String,
        up_to: String,
    },
    Pruned {
        deleted: usize,
    },
    /// A lock taken, or renewed (`renewed`: its holder still had it).
    LockTaken {
        lock: Lock,
        renewed: bool,
    },
    /// Someone else holds the lock.
    LockHeld(Lock),
    LockReleased {
        name: String,
    },
    /// A repeated idempotency key: the reply kept from its first use.
    Repeated(Kept),
    /// The search index holds every stored message.
    Indexed,
}

/// Where a task is in its life: open → claimed → done, or back to open on release, and
/// failed once released too often (a retry opens it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Claimed,
    Done,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Claimed => "claimed",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Status> {
        [Status::Open, Status::Claimed, Status::Done, Status::Failed]
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

/// A status column reads as its `Status`.
impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Status> {
        let name = value.as_str()?;
        Status::parse(name).ok_or_else(|| FromSqlError::Other(format!("status {name:?}").into()))
    }
}

/// A message to store; `from`, `type` and `ch` are already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub ch: String,
    pub from: String,
    pub kind: String,
    pub v: i64,
    pub body: Value,
    pub files: Vec<String>,
    pub reply_to: Option<String>,
    /// `to` as the sender gave it (one identity or a list), already validated; `None` is
    /// everyone, and leaves the field out of the envelope.
    pub to: Option<Value>,
    /// The agents whose inbox gets this message: the identities in `to`, or the agent a
    /// `task.created` is for.
    pub recipients: Vec<String>,
}

impl NewMessage {
    /// A message the server posts about a change it made (a task or lock transition):
    /// version 1, no files, no reply, addressed to no one.
    pub fn announcement(ch: &str, from: &str, kind: &str, body: Value) -> NewMessage {
        NewMessage {
            ch: ch.to_string(),
            from: from.to_string(),
            kind: kind.to_string(),
            v: 1,
            body,
            files: Vec::new(),
            reply_to: None,
            to: None,
            recipients: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct NewTask {
    pub from: String,
    pub title: String,
    pub context: Value,
    pub assigned_to: Option<String>,
    pub ch: String,
    /// Higher is claimed first by claim-next.
    pub priority: i64,
    /// Seconds before the task may be claimed.
    pub delay_s: f64,
    /// Releases (abandon, lease expiry) before the task fails for good.
    pub max_attempts: i64,
}

#[derive(Debug)]
pub enum LockOp {
    /// Take a free (or expired) lock, or renew one `from` already holds.
    Acquire {
        from: String,
        name: String,
        ttl_s: f64,
        note: Option<String>,
        ch: Option<String>,
    },
    Release {
        from: String,
        name: String,
    },
}

/// A lock as the API shows it.
#[derive(Debug, Serialize)]
pub struct Lock {
    pub name: String,
    pub holder: String,
    pub note: Option<String>,
    pub ch: String,
    pub acquired_at: f64,
    pub expires_at: f64,
}

#[cfg(test)]
mod tests {
    use super::{NewMessage, Op, Status, Written};
    use crate::store::idempotency::{Kept, Key};

    /// A commit's weight counts a batch's messages, under an idempotency key too.
    #[test]
    fn a_batch_weighs_its_messages_and_anything_else_one() {
        let message = || NewMessage::announcement("c", "a", "t", serde_json::json!({}));
        let batch = Op::PublishBatch(vec![message(), message(), message()]);
        assert_eq!(batch.weight(), 3);
        let key = Key {
            from: "a".into(),
            key: "k".into(),
            fingerprint: "f".into(),
        };
        let keep = |_: &Written| Kept {
            status: 201,
            body: serde_json::json!([]),
        };
        let keyed = Op::Idempotent {
            key,
            op: Box::new(batch),
            keep,
        };
        assert_eq!(keyed.weight(), 3);
        assert_eq!(Op::Publish(message()).weight(), 1);
        assert_eq!(Op::IndexSearch.weight(), 1);
    }

    #[test]
    fn a_search_and_retention_need_the_whole_index_and_a_publish_does_not() {
        assert!(Op::IndexSearch.needs_search_index());
        assert!(Op::Prune { retention_days: 30 }.needs_search_index());
        let heartbeat = Op::Heartbeat {
            from: "a".into(),
            channels: serde_json::json!([]),
            meta: serde_json::json!({}),
        };
        assert!(!heartbeat.needs_search_index());
    }

    #[test]
    fn a_status_reads_back_from_its_stored_name() {
        for status in [Status::Open, Status::Claimed, Status::Done, Status::Failed] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("closed"), None);
    }
}
