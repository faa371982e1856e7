//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4). Counters and gauges are
//! atomics fed by the few places that already know: the writer's commit loop (batches,
//! messages, task transitions), the answer path (requests by route and status class), the
//! blob store and the loop guard. A scrape reads them and `/proc`, never the database.
use rusqlite::Connection;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The process's one set of metrics, as a Prometheus client library's default registry.
pub static METRICS: Metrics = Metrics::new();

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
pub const THROTTLED: [&str; 2] = ["publish", "task_create"];

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
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
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
        let mut counts = [0; STATUSES.len()];
        let mut query = conn.prepare("SELECT status, count(*) FROM tasks GROUP BY status")?;
        let mut rows = query.query([])?;
        while let Some(row) = rows.next()? {
            let status: String = row.get(0)?;
            if let Some(i) = STATUSES.iter().position(|s| *s == status) {
                counts[i] = row.get(1)?;
            }
        }
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
            let Some(i) = TRANSITIONS.iter().position(|(k, ..)| k == kind) else {
                continue;
            };
            self.transitions[i].fetch_add(1, Ordering::Relaxed);
            let (_, from, to) = TRANSITIONS[i];
            if let Some(from) = from {
                self.tasks[from].fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(to) = to {
                self.tasks[to].fetch_add(1, Ordering::Relaxed);
            }
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

    /// The whole exposition.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let version = env!("CARGO_PKG_VERSION");
        header(
            &mut out,
            "workshop_build_info",
            "gauge",
            "The running build.",
        );
        let _ = writeln!(out, "workshop_build_info{{version=\"{version}\"}} 1");
        let uptime = live.uptime.as_secs_f64();
        gauge(
            &mut out,
            "workshop_uptime_seconds",
            "Seconds since start.",
            uptime,
        );
        let help = "Messages stored since start (announcements included).";
        counter(
            &mut out,
            "workshop_messages_published_total",
            help,
            load(&self.messages),
        );
        header(&mut out, "workshop_tasks", "gauge", "Tasks by status.");
        for (status, n) in STATUSES.iter().zip(&self.tasks) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "workshop_tasks{{status=\"{status}\"}} {n}");
        }
        let name = "workshop_task_transitions_total";
        header(&mut out, name, "counter", "Task transitions by kind.");
        for ((kind, ..), n) in TRANSITIONS.iter().zip(&self.transitions) {
            let kind = kind.trim_start_matches("task.");
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", load(n));
        }
        let help = "Claims whose lease ran out.";
        let expired = TRANSITIONS.iter().position(|(k, ..)| *k == "task.expired");
        let expired = expired.map_or(0, |i| load(&self.transitions[i]));
        counter(&mut out, "workshop_lease_expiries_total", help, expired);
        let help = "Live hub subscribers: SSE streams and long-poll (`?wait=`) requests waiting.";
        gauge(
            &mut out,
            "workshop_subscribers",
            help,
            live.subscribers as f64,
        );
        let help = "Open TCP connections (streams, keep-alive and in-flight requests).";
        let process = crate::sys::process_counts(true);
        let connections = process.sockets.saturating_sub(1) as f64;
        gauge(&mut out, "workshop_open_connections", help, connections);
        self.render_requests(&mut out);
        let name = "workshop_commit_batch_size";
        self.batch_size
            .render(&mut out, name, "Commands per group commit.");
        let name = "workshop_commit_duration_seconds";
        self.commit_seconds
            .render(&mut out, name, "Time to commit one group.");
        let help = "Bytes of stored files.";
        gauge(
            &mut out,
            "workshop_blob_bytes",
            help,
            load(&self.blob_bytes) as f64,
        );
        counter(
            &mut out,
            "workshop_uploads_total",
            "Uploads.",
            load(&self.uploads),
        );
        let help = "Bytes uploaded (before deduplication).";
        counter(
            &mut out,
            "workshop_upload_bytes_total",
            help,
            load(&self.upload_bytes),
        );
        let name = "workshop_throttled_total";
        header(
            &mut out,
            name,
            "counter",
            "Requests refused by WORKSHOP_RATE.",
        );
        for (what, n) in THROTTLED.iter().zip(&self.throttled) {
            let _ = writeln!(out, "{name}{{request=\"{what}\"}} {}", load(n));
        }
        render_process(&mut out, process);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "workshop_http_requests_total";
        header(
            out,
            name,
            "counter",
            "HTTP requests by route and status class.",
        );
        for (route, row) in ROUTES.iter().zip(&self.requests) {
            for (class, n) in CLASSES.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{route=\"{route}\",code=\"{class}\"}} {n}");
            }
        }
    }
}

fn render_process(out: &mut String, process: crate::sys::ProcessCounts) {
    let (fds, threads) = (process.fds, process.threads);
    let help = "Resident memory of the server process.";
    gauge(
        out,
        "workshop_process_resident_memory_bytes",
        help,
        rss_bytes() as f64,
    );
    let help = "Open file descriptors.";
    gauge(out, "workshop_process_open_fds", help, fds as f64);
    gauge(out, "workshop_process_threads", "Threads.", threads as f64);
}

/// Resident set size from `/proc/self/status` (0 where there is none).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
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
