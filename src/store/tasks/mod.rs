//! The task state machine, run in the writer so its checks cannot race: create and claim
//! (`claim`), work on a held task (`held`), and give it back (`release`). Every transition
//! is announced on the task's channel in the same transaction.
mod claim;
mod held;
mod release;

pub(super) use claim::{Wanted, claim, claim_next, create};
pub(super) use held::{Holder, complete, interrupt, touch, update};
pub(super) use release::{Released, abandon, expire_leases, retry};

use super::clock::now;
use super::failure::StoreError;
use super::messages;
use super::protocol::{NewMessage, Status, Written};
use super::step::Step;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

/// What a transition answers.
type Answer = Result<Written, StoreError>;

/// The columns of a task that its transitions check.
struct TaskState {
    status: Status,
    assigned_to: Option<String>,
    claimed_by: Option<String>,
    title: String,
    ch: String,
    not_before: Option<f64>,
    attempts: i64,
    max_attempts: i64,
    lease_s: Option<f64>,
    /// How many times it has been claimed: the current claim's number (`Holder::claim`).
    claims: i64,
}

fn load(step: &Step, id: &str) -> Result<TaskState, StoreError> {
    let sql = "SELECT status, assigned_to, claimed_by, title, ch, not_before, attempts,
               max_attempts, lease_s, claims FROM tasks WHERE id = ?1";
    let task = step.tx.prepare_cached(sql)?.query_row([id], from_row);
    task.optional()?
        .ok_or_else(|| StoreError::not_found(format!("no task {id}")))
}

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<TaskState> {
    Ok(TaskState {
        status: row.get(0)?,
        assigned_to: row.get(1)?,
        claimed_by: row.get(2)?,
        title: row.get(3)?,
        ch: row.get(4)?,
        not_before: row.get(5)?,
        attempts: row.get(6)?,
        max_attempts: row.get(7)?,
        lease_s: row.get(8)?,
        claims: row.get(9)?,
    })
}

/// A task that `holder` holds: claimed (else a conflict) by its agent (else forbidden), and
/// when it names its claim, under that claim still (else a conflict: it ran out and the task
/// was claimed again, perhaps by another process under the same agent id).
fn load_claimed_by(step: &Step, id: &str, holder: &Holder) -> Result<TaskState, StoreError> {
    let task = load(step, id)?;
    if task.status != Status::Claimed {
        let status = task.status.as_str();
        return Err(StoreError::conflict(format!(
            "task {id} is {status}, not claimed"
        )));
    }
    let from = holder.from;
    match (task.claimed_by.as_deref(), holder.claim) {
        (Some(claimer), _) if claimer != from => Err(StoreError::forbidden(format!(
            "task {id} is claimed by {claimer}, not {from}"
        ))),
        (_, Some(claim)) if claim != task.claims => Err(StoreError::conflict(format!(
            "task {id}: claim {claim} has ended; it is claimed again (claim {})",
            task.claims
        ))),
        _ => Ok(task),
    }
}

/// Sets (or with `None` clears) a claimed task's lease; returns when it runs out.
fn set_lease(step: &mut Step, id: &str, lease_s: Option<f64>) -> Result<Option<f64>, StoreError> {
    let expires = lease_s.map(|lease| now() + lease);
    step.tx
        .prepare_cached("UPDATE tasks SET lease_s = ?2, lease_expires_at = ?3 WHERE id = ?1")?
        .execute(params![id, lease_s, expires])?;
    step.effects.leases_changed = true;
    Ok(expires)
}

fn touch_task(step: &Step, id: &str) -> Result<(), StoreError> {
    step.tx
        .prepare_cached("UPDATE tasks SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now()])?;
    Ok(())
}

/// A task's announcement: what happened (`task.claimed`...) and its body.
struct Announcement {
    kind: &'static str,
    body: Value,
    files: Vec<String>,
}

impl Announcement {
    fn new(kind: &'static str, body: Value) -> Announcement {
        Announcement {
            kind,
            body,
            files: Vec::new(),
        }
    }
}

/// Posts a task's announcement on the task's channel, in the task change's transaction.
fn announce(
    step: &mut Step,
    task: &TaskState,
    from: &str,
    news: Announcement,
) -> Result<(), StoreError> {
    step.effects.transitions.push(news.kind);
    let mut message = NewMessage::announcement(&task.ch, from, news.kind, news.body);
    message.files = news.files;
    // A task made for one agent lands in that agent's inbox when it is created.
    if let ("task.created", Some(agent)) = (news.kind, &task.assigned_to) {
        message.recipients = vec![agent.clone()];
    }
    messages::announce(step, &message)
}
