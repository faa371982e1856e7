//! A task given back: abandoned by its claimer or its lease run out (open again, or failed
//! once out of attempts), and a failed one retried.
use super::{Announcement, Answer, Holder, TaskState, announce, load, load_claimed_by};
use crate::store::clock::now;
use crate::store::failure::StoreError;
use crate::store::protocol::{Status, Written};
use crate::store::step::{SERVER_IDENTITY, Step};
use rusqlite::params;
use serde_json::{Value, json};

/// The claimer gives the task back for `reason`, as `how` says.
pub(crate) fn abandon(
    step: &mut Step,
    id: &str,
    holder: &Holder,
    reason: &Value,
    how: Released,
) -> Answer {
    let task = load_claimed_by(step, id, holder)?;
    let mut body = json!({"task-id": id, "title": task.title, "reason": reason});
    if !how.counted {
        body["attempt_counted"] = json!(false);
    }
    let news = Announcement::new("task.abandoned", body);
    let status = release(step, id, &task, (holder.from, news), how)?;
    let id = id.to_string();
    Ok(Written::Abandoned { id, status })
}

/// Puts a failed task back in the queue with its attempts reset.
pub(crate) fn retry(step: &mut Step, id: &str, from: &str) -> Answer {
    let task = load(step, id)?;
    if task.status != Status::Failed {
        let status = task.status.as_str();
        return Err(StoreError::conflict(format!(
            "task {id} is {status}, not failed"
        )));
    }
    reopen_failed(step, id)?;
    let body = json!({"task-id": id, "title": task.title});
    announce(step, &task, from, Announcement::new("task.retried", body))?;
    Ok(Written::Retried { id: id.to_string() })
}

/// Opens a failed task again, its attempts reset.
fn reopen_failed(step: &mut Step, id: &str) -> Result<(), StoreError> {
    let sql = "UPDATE tasks SET status = 'open', attempts = 0, not_before = NULL,
               updated_at = ?2 WHERE id = ?1";
    step.tx.prepare_cached(sql)?.execute(params![id, now()])?;
    step.effects.tasks_opened = true;
    Ok(())
}

/// How a release leaves the task: claimable again after `delay_s`, and one more attempt used
/// unless not `counted` (a claimer giving it back for a reason of its own, not the task's).
pub(crate) struct Released {
    pub(crate) delay_s: f64,
    pub(crate) counted: bool,
}

/// Takes a claimed task back (abandon or lease expiry), announced by `from` as `news`: back
/// to `Open` (after the delay), or `Failed` once a counted attempt reaches the task's maximum.
fn release(
    step: &mut Step,
    id: &str,
    task: &TaskState,
    (from, news): (&str, Announcement),
    how: Released,
) -> Result<Status, StoreError> {
    let (status, attempts) = match how.counted {
        true => task.released(),
        false => (Status::Open, task.attempts),
    };
    reopen(step, id, status, attempts, how.delay_s)?;
    announce(step, task, from, news)?;
    if status == Status::Failed {
        let body = json!({"task-id": id, "title": task.title, "attempts": attempts});
        announce(step, task, from, Announcement::new("task.failed", body))?;
    } else {
        step.effects.tasks_opened = true;
    }
    Ok(status)
}

impl TaskState {
    /// Where the task goes when released, and its attempts then: failed once they reach
    /// its maximum, else open.
    fn released(&self) -> (Status, i64) {
        let attempts = self.attempts + 1;
        match attempts >= self.max_attempts {
            true => (Status::Failed, attempts),
            false => (Status::Open, attempts),
        }
    }
}

/// Clears the claim and lease, counting the attempt; `status` is where the task goes.
fn reopen(
    step: &mut Step,
    id: &str,
    status: Status,
    attempts: i64,
    delay_s: f64,
) -> Result<(), StoreError> {
    let now = now();
    let not_before = (delay_s > 0.0).then_some(now + delay_s);
    step.tx
        .prepare_cached(
            "UPDATE tasks SET status = ?2, attempts = ?3, not_before = ?4, claimed_by = NULL,
             claimed_at = NULL, lease_s = NULL, lease_expires_at = NULL, updated_at = ?5
             WHERE id = ?1",
        )?
        .execute(params![id, status.as_str(), attempts, not_before, now])?;
    step.effects.leases_changed = true;
    Ok(())
}

/// Returns every claimed task whose lease has run out to the queue, announcing each.
pub(crate) fn expire_leases(step: &mut Step) -> Result<(), StoreError> {
    for id in run_out(step)? {
        let task = load(step, &id)?;
        let news = expired(&id, &task);
        let counted = Released {
            delay_s: 0.0,
            counted: true,
        };
        release(step, &id, &task, (SERVER_IDENTITY, news), counted)?;
    }
    Ok(())
}

/// The `task.expired` announcement of `task`, whose lease ran out.
fn expired(id: &str, task: &TaskState) -> Announcement {
    let body = json!({"task-id": id, "title": task.title, "claimed-by": task.claimed_by});
    Announcement::new("task.expired", body)
}

/// The claimed tasks whose lease has run out, soonest first.
fn run_out(step: &Step) -> Result<Vec<String>, StoreError> {
    let sql = "SELECT id FROM tasks WHERE lease_expires_at <= ?1 AND status = 'claimed'
               ORDER BY lease_expires_at";
    let mut statement = step.tx.prepare_cached(sql)?;
    let ids = statement.query_map([now()], |row| row.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}
