//! The writer thread: owns the read-write connection, drains the queued commands (up to about
//! 1,024 messages' worth) into one transaction (group commit), runs each that can be refused
//! in its own savepoint, assigns ids, and feeds the hub only after the commit.
use super::clock::now;
use super::failure::StoreError;
use super::protocol::{Command, Op, Written};
use super::step::{Effects, Step};
use super::unindexed::Unindexed;
use super::{Stats, TaskBell, locks, ops, tasks};
use crate::hub::Hub;
use crate::ids::IdGen;
use crate::metrics::METRICS;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::{Connection, Transaction};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ulid::Ulid;

/// Weight (messages a command publishes, else 1: `Op::weight`) after which no more commands
/// join a transaction; bounds the latency of the first command and the messages one commit
/// publishes (the last command taken may cross it by one batch's 1,000; the announcements
/// task changes and lease expiries make are not counted).
const MAX_COMMIT_WEIGHT: usize = 1024;
/// After a failed commit (a full disk, say), how long the writer leaves the work it does on
/// its own (indexing for search, expiring leases) before trying it again. At once, it would
/// spin a core for as long as the disk stays full, and fail every command batch with it.
const OWN_WORK_RETRY: Duration = Duration::from_secs(1);

pub fn spawn(
    conn: Connection,
    commands: Receiver<Command>,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    bell: Arc<TaskBell>,
    floor: Option<Ulid>,
    unindexed: Unindexed,
) -> std::io::Result<JoinHandle<()>> {
    let writer = Writer {
        conn,
        ids: IdGen::new(floor),
        hub,
        stats,
        bell,
        next_lease: None,
        unindexed,
        own_work_paused: None,
    };
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let served = std::panic::catch_unwind(AssertUnwindSafe(|| writer.serve(&commands)));
            // A writer that died would leave the server up, answering reads and /status, but
            // storing nothing and leaving the requests queued for it unanswered: end the
            // process instead, so that its supervisor (systemd's Restart=) starts it afresh.
            if served.is_err() {
                say!("the writer thread failed; exiting so that the service is restarted");
                std::process::exit(70);
            }
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
    /// Messages committed but not yet in the search index.
    unindexed: Unindexed,
    /// Until when the writer's own work waits, after a failed commit (`OWN_WORK_RETRY`).
    own_work_paused: Option<Instant>,
}

impl Writer {
    /// Commits batches until every sender is gone (the server is shutting down).
    fn serve(mut self, commands: &Receiver<Command>) {
        // Leases that ran out while the server was down expire on the first pass.
        self.next_lease = self.earliest_lease();
        while let Some(first) = self.next_command(commands) {
            self.run_batch(batch(first, commands));
        }
        if let Err(e) = self.flush_unindexed() {
            say!("the last messages will be indexed at start-up: {e}");
        }
        self.checkpoint();
    }

    /// Writes the unindexed list into the index, in a transaction of its own (at shutdown).
    fn flush_unindexed(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        self.unindexed.index(&tx)?;
        tx.commit()?;
        self.forget_unindexed();
        Ok(())
    }

    /// Empties the unindexed list, once its messages are in the index.
    fn forget_unindexed(&mut self) {
        self.unindexed.clear();
        self.stats.search_pending.store(false, Ordering::SeqCst);
    }

    /// Folds the WAL back into the database, leaving it empty, as the last act.
    fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// Waits for the next command, or until the soonest lease runs out or the unindexed
    /// list falls due (`Some(None)`: no command, just expire or index). `None` once every
    /// sender is gone.
    fn next_command(&self, commands: &Receiver<Command>) -> Option<Option<Command>> {
        match self.next_wake() {
            Some(wait) => recv_within(commands, wait),
            None => commands.recv().ok().map(Some),
        }
    }

