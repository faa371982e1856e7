//! Runs one change (`Op`) inside its step: each kind of change to the module that knows it,
//! and the two small ones (presence, read cursor) here.
use super::clock::now;
use super::failure::StoreError;
use super::protocol::{Op, Written};
use super::step::Step;
use super::{idempotency, locks, messages, tasks};
use rusqlite::params;
use serde_json::Value;
use ulid::Ulid;

/// Runs one change in `step`; what it wrote.
pub(super) fn run(step: &mut Step, op: &Op) -> Result<Written, StoreError> {
    match op {
        Op::Publish(message) => {
            let (id, ts) = messages::insert(step, message)?;
            Ok(Written::Published { id, ts })
        }
        Op::PublishBatch(batch) => {
            let stamped = batch.iter().map(|message| messages::insert(step, message));
            Ok(Written::PublishedBatch(stamped.collect::<Result<_, _>>()?))
        }
        Op::CreateTask(task) => tasks::create(step, task),
        Op::Claim { id, from, lease_s } => tasks::claim(step, id, from, *lease_s),
        Op::ClaimNext {
            from,
            ch,
            lease_s,
            exclude,
        } => {
            let ch = ch.as_deref();
            let exclude = &**exclude;
            tasks::claim_next(step, &tasks::Wanted { from, ch, exclude }, *lease_s)
        }
        Op::Touch {
            id,
            from,
            claim,
            lease_s,
        } => tasks::touch(step, id, &holder(from, *claim), *lease_s),
        Op::Retry { id, from } => tasks::retry(step, id, from),
        Op::Update {
            id,
            from,
            claim,
            fields,
        } => tasks::update(step, id, &holder(from, *claim), fields),
        Op::Complete {
            id,
            from,
            claim,
            result,
            files,
        } => tasks::complete(step, id, &holder(from, *claim), result, files),
        Op::Abandon {
            id,
            from,
            claim,
            reason,
            delay_s,
            counted,
        } => {
            let how = tasks::Released {
                delay_s: *delay_s,
                counted: *counted,
            };
            tasks::abandon(step, id, &holder(from, *claim), reason, how)
        }
        Op::Interrupt { id, from, reason } => tasks::interrupt(step, id, from, reason),
        Op::Heartbeat {
            from,
            channels,
            meta,
        } => heartbeat(step, from, channels, meta),
        Op::MarkRead { agent, up_to } => mark_read(step, agent, up_to),
        Op::Prune { retention_days } => messages::prune(step, *retention_days),
        Op::Idempotent { key, op, keep } => {
            if let Some(first) = idempotency::recall(step.tx, key)? {
                return Ok(Written::Repeated(first));
            }
            let written = run(step, op)?;
            // Claim-next that found nothing changed nothing: its retry must look again.
            if !matches!(written, Written::NothingYet { .. }) {
                idempotency::remember(step.tx, key, &keep(&written))?;
            }
            Ok(written)
        }
        Op::Lock(op) => locks::run(step, op),
        // The writer indexes before a batch holding this runs (`Op::needs_search_index`).
        Op::IndexSearch => Ok(Written::Indexed),
    }
}

/// Presence: `from` is alive, listening on `channels`.
fn heartbeat(
    step: &mut Step,
    from: &str,
    channels: &Value,
    meta: &Value,
) -> Result<Written, StoreError> {
    step.tx
        .prepare_cached(
            "INSERT INTO presence (agent_id, last_seen, channels, meta)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id) DO UPDATE SET last_seen = ?2, channels = ?3, meta = ?4",
        )?
        .execute(params![from, now(), channels.to_string(), meta.to_string()])?;
    Ok(Written::Seen)
}

/// Who acts on a held task, as an op names them.
fn holder(from: &str, claim: Option<i64>) -> tasks::Holder<'_> {
    tasks::Holder { from, claim }
}

/// Moves `agent`'s inbox read cursor forward to `up_to`.
fn mark_read(step: &mut Step, agent: &str, up_to: &str) -> Result<Written, StoreError> {
    // Clamped to the greatest id issued so far: a cursor beyond it (any valid ULID is
    // accepted) would hide every later message for good. A clamp rather than a refusal:
    // "everything so far is read" is what such an id can only mean, and a client cannot
    // tell a future id from a present one before asking.
    let greatest = super::read::greatest_id(step.tx)?
        .unwrap_or(Ulid::nil())
        .to_string();
    let up_to = super::turns::mark_read(step.tx, agent, up_to.min(&greatest))?;
    Ok(Written::ReadUpTo {
        agent: agent.to_string(),
        up_to,
    })
}
