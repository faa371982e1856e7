//! A task's start: created open, then claimed by id or as the best one for an agent.
use super::{Announcement, Answer, TaskState, announce, load, set_lease};
use crate::store::clock::now;
use crate::store::failure::StoreError;
use crate::store::protocol::{NewTask, Status, Written};
use crate::store::step::Step;
use rusqlite::{OptionalExtension, ToSql, params};
use serde_json::json;

pub(crate) fn create(step: &mut Step, task: &NewTask) -> Answer {
    let id = step.next_id().to_string();
    insert(step, &id, task)?;
    step.effects.tasks_added += 1;
    step.effects.tasks_opened = true;
    let body = json!({"task-id": id, "title": task.title, "for": task.assigned_to});
    let state = load(step, &id)?;
    announce(
        step,
        &state,
        &task.from,
        Announcement::new("task.created", body),
    )?;
    Ok(Written::TaskCreated { id })
}

fn insert(step: &Step, id: &str, task: &NewTask) -> Result<(), StoreError> {
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
    Ok(())
}

/// Claims an open task for `from`.
pub(crate) fn claim(step: &mut Step, id: &str, from: &str, lease_s: Option<f64>) -> Answer {
    let task = load(step, id)?;
    check_claimable(id, from, &task)?;
    mark_claimed(step, id, from)?;
    let lease_expires_at = set_lease(step, id, lease_s)?;
    let claim = task.claims + 1;
    let body = json!({"task-id": id, "title": task.title, "claim": claim});
    announce(step, &task, from, Announcement::new("task.claimed", body))?;
    let (id, by) = (id.to_string(), from.to_string());
    Ok(Written::Taken {
        id,
        by,
        claim,
        lease_expires_at,
    })
}

fn mark_claimed(step: &Step, id: &str, from: &str) -> Result<(), StoreError> {
    let sql = "UPDATE tasks SET status = 'claimed', claimed_by = ?2, claimed_at = ?3,
               updated_at = ?3, claims = claims + 1 WHERE id = ?1";
    step.tx
        .prepare_cached(sql)?
        .execute(params![id, from, now()])?;
    Ok(())
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
    match task.not_before.filter(|t| *t > now()) {
        Some(not_before) => Err(delayed(id, not_before)),
        None => Ok(()),
    }
}

fn delayed(id: &str, not_before: f64) -> StoreError {
    // Seconds from now, rounded up: people and scripts read this, not an epoch.
    let wait = (not_before - now()).ceil().max(1.0);
    StoreError::conflict(format!("task {id} is delayed: claimable in {wait:.0} s"))
}

fn not_open(id: &str, task: &TaskState) -> String {
    match (task.status, &task.claimed_by) {
        (Status::Claimed, Some(by)) => format!("task {id} is already claimed by {by}"),
        (status, _) => format!("task {id} is {}, not open", status.as_str()),
    }
}

/// What claim-next looks among: open tasks for `from` (or anyone), on `ch` if given, minus
/// `exclude`.
pub(crate) struct Wanted<'a> {
    pub(crate) from: &'a str,
    pub(crate) ch: Option<&'a str>,
    /// A JSON array of task ids (`read::id_list`).
    pub(crate) exclude: &'a str,
}

/// Claims the best claimable task (highest priority, then oldest), or says when the soonest
/// delayed one becomes claimable.
pub(crate) fn claim_next(step: &mut Step, wanted: &Wanted, lease_s: Option<f64>) -> Answer {
    let args = params![now(), wanted.from, wanted.ch, wanted.exclude];
    let Some(id) = best_claimable(step, args)? else {
        let next_ready = soonest_ready(step, args)?;
        return Ok(Written::NothingYet { next_ready });
    };
    claim(step, &id, wanted.from, lease_s)?;
    let task = crate::store::read::task(step.tx, &id)?
        .ok_or_else(|| StoreError::internal("claimed task vanished"))?;
    Ok(Written::Claimed(Box::new(task)))
}

/// The id of the task claim-next takes; `args` are now, from, ch and exclude (JSON).
fn best_claimable(step: &Step, args: &[&dyn ToSql]) -> Result<Option<String>, StoreError> {
    let sql = "SELECT id FROM tasks WHERE status = 'open'
               AND (not_before IS NULL OR not_before <= ?1)
               AND (assigned_to IS NULL OR assigned_to = ?2)
               AND (?3 IS NULL OR ch = ?3)
               AND id NOT IN (SELECT value FROM json_each(?4))
               ORDER BY priority DESC, id LIMIT 1";
    let next = step
        .tx
        .prepare_cached(sql)?
        .query_row(args, |row| row.get(0));
    Ok(next.optional()?)
}

/// When the soonest delayed task claim-next could take becomes claimable.
fn soonest_ready(step: &Step, args: &[&dyn ToSql]) -> Result<Option<f64>, StoreError> {
    let sql = "SELECT min(not_before) FROM tasks WHERE status = 'open' AND not_before > ?1
               AND (assigned_to IS NULL OR assigned_to = ?2) AND (?3 IS NULL OR ch = ?3)
               AND id NOT IN (SELECT value FROM json_each(?4))";
    let mut stmt = step.tx.prepare_cached(sql)?;
    Ok(stmt.query_row(args, |row| row.get(0))?)
}
