//! The text exposition (format 0.0.4) of the metrics, in the order a scrape has always seen.
use super::{CLASSES, Histogram, Live, Metrics, ROUTES, STATUSES, THROTTLED, TRANSITIONS};
use crate::sys::ProcessCounts;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

fn load(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

impl Metrics {
    /// The whole exposition.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::with_capacity(8 * 1024);
        render_build(&mut out, live);
        self.render_tasks(&mut out);
        let process = crate::sys::process_counts(true);
        render_connections(&mut out, live, &process);
        self.render_requests(&mut out);
        self.render_commits(&mut out);
        self.render_files(&mut out);
        self.render_throttled(&mut out);
        render_process(&mut out, &process);
        out
    }

    /// Messages stored, tasks by status and the transitions between them.
    fn render_tasks(&self, out: &mut String) {
        let help = "Messages stored since start (announcements included).";
        let published = load(&self.messages);
        counter(out, "workshop_messages_published_total", help, published);
        header(out, "workshop_tasks", "gauge", "Tasks by status.");
        for (status, n) in STATUSES.iter().zip(&self.tasks) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "workshop_tasks{{status=\"{status}\"}} {n}");
        }
        let name = "workshop_task_transitions_total";
        header(out, name, "counter", "Task transitions by kind.");
        for ((kind, ..), n) in TRANSITIONS.iter().zip(&self.transitions) {
            let kind = kind.trim_start_matches("task.");
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", load(n));
        }
        let help = "Claims whose lease ran out.";
        let expired = TRANSITIONS.iter().position(|(k, ..)| *k == "task.expired");
        let expired = expired.map_or(0, |i| load(&self.transitions[i]));
        counter(out, "workshop_lease_expiries_total", help, expired);
    }

    fn render_requests(&self, out: &mut String) {
        let name = "workshop_http_requests_total";
        let help = "HTTP requests by route and status class.";
        header(out, name, "counter", help);
        for (route, row) in ROUTES.iter().zip(&self.requests) {
            for (class, n) in CLASSES.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{route=\"{route}\",code=\"{class}\"}} {n}");
            }
        }
    }

    fn render_commits(&self, out: &mut String) {
        let name = "workshop_commit_batch_size";
        self.batch_size
            .render(out, name, "Commands per group commit.");
        let name = "workshop_commit_duration_seconds";
        self.commit_seconds
            .render(out, name, "Time to commit one group.");
    }

    /// What is stored, then what was uploaded.
    fn render_files(&self, out: &mut String) {
        let blob_bytes = load(&self.blob_bytes) as f64;
        let help = "Bytes of stored files.";
        gauge(out, "workshop_blob_bytes", help, blob_bytes);
        self.render_uploads(out);
    }

    /// How many uploads, and their bytes.
    fn render_uploads(&self, out: &mut String) {
        let uploads = load(&self.uploads);
        counter(out, "workshop_uploads_total", "Uploads.", uploads);
        let help = "Bytes uploaded (before deduplication).";
        let uploaded = load(&self.upload_bytes);
        counter(out, "workshop_upload_bytes_total", help, uploaded);
    }

    fn render_throttled(&self, out: &mut String) {
        let name = "workshop_throttled_total";
        header(out, name, "counter", "Requests refused by WORKSHOP_RATE.");
        for (what, n) in THROTTLED.iter().zip(&self.throttled) {
            let _ = writeln!(out, "{name}{{request=\"{what}\"}} {}", load(n));
        }
    }
}

impl<const N: usize> Histogram<N> {
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

/// The build and how long it has run.
fn render_build(out: &mut String, live: &Live) {
    let version = env!("CARGO_PKG_VERSION");
    header(out, "workshop_build_info", "gauge", "The running build.");
    let _ = writeln!(out, "workshop_build_info{{version=\"{version}\"}} 1");
    let uptime = live.uptime.as_secs_f64();
    let help = "Seconds since start.";
    gauge(out, "workshop_uptime_seconds", help, uptime);
}

/// Streams and long polls waiting, and the TCP connections open.
fn render_connections(out: &mut String, live: &Live, process: &ProcessCounts) {
    let help = "Live hub subscribers: SSE streams and long-poll (`?wait=`) requests waiting.";
    gauge(out, "workshop_subscribers", help, live.subscribers as f64);
    let help = "Open TCP connections (streams, keep-alive and in-flight requests).";
    let idle = super::IDLE_SOCKETS.get().copied().unwrap_or(1);
    let connections = process.sockets.saturating_sub(idle) as f64;
    gauge(out, "workshop_open_connections", help, connections);
}

fn render_process(out: &mut String, process: &ProcessCounts) {
    let (fds, threads) = (process.fds, process.threads);
    let help = "Resident memory of the server process.";
    let rss = rss_bytes() as f64;
    gauge(out, "workshop_process_resident_memory_bytes", help, rss);
    let help = "Open file descriptors.";
    gauge(out, "workshop_process_open_fds", help, fds as f64);
    gauge(out, "workshop_process_threads", "Threads.", threads as f64);
}

/// Resident set size from `/proc/self/status` (0 where there is none).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    vm_rss_kib(&status).map_or(0, |kib| kib * 1024)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .map(|rest| rest.trim().trim_end_matches("kB").trim());
    kib.and_then(|kib| kib.parse::<u64>().ok())
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
