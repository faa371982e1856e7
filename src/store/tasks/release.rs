//! A task given back: abandoned by its claimer or its lease run out (open again, or failed
//! once out of attempts), and a failed one retried.
use super::{Announcement, Answer, TaskState, announce, load, load_claimed_by};
use crate::store::clock::now;
use crate::store::failure::StoreError;
use crate::store::protocol::{Status, Written};
use crate::store::step::{SERVER_IDENTITY, Step};
use rusqlite::params;
use serde_json::{Value, json};

/// The claimer gives the task back, to be claimable again after `delay_s`.
pub(crate) fn abandon(
    step: &mut Step,
    id: &str,
    from: &str,
    reason: &Value,
    delay_s: f64,
) -> Answer {
    let task = load_claimed_by(step, id, from)?;
    let body = json!({"task-id": id, "title": task.title, "reason": reason});
    let news = Announcement::new("task.abandoned", body);
    let status = release(step, id, &task, (from, news), delay_s)?;
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
    step.tx
        .prepare_cached(
            "UPDATE tasks SET status = 'open', attempts = 0, not_before = NULL,
             updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![id, now()])?;
    step.effects.tasks_opened = true;
    let body = json!({"task-id": id, "title": task.title});
    announce(step, &task, from, Announcement::new("task.retried", body))?;
    Ok(Written::Retried { id: id.to_string() })
}

/// Takes a claimed task back (abandon or lease expiry), announced by `from` as `news`: one
/// more attempt used; back to `Open` (after `delay_s`), or `Failed` once attempts reach the
/// task's maximum.
fn release(
    step: &mut Step,
    id: &str,
    task: &TaskState,
    (from, news): (&str, Announcement),
    delay_s: f64,
) -> Result<Status, StoreError> {
    let attempts = task.attempts + 1;
    let status = if attempts >= task.max_attempts {
        Status::Failed
    } else {
        Status::Open
    };
    reopen(step, id, status, attempts, delay_s)?;
    announce(step, task, from, news)?;
    if status == Status::Failed {
        let body = json!({"task-id": id, "title": task.title, "attempts": attempts});
        announce(step, task, from, Announcement::new("task.failed", body))?;
    } else {
        step.effects.tasks_opened = true;
    }
    Ok(status)
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
    let due: Vec<String> = step
        .tx
        .prepare_cached(
            "SELECT id FROM tasks WHERE lease_expires_at <= ?1 AND status = 'claimed'
             ORDER BY lease_expires_at",
        )?
        .query_map([now()], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in due {
        let task = load(step, &id)?;
        let body = json!({"task-id": id, "title": task.title, "claimed-by": task.claimed_by});
        let news = Announcement::new("task.expired", body);
        release(step, &id, &task, (SERVER_IDENTITY, news), 0.0)?;
    }
    Ok(())
}
