//! Shared pieces of the load benchmark: the HTTP client, the server process, the SSE
//! reader, the trivial comparison server, percentiles and the results table.
pub mod client;
pub mod nats;
pub mod server;
pub mod sse;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Default, Clone)]
pub struct Lat {
    pub us: Vec<u32>,
}

impl Lat {
    pub fn push(&mut self, d: Duration) {
        self.us.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Lat) {
        self.us.extend(other.us);
    }

    pub fn sort(&mut self) {
        self.us.sort_unstable();
    }

    /// Percentile in milliseconds; call `sort` first.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.us.len()) - 1;
        self.us[i] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.us.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One line of the final table.
pub struct Row {
    pub section: &'static str,
    pub metric: String,
    pub value: String,
    pub target: String,
    /// None: informational, no target.
    pub pass: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        pass: Option<bool>,
    ) {
        let row = Row {
            section,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            pass,
        };
        eprintln!(
            "  [{}] {}: {} {} {}",
            row.section,
            row.metric,
            row.value,
            if row.target.is_empty() {
                String::new()
            } else {
                format!("(target {})", row.target)
            },
            verdict(row.pass)
        );
        self.rows.push(row);
    }

    pub fn info(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
    ) {
        self.add(section, metric, value, "", None);
    }

    /// Markdown, so the output pastes straight into the README.
    pub fn print(&self) {
        let w = |f: &dyn Fn(&Row) -> usize, min: usize| {
            self.rows.iter().map(f).max().unwrap_or(0).max(min)
        };
        let (ws, wm, wv, wt) = (
            w(&|r| r.section.len(), 7),
            w(&|r| r.metric.chars().count(), 6),
            w(&|r| r.value.chars().count(), 5),
            w(&|r| r.target.chars().count(), 6),
        );
        println!(
            "| {:ws$} | {:wm$} | {:>wv$} | {:wt$} | result |",
            "section", "metric", "value", "target"
        );
        println!(
            "|{}|{}|{}|{}|--------|",
            "-".repeat(ws + 2),
            "-".repeat(wm + 2),
            "-".repeat(wv + 2),
            "-".repeat(wt + 2)
        );
        for r in &self.rows {
            println!(
                "| {:ws$} | {} | {} | {} | {:6} |",
                r.section,
                pad(&r.metric, wm, false),
                pad(&r.value, wv, true),
                pad(&r.target, wt, false),
                verdict(r.pass)
            );
        }
    }
}

fn pad(s: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(s.chars().count()));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

pub fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "",
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// Sets TCP_NODELAY on a listening socket; Linux copies it to accepted sockets (as
/// workshop does), so the comparison server is configured like workshop.
pub fn nodelay_listener(listener: &TcpListener) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd we own; the option value is a c_int on our stack.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// How a trivial server hands requests to its code.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Like workshop: each request answered on its connection's thread.
    Inline,
    /// tiny_http as documented: this many threads calling `recv()` on its queue.
    Pool(usize),
}

/// The ceiling: tiny_http answering every request 201 with an empty body, doing nothing else.
pub struct Trivial {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Trivial {
    pub fn start(shape: Shape) -> Trivial {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind trivial server");
        nodelay_listener(&listener);
        let addr = listener.local_addr().expect("trivial address");
        let stop = Arc::new(AtomicBool::new(false));
        let (server, threads) = match shape {
            Shape::Inline => {
                let server = tiny_http::Server::from_listener_with_handler(listener, |rq| {
                    let _ = rq.respond(tiny_http::Response::empty(201));
                    true
                });
                (Arc::new(server.expect("tiny_http")), Vec::new())
            }
            Shape::Pool(workers) => {
                let server = tiny_http::Server::from_listener(listener, None);
                let server = Arc::new(server.expect("tiny_http"));
                let threads = (0..workers)
                    .map(|_| {
                        let (server, stop) = (server.clone(), stop.clone());
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                let request = server.recv_timeout(Duration::from_millis(100));
                                if let Ok(Some(rq)) = request {
                                    let _ = rq.respond(tiny_http::Response::empty(201));
                                }
                            }
                        })
                    })
                    .collect();
                (server, threads)
            }
        };
        Trivial {
            addr,
            server,
            stop,
            threads,
        }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        drop(self.server);
    }
}

/// xorshift64*: a dependency-free generator for shuffles and test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
