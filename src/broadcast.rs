//! The broadcaster: a thread per core that writes every live SSE stream.
//!
//! A stream starts on its connection's thread (`sse::open`: headers, `: open`, the replay
//! from SQLite), then its socket is handed over here (`tiny_http::Request::into_socket`).
//! From then on no thread waits on it: when the hub rings, this thread drains each stream's
//! queue and writes what it holds to its non-blocking socket. A thread per watcher would mean
//! thousands of wake-ups per message on a two-core machine; this is one per core (measured
//! against that shape in issue 15: README, "How it is built").
//!
//! Backpressure: while a socket's send buffer is full, its stream's events stay in its hub
//! queue. A stream that falls `QUEUE_CAPACITY` commits behind is dropped by the hub; one whose
//! socket is full with more than `BACKLOG_BYTES` of events waiting is cut off here. Either
//! way the client resumes from SQLite when it reconnects. Streams hold events as the
//! hub's shared `Arc<Event>`, never a copy: a thousand stalled readers of a 1 MiB message
//! hold that one message, not a thousand copies of it.
use crate::hub::frame::{LAST_CHUNK, keepalive};
use crate::hub::{BACKLOG_BYTES, Delivery, Event, Filter, Hub, KEEPALIVE, Subscription};
use crossbeam_channel::{Receiver, Sender, TryRecvError, select, unbounded};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A stream that cannot send anything for this long is dropped (a client that stopped
/// reading but keeps its connection open).
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How long a stream may stay over its `BACKLOG_BYTES` budget while its socket is full.
const OVER_BUDGET_LIMIT: Duration = Duration::from_secs(2);
/// Pieces handed to one send call at most (IOV_MAX is 1024 on Linux).
const PIECES_PER_SEND: usize = 64;
/// How often streams waiting on a full socket are retried.
const RETRY_EVERY: Duration = Duration::from_millis(10);
/// Broadcaster threads at most, however many cores.
const MAX_SHARDS: usize = 4;
/// How often idle streams are checked for a keepalive, and every stream for a client that
/// has gone away.
const TICK: Duration = Duration::from_secs(1);
/// Reads of what a client sent, per check for its close (`Live::peer_has_closed`).
const DRAIN_PER_CHECK: usize = 16;

/// A stream that has sent its head and replay, ready to be written by the broadcaster.
pub struct Live {
    /// Non-blocking; the broadcaster's alone once handed over.
    socket: TcpStream,
    chunked: bool,
    subscription: Subscription,
    filter: Filter,
    last_sent: Option<String>,
    /// What the socket has not taken yet, in order.
    unsent: VecDeque<Piece>,
    /// Bytes of the first piece already sent.
    first_sent: usize,
    /// When the socket last took bytes (or the stream was adopted).
    last_progress: Instant,
    /// Since when more than `BACKLOG_BYTES` of events have waited, if they do.
    over_budget_since: Option<Instant>,
    /// The hub dropped this stream (too slow, or shutdown): end it once `unsent` is out.
    ending: bool,
}

/// Something to send on a stream.
enum Piece {
    /// An event, shared with every stream that carries it.
    Event(Arc<Event>),
    /// A keepalive comment, encoded for this stream.
    Note(&'static [u8]),
}

impl Piece {
    fn bytes(&self, chunked: bool) -> &[u8] {
        match self {
            Piece::Event(event) => event.wire(chunked),
            Piece::Note(bytes) => bytes,
        }
    }
}

impl Live {
    /// Takes over `socket`, which carries a stream whose head and replay are sent (the
    /// last id sent is `last_sent`), and makes it non-blocking.
    pub fn new(
        socket: TcpStream,
        chunked: bool,
        subscription: Subscription,
        filter: Filter,
        last_sent: Option<String>,
    ) -> io::Result<Live> {
        socket.set_nonblocking(true)?;
        Ok(Live {
            socket,
            chunked,
            subscription,
            filter,
            last_sent,
            unsent: VecDeque::new(),
            first_sent: 0,
            last_progress: Instant::now(),
            over_budget_since: None,
            ending: false,
        })
    }

    fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Takes what the hub delivered and sends it until the queue is empty or the socket
    /// would block. `false` when the stream is over: the client went away, stalled, or the
    /// hub dropped it.
    fn pump(&mut self, now: Instant) -> bool {
        loop {
            self.gather(now);
            match self.send() {
                Ok(()) => self.over_budget_since = None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.keeps_up(now),
                Err(_) => return false,
            }
            if self.ending {
                self.finish();
                return false;
            }
            if self.subscription.events.is_empty() {
                return true;
            }
        }
    }

    /// Whether a stream whose socket is full may wait for its client: not if the client has
    /// taken nothing for `STALL_LIMIT`, nor if more than `BACKLOG_BYTES` of events have
    /// waited for it for `OVER_BUDGET_LIMIT`. The grace lets a client that reads as fast as
    /// events come take a burst larger than the budget.
    fn keeps_up(&mut self, now: Instant) -> bool {
        let over_too_long = self
            .over_budget_since(now)
            .is_some_and(|since| now.duration_since(since) >= OVER_BUDGET_LIMIT);
        now.duration_since(self.last_progress) < STALL_LIMIT && !over_too_long
    }

    /// Since when more than `BACKLOG_BYTES` of events have waited, as of `now`, if they do.
    fn over_budget_since(&mut self, now: Instant) -> Option<Instant> {
        self.over_budget_since = if self.subscription.backlog() > BACKLOG_BYTES {
            Some(self.over_budget_since.unwrap_or(now))
        } else {
            None
        };
        self.over_budget_since
    }

    /// Moves events from the hub queue behind `unsent` (about a send's worth: the rest wait
    /// in the queue, where they count against its capacity), skipping what replay already
    /// sent; a keepalive if the stream has been quiet for `KEEPALIVE`.
    fn gather(&mut self, now: Instant) {
        self.take_queued();
        if self.unsent.is_empty() && now.duration_since(self.last_progress) >= KEEPALIVE {
            self.unsent.push_back(Piece::Note(keepalive(self.chunked)));
        }
    }

    /// Commits' events from the hub queue until there is a send's worth (a commit is taken
    /// whole); notes when the hub dropped us.
    fn take_queued(&mut self) {
        while self.unsent.len() < PIECES_PER_SEND {
            match self.subscription.events.try_recv() {
                Ok(delivery) => self.add(&delivery),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.ending = true;
                    return;
                }
            }
        }
    }

    /// Queues a commit's events this stream wants and has not sent yet. They come in id
    /// order, so `last_sent` moves once per commit, not once per event (a batch of a thousand
    /// to thousands of watchers would copy millions of ids).
    fn add(&mut self, delivery: &Delivery) {
        let mut newest = None;
        for event in delivery.iter() {
            if self.is_new(event) && self.filter.wants(event) {
                newest = Some(&event.id);
                self.unsent.push_back(Piece::Event(event.clone()));
            } else {
                self.subscription.done(event);
            }
        }
        if let Some(id) = newest {
            self.last_sent = Some(id.clone());
        }
    }

    /// Whether `event` comes after what this stream sent (the replay included).
    fn is_new(&self, event: &Event) -> bool {
        self.last_sent
            .as_deref()
            .is_none_or(|last| *event.id > *last)
    }

    /// Sends until everything is out or the socket would block.
    fn send(&mut self) -> io::Result<()> {
        while self.has_unsent() {
            let sent = self.write_unsent()?;
            self.consume(sent);
            self.last_progress = Instant::now();
        }
        Ok(())
    }

    /// One vectored write of what is unsent, its slices on the stack (this runs for every
    /// stream on every send): how many bytes the socket took; none is an error.
    fn write_unsent(&self) -> io::Result<usize> {
        let mut pieces = [IoSlice::new(&[]); PIECES_PER_SEND];
        let count = self.fill(&mut pieces);
        match (&self.socket).write_vectored(&pieces[..count])? {
            0 => Err(io::ErrorKind::WriteZero.into()),
            sent => Ok(sent),
        }
    }

    /// Points `pieces` at what is unsent, in order; how many it filled.
    fn fill<'a>(&'a self, pieces: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, piece) in pieces.iter_mut().zip(&self.unsent) {
            let skip = if count == 0 { self.first_sent } else { 0 };
            *slot = IoSlice::new(&piece.bytes(self.chunked)[skip..]);
            count += 1;
        }
        count
    }

    /// Drops the `sent` bytes the socket took from the front of `unsent`.
    fn consume(&mut self, mut sent: usize) {
        while let Some(first) = self.unsent.front() {
            let left = first.bytes(self.chunked).len() - self.first_sent;
            if sent < left {
                self.first_sent += sent;
                return;
            }
            sent -= left;
            self.pop_sent();
        }
    }

    /// Drops the first piece, all of it sent.
    fn pop_sent(&mut self) {
        self.first_sent = 0;
        if let Some(Piece::Event(event)) = self.unsent.pop_front() {
            self.subscription.done(&event);
        }
    }

    /// Ends the chunked body, if the socket takes it now; the connection closes either way.
    fn finish(&mut self) {
        if self.chunked && !self.has_unsent() {
            let _ = (&self.socket).write(LAST_CHUNK);
        }
    }

    /// Whether the client has closed or reset its end. It has nothing to say on an SSE
    /// stream, so whatever it sends is read and dropped, `DRAIN_PER_CHECK` reads at most: a
    /// client that keeps sending cannot hold the thread every other stream waits on.
    fn peer_has_closed(&self) -> bool {
        let mut sink = [0u8; 4096];
        for _ in 0..DRAIN_PER_CHECK {
            match (&self.socket).read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return e.kind() != io::ErrorKind::WouldBlock,
            }
        }
        false
    }
}

