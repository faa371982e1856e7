//! The writer thread: owns the read-write connection, drains every queued command into one
//! transaction (group commit), runs each in its own savepoint, assigns ids, and feeds the
//! hub only after the commit.
use super::clock::now;
use super::failure::StoreError;
use super::protocol::{Command, Op, Written};
use super::step::{Effects, Step};
use super::{Stats, TaskBell, locks, ops, tasks};
use crate::hub::Hub;
use crate::ids::IdGen;
use crate::metrics::METRICS;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::Connection;
use std::sync::Arc;
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
    let writer = Writer {
        conn,
        ids: IdGen::new(floor),
        hub,
        stats,
        bell,
        next_lease: None,
    };
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || writer.serve(&commands))
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
    /// Commits batches until every sender is gone (the server is shutting down).
    fn serve(mut self, commands: &Receiver<Command>) {
        // Leases that ran out while the server was down expire on the first pass.
        self.next_lease = self.earliest_lease();
        while let Some(first) = self.next_command(commands) {
            self.run_batch(batch(first, commands));
        }
        self.checkpoint();
    }

    /// Folds the WAL back into the database, leaving it empty, as the last act.
    fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// Waits for the next command, or until the soonest lease runs out (`Some(None)`: no
    /// command, just expire). `None` once every sender is gone.
    fn next_command(&self, commands: &Receiver<Command>) -> Option<Option<Command>> {
        let Some(deadline) = self.next_lease else {
            return commands.recv().ok().map(Some);
        };
        let wait = Duration::from_secs_f64((deadline - now()).max(0.0));
        recv_within(commands, wait)
    }

    /// Commits the batch, then applies its effects and answers each command; if the commit
    /// fails, every command gets its error.
    fn run_batch(&mut self, batch: Vec<Command>) {
        let mut effects = Effects::default();
        let mut replies = Vec::with_capacity(batch.len());
        let started = Instant::now();
        if let Err(err) = self.commit_batch(&batch, &mut effects, &mut replies) {
            replies = batch.iter().map(|_| Err(err.clone())).collect();
        } else {
            let (events, transitions) = (effects.events.len(), &effects.transitions);
            METRICS.record_commit(batch.len(), started.elapsed(), events, transitions);
            self.apply(effects);
        }
        for (command, result) in batch.into_iter().zip(replies) {
            let _ = command.reply.send(result);
        }
    }

    /// Expires due leases, then runs each command in its own savepoint, so a refused one
    /// leaves no trace while the rest of the batch commits together.
    fn commit_batch(
        &mut self,
        batch: &[Command],
        effects: &mut Effects,
        replies: &mut Vec<Result<Written, StoreError>>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if self.next_lease.is_some_and(|deadline| deadline <= now()) {
            effects.absorb(expire_due(&mut Step::new(&tx, &mut self.ids))?);
        }
        for command in batch {
            let mut step = Step::new(&tx, &mut self.ids);
            replies.push(in_savepoint(&mut step, &command.op)?);
            effects.absorb(step.effects);
        }
        tx.commit()?;
        Ok(())
    }

    fn apply(&mut self, effects: Effects) {
        self.stats
            .count(effects.messages_delta, effects.tasks_added);
        self.hub.publish(&effects.events);
        self.wake(&effects);
    }

    /// Wakes whoever waits on what the commit changed: this writer's next lease deadline,
    /// and claimers waiting for an open task.
    fn wake(&mut self, effects: &Effects) {
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

/// The next command within `wait` (`Some(None)` if none came), `None` once every sender is
/// gone.
fn recv_within(commands: &Receiver<Command>, wait: Duration) -> Option<Option<Command>> {
    match commands.recv_timeout(wait) {
        Ok(command) => Some(Some(command)),
        Err(RecvTimeoutError::Timeout) => Some(None),
        Err(RecvTimeoutError::Disconnected) => None,
    }
}

/// The first command and what else is queued already, up to `MAX_BATCH`.
fn batch(first: Option<Command>, commands: &Receiver<Command>) -> Vec<Command> {
    let mut batch: Vec<Command> = first.into_iter().collect();
    let room = MAX_BATCH - batch.len();
    batch.extend(commands.try_iter().take(room));
    batch
}

/// Returns the tasks whose lease ran out to the queue and drops run-out locks.
fn expire_due(step: &mut Step) -> Result<Effects, StoreError> {
    tasks::expire_leases(step)?;
    locks::expire(step)?;
    step.effects.leases_changed = true;
    Ok(std::mem::take(&mut step.effects))
}

/// Runs `op` in its own savepoint: refused, it leaves no trace (and no effects).
fn in_savepoint(step: &mut Step, op: &Op) -> Result<Result<Written, StoreError>, StoreError> {
    // Cached statements: parsing these three for every command was measurable.
    step.tx.prepare_cached("SAVEPOINT command")?.execute([])?;
    let result = ops::run(step, op);
    if result.is_err() {
        step.effects = Effects::default();
        step.tx.prepare_cached("ROLLBACK TO command")?.execute([])?;
    }
    step.tx.prepare_cached("RELEASE command")?.execute([])?;
    Ok(result)
}
