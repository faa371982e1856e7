//! Storage: one writer thread owns the only read-write SQLite connection (group commit, id
//! assignment, hub feed after commit); request threads read through a pool of read-only
//! connections.
pub mod batches;
mod clock;
mod failure;
pub mod horizon;
pub mod idempotency;
pub mod lists;
pub mod locks;
mod messages;
mod ops;
mod protocol;
pub mod read;
pub mod schema;
pub mod search;
mod step;
mod tasks;
pub mod threads;
pub mod turns;
mod unindexed;
mod writer;

pub use clock::now;
pub use failure::{Failure, StoreError};
pub use protocol::{NewMessage, NewTask, Op, Status, Written};

use crate::counted::Counted;
use crate::hub::Hub;
use crossbeam_channel::{Sender, bounded};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Read-only connections opened at start and kept: the descriptors reads need, held before
/// a flood of client connections can take them.
const RESERVED_READERS: usize = 4;
/// How long a read waits for a pooled connection when no new one can be opened.
const READER_WAIT: Duration = Duration::from_secs(1);

/// Row counts kept in memory so /status never counts a million rows per request.
#[derive(Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub tasks: AtomicU64,
    /// Whether messages are stored that the search index does not hold yet (`unindexed`).
    pub search_pending: AtomicBool,
}

impl Stats {
    /// The counts in the database (for /status and /metrics), and its greatest id, the
    /// floor of the ids to come.
    fn load(conn: &Connection) -> rusqlite::Result<(Stats, Option<ulid::Ulid>)> {
        let (messages, tasks) = read::counts(conn)?;
        crate::metrics::METRICS.load_task_counts(conn)?;
        Ok((Stats::new(messages, tasks), read::greatest_id(conn)?))
    }

    fn new(messages: u64, tasks: u64) -> Stats {
        Stats {
            messages: AtomicU64::new(messages),
            tasks: AtomicU64::new(tasks),
            search_pending: AtomicBool::new(false),
        }
    }

    /// Counts what a commit changed: messages added (or pruned, negative) and tasks added.
    fn count(&self, messages_delta: i64, tasks_added: u64) {
        add_signed(&self.messages, messages_delta);
        self.tasks.fetch_add(tasks_added, Ordering::Relaxed);
    }
}

