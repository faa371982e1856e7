//! The writer thread: owns the read-write connection, drains every queued command into one
//! transaction (group commit), runs each in its own savepoint, assigns ids, and feeds the
//! hub only after the commit.
use super::clock::now;
use super::failure::StoreError;
use super::protocol::{Command, Op, Written};
use super::step::{Effects, Step};
use super::{Stats, TaskBell, idempotency, locks, messages, tasks};
use crate::hub::Hub;
use crate::ids::IdGen;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::{Connection, params};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ulid::Ulid;

/// Most commands folded into one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 1024;

pub fn spawn(
    conn: Connection,
    commands: Receiver<Command>,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    bell: Arc<TaskBell>,
    floor: Option<Ulid>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let mut writer = Writer {
                conn,
                ids: IdGen::new(floor),
                hub,
                stats,
                bell,
                next_lease: None,
            };
            // Leases that ran out while the server was down expire on the first pass.
            writer.next_lease = writer.earliest_lease();
            while let Some(first) = writer.next_command(&commands) {
                let mut batch: Vec<Command> = first.into_iter().collect();
                while batch.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
                writer.run_batch(batch);
            }
            // Every sender is gone: the server is shutting down. Fold the WAL back in.
            let _ = writer
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        })
}

struct Writer {
    conn: Connection,
    ids: IdGen,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    bell: Arc<TaskBell>,
    /// When the soonest lease runs out (unix seconds), so the writer wakes up for it.
    next_lease: Option<f64>,
}

impl Writer {
    /// Waits for the next command, or until the soonest lease runs out (`Some(None)`: no
    /// command, just expire). `None` once every sender is gone.
    fn next_command(&self, commands: &Receiver<Command>) -> Option<Option<Command>> {
        let Some(deadline) = self.next_lease else {
            return commands.recv().ok().map(Some);
        };
        let wait = Duration::from_secs_f64((deadline - now()).max(0.0));
        match commands.recv_timeout(wait) {
            Ok(command) => Some(Some(command)),
            Err(RecvTimeoutError::Timeout) => Some(None),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn run_batch(&mut self, batch: Vec<Command>) {
        let mut effects = Effects::default();
        let mut replies = Vec::with_capacity(batch.len());
        let started = Instant::now();
        let committed = self.commit_batch(&batch, &mut effects, &mut replies);
        match committed {
            Ok(()) => {
                crate::metrics::METRICS.record_commit(
                    batch.len(),
                    started.elapsed(),
                    effects.events.len(),
                    &effects.transitions,
                );
                self.apply(effects);
                for (command, result) in batch.into_iter().zip(replies) {
                    let _ = command.reply.send(result);
                }
            }
            Err(err) => {
                for command in batch {
                    let _ = command.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Expires due leases, then runs each command in its own savepoint, so a refused one
    /// (409, 404...) leaves no trace while the rest of the batch commits together.
    fn commit_batch(
        &mut self,
        batch: &[Command],
        effects: &mut Effects,
        replies: &mut Vec<Result<Written, StoreError>>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if self.next_lease.is_some_and(|deadline| deadline <= now()) {
            let mut step = Step::new(&tx, &mut self.ids);
            tasks::expire_leases(&mut step)?;
            locks::expire(&mut step)?;
            effects.absorb(step.effects);
            effects.leases_changed = true;
        }
        for command in batch {
            let mut step = Step::new(&tx, &mut self.ids);
            // Cached statements: parsing these three for every command was measurable.
            tx.prepare_cached("SAVEPOINT command")?.execute([])?;
            let result = run(&mut step, &command.op);
            if result.is_ok() {
                effects.absorb(step.effects);
            } else {
                tx.prepare_cached("ROLLBACK TO command")?.execute([])?;
            }
            tx.prepare_cached("RELEASE command")?.execute([])?;
            replies.push(result);
        }
        tx.commit()?;
        Ok(())
    }

    fn apply(&mut self, effects: Effects) {
        let messages = &self.stats.messages;
        if effects.messages_delta >= 0 {
            messages.fetch_add(effects.messages_delta as u64, Ordering::Relaxed);
        } else {
            messages.fetch_sub(effects.messages_delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.stats
            .tasks
            .fetch_add(effects.tasks_added, Ordering::Relaxed);
        self.hub.publish(&effects.events);
        if effects.leases_changed {
            self.next_lease = self.earliest_lease();
        }
        if effects.tasks_opened {
            self.bell.ring();
        }
    }

    /// The soonest deadline of a task lease or a lock.
    fn earliest_lease(&self) -> Option<f64> {
        let lease: Option<f64> = self
            .conn
            .query_row(
                "SELECT min(lease_expires_at) FROM tasks WHERE lease_expires_at IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .ok()
            .flatten();
        let lock = locks::earliest(&self.conn);
        lease.into_iter().chain(lock).reduce(f64::min)
    }
}

/// Runs one change in `step`; what it wrote.
fn run(step: &mut Step, op: &Op) -> Result<Written, StoreError> {
    match op {
        Op::Publish(message) => {
            let (id, ts) = messages::insert(step, message)?;
            Ok(Written::Published { id, ts })
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
            tasks::claim_next(step, &tasks::Wanted { from, ch, exclude }, *lease_s)
        }
        Op::Touch { id, from, lease_s } => tasks::touch(step, id, from, *lease_s),
        Op::Retry { id, from } => tasks::retry(step, id, from),
        Op::Update { id, from, fields } => tasks::update(step, id, from, fields),
        Op::Complete {
            id,
            from,
            result,
            files,
        } => tasks::complete(step, id, from, result, files),
        Op::Abandon {
            id,
            from,
            reason,
            delay_s,
        } => tasks::abandon(step, id, from, reason, *delay_s),
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
            idempotency::remember(step.tx, key, &keep(&written))?;
            Ok(written)
        }
        Op::Lock(op) => locks::run(step, op),
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
