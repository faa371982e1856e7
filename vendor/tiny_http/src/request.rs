use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::{SocketAddr, TcpStream};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::util::refined_tcp_stream::Handover;
use crate::util::{ChunkedReader, EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<()>>,

    // workshop patch: the way to hand the connection's socket over (`into_socket`)
    handover: Option<Handover>,

    // workshop patch: set once the whole body has been read
    body_complete: Arc<AtomicBool>,
}

struct NotifyOnDrop<R> {
    sender: Sender<()>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        self.sender.send(()).unwrap();
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// workshop patch: where the body ends is ambiguous or malformed (400).
    BadFraming,

    /// workshop patch: a transfer coding other than `chunked` (501).
    UnsupportedCoding,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per part of a request head (upstream's allow)"
)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let framing = framing(&headers, &version)?;

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // workshop patch: upstream handed the rest of the connection to the body of a request
    // with `Connection: upgrade` (which it cannot upgrade), so `curl --http2` hung until
    // the client gave up. An upgrade offer is now ignored, as RFC 9110 §7.8 allows, and the
    // body framed as usual.

    // workshop patch: whether the body was read to its end decides whether the connection
    // can go on (see `ClientConnection`).
    let body_complete = Arc::new(AtomicBool::new(false));
    let content_length = match framing {
        Framing::Length(length) => Some(length),
        _ => None,
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    let reader = match framing {
        Framing::Empty | Framing::Length(0) => {
            body_complete.store(true, Ordering::SeqCst);
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        }
        Framing::Length(content_length) if content_length <= 1024 && !expects_continue => {
            // if the content-length is small enough, we just read everything into a buffer

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            body_complete.store(true, Ordering::SeqCst);
            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        }
        Framing::Length(content_length) => {
            let body = Tracked {
                inner: EqualReader::new(source_data, content_length),
                complete: body_complete.clone(),
            };
            Box::new(FusedReader::new(body)) as Box<dyn Read + Send + 'static>
        }
        Framing::Chunked => {
            let body = Tracked {
                inner: ChunkedReader::new(source_data),
                complete: body_complete.clone(),
            };
            Box::new(FusedReader::new(body)) as Box<dyn Read + Send + 'static>
        }
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        notify_when_responded: None,
        handover: None,
        body_complete,
    })
}

/// workshop patch: how a request body is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// workshop patch: upstream took the first `Content-Length` (any text `usize` parses, so
/// `+23` too; no body at all if it did not parse) and decoded any `Transfer-Encoding` as
/// chunked, over a `Content-Length` too. Where another parser (a proxy in front) could see
/// the body end elsewhere, a request could be smuggled inside a body. Anything but one
/// `Content-Length` of plain digits, or one `Transfer-Encoding: chunked` in HTTP/1.1 and no
/// `Content-Length`, is now refused, as RFC 9112 §6.1 and §6.3 say.
fn framing(headers: &[Header], version: &HTTPVersion) -> Result<Framing, RequestCreationError> {
    let named = |name: &'static str| -> Vec<&str> {
        headers
            .iter()
            .filter(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
            .collect()
    };
    match (
        named("Content-Length").as_slice(),
        named("Transfer-Encoding").as_slice(),
    ) {
        ([], []) => Ok(Framing::Empty),
        ([length], []) if !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()) => {
            length
                .parse()
                .map(Framing::Length)
                .map_err(|_| RequestCreationError::BadFraming)
        }
        ([], [coding]) if *version == HTTPVersion(1, 1) => {
            if coding.eq_ignore_ascii_case("chunked") {
                Ok(Framing::Chunked)
            } else {
                Err(RequestCreationError::UnsupportedCoding)
            }
        }
        _ => Err(RequestCreationError::BadFraming),
    }
}

/// workshop patch: marks the body complete when its reader reaches the end of it.
struct Tracked<R> {
    inner: R,
    complete: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.complete.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender,
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let res = self.respond_impl(response);
        // workshop patch: a response that failed part-way leaves the connection mid-message:
        // shut it down, so the client sees the answer cut short at once and nothing more is
        // read from it.
        if let (Err(_), Some(handover)) = (&res, &self.handover) {
            handover.shut_down();
        }
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(()).unwrap();
        }
        res
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        // workshop patch: an answer given before the body was read to its end (a refusal)
        // ends the connection: where the next request would start is unknown, and upstream
        // read the rest of the body as requests. `ClientConnection` then closes.
        let response = if self.body_is_complete() {
            response
        } else {
            response.with_connection_close()
        };
        let do_not_send_body = self.method == Method::Head;

        let printed = response.print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        );
        let close_delimited = printed.as_ref().is_ok_and(|close| *close);
        Self::ignore_client_closing_errors(printed.map(|_| ()))?;
        // workshop patch: a body that ends where the connection closes (patch 17) ends the
        // connection: `ClientConnection` reads no further request from it, and the write half
        // is shut once the body is out, before a pipelined request's answer could follow it.
        if close_delimited {
            self.body_complete.store(false, Ordering::SeqCst);
        }

        Self::ignore_client_closing_errors(writer.flush())?;
        if let (true, Some(handover)) = (close_delimited, &self.handover) {
            handover.finish_writing();
        }
        Ok(())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    /// workshop patch: takes the connection's socket over, for a response the caller writes
    /// itself and that outlives the handler (a long stream written without blocking). What
    /// earlier responses left in tiny_http's buffer is flushed first. From then on tiny_http
    /// neither reads, writes nor shuts the connection down: it ends when the returned stream
    /// and its clones are dropped. The handler should return `false`.
    ///
    /// The request comes back with the error when the flush fails or the socket cannot be
    /// had (a TLS or Unix connection, a request built by hand, no descriptor left to `dup`),
    /// so it can still be answered.
    #[allow(
        clippy::result_large_err,
        reason = "the request itself comes back on failure, to be answered; boxing it would only add an allocation to a rare path"
    )]
    pub fn into_socket(mut self) -> Result<TcpStream, (IoError, Request)> {
        let taken = self.flush_writer().and_then(|()| match &self.handover {
            Some(handover) => handover.take(),
            None => Err(IoError::new(
                ErrorKind::Unsupported,
                "no socket to hand over",
            )),
        });
        match taken {
            Ok(stream) => {
                drop(self.into_writer());
                Ok(stream)
            }
            Err(e) => Err((e, self)),
        }
    }

    fn flush_writer(&mut self) -> io::Result<()> {
        match self.response_writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Err(IoError::other("already answered")),
        }
    }

    /// workshop patch: whether the whole body has been read (always, without a body).
    pub(crate) fn body_is_complete(&self) -> bool {
        self.body_complete.load(Ordering::SeqCst)
    }

    pub(crate) fn body_completion(&self) -> Arc<AtomicBool> {
        self.body_complete.clone()
    }

    /// workshop patch: whether the client has already closed its end of the connection (so
    /// an answer would reach no one), checked without waiting. For a handler that holds a
    /// request a long time (a long poll) running on the connection's own thread, with the
    /// request's body read; `false` when it cannot tell.
    pub fn peer_has_closed(&self) -> bool {
        self.handover
            .as_ref()
            .is_some_and(|handover| handover.peer_has_closed())
    }

    pub(crate) fn with_handover(mut self, handover: Option<Handover>) -> Self {
        self.handover = handover;
        self
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<()>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            // workshop patch: JSON and nosniff, as every answer of workshop's (patch 20).
            let response = Response::refusal(500, "the request was not answered");
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                sender.send(()).unwrap();
            }
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(
            dead_code,
            reason = "a compile-time check, never run (upstream's allow)"
        )]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
