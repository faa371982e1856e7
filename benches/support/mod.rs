//! What only the load benchmark needs, on top of the test kit (`workshop_testkit`: the
//! server process, HTTP and SSE clients, /proc, latency samples): the server flavours under
//! test, the NATS peer, the trivial comparison server, medians and the results table.
pub mod nats;
pub mod server;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use workshop_testkit::nodelay_listener;

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
