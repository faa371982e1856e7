//! One command inside a batch's transaction, and what the batch did, kept for after commit.
use super::search::SearchDoc;
use crate::hub::Event;
use crate::ids::IdGen;
use rusqlite::Transaction;
use std::sync::Arc;
use ulid::Ulid;

/// The `from` of announcements the server makes on its own (lease and lock expiry).
pub(super) const SERVER_IDENTITY: &str = "workshop";

/// One command inside the batch's transaction.
pub(super) struct Step<'a> {
    pub(super) tx: &'a Transaction<'a>,
    ids: &'a mut IdGen,
    pub(super) effects: Effects,
}

impl<'a> Step<'a> {
    pub(super) fn new(tx: &'a Transaction<'a>, ids: &'a mut IdGen) -> Step<'a> {
        Step {
            tx,
            ids,
            effects: Effects::default(),
        }
    }

    /// The next id, greater than every one issued before.
    pub(super) fn next_id(&mut self) -> Ulid {
        self.ids.next_id()
    }
}

/// What one batch did, applied to the hub and counters only once it is committed.
#[derive(Default)]
pub(super) struct Effects {
    pub(super) events: Vec<Arc<Event>>,
    pub(super) messages_delta: i64,
    pub(super) tasks_added: u64,
    /// A task became claimable: wake claim-next callers.
    pub(super) tasks_opened: bool,
    /// A lease or lock was set, moved or cleared: recompute the writer's next wake-up.
    pub(super) leases_changed: bool,
    /// The task announcements made (`task.claimed`...), for /metrics.
    pub(super) transitions: Vec<&'static str>,
    /// The messages stored, for the search index (`unindexed`).
    pub(super) search_docs: Vec<SearchDoc>,
}

impl Effects {
    pub(super) fn absorb(&mut self, other: Effects) {
        self.events.extend(other.events);
        self.messages_delta += other.messages_delta;
        self.tasks_added += other.tasks_added;
        self.tasks_opened |= other.tasks_opened;
        self.leases_changed |= other.leases_changed;
        self.transitions.extend(other.transitions);
        self.search_docs.extend(other.search_docs);
    }
}
