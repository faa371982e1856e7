use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::{HTTPVersion, Method};
use crate::util::refined_tcp_stream::{Handover, ReadPace};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // workshop patch: the way to hand the socket the responses go to over
    handover: Option<Handover>,

    // workshop patch: the deadlines of the read half, and whether the last request's body
    // was read to its end
    pace: ReadPace,
    last_body_complete: Option<Arc<AtomicBool>>,

    // workshop patch: whether the head being read is a HEAD request's, whose refusal has no
    // body (RFC 9110 §9.3.2)
    reading_head_request: bool,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// workshop patch: a head refused with this status (414, 431, 400 or 501), and why.
    Refused(u16, HTTPVersion, &'static str),
}

/// workshop patch: why a head line could not be read.
enum LineError {
    TooLong,
    /// A bare CR or LF: RFC 9112 §2.2 lets a recipient refuse it, and a parser in front
    /// may split lines differently.
    Malformed,
    Io(IoError),
}

/// workshop patch: limits on a request head (a line, the number of headers, and the whole
/// head: lines under their own limit could still add up to 2 MiB a head).
const MAX_HEADER_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_HEAD: usize = 64 * 1024;

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let handover = write_socket.handover();
        let pace = ReadPace::default();
        let read_socket = read_socket.with_pace(pace.clone());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            handover,
            pace,
            last_body_complete: None,
            reading_head_request: false,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// workshop patch: a line longer than `limit` bytes (CRLF not counted) is `TooLong`.
    #[allow(
        clippy::unbuffered_bytes,
        reason = "the source is a `BufReader` (in a `SequentialReader`): bytes come from memory"
    )]
    fn read_next_line(&mut self, limit: usize) -> Result<AsciiString, LineError> {
        let mut buf = Vec::new();

        loop {
            let byte = match self.next_header_source.by_ref().bytes().next() {
                Some(b) => b.map_err(LineError::Io)?,
                None => {
                    let eof = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(LineError::Io(eof));
                }
            };

            // workshop patch: only CRLF ends a line. Upstream waited for a CRLF that a
            // bare-LF client never sends (until the read timeout), and kept a bare CR.
            match byte {
                b'\r' => {
                    let next = self.next_header_source.by_ref().bytes().next();
                    return match next {
                        Some(Ok(b'\n')) => {
                            AsciiString::from_ascii(buf).map_err(|_| LineError::Malformed)
                        }
                        Some(Err(e)) => Err(LineError::Io(e)),
                        _ => Err(LineError::Malformed),
                    };
                }
                b'\n' => return Err(LineError::Malformed),
                // workshop patch: a header line without end grew memory unboundedly.
                _ if buf.len() >= limit => return Err(LineError::TooLong),
                _ => buf.push(byte),
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.pace.expect_head();
        self.reading_head_request = false;
        let mut head_left = MAX_HEAD;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = match self.read_next_line(MAX_HEADER_LINE) {
                    Ok(line) => line,
                    // workshop patch: 414 and 400 instead of a silent close.
                    Err(LineError::TooLong) => {
                        return Err(ReadError::Refused(
                            414,
                            HTTPVersion(1, 1),
                            "request line over 16 KiB",
                        ))
                    }
                    Err(LineError::Malformed) => return Err(ReadError::WrongRequestLine),
                    Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
                };

                // workshop patch: what is left of the head's budget, CRLFs counted.
                head_left = head_left.saturating_sub(line.len() + 2);
                let (method, path, version) = parse_request_line(line.as_str())?;
                self.reading_head_request = method == Method::Head;
                (method, path, version)
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    // workshop patch: a line may not take the head over its budget either
                    // (431, like a line over its own limit).
                    let limit = MAX_HEADER_LINE.min(head_left.saturating_sub(2));
                    let line = match self.read_next_line(limit) {
                        Ok(line) => line,
                        // workshop patch: 431 and 400 instead of a silent close.
                        Err(LineError::TooLong) => {
                            return Err(ReadError::Refused(
                                431,
                                version,
                                "header line over 16 KiB, or request head over 64 KiB",
                            ))
                        }
                        Err(LineError::Malformed) => return Err(ReadError::WrongHeader(version)),
                        Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
                    };

                    if line.is_empty() {
                        break;
                    };
                    head_left = head_left.saturating_sub(line.len() + 2);
                    // workshop patch: bound the number of headers as well.
                    if headers.len() >= MAX_HEADERS {
                        return Err(ReadError::Refused(431, version, "more than 128 headers"));
                    }
                    // workshop patch: upstream trimmed the line first, so an obs-fold
                    // continuation (` Transfer-Encoding: chunked`) became a header of its
                    // own. RFC 9112 §5.2 says to refuse it.
                    if line.as_str().starts_with([' ', '\t']) {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str()) {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };
        self.pace.expect_body();

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadFraming => ReadError::Refused(
                    400,
                    version,
                    "ambiguous body framing: send one Content-Length of digits, or \
                     Transfer-Encoding: chunked alone",
                ),
                request::RequestCreationError::UnsupportedCoding => ReadError::Refused(
                    501,
                    version,
                    "unsupported transfer coding: only chunked is read",
                ),
            }
        })?;

        let request = request.with_handover(self.handover.clone());
        self.last_body_complete = Some(request.body_completion());

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    #[allow(
        clippy::never_loop,
        reason = "patch 6 turned the loop's only `continue` into a close; kept to keep the patch small"
    )]
    fn next(&mut self) -> Option<Request> {
        use crate::Response;

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        // workshop patch: the last request's body was not read to its end, so where this
        // request would start is unknown (its answer said `Connection: close`). Known once
        // that request has given up the stream (it may be read on another thread, with
        // `recv()`).
        if let Some(complete) = self.last_body_complete.take() {
            self.next_header_source.wait_for_turn();
            if !complete.load(Ordering::SeqCst) {
                return None;
            }
        }

        loop {
            let rq = match self.read() {
                Ok(rq) => rq,
                // workshop patch: every head that cannot be served gets its answer in the
                // shape the application gives its own errors (`Response::refusal`), and the
                // connection ends with it: where a next request would start is unknown.
                Err(err) => {
                    if let Some((status, ver, why)) = self.refusal(err) {
                        let writer = self.sink.next().unwrap();
                        let response = Response::refusal(status, why).with_connection_close();
                        let bodiless = self.reading_head_request;
                        response.raw_print(writer, ver, &[], bodiless, None).ok();
                    }
                    return None;
                }
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // workshop patch: upstream wrote this 505 on the *next* writer, which waits
                // until this request's writer is released, while `rq` still held it: the
                // connection thread blocked forever with its socket. Answer on the request's
                // own writer and close (a client speaking HTTP/2 cannot go on anyway).
                let bodiless = *rq.method() == Method::Head;
                let mut writer = rq.into_writer();
                let response = Response::refusal(505, "unsupported HTTP version: send HTTP/1.1")
                    .with_connection_close();
                let _ = response.raw_print(&mut writer, HTTPVersion(1, 1), &[], bodiless, None);
                let _ = writer.flush();
                return None;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    /// workshop patch: the status, version and reason a head that cannot be served is
    /// answered with; none when there is no one to answer (the client has gone, or an idle
    /// keep-alive connection timed out before a next request began).
    fn refusal(&self, err: ReadError) -> Option<(u16, HTTPVersion, &'static str)> {
        let why = match err {
            ReadError::WrongRequestLine => (
                400,
                HTTPVersion(1, 1),
                "malformed request line: send METHOD target HTTP/1.1",
            ),
            ReadError::WrongHeader(ver) => (400, ver, "malformed header line"),
            ReadError::ExpectationFailed(ver) => (
                417,
                ver,
                "unsupported Expect: only 100-continue is understood",
            ),
            ReadError::ReadIoError(ref e)
                if e.kind() == ErrorKind::TimedOut && self.pace.head_started() =>
            {
                (
                    408,
                    HTTPVersion(1, 1),
                    "the request head did not arrive in time",
                )
            }
            ReadError::ReadIoError(_) => return None,
            ReadError::Refused(status, ver, why) => (status, ver, why),
        };
        Some(why)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    // workshop patch: HTTP/0.9 (no headers, no status line) is refused.
    let (major, minor) = match version {
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    // workshop patch: exactly `method SP target SP version` (RFC 9112 §3). Upstream trimmed
    // the line and ignored anything after the version.
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, path, version] = parts.as_slice() else {
        return Err(ReadError::WrongRequestLine);
    };
    if path.is_empty() {
        return Err(ReadError::WrongRequestLine);
    }
    let method = method.parse().map_err(|_| ReadError::WrongRequestLine)?;
    Ok((method, path.to_string(), parse_http_version(version)?))
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("GET /hello HTTP/1.1 junk").is_err());
        assert!(super::parse_request_line("GET  /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET /hello HTTP/0.9").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
