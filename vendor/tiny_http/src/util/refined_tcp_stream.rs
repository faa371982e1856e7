use std::io::Result as IoResult;
use std::io::{Error, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    // workshop patch: shared by both halves of a connection (one descriptor, not two).
    Http(Arc<Connection>),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.clone()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(Arc::new(tcp_stream))
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }

    fn read_timeout(&self) -> IoResult<Option<Duration>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read_timeout(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(None),
        }
    }

    /// Deadlines apply to plain connections only.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(timeout),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // workshop patch: the read half's deadlines (`None` on the write half).
    paced: Option<Paced>,
    // workshop patch: set once the socket is handed over (`Handover::take`): neither half
    // shuts it down any more.
    handed_over: Arc<AtomicBool>,
}

/// workshop patch: what a request needs to give its connection's socket away (plain TCP).
#[derive(Clone)]
pub(crate) struct Handover {
    connection: Arc<Connection>,
    handed_over: Arc<AtomicBool>,
}

impl Handover {
    /// A descriptor of the caller's own for the socket; from now on the connection's halves
    /// leave the socket open when they are dropped.
    pub(crate) fn take(&self) -> IoResult<TcpStream> {
        let Connection::Tcp(tcp_stream) = &*self.connection else {
            return Err(Error::new(ErrorKind::Unsupported, "not a TCP connection"));
        };
        let stream = tcp_stream.try_clone()?;
        self.handed_over.store(true, Ordering::Release);
        Ok(stream)
    }

    /// Ends the connection in both directions now (a response that failed part-way).
    pub(crate) fn shut_down(&self) {
        let _ = self.connection.shutdown(Shutdown::Both);
    }

    /// Whether the client has closed or reset its end, seen without waiting: a peek at the
    /// next byte on the socket made non-blocking for the look. A byte waiting (a pipelined
    /// request) is not a close. Only while nothing else reads the socket: a handler running
    /// on its connection's own thread (patch 8), its request's body read.
    pub(crate) fn peer_has_closed(&self) -> bool {
        let Connection::Tcp(tcp_stream) = &*self.connection else {
            return false;
        };
        if tcp_stream.set_nonblocking(true).is_err() {
            return false;
        }
        let closed = match tcp_stream.peek(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        };
        let _ = tcp_stream.set_nonblocking(false);
        closed
    }

    /// Sends the end of the stream after what was written (a body delimited by the close).
    pub(crate) fn finish_writing(&self) {
        let _ = self.connection.shutdown(Shutdown::Write);
    }
}

/// workshop patch: the read half's deadlines, the socket's own read timeout (what the
/// listener gave it), and the timeout set on the socket now.
struct Paced {
    pace: ReadPace,
    default_timeout: Option<Duration>,
    applied_timeout: Option<Duration>,
    /// Past the deadline, a read came back short: what had arrived is all read.
    drained: bool,
}

/// A request head must arrive within this long of its first byte.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// A body read may wait this long for data; each byte received buys `BODY_TIME_PER_BYTE`
/// more, up to this much ahead: at least 1,000 bytes a second on average, and never more
/// than 10 s without any.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
const BODY_TIME_PER_BYTE: Duration = Duration::from_millis(1);

/// workshop patch: how long the read half of a connection may wait. Upstream's only guard
/// was the socket's per-read timeout, so a client sending one byte just before each
/// timeout held a thread and its socket for ever. Shared by the connection, which says
/// whether a head or a body is being read, and the read half, which enforces it.
#[derive(Clone, Default)]
pub(crate) struct ReadPace(Arc<Mutex<Pace>>);

#[derive(Default)]
enum Pace {
    /// Waiting for a request head; its deadline starts with its first byte.
    #[default]
    HeadNotStarted,
    Head(Instant),
    Body(Instant),
}

impl ReadPace {
    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next bytes are a request head.
    pub(crate) fn expect_head(&self) {
        *self.pace() = Pace::HeadNotStarted;
    }

    /// The next bytes are a request body.
    pub(crate) fn expect_body(&self) {
        *self.pace() = Pace::Body(Instant::now() + BODY_DEADLINE);
    }

    /// Whether part of a request head has arrived.
    pub(crate) fn head_started(&self) -> bool {
        matches!(*self.pace(), Pace::Head(_))
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.pace() {
            Pace::HeadNotStarted => None,
            Pace::Head(deadline) | Pace::Body(deadline) => Some(deadline),
        }
    }

