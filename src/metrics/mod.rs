//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4). Counters and gauges are
//! atomics fed by the few places that already know: the writer's commit loop (batches,
//! messages, task transitions), the answer path (requests by route and status class), the
//! blob store and the loop guard. A scrape reads them and `/proc`, never the database.
mod render;

use rusqlite::Connection;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The process's one set of metrics, as a Prometheus client library's default registry.
pub static METRICS: Metrics = Metrics::new();

/// The sockets the server holds before any client connects (the listener, the signal
/// handler's socket pair), noted at start-up: what `/metrics` subtracts to count connections.
pub static IDLE_SOCKETS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Route names in `workshop_http_requests_total{route=...}`; `server::Route::label` gives
/// one of these. Requests that match no route count as `unrouted`.
pub const ROUTES: &[&str] = &[
    "preflight",
    "stream",
    "publish",
    "history",
    "channels",
    "task_create",
    "task_list",
    "task_show",
    "task_claim_next",
    "task_action",
    "upload",
    "fetch",
    "heartbeat",
    "presence",
    "status",
    "metrics",
    "ui",
    "inbox",
    "inbox_read",
    "message",
    "thread",
    "search",
    "locks",
    "lock_action",
    "unrouted",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

const STATUSES: [&str; 4] = ["open", "claimed", "done", "failed"];
const OPEN: usize = 0;
const CLAIMED: usize = 1;
const DONE: usize = 2;
const FAILED: usize = 3;

/// Task transitions by the announcement the writer makes for each, and the status each takes
/// a task from and to. A release that exhausts the attempts announces `expired`/`abandoned`
/// (claimed -> open) and then `failed` (open -> failed), so the counts add up either way.
const TRANSITIONS: [(&str, Option<usize>, Option<usize>); 9] = [
    ("task.created", None, Some(OPEN)),
    ("task.claimed", Some(OPEN), Some(CLAIMED)),
    ("task.updated", None, None),
    ("task.interrupt", None, None),
    ("task.done", Some(CLAIMED), Some(DONE)),
    ("task.abandoned", Some(CLAIMED), Some(OPEN)),
    ("task.expired", Some(CLAIMED), Some(OPEN)),
    ("task.failed", Some(OPEN), Some(FAILED)),
    ("task.retried", Some(FAILED), Some(OPEN)),
];

/// What the loop guard refuses, by what was asked.
pub const THROTTLED: [&str; 3] = ["publish", "task_create", "lock_acquire"];

const BATCH_BOUNDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const COMMIT_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct Metrics {
    messages: AtomicU64,
    tasks: [AtomicI64; STATUSES.len()],
    transitions: [AtomicU64; TRANSITIONS.len()],
    requests: [[AtomicU64; CLASSES.len()]; ROUTES.len()],
    batch_size: Histogram<{ BATCH_BOUNDS.len() }>,
    commit_seconds: Histogram<{ COMMIT_BOUNDS.len() }>,
    blob_bytes: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    throttled: [AtomicU64; THROTTLED.len()],
}

/// A histogram with fixed upper bounds; counts per bucket (not cumulative) and the sum.
struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|bound| value <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.add_to_sum(value);
    }

    /// The sum is an f64 kept as its bits, so adding is a compare-and-swap loop.
    fn add_to_sum(&self, value: f64) {
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

/// What a scrape reads from the running server besides the counters here.
pub struct Live {
    pub uptime: Duration,
    pub subscribers: usize,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            messages: AtomicU64::new(0),
            tasks: [const { AtomicI64::new(0) }; STATUSES.len()],
            transitions: [const { AtomicU64::new(0) }; TRANSITIONS.len()],
            requests: [const { [const { AtomicU64::new(0) }; CLASSES.len()] }; ROUTES.len()],
            batch_size: Histogram::new(&BATCH_BOUNDS),
            commit_seconds: Histogram::new(&COMMIT_BOUNDS),
            blob_bytes: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            throttled: [const { AtomicU64::new(0) }; THROTTLED.len()],
        }
    }

    /// Sets the task gauges from the database, once at start-up (before the writer runs);
    /// from then on the writer's transitions keep them.
    pub fn load_task_counts(&self, conn: &Connection) -> rusqlite::Result<()> {
        let counts = task_counts(conn)?;
        for (gauge, n) in self.tasks.iter().zip(counts) {
            gauge.store(n, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One committed group-commit batch: its size, how long it took, the messages it stored
    /// and the task transitions it made (by announcement type).
    pub fn record_commit(
        &self,
        commands: usize,
        took: Duration,
        messages: usize,
        transitions: &[&str],
    ) {
        self.batch_size.observe(commands as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        for kind in transitions {
            self.count_transition(kind);
        }
    }

    /// A task transition, by its announcement type: counted, and the task moved between the
    /// status gauges.
    fn count_transition(&self, kind: &str) {
        let Some(i) = TRANSITIONS.iter().position(|(k, ..)| *k == kind) else {
            return;
        };
        self.transitions[i].fetch_add(1, Ordering::Relaxed);
        let (_, from, to) = TRANSITIONS[i];
        self.move_task(from, to);
    }

    /// One task leaves status gauge `from` and joins `to` (`None`: created, or deleted).
    fn move_task(&self, from: Option<usize>, to: Option<usize>) {
        if let Some(from) = from {
            self.tasks[from].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(to) = to {
            self.tasks[to].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_request(&self, route: &str, status: u16) {
        let row = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[row][class].fetch_add(1, Ordering::Relaxed);
    }

    /// Blob bytes already on disk at start-up.
    pub fn set_blob_bytes(&self, bytes: u64) {
        self.blob_bytes.store(bytes, Ordering::Relaxed);
    }

    /// An upload; `new` when its content was not stored yet (blobs are deduplicated).
    pub fn count_upload(&self, size: u64, new: bool) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.upload_bytes.fetch_add(size, Ordering::Relaxed);
        if new {
            self.blob_bytes.fetch_add(size, Ordering::Relaxed);
        }
    }

    /// A request the loop guard refused; `what` is one of `THROTTLED`.
    pub fn count_throttled(&self, what: &str) {
        let i = THROTTLED.iter().position(|t| *t == what);
        debug_assert!(i.is_some(), "{what:?} is not one of THROTTLED");
        if let Some(i) = i {
            self.throttled[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Tasks by status (`STATUSES`), in one query.
fn task_counts(conn: &Connection) -> rusqlite::Result<[i64; STATUSES.len()]> {
    let mut counts = [0; STATUSES.len()];
    let mut query = conn.prepare("SELECT status, count(*) FROM tasks GROUP BY status")?;
    let mut rows = query.query([])?;
    while let Some(row) = rows.next()? {
        let status: String = row.get(0)?;
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            counts[i] = row.get(1)?;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_move_task_gauges() {
        let m = Metrics::new();
        let kinds = ["task.created", "task.created", "task.claimed", "task.done"];
        m.record_commit(4, Duration::from_millis(2), 4, &kinds);
        let expire = [
            "task.created",
            "task.claimed",
            "task.expired",
            "task.failed",
        ];
        m.record_commit(1, Duration::from_millis(1), 4, &expire);
        let counts: Vec<i64> = m.tasks.iter().map(|t| t.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, [1, 0, 1, 1], "open, claimed, done, failed");
        let text = m.render(&Live {
            uptime: Duration::from_secs(3),
            subscribers: 2,
        });
        assert!(text.contains("workshop_lease_expiries_total 1\n"), "{text}");
        assert!(text.contains("workshop_commit_batch_size_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("workshop_commit_batch_size_count 2\n"));
        assert!(text.contains("workshop_messages_published_total 8\n"));
    }

    #[test]
    fn task_gauges_load_in_one_query() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE tasks (id TEXT, status TEXT);
             INSERT INTO tasks VALUES ('a','open'),('b','open'),('c','done'),('d','failed');",
        )
        .unwrap();
        let m = Metrics::new();
        m.tasks[CLAIMED].store(7, Ordering::Relaxed);
        m.load_task_counts(&conn).unwrap();
        let counts: Vec<i64> = m.tasks.iter().map(|t| t.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, [2, 0, 1, 1], "open, claimed, done, failed");
    }

    #[test]
    fn requests_are_counted_by_route_and_class() {
        let m = Metrics::new();
        m.count_request("publish", 201);
        m.count_request("publish", 429);
        m.count_request("no such route", 404);
        let text = m.render(&Live {
            uptime: Duration::ZERO,
            subscribers: 0,
        });
        for line in [
            "route=\"publish\",code=\"2xx\"} 1",
            "route=\"publish\",code=\"4xx\"} 1",
            "route=\"unrouted\",code=\"4xx\"} 1",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
