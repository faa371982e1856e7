//! Work on a held task: extend its lease, report progress, finish it, or be asked to stop.
use super::{Announcement, Answer, announce, load, load_claimed_by, set_lease, touch_task};
use crate::store::clock::now;
use crate::store::failure::StoreError;
use crate::store::protocol::Written;
use crate::store::step::Step;
use rusqlite::params;
use serde_json::{Map, Value, json};

/// Who acts on a held task: the claimer's agent id and, when it gives it, the number of its
/// claim (the task's `claims` when it was claimed), which fences off an older claim's process.
pub(crate) struct Holder<'a> {
    pub(crate) from: &'a str,
    pub(crate) claim: Option<i64>,
}

/// Extends the claimer's lease (by the task's own length unless `lease_s` is given).
pub(crate) fn touch(step: &mut Step, id: &str, holder: &Holder, lease_s: Option<f64>) -> Answer {
    let task = load_claimed_by(step, id, holder)?;
    let lease_s = lease_s.or(task.lease_s).ok_or_else(|| {
        StoreError::invalid(format!("task {id} has no lease to extend: give lease_s"))
    })?;
    let lease_expires_at = set_lease(step, id, Some(lease_s))?;
    let id = id.to_string();
    Ok(Written::LeaseExtended {
        id,
        lease_expires_at,
    })
}

/// Progress from the claimer, announced with `fields` (less `from`).
pub(crate) fn update(
    step: &mut Step,
    id: &str,
    holder: &Holder,
    fields: &Map<String, Value>,
) -> Answer {
    // Only the claimer reports progress: an update from anyone else, or on a task no one
    // holds (done, expired), would be announced as if it were real.
    let task = load_claimed_by(step, id, holder)?;
    touch_task(step, id)?;
    // Progress from the claimer proves it is alive: it extends the lease.
    if let Some(lease_s) = task.lease_s {
        set_lease(step, id, Some(lease_s))?;
    }
    let news = Announcement::new("task.updated", progress(id, fields));
    announce(step, &task, holder.from, news)?;
    Ok(Written::Updated { id: id.to_string() })
}

/// An update's announcement: the fields reported, less `from` and `claim`, with the task's id.
fn progress(id: &str, fields: &Map<String, Value>) -> Value {
    let mut body = fields.clone();
    body.remove("from");
    body.remove("claim");
    body.insert("task-id".into(), json!(id));
    Value::Object(body)
}

/// The claimer finishes the task with `result` and `files`.
pub(crate) fn complete(
    step: &mut Step,
    id: &str,
    holder: &Holder,
    result: &Value,
    files: &[String],
) -> Answer {
    let task = load_claimed_by(step, id, holder)?;
    mark_done(step, id, result, files)?;
    let body = json!({"task-id": id, "title": task.title, "result": result});
    let news = Announcement {
        files: files.to_vec(),
        ..Announcement::new("task.done", body)
    };
    announce(step, &task, holder.from, news)?;
    Ok(Written::Completed { id: id.to_string() })
}

/// Records the task done with its result and files, its lease cleared.
fn mark_done(
    step: &mut Step,
    id: &str,
    result: &Value,
    files: &[String],
) -> Result<(), StoreError> {
    let files = serde_json::to_string(files)
        .map_err(|e| StoreError::internal(format!("cannot encode files: {e}")))?;
    let sql = "UPDATE tasks SET status = 'done', result = ?2, files = ?3, updated_at = ?4,
               lease_s = NULL, lease_expires_at = NULL WHERE id = ?1";
    let args = params![id, result.to_string(), files, now()];
    step.tx.prepare_cached(sql)?.execute(args)?;
    step.effects.leases_changed = true;
    Ok(())
}

/// Asks whoever works on the task to stop: an announcement only.
pub(crate) fn interrupt(step: &mut Step, id: &str, from: &str, reason: &Value) -> Answer {
    let task = load(step, id)?;
    touch_task(step, id)?;
    let body = json!({"task-id": id, "title": task.title, "reason": reason});
    announce(step, &task, from, Announcement::new("task.interrupt", body))?;
    Ok(Written::Interrupted { id: id.to_string() })
}
