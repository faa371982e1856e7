//! The task state machine, run in the writer so its checks cannot race: create, claim (by
//! id or the best one), touch, update, done, abandon, interrupt, retry, and lease expiry.
//! Every transition is announced on the task's channel in the same transaction.
use super::clock::now;
use super::failure::StoreError;
use super::messages;
use super::protocol::{NewMessage, NewTask, Status, Written};
use super::step::{SERVER_IDENTITY, Step};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

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
}

/// What claim-next looks among: open tasks for `from` (or anyone), on `ch` if given, minus
/// `exclude`.
pub(super) struct Wanted<'a> {
    pub(super) from: &'a str,
    pub(super) ch: Option<&'a str>,
    pub(super) exclude: &'a [String],
}

pub(super) fn create(step: &mut Step, task: &NewTask) -> Result<Written, StoreError> {
    let id = step.next_id().to_string();
    let now = now();
    let not_before = (task.delay_s > 0.0).then_some(now + task.delay_s);
    step.tx
        .prepare_cached(
            "INSERT INTO tasks (id, created_at, updated_at, created_by, assigned_to, status,
             title, context, files, ch, priority, not_before, max_attempts)
             VALUES (?1, ?2, ?2, ?3, ?4, 'open', ?5, ?6, '[]', ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            id,
            now,
            task.from,
            task.assigned_to,
            task.title,
            task.context.to_string(),
            task.ch,
            task.priority,
            not_before,
            task.max_attempts
        ])?;
    step.effects.tasks_added += 1;
    step.effects.tasks_opened = true;
    let body = json!({"task-id": id, "title": task.title, "for": task.assigned_to});
    let state = load(step, &id)?;
    announce(step, &state, &task.from, "task.created", body, vec![])?;
    Ok(Written::TaskCreated { id })
}

/// Claims an open task for `from`.
pub(super) fn claim(
    step: &mut Step,
    id: &str,
    from: &str,
    lease_s: Option<f64>,
) -> Result<Written, StoreError> {
    let task = load(step, id)?;
    check_claimable(id, from, &task)?;
    step.tx
        .prepare_cached(
            "UPDATE tasks SET status = 'claimed', claimed_by = ?2, claimed_at = ?3,
             updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, from, now()])?;
    let lease_expires_at = set_lease(step, id, lease_s)?;
    let body = json!({"task-id": id, "title": task.title});
    announce(step, &task, from, "task.claimed", body, vec![])?;
    Ok(Written::Taken {
        id: id.to_string(),
        by: from.to_string(),
        lease_expires_at,
    })
}

/// Refuses a claim by `from`: a task for someone else, not open, or still delayed.
fn check_claimable(id: &str, from: &str, task: &TaskState) -> Result<(), StoreError> {
    if let Some(assignee) = task.assigned_to.as_deref().filter(|a| *a != from) {
        return Err(StoreError::forbidden(format!(
            "task {id} is for {assignee}"
        )));
    }
    if task.status != Status::Open {
        return Err(StoreError::conflict(not_open(id, task)));
    }
    if let Some(not_before) = task.not_before.filter(|t| *t > now()) {
        // Seconds from now, rounded up: people and scripts read this, not an epoch.
        let wait = (not_before - now()).ceil().max(1.0);
        return Err(StoreError::conflict(format!(
            "task {id} is delayed: claimable in {wait:.0} s"
        )));
    }
    Ok(())
}

