//! The broadcaster: a thread per core that writes every live SSE stream.
//!
//! A stream starts on its connection's thread (`sse::open`: headers, `: open`, the replay
//! from SQLite), then is handed over here. From then on no thread waits on it: when the hub
//! rings, this thread drains each stream's queue and writes what it holds with non-blocking
//! sends. A thread per watcher would mean thousands of wake-ups per message on a two-core
//! machine; this is one per core.
//!
//! Backpressure: while a socket's send buffer is full, its stream's events stay in its hub
//! queue. A stream that falls `QUEUE_CAPACITY` events behind is dropped by the hub; one whose
//! socket is full with more than `BACKLOG_BYTES` of events waiting is cut off here. Either
//! way the client resumes from SQLite when it reconnects. Streams hold events as the
//! hub's shared `Arc<Event>`, never a copy: a thousand stalled readers of a 1 MiB message
//! hold that one message, not a thousand copies of it.
use crate::hub::{BACKLOG_BYTES, Event, Hub, Subscription};
use crate::sse::{Filter, KEEPALIVE};
use crossbeam_channel::{Receiver, Sender, TryRecvError, select, unbounded};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::RawFd;
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

/// A stream that has sent its head and replay, ready to be written by the broadcaster.
pub struct Live {
    /// Holds the connection open; everything after the hand-over goes through `fd`.
    _socket: Box<dyn Write + Send>,
    fd: RawFd,
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
    /// A keepalive comment, encoded for this stream (`KEEPALIVE_CHUNK` or `KEEPALIVE_NOTE`).
    Note(&'static [u8]),
}

/// The keepalive comment, bare (HTTP/1.0) and as one chunk.
const KEEPALIVE_NOTE: &[u8] = b": keepalive\n\n";
const KEEPALIVE_CHUNK: &[u8] = b"d\r\n: keepalive\n\n\r\n";

impl Piece {
    fn bytes(&self, chunked: bool) -> &[u8] {
        match self {
            Piece::Event(event) => event.wire(chunked),
            Piece::Note(bytes) => bytes,
        }
    }
}

impl Live {
    /// `socket` must be flushed, and `fd` its descriptor (see `tiny_http::Request::socket_fd`).
    pub fn new(
        socket: Box<dyn Write + Send>,
        fd: RawFd,
        chunked: bool,
        subscription: Subscription,
        filter: Filter,
        last_sent: Option<String>,
    ) -> Live {
        Live {
            _socket: socket,
            fd,
            chunked,
            subscription,
            filter,
            last_sent,
            unsent: VecDeque::new(),
            first_sent: 0,
            last_progress: Instant::now(),
            over_budget_since: None,
            ending: false,
        }
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
        self.over_budget_since = if self.subscription.backlog() > BACKLOG_BYTES {
            Some(self.over_budget_since.unwrap_or(now))
        } else {
            None
        };
        let over_too_long = self
            .over_budget_since
            .is_some_and(|since| now.duration_since(since) >= OVER_BUDGET_LIMIT);
        now.duration_since(self.last_progress) < STALL_LIMIT && !over_too_long
    }

    /// Moves events from the hub queue behind `unsent` (a send's worth: the rest wait in
    /// the queue, where they count against its capacity), skipping what replay already
    /// sent; a keepalive if the stream has been quiet for `KEEPALIVE`.
    fn gather(&mut self, now: Instant) {
        while self.unsent.len() < PIECES_PER_SEND {
            match self.subscription.events.try_recv() {
                Ok(event) => self.add(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.ending = true;
                    break;
                }
            }
        }
        if self.unsent.is_empty() && now.duration_since(self.last_progress) >= KEEPALIVE {
            let note = if self.chunked {
                KEEPALIVE_CHUNK
            } else {
                KEEPALIVE_NOTE
            };
            self.unsent.push_back(Piece::Note(note));
        }
    }

    fn add(&mut self, event: Arc<Event>) {
        let already_sent = self
            .last_sent
            .as_deref()
            .is_some_and(|last| *event.id <= *last);
        if !already_sent && self.filter.wants(&event) {
            self.last_sent = Some(event.id.clone());
            self.unsent.push_back(Piece::Event(event));
        } else {
            self.subscription.done(&event);
        }
    }

    /// Sends until everything is out or the socket would block.
    fn send(&mut self) -> io::Result<()> {
        while self.has_unsent() {
            // On the stack: this runs for every stream on every send.
            let mut pieces = [IoSlice::new(&[]); PIECES_PER_SEND];
            let mut count = 0;
            for (slot, piece) in pieces.iter_mut().zip(&self.unsent) {
                let skip = if count == 0 { self.first_sent } else { 0 };
                *slot = IoSlice::new(&piece.bytes(self.chunked)[skip..]);
                count += 1;
            }
            let sent = crate::sys::send_vectored_now(self.fd, &pieces[..count])?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(sent);
            self.last_progress = Instant::now();
        }
        Ok(())
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
            self.first_sent = 0;
            if let Some(Piece::Event(event)) = self.unsent.pop_front() {
                self.subscription.done(&event);
            }
        }
    }

    /// Ends the chunked body, if the socket takes it now; the connection closes either way.
    fn finish(&mut self) {
        if self.chunked && !self.has_unsent() {
            let _ = crate::sys::send_now(self.fd, b"0\r\n\r\n");
        }
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

impl Broadcaster {
    /// Starts one thread per core (at most `MAX_SHARDS`), each woken by its own hub bell.
    pub fn start(hub: &Hub) -> io::Result<Broadcaster> {
        let count = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_SHARDS);
        let shards = (0..count)
            .map(|n| {
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
            })
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
        for shard in &self.shards {
            let thread = shard.thread.lock().map(|mut t| t.take()).unwrap_or(None);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

fn run(adopted: &Receiver<Live>, bell: &Receiver<()>, stopped: &Receiver<()>) {
    let mut streams: Vec<Live> = Vec::new();
    let mut last_check = Instant::now();
    loop {
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
        let now = Instant::now();
        streams.retain_mut(|live| live.pump(now));
        if now.duration_since(last_check) >= TICK {
            last_check = now;
            // A client that closed its end is noticed now rather than at the next write
            // (up to a keepalive away), so its socket and subscription go at once.
            streams.retain(|live| !crate::sys::peer_has_closed(live.fd));
        }
    }
    for live in &mut streams {
        live.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_is_the_comment_encoded_for_each_body() {
        for (chunked, note) in [(true, KEEPALIVE_CHUNK), (false, KEEPALIVE_NOTE)] {
            let mut encoded = Vec::new();
            crate::sse::encode(b": keepalive\n\n", chunked, &mut encoded);
            assert_eq!(encoded, note, "chunked: {chunked}");
        }
    }
}