/// Adds `delta` to `counter`, which has no signed add of its own.
fn add_signed(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

pub struct Store {
    commands: Mutex<Option<Sender<protocol::Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Readers>,
    pub stats: Arc<Stats>,
    /// Rung after a commit that made a task claimable.
    pub bell: Arc<TaskBell>,
}

/// Wakes claim-next callers that wait for work, without polling.
#[derive(Default)]
pub struct TaskBell {
    rings: Mutex<u64>,
    rung: Condvar,
    /// Callers inside `wait` right now (`claims-waiting` in /status): what a test or an
    /// operator watches to know a long poll is in place, instead of guessing with a sleep.
    waiting: AtomicUsize,
}

impl TaskBell {
    /// How many times it has rung; pass to `wait` to miss no ring in between.
    pub fn rings(&self) -> u64 {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ring(&self) {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.rung.notify_all();
    }

    /// Waits until it rings after `seen` rings, or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        // Counted under the lock, so a caller seen waiting is one a ring will wake.
        let _counted = Counted::enter(&self.waiting);
        let _ = self
            .rung
            .wait_timeout_while(rings, timeout, |rings| *rings == seen);
    }

    /// How many callers are waiting for a ring right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// Indexes the stored messages a stop left out of the search index (a crash loses the
/// writer's unindexed list, never a message), before the server takes any request, so a
/// search never misses one. Whether the index still lacks some: on a full disk (a crash on
/// one, restarted before space is freed) the server starts anyway, reads, streams and the
/// writes that fit work, searches answer the error, and the writer tries again every
/// second. Any other failure stops start-up, as a hole in the index would last.
fn catch_up_search(conn: &mut Connection) -> rusqlite::Result<bool> {
    let indexed = conn.transaction().and_then(|tx| {
        let count = search::index_unindexed(&tx)?;
        tx.commit().map(|()| count)
    });
    match indexed {
        Ok(0) => Ok(false),
        Ok(count) => {
            say!("indexed {count} messages for search");
            Ok(false)
        }
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
            say!("cannot index the stored messages for search yet ({e}); searches fail until then");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

impl Store {
    /// Opens the database (creating and upgrading it) and starts the writer thread.
    pub fn open(path: &Path, hub: Arc<Hub>) -> Result<Store, String> {
        let cannot = |doing: &str, e: rusqlite::Error| {
            format!("cannot {doing} database {}: {e}", path.display())
        };
        let mut conn = schema::open_writer(path).map_err(|e| cannot("open", e))?;
        let search_behind =
            catch_up_search(&mut conn).map_err(|e| cannot("index for search", e))?;
        let (stats, floor) = Stats::load(&conn).map_err(|e| cannot("read", e))?;
        stats.search_pending.store(search_behind, Ordering::SeqCst);
        let stats = Arc::new(stats);
        let readers = Readers::open(path.to_path_buf()).map_err(|e| cannot("open", e))?;
        let (tx, rx) = bounded(4096);
        let bell = Arc::new(TaskBell::default());
        let unindexed = unindexed::Unindexed::new(search_behind);
        let writer = writer::spawn(conn, rx, hub, stats.clone(), bell.clone(), floor, unindexed)
            .map_err(|e| format!("cannot start writer thread: {e}"))?;
        Ok(Store {
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(readers),
            stats,
            bell,
        })
    }

    /// Queues a change for the writer and waits until it is committed (or refused).
    pub fn write(&self, op: Op) -> Result<Written, StoreError> {
        let (reply, written) = bounded(1);
        self.sender()?
            .send(protocol::Command { op, reply })
            .map_err(|_| StoreError::shutting_down())?;
        written.recv().map_err(|_| StoreError::shutting_down())?
    }

    /// Makes the search index hold every message stored so far (a search calls this first:
    /// the writer indexes new messages a batch at a time, shortly after their commit).
    pub fn index_search(&self) -> Result<(), StoreError> {
        if self.stats.search_pending.load(Ordering::SeqCst) {
            self.write(Op::IndexSearch)?;
        }
        Ok(())
    }

    /// The writer's queue, gone once shutdown has begun.
    fn sender(&self) -> Result<Sender<protocol::Command>, StoreError> {
        let sender = self.commands.lock().ok().and_then(|c| c.clone());
        sender.ok_or_else(StoreError::shutting_down)
    }

    /// Runs a query on a pooled read-only connection.
    pub fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.readers.with(query)
    }

    /// The read side alone, for an answer that reads as it is sent (`batches::Messages`).
    pub fn reader(&self) -> Reader {
        Reader(self.readers.clone())
    }

    /// Lets the writer commit everything already queued, then closes the database.
    pub fn shutdown(&self) {
        // The read-only connections go first, so that the writer's is the last one open: as
        // the last, it removes the -wal and -shm files, leaving the database one file.
        self.readers.close();
        // Dropping the last sender is what tells the writer to finish.
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        self.join_writer();
    }

    /// Waits for the writer thread to end (once; later calls find it taken).
    fn join_writer(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// Runs queries on the store's pooled read-only connections; outlives a handler's borrow.
#[derive(Clone)]
pub struct Reader(Arc<Readers>);

impl Reader {
    pub fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.0.with(query)
    }
}

/// A small pool of read-only connections: a few opened at start, more on demand, reused.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    /// At shutdown: connections are closed when returned, no longer kept.
    closed: AtomicBool,
}

impl Readers {
    fn open(path: PathBuf) -> rusqlite::Result<Readers> {
        let mut idle = Vec::with_capacity(RESERVED_READERS);
        for _ in 0..RESERVED_READERS {
            let conn = schema::open_reader(&path)?;
            // A first read opens the WAL and shared-memory files too.
            conn.pragma_query_value(None, "schema_version", |row| row.get::<_, i64>(0))?;
            idle.push(conn);
        }
        Ok(Readers {
            path,
            idle: Mutex::new(idle),
            returned: Condvar::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Closes the idle connections, and each one in use once it is returned.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.take()?;
        let result = query(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 32 && !self.closed.load(Ordering::SeqCst) {
            idle.push(conn);
            self.returned.notify_one();
        }
        Ok(result?)
    }

    /// A pooled connection, or a new one; when none can be opened (out of descriptors),
    /// the next one returned to the pool.
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let err = match schema::open_reader(&self.path) {
            Ok(conn) => return Ok(conn),
            Err(err) => err,
        };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (mut idle, _) = self
            .returned
            .wait_timeout_while(idle, READER_WAIT, |idle| idle.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        idle.pop().ok_or_else(|| StoreError::from(err))
    }
}