fn not_open(id: &str, task: &TaskState) -> String {
    match (task.status, &task.claimed_by) {
        (Status::Claimed, Some(by)) => format!("task {id} is already claimed by {by}"),
        (status, _) => format!("task {id} is {}, not open", status.as_str()),
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

/// Claims the best claimable task (highest priority, then oldest), or says when the soonest
/// delayed one becomes claimable.
pub(super) fn claim_next(
    step: &mut Step,
    wanted: &Wanted,
    lease_s: Option<f64>,
) -> Result<Written, StoreError> {
    let exclude = serde_json::to_string(wanted.exclude)
        .map_err(|e| StoreError::internal(format!("cannot encode exclude: {e}")))?;
    let args = params![now(), wanted.from, wanted.ch, exclude];
    let next: Option<String> = step
        .tx
        .prepare_cached(
            "SELECT id FROM tasks WHERE status = 'open'
             AND (not_before IS NULL OR not_before <= ?1)
             AND (assigned_to IS NULL OR assigned_to = ?2)
             AND (?3 IS NULL OR ch = ?3)
             AND id NOT IN (SELECT value FROM json_each(?4))
             ORDER BY priority DESC, id LIMIT 1",
        )?
        .query_row(args, |row| row.get(0))
        .optional()?;
    let Some(id) = next else {
        let next_ready = step
            .tx
            .prepare_cached(
                "SELECT min(not_before) FROM tasks WHERE status = 'open' AND not_before > ?1
                 AND (assigned_to IS NULL OR assigned_to = ?2) AND (?3 IS NULL OR ch = ?3)
                 AND id NOT IN (SELECT value FROM json_each(?4))",
            )?
            .query_row(args, |row| row.get(0))?;
        return Ok(Written::NothingYet { next_ready });
    };
    claim(step, &id, wanted.from, lease_s)?;
    let task = super::read::task(step.tx, &id)?
        .ok_or_else(|| StoreError::internal("claimed task vanished"))?;
    Ok(Written::Claimed(Box::new(task)))
}

/// Extends the claimer's lease (by the task's own length unless `lease_s` is given).
pub(super) fn touch(
    step: &mut Step,
    id: &str,
    from: &str,
    lease_s: Option<f64>,
) -> Result<Written, StoreError> {
    let task = load_claimed_by(step, id, from)?;
    let lease_s = lease_s.or(task.lease_s).ok_or_else(|| {
        StoreError::invalid(format!("task {id} has no lease to extend: give lease_s"))
    })?;
    let lease_expires_at = set_lease(step, id, Some(lease_s))?;
    Ok(Written::LeaseExtended {
        id: id.to_string(),
        lease_expires_at,
    })
}

/// Progress from the claimer, announced with `fields` (less `from`).
pub(super) fn update(
    step: &mut Step,
    id: &str,
    from: &str,
    fields: &Map<String, Value>,
) -> Result<Written, StoreError> {
    // Only the claimer reports progress: an update from anyone else, or on a task no one
    // holds (done, expired), would be announced as if it were real.
    let task = load_claimed_by(step, id, from)?;
    touch_task(step, id)?;
    // Progress from the claimer proves it is alive: it extends the lease.
    if let Some(lease_s) = task.lease_s {
        set_lease(step, id, Some(lease_s))?;
    }
    let mut body = fields.clone();
    body.remove("from");
    body.insert("task-id".into(), json!(id));
    announce(
        step,
        &task,
        from,
        "task.updated",
        Value::Object(body),
        vec![],
    )?;
    Ok(Written::Updated { id: id.to_string() })
}

pub(super) fn complete(
    step: &mut Step,
    id: &str,
    from: &str,
    result: &Value,
    files: &[String],
) -> Result<Written, StoreError> {
    let task = load_claimed_by(step, id, from)?;
    let files_json = serde_json::to_string(files)
        .map_err(|e| StoreError::internal(format!("cannot encode files: {e}")))?;
    step.tx
        .prepare_cached(
            "UPDATE tasks SET status = 'done', result = ?2, files = ?3, updated_at = ?4,
             lease_s = NULL, lease_expires_at = NULL WHERE id = ?1",
        )?
        .execute(params![id, result.to_string(), files_json, now()])?;
    step.effects.leases_changed = true;
    let body = json!({"task-id": id, "title": task.title, "result": result});
    announce(step, &task, from, "task.done", body, files.to_vec())?;
    Ok(Written::Completed { id: id.to_string() })
}

/// The claimer gives the task back, to be claimable again after `delay_s`.
pub(super) fn abandon(
    step: &mut Step,
    id: &str,
    from: &str,
    reason: &Value,
    delay_s: f64,
) -> Result<Written, StoreError> {
    let task = load_claimed_by(step, id, from)?;
    let body = json!({"task-id": id, "title": task.title, "reason": reason});
    let status = release(step, id, &task, from, ("task.abandoned", body), delay_s)?;
    Ok(Written::Abandoned {
        id: id.to_string(),
        status,
    })
}

/// Asks whoever works on the task to stop: an announcement only.
pub(super) fn interrupt(
    step: &mut Step,
    id: &str,
    from: &str,
    reason: &Value,
) -> Result<Written, StoreError> {
    let task = load(step, id)?;
    touch_task(step, id)?;
    let body = json!({"task-id": id, "title": task.title, "reason": reason});
    announce(step, &task, from, "task.interrupt", body, vec![])?;
    Ok(Written::Interrupted { id: id.to_string() })
}

/// Puts a failed task back in the queue with its attempts reset.
pub(super) fn retry(step: &mut Step, id: &str, from: &str) -> Result<Written, StoreError> {
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
    announce(step, &task, from, "task.retried", body, vec![])?;
    Ok(Written::Retried { id: id.to_string() })
}

/// Takes a claimed task back (abandon or lease expiry): one more attempt used; back to
/// `Open` (after `delay_s`), or `Failed` once attempts reach the task's maximum.
fn release(
    step: &mut Step,
    id: &str,
    task: &TaskState,
    from: &str,
    (kind, body): (&'static str, Value),
    delay_s: f64,
) -> Result<Status, StoreError> {
    let now = now();
    let attempts = task.attempts + 1;
    let status = if attempts >= task.max_attempts {
        Status::Failed
    } else {
        Status::Open
    };
    let not_before = (delay_s > 0.0).then_some(now + delay_s);
    step.tx
        .prepare_cached(
            "UPDATE tasks SET status = ?2, attempts = ?3, not_before = ?4, claimed_by = NULL,
             claimed_at = NULL, lease_s = NULL, lease_expires_at = NULL, updated_at = ?5
             WHERE id = ?1",
        )?
        .execute(params![id, status.as_str(), attempts, not_before, now])?;
    step.effects.leases_changed = true;
    announce(step, task, from, kind, body, vec![])?;
    if status == Status::Failed {
        let body = json!({"task-id": id, "title": task.title, "attempts": attempts});
        announce(step, task, from, "task.failed", body, vec![])?;
    } else {
        step.effects.tasks_opened = true;
    }
    Ok(status)
}

/// Returns every claimed task whose lease has run out to the queue, announcing each.
pub(super) fn expire_leases(step: &mut Step) -> Result<(), StoreError> {
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
        release(
            step,
            &id,
            &task,
            SERVER_IDENTITY,
            ("task.expired", body),
            0.0,
        )?;
    }
    Ok(())
}

fn load(step: &Step, id: &str) -> Result<TaskState, StoreError> {
    step.tx
        .prepare_cached(
            "SELECT status, assigned_to, claimed_by, title, ch, not_before, attempts,
             max_attempts, lease_s FROM tasks WHERE id = ?1",
        )?
        .query_row([id], |row| {
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
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("no task {id}")))
}

/// A task that `from` holds: claimed (else a conflict) by `from` (else forbidden).
fn load_claimed_by(step: &Step, id: &str, from: &str) -> Result<TaskState, StoreError> {
    let task = load(step, id)?;
    if task.status != Status::Claimed {
        let status = task.status.as_str();
        return Err(StoreError::conflict(format!(
            "task {id} is {status}, not claimed"
        )));
    }
    match task.claimed_by.as_deref() {
        Some(claimer) if claimer != from => Err(StoreError::forbidden(format!(
            "task {id} is claimed by {claimer}, not {from}"
        ))),
        _ => Ok(task),
    }
}

fn touch_task(step: &Step, id: &str) -> Result<(), StoreError> {
    step.tx
        .prepare_cached("UPDATE tasks SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now()])?;
    Ok(())
}

/// Posts a task's announcement on the task's channel, in the task change's transaction.
fn announce(
    step: &mut Step,
    task: &TaskState,
    from: &str,
    kind: &'static str,
    body: Value,
    files: Vec<String>,
) -> Result<(), StoreError> {
    step.effects.transitions.push(kind);
    let mut message = NewMessage::announcement(&task.ch, from, kind, body);
    message.files = files;
    // A task made for one agent lands in that agent's inbox when it is created.
    if let ("task.created", Some(agent)) = (kind, &task.assigned_to) {
        message.recipients = vec![agent.clone()];
    }
    messages::announce(step, &message)
}
