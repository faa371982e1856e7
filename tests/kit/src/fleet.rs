//! Thousands of SSE subscribers (the benchmark's fan-out) read by a few threads, each polling
//! its share of the non-blocking sockets with epoll. One thread per socket would put 5,000 more threads on a
//! 2-core machine next to the server's own, and the client, not the server, would set the
//! latency; with epoll the whole client costs a few percent of one core.
//!
//! Each published message carries `"seq":N` in its body; the publisher records when it sent
//! N, and a reader that sees N records now - sent, checks N is the next one this socket
//! expects (no gap, no duplicate, in order), and counts it.
use crate::http::find_bytes as find;
use crate::lat::Lat;
use crossbeam_channel::{Receiver, Sender, unbounded};
use rustix::event::{Timespec, epoll};
use rustix::fd::OwnedFd;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State shared by the publisher, the readers and the driver.
pub struct Shared {
    pub base: Instant,
    /// Nanoseconds after `base` at which message `seq` was sent (0: not yet).
    pub sent_ns: Vec<AtomicU64>,
    pub opened: AtomicUsize,
    pub delivered: AtomicU64,
    pub closed_by_server: AtomicUsize,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(max_messages: usize) -> Arc<Shared> {
        Arc::new(Shared {
            base: Instant::now(),
            sent_ns: (0..max_messages).map(|_| AtomicU64::new(0)).collect(),
            opened: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            closed_by_server: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        })
    }

    pub fn mark_sent(&self, seq: usize) {
        let ns = self.base.elapsed().as_nanos() as u64;
        self.sent_ns[seq].store(ns.max(1), Ordering::Release);
    }
}

/// What one reader thread saw.
#[derive(Default)]
pub struct ReaderReport {
    pub latency: Lat,
    pub delivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub sockets: usize,
}

struct Sock {
    stream: TcpStream,
    pending: Vec<u8>,
    opened: bool,
    next_seq: u64,
    closed: bool,
}

pub struct Readers {
    feeds: Vec<Sender<TcpStream>>,
    threads: Vec<JoinHandle<ReaderReport>>,
    next: usize,
}

impl Readers {
    pub fn start(count: usize, shared: &Arc<Shared>) -> Readers {
        let mut feeds = Vec::new();
        let mut threads = Vec::new();
        for n in 0..count {
            let (tx, rx) = unbounded();
            let shared = shared.clone();
            feeds.push(tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sse-reader-{n}"))
                    .spawn(move || read_loop(rx, &shared))
                    .expect("reader thread"),
            );
        }
        Readers {
            feeds,
            threads,
            next: 0,
        }
    }

    /// Opens one subscriber: connects, sends the GET, hands the socket to a reader.
    pub fn subscribe(&mut self, addr: SocketAddr, path: &str) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(req.as_bytes())?;
        stream.set_nonblocking(true)?;
        let i = self.next % self.feeds.len();
        self.next += 1;
        self.feeds[i]
            .send(stream)
            .map_err(|_| io::Error::other("reader gone"))
    }

    /// Call after setting `shared.stop`.
    pub fn join(self) -> ReaderReport {
        drop(self.feeds);
        let mut total = ReaderReport::default();
        for t in self.threads {
            let r = t.join().expect("reader thread");
            total.latency.merge(r.latency);
            total.delivered += r.delivered;
            total.duplicates += r.duplicates;
            total.gaps += r.gaps;
            total.sockets += r.sockets;
        }
        total
    }
}

/// How long one `epoll_wait` waits before the loop looks for new sockets and the stop flag.
const TICK: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 5_000_000,
};

fn read_loop(feed: Receiver<TcpStream>, shared: &Shared) -> ReaderReport {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create1");
    let mut socks: Vec<Sock> = Vec::new();
    let mut report = ReaderReport::default();
    let mut events = vec![no_event(); 512];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        take_new(&ep, &feed, &mut socks);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(n) = epoll::wait(&ep, &mut events[..], Some(&TICK)) else {
            continue; // EINTR
        };
        for ev in &events[..n] {
            let sock = &mut socks[ev.data.u64() as usize];
            if sock.closed {
                continue;
            }
            read_socket(sock, &mut buf, shared, &mut report, &ep);
        }
    }
    report.sockets = socks.len();
    report
}

/// An empty slot for `epoll_wait` to fill.
fn no_event() -> epoll::Event {
    epoll::Event {
        flags: epoll::EventFlags::empty(),
        data: epoll::EventData::new_u64(0),
    }
}

/// Adds the sockets handed over since the last turn to the epoll set, each known by its
/// index in `socks`.
fn take_new(ep: &OwnedFd, feed: &Receiver<TcpStream>, socks: &mut Vec<Sock>) {
    while let Ok(stream) = feed.try_recv() {
        let data = epoll::EventData::new_u64(socks.len() as u64);
        epoll::add(ep, &stream, data, epoll::EventFlags::IN).expect("epoll_ctl");
        socks.push(Sock {
            stream,
            pending: Vec::with_capacity(512),
            opened: false,
            next_seq: 0,
            closed: false,
        });
    }
}

fn read_socket(
    sock: &mut Sock,
    buf: &mut [u8],
    shared: &Shared,
    report: &mut ReaderReport,
    ep: &OwnedFd,
) {
    loop {
        match sock.stream.read(buf) {
            Ok(0) => {
                sock.closed = true;
                shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
                let _ = epoll::delete(ep, &sock.stream);
                return;
            }
            Ok(n) => {
                let now_ns = shared.base.elapsed().as_nanos() as u64;
                sock.pending.extend_from_slice(&buf[..n]);
                consume(sock, now_ns, shared, report);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                sock.closed = true;
                shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Handles every complete event (ending in a blank line) in the socket's pending bytes.
/// Chunk-size lines sit between events; they never contain `"seq":` so they are ignored.
fn consume(sock: &mut Sock, now_ns: u64, shared: &Shared, report: &mut ReaderReport) {
    let mut start = 0;
    while let Some(end) = find(&sock.pending[start..], b"\n\n") {
        let event = &sock.pending[start..start + end];
        start += end + 2;
        if !sock.opened && find(event, b": open").is_some() {
            sock.opened = true;
            shared.opened.fetch_add(1, Ordering::Relaxed);
        } else if let Some(seq) = seq_of(event) {
            count(sock, seq, now_ns, shared, report);
        }
    }
    sock.pending.drain(..start);
}

/// The N of `"seq":N` in an event.
fn seq_of(event: &[u8]) -> Option<u64> {
    let at = find(event, b"\"seq\":")?;
    let digits = &event[at + 6..];
    Some(
        digits
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |n, b| n * 10 + (b - b'0') as u64),
    )
}

/// Counts message `seq` on this socket: a duplicate, or delivered (after a gap, if some were
/// skipped), with its latency since it was sent.
fn count(sock: &mut Sock, seq: u64, now_ns: u64, shared: &Shared, report: &mut ReaderReport) {
    if seq < sock.next_seq {
        report.duplicates += 1;
        return;
    }
    report.gaps += seq - sock.next_seq;
    sock.next_seq = seq + 1;
    report.delivered += 1;
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    let sent = shared
        .sent_ns
        .get(seq as usize)
        .map(|s| s.load(Ordering::Acquire));
    if let Some(sent) = sent.filter(|&ns| ns > 0) {
        report
            .latency
            .push(Duration::from_nanos(now_ns.saturating_sub(sent)));
    }
}