    /// How long until there is something to do without a command, if ever.
    fn next_wake(&self) -> Option<Duration> {
        let lease = self
            .next_lease
            .map(|at| Duration::from_secs_f64((at - now()).max(0.0)));
        let index = self.unindexed.deadline();
        let index = index.map(|at| at.saturating_duration_since(Instant::now()));
        let paused = self.own_work_paused;
        let paused = paused.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        });
        lease
            .into_iter()
            .chain(index)
            .min()
            .map(|wake| wake.max(paused))
    }

    /// Whether the writer may do its own work now (`own_work_paused`).
    fn own_work_ready(&self) -> bool {
        self.own_work_paused
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Commits the batch, then applies its effects and answers each command; if the commit
    /// fails, every command gets its error.
    fn run_batch(&mut self, batch: Vec<Command>) {
        let mut effects = Effects::default();
        let mut replies = Vec::with_capacity(batch.len());
        let started = Instant::now();
        let committed = self.commit_batch(&batch, &mut effects, &mut replies);
        if let Err(err) = &committed {
            replies = batch.iter().map(|_| Err(err.clone())).collect();
            self.own_work_paused = Some(Instant::now() + OWN_WORK_RETRY);
        } else {
            let (events, transitions) = (effects.events.len(), &effects.transitions);
            METRICS.record_commit(batch.len(), started.elapsed(), events, transitions);
            self.record(&mut effects);
        }
        for (command, result) in batch.into_iter().zip(replies) {
            let _ = command.reply.send(result);
        }
        // After the answers: with thousands of watchers, handing an event to each takes
        // a while, and no 201 needs to wait for it.
        if committed.is_ok() {
            self.announce(&effects);
        }
    }

    /// Does the writer's own due work (indexing for search, expiring leases), then runs each
    /// command that can be refused in its own savepoint, so a refused one leaves no trace
    /// while the rest of the batch commits together. The own work has a savepoint too: if
    /// it fails (its index writes do not fit on a full disk, say), only it is undone and
    /// waits `OWN_WORK_RETRY`, while the commands still commit; one that needs the index
    /// whole (a search) gets the index's error.
    fn commit_batch(
        &mut self,
        batch: &[Command],
        effects: &mut Effects,
        replies: &mut Vec<Result<Written, StoreError>>,
    ) -> Result<(), StoreError> {
        let indexing = self.index_due(batch);
        let leases_due = self.next_lease.is_some_and(|deadline| deadline <= now());
        let expiring = leases_due && self.own_work_ready();
        let tx = self.conn.transaction()?;
        let unindexed = &self.unindexed;
        let indexed = indexing
            .then(|| savepoint(&tx, || Ok(unindexed.index(&tx)?)))
            .transpose()?;
        let expired = expiring
            .then(|| savepoint(&tx, || expire_due(&mut Step::new(&tx, &mut self.ids))))
            .transpose()?;
        let own_failed = matches!(indexed, Some(Err(_))) || matches!(expired, Some(Err(_)));
        if let Some(Ok(expired)) = expired {
            effects.absorb(expired);
        }
        let index_failure = indexed.as_ref().and_then(|indexed| indexed.as_ref().err());
        for command in batch {
            if let Some(failure) = index_failure.filter(|_| command.op.needs_search_index()) {
                replies.push(Err(failure.clone()));
                continue;
            }
            let mut step = Step::new(&tx, &mut self.ids);
            replies.push(in_savepoint(&mut step, &command.op)?);
            effects.absorb(step.effects);
        }
        tx.commit()?;
        match indexed {
            Some(Ok(())) => self.forget_unindexed(),
            // The list would grow for as long as the index cannot be written, and what it
            // holds is stored anyway: the retry indexes from the table instead.
            Some(Err(_)) => self.unindexed.fall_behind(),
            None => {}
        }
        if indexing || expiring {
            self.own_work_paused = own_failed.then(|| Instant::now() + OWN_WORK_RETRY);
        }
        Ok(())
    }

    /// Whether this batch's transaction indexes the unindexed list first: when it is due
    /// (and the writer's own work is not paused), or when a command in the batch needs the
    /// index whole.
    fn index_due(&self, batch: &[Command]) -> bool {
        let due = self.unindexed.due() && self.own_work_ready();
        !self.unindexed.is_empty() && (due || batch.iter().any(|c| c.op.needs_search_index()))
    }

    /// What a commit changed that its answers must already show: the counts (/status),
    /// the messages waiting for the search index, the writer's next lease deadline.
    fn record(&mut self, effects: &mut Effects) {
        self.unindexed
            .extend(std::mem::take(&mut effects.search_docs));
        let pending = !self.unindexed.is_empty();
        self.stats.search_pending.store(pending, Ordering::SeqCst);
        self.stats
            .count(effects.messages_delta, effects.tasks_added);
        if effects.leases_changed {
            self.next_lease = self.earliest_lease();
        }
    }

    /// Tells who waits on a commit: its events to the hub (streams, long polls), a ring
    /// to claimers waiting for an open task.
    fn announce(&self, effects: &Effects) {
        self.hub.publish(&effects.events);
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

/// The first command and what else is queued already, until `MAX_COMMIT_WEIGHT` is reached.
fn batch(first: Option<Command>, commands: &Receiver<Command>) -> Vec<Command> {
    let mut weight = first.as_ref().map_or(0, |c| c.op.weight());
    let mut batch: Vec<Command> = first.into_iter().collect();
    while weight < MAX_COMMIT_WEIGHT {
        let Ok(command) = commands.try_recv() else {
            break;
        };
        weight += command.op.weight();
        batch.push(command);
    }
    batch
}

/// Returns the tasks whose lease ran out to the queue and drops run-out locks.
fn expire_due(step: &mut Step) -> Result<Effects, StoreError> {
    tasks::expire_leases(step)?;
    locks::expire(step)?;
    step.effects.leases_changed = true;
    Ok(std::mem::take(&mut step.effects))
}

/// Runs `op` in its own savepoint if it can be refused (`Op::can_be_refused`): refused, it
/// leaves no trace (and no effects). One that cannot runs without: if it fails, storage
/// itself has failed, and so does the whole batch.
fn in_savepoint(step: &mut Step, op: &Op) -> Result<Result<Written, StoreError>, StoreError> {
    if !op.can_be_refused() {
        return ops::run(step, op).map(Ok);
    }
    let tx = step.tx;
    let result = savepoint(tx, || ops::run(step, op))?;
    if result.is_err() {
        step.effects = Effects::default();
    }
    Ok(result)
}

/// Runs `work` in a savepoint of `tx`: if it fails, what it wrote is undone and the rest of
/// the transaction goes on. The outer error is the savepoint itself failing.
fn savepoint<T>(
    tx: &Transaction,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<Result<T, StoreError>, StoreError> {
    // Cached statements: parsing these three for every command was measurable.
    tx.prepare_cached("SAVEPOINT command")?.execute([])?;
    let result = work();
    if result.is_err() {
        tx.prepare_cached("ROLLBACK TO command")?.execute([])?;
    }
    tx.prepare_cached("RELEASE command")?.execute([])?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::protocol::NewMessage;
    use crossbeam_channel::unbounded;

    fn command(op: Op) -> Command {
        let (reply, _) = unbounded();
        Command { op, reply }
    }

    fn publish(count: usize) -> Op {
        let message = || NewMessage::announcement("c", "a", "t", serde_json::json!({}));
        Op::PublishBatch((0..count).map(|_| message()).collect())
    }

    /// A transaction takes queued commands until their weight reaches `MAX_COMMIT_WEIGHT`:
    /// the first always, and the one that crosses it, then no more.
    #[test]
    fn a_transaction_takes_commands_up_to_a_weight_in_messages() {
        let (tx, rx) = unbounded();
        for _ in 0..3 {
            tx.send(command(publish(400))).unwrap();
        }
        tx.send(command(Op::IndexSearch)).unwrap();
        let first = batch(Some(command(publish(1000))), &rx);
        assert_eq!(first.len(), 2, "1,000, then 400 crossing 1,024");
        let second = batch(None, &rx);
        assert_eq!(second.len(), 3, "400 + 400 + 1");
        let light: Vec<Command> = (0..2000).map(|_| command(Op::IndexSearch)).collect();
        light.into_iter().for_each(|c| tx.send(c).unwrap());
        assert_eq!(batch(None, &rx).len(), MAX_COMMIT_WEIGHT);
    }
}
