//! workshop: shared by the tests of the patches (PATCHES.md). A server on a real loopback
//! socket whose requests each get a thread of their own, a few handlers, and a raw client
//! that reads until the server closes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{Request, Response, Server};

pub const SECOND: Duration = Duration::from_secs(1);

/// Starts a server on a free loopback port that runs `handle` on a new thread for each
/// request it receives (`recv()`, upstream's API); returns the port. It serves until the
/// test process ends.
pub fn serve(handle: fn(Request)) -> u16 {
    let server = Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    thread::spawn(move || {
        for request in server.incoming_requests() {
            thread::spawn(move || handle(request));
        }
    });
    port
}

/// Reads the whole body, then answers 200 `read N`, or 400 `body error: ...` if reading
/// the body failed.
pub fn read_body(mut request: Request) {
    let mut body = Vec::new();
    let response = match request.as_reader().read_to_end(&mut body) {
        Ok(n) => Response::from_string(format!("read {n}")),
        Err(e) => Response::from_string(format!("body error: {e}")).with_status_code(400),
    };
    let _ = request.respond(response);
}

/// Answers 413 without reading the body.
pub fn refuse(request: Request) {
    let _ = request.respond(Response::empty(413));
}

/// Reads 10 bytes of the body, then answers 413.
pub fn read_some_then_refuse(mut request: Request) {
    let _ = request.as_reader().read_exact(&mut [0u8; 10]);
    let _ = request.respond(Response::empty(413));
}

/// What came back on a connection: every byte before the timeout, and whether the server
/// closed it.
pub struct Exchange {
    pub bytes: Vec<u8>,
    pub closed_by_server: bool,
}

impl Exchange {
    /// The status of each response, in order.
    pub fn statuses(&self) -> Vec<u16> {
        let text = self.text();
        // The bodies of the test handlers never hold `HTTP/1.`.
        let starts = text.match_indices("HTTP/1.").map(|(at, _)| at);
        starts
            .filter_map(|at| text.get(at + 9..at + 12)?.parse().ok())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Whether the response says the connection ends with it.
    pub fn says_close(&self) -> bool {
        self.text()
            .to_ascii_lowercase()
            .contains("connection: close")
    }
}

pub fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

/// Sends `bytes` without half-closing (so only the server can end the connection), then
/// reads until the server closes or `timeout` passes.
pub fn exchange(port: u16, bytes: &[u8], timeout: Duration) -> Exchange {
    let mut stream = connect(port);
    // The server may refuse early and close while we are still writing.
    let _ = stream.write_all(bytes);
    read_until_closed(&mut stream, timeout)
}

pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Exchange {
    read_until(stream, timeout, |_| false)
}

/// Reads until the server closes, `timeout` passes, or what came so far is `enough`.
pub fn read_until(
    stream: &mut TcpStream,
    timeout: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> Exchange {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let closed_by_server = false;
            return Exchange {
                bytes,
                closed_by_server,
            };
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if enough(&bytes) {
                    let closed_by_server = false;
                    return Exchange {
                        bytes,
                        closed_by_server,
                    };
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => continue,
            // Reset: the server closed with our unread bytes in its buffer.
            Err(_) => break,
        }
    }
    let closed_by_server = true;
    Exchange {
        bytes,
        closed_by_server,
    }
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Writes `unit` over and over (up to `limit` bytes) to a server expected to stop reading
/// early: stops at the first failed write (a reset, or a full window for 2 s).
pub fn flood(stream: &mut TcpStream, unit: &[u8], limit: usize) -> usize {
    stream.set_write_timeout(Some(2 * SECOND)).unwrap();
    let mut sent = 0;
    while sent < limit && stream.write_all(unit).is_ok() {
        sent += unit.len();
    }
    sent
}