    fn received(&self, bytes: usize) {
        let mut pace = self.pace();
        let now = Instant::now();
        match *pace {
            Pace::HeadNotStarted if bytes > 0 => *pace = Pace::Head(now + HEAD_DEADLINE),
            Pace::Body(deadline) => {
                let earned = BODY_TIME_PER_BYTE.saturating_mul(bytes as u32);
                *pace = Pace::Body((deadline + earned).min(now + BODY_DEADLINE));
            }
            _ => (),
        }
    }
}

impl RefinedTcpStream {
    /// workshop patch: the halves share the socket. Upstream gave the read half a
    /// `try_clone` (a second descriptor per connection) and unwrapped it, so running out of
    /// file descriptors between accept() and that dup() panicked the accept thread.
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let write: Stream = stream.into();
        let read = write.clone();
        let handed_over = Arc::new(AtomicBool::new(false));

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            paced: None,
            handed_over: handed_over.clone(),
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            paced: None,
            handed_over,
        };

        (read, write)
    }

    /// workshop patch: reads from now on keep to the deadlines of `pace`.
    pub(crate) fn with_pace(mut self, pace: ReadPace) -> RefinedTcpStream {
        let default_timeout = self.stream.read_timeout().unwrap_or(None);
        self.paced = Some(Paced {
            pace,
            default_timeout,
            applied_timeout: default_timeout,
            drained: false,
        });
        self
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// workshop patch: the way to hand this connection's socket over (plain connections
    /// only). See `Request::into_socket`.
    pub(crate) fn handover(&self) -> Option<Handover> {
        match &self.stream {
            Stream::Http(connection) => Some(Handover {
                connection: connection.clone(),
                handed_over: self.handed_over.clone(),
            }),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.handed_over.load(Ordering::Acquire) {
            return;
        }
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

/// workshop patch: the shortest socket timeout there is (a zero `Duration` is refused, and
/// the kernel rounds this up to one clock tick). Past its deadline, a read still takes what
/// has already arrived (a handler that was slow to read a body sent in time is not refused
/// it), but only until a read comes back short: a client that keeps a byte or two arriving
/// every tick cannot stretch the deadline, since only full reads go on.
const PAST_DEADLINE: Duration = Duration::from_micros(1);

impl Paced {
    /// The socket timeout for the next read, and whether the deadline has passed.
    fn next_timeout(&self) -> (Option<Duration>, bool) {
        let Some(deadline) = self.pace.deadline() else {
            return (self.default_timeout, false);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (Some(PAST_DEADLINE), true);
        }
        (
            Some(self.default_timeout.map_or(left, |d| d.min(left))),
            false,
        )
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let Some(paced) = self.paced.as_mut() else {
            return self.stream.read(buf);
        };
        let (timeout, overdue) = paced.next_timeout();
        if !overdue {
            paced.drained = false;
        } else if paced.drained {
            return Err(Error::new(ErrorKind::TimedOut, "request deadline passed"));
        }
        if timeout != paced.applied_timeout {
            self.stream.set_read_timeout(timeout)?;
            paced.applied_timeout = timeout;
        }
        let n = match self.stream.read(buf) {
            // SO_RCVTIMEO ends a read with EAGAIN: report it as the timeout it is.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let why = if overdue {
                    "request deadline passed"
                } else {
                    "read timed out"
                };
                return Err(Error::new(ErrorKind::TimedOut, why));
            }
            other => other?,
        };
        if overdue && n < buf.len() {
            paced.drained = true;
        }
        paced.pace.received(n);
        Ok(n)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::{Pace, ReadPace, RefinedTcpStream};
    use crate::connection::Connection;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// A paced read half of a server-side socket, and the client's end.
    fn pair() -> (RefinedTcpStream, ReadPace, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (read, _write) = RefinedTcpStream::new(Connection::from(server));
        let pace = ReadPace::default();
        (read.with_pace(pace.clone()), pace, client)
    }

    #[test]
    fn past_its_deadline_a_read_takes_what_has_arrived_then_fails() {
        let (mut read, pace, mut client) = pair();
        client.write_all(&[7u8; 3000]).unwrap();
        // Wait until it has all arrived, with the deadline still ahead.
        pace.expect_body();
        let mut first = [0u8; 1];
        read.read_exact(&mut first).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // The handler took too long: the deadline has passed, the body is all here.
        *pace.pace() = Pace::Body(Instant::now() - Duration::from_secs(60));
        let mut got = 1;
        let mut buf = [0u8; 1024];
        let err = loop {
            match read.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(got, 3000);
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        // Once drained, more bytes do not buy more time.
        client.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let err = read.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
