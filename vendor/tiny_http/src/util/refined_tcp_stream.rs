use std::io::Result as IoResult;
use std::io::{Error, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
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
    // workshop patch: the read half's deadlines, the socket's own read timeout (what the
    // listener gave it), and the timeout set on the socket now.
    pace: Option<ReadPace>,
    default_timeout: Option<Duration>,
    applied_timeout: Option<Duration>,
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

        let default_timeout = read.read_timeout().unwrap_or(None);
        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            pace: None,
            default_timeout,
            applied_timeout: default_timeout,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            pace: None,
            default_timeout,
            applied_timeout: default_timeout,
        };

        (read, write)
    }

    /// workshop patch: reads from now on keep to the deadlines of `pace`.
    pub(crate) fn with_pace(mut self, pace: ReadPace) -> RefinedTcpStream {
        self.pace = Some(pace);
        self
    }

    /// The socket timeout for the next read, or a timeout error if the deadline has passed.
    fn next_timeout(&self, pace: &ReadPace) -> IoResult<Option<Duration>> {
        let Some(deadline) = pace.deadline() else {
            return Ok(self.default_timeout);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::TimedOut, "request deadline passed"));
        }
        Ok(Some(self.default_timeout.map_or(left, |d| d.min(left))))
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// workshop patch: the socket's descriptor (plain connections only), for callers that
    /// write to it without blocking. See `Request::socket_fd`.
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.stream {
            Stream::Http(connection) => match &**connection {
                Connection::Tcp(tcp_stream) => Some(tcp_stream.as_raw_fd()),
                Connection::Unix(unix_stream) => Some(unix_stream.as_raw_fd()),
            },
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let Some(pace) = self.pace.clone() else {
            return self.stream.read(buf);
        };
        let timeout = self.next_timeout(&pace)?;
        if timeout != self.applied_timeout {
            self.stream.set_read_timeout(timeout)?;
            self.applied_timeout = timeout;
        }
        let n = match self.stream.read(buf) {
            // SO_RCVTIMEO ends a read with EAGAIN: report it as the timeout it is.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(Error::new(ErrorKind::TimedOut, e))
            }
            other => other?,
        };
        pace.received(n);
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