/// The broadcaster's threads: each writes its share of the streams, so on a machine with
/// two cores two kernels' worth of socket sends run at once.
pub struct Broadcaster {
    shards: Vec<Shard>,
    next: AtomicUsize,
}

struct Shard {
    adopt: Sender<Live>,
    stop: Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shard {
    /// Starts thread `n`, woken by its own hub bell.
    fn start(n: usize, hub: &Hub) -> io::Result<Shard> {
        let (adopt, adopted) = unbounded();
        let (stop, stopped) = unbounded();
        let bell = hub.bell();
        let thread = thread::Builder::new()
            .name(format!("broadcaster-{n}"))
            .spawn(move || run(&adopted, &bell, &stopped))?;
        Ok(Shard {
            adopt,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn join(&self) {
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Broadcaster {
    /// Starts one thread per core (at most `MAX_SHARDS`).
    pub fn start(hub: &Hub) -> io::Result<Broadcaster> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (0..cores.clamp(1, MAX_SHARDS))
            .map(|n| Shard::start(n, hub))
            .collect::<io::Result<_>>()?;
        Ok(Broadcaster {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    /// Takes over a stream.
    pub fn adopt(&self, live: Live) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        // Fails only after `stop`, when the stream is dropped (closed) anyway.
        let _ = self.shards[n].adopt.send(live);
    }

    /// Ends every stream still open and stops the threads. Streams adopted later are closed.
    pub fn stop(&self) {
        for shard in &self.shards {
            let _ = shard.stop.send(());
        }
        self.shards.iter().for_each(Shard::join);
    }
}

/// One broadcaster thread: wakes on its bell, a new stream, a retry or a tick, and pumps
/// every stream it holds.
fn run(adopted: &Receiver<Live>, bell: &Receiver<()>, stopped: &Receiver<()>) {
    let mut streams: Vec<Live> = Vec::new();
    let mut last_check = Instant::now();
    loop {
        // Streams waiting on a full socket are retried soon; otherwise the bell says when.
        let wait = if streams.iter().any(Live::has_unsent) {
            RETRY_EVERY
        } else {
            TICK
        };
        select! {
            recv(adopted) -> live => streams.extend(live),
            recv(bell) -> _ => {}
            recv(stopped) -> _ => break,
            default(wait) => {}
        }
        streams.extend(adopted.try_iter());
        pump_all(&mut streams, &mut last_check);
    }
    streams.iter_mut().for_each(Live::finish);
}

fn pump_all(streams: &mut Vec<Live>, last_check: &mut Instant) {
    let now = Instant::now();
    streams.retain_mut(|live| live.pump(now));
    drop_closed(streams, now, last_check);
}

/// Once a `TICK`, drops the streams whose client has closed its end.
fn drop_closed(streams: &mut Vec<Live>, now: Instant, last_check: &mut Instant) {
    if now.duration_since(*last_check) >= TICK {
        *last_check = now;
        // A client that closed its end is noticed now rather than at the next write
        // (up to a keepalive away), so its socket and subscription go at once.
        streams.retain(|live| !live.peer_has_closed());
    }
}

#[cfg(test)]
mod tests;
