//! HTTP plumbing shared by the handlers: replies, query strings, bounded JSON bodies.
use crate::error::{ApiError, shown};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use tiny_http::{Header, Request, Response, StatusCode};

/// A JSON request body over this size is refused with 413.
pub const MAX_JSON_BODY: u64 = 1024 * 1024;

/// The headers of an SSE stream (`text/event-stream`).
pub const EVENT_STREAM_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("X-Content-Type-Options", "nosniff"),
];

/// One request as a handler sees it: the tiny_http request, its decoded query and what the
/// route captured from its path (`/tasks/ID/claim`: `ID`, `claim`).
pub struct Req {
    pub http: Request,
    pub query: HashMap<String, String>,
    pub captures: Vec<String>,
}

/// Extra response headers, as `(name, value)`.
pub type Headers = Vec<(&'static str, String)>;

/// A reply split for sending: the stream that takes the connection over with the headers
/// to wrap around it, or the ordinary reply.
type TakenOver = Result<(Box<dyn Takeover>, Headers), Reply>;

/// An answer that takes the connection over and writes the response itself (an SSE stream).
pub trait Takeover: Send {
    /// Writes the response, with `headers` added, on the connection it now owns.
    fn take_over(self: Box<Self>, request: Request, headers: Headers);
}

/// A body of newline-delimited JSON whose length is known before the first byte is read.
pub trait NdjsonSource {
    fn into_body(self) -> (Box<dyn Read + Send>, u64);
}

/// What a handler answers; `respond` turns it into bytes on the socket.
pub enum Reply {
    Json(u16, Value),
    /// A stored envelope, answered byte for byte as stored (re-encoding a parsed copy would
    /// reorder its keys).
    Envelope(String),
    /// Newline-delimited JSON of exactly `len` bytes, produced as it is sent.
    Ndjson {
        body: Box<dyn Read + Send>,
        len: u64,
    },
    /// A JSON body of unknown length, produced as it is sent (chunked on HTTP/1.1).
    JsonStream(Box<dyn Read + Send>),
    Html(&'static str),
    /// The answer to a CORS preflight (`OPTIONS`).
    Preflight,
    /// A status with no body (204 No Content).
    Empty(u16),
    File {
        file: File,
        len: u64,
        etag: String,
    },
    /// 304: the client's copy of the file tagged `etag` is current. It carries the caching
    /// headers the 200 would have (RFC 9110 §15.4.5).
    NotModified {
        etag: String,
    },
    /// 303 See Other: what was asked for is at this path of the hub (`Location`).
    SeeOther(&'static str),
    /// 429 from the loop guard (`ratelimit`), with `Retry-After`.
    Throttled {
        message: String,
        retry_after_s: u64,
    },
    /// `GET /metrics`: Prometheus text exposition format 0.0.4.
    Metrics(String),
    /// Another reply with extra headers (`Workshop-Gap`, the browser rules' headers).
    Headed(Headers, Box<Reply>),
    /// The connection is handed over: the answer writes itself and the connection ends with it.
    Stream(Box<dyn Takeover>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Json(status, body)
    }

    /// NDJSON produced as it is sent (stored messages, one envelope a line).
    pub fn ndjson(source: impl NdjsonSource) -> Reply {
        let (body, len) = source.into_body();
        Reply::Ndjson { body, len }
    }

    pub fn status(&self) -> u16 {
        match self {
            Reply::Json(status, _) => *status,
            Reply::Preflight => 204,
            Reply::Empty(status) => *status,
            Reply::NotModified { .. } => 304,
            Reply::SeeOther(_) => 303,
            Reply::Throttled { .. } => 429,
            Reply::Headed(_, reply) => reply.status(),
            _ => 200,
        }
    }

    /// The stream this reply hands the connection to, with the headers wrapped around it;
    /// or the reply itself, when it is an ordinary answer.
    fn into_takeover(self) -> TakenOver {
        match self {
            Reply::Stream(stream) => Ok((stream, Vec::new())),
            Reply::Headed(extra, inner) => Self::headed_takeover(extra, *inner),
            reply => Err(reply),
        }
    }

    /// `into_takeover` of a reply wrapped in `extra` headers: they go outside the inner
    /// reply's own, on the stream or on the ordinary answer alike.
    fn headed_takeover(extra: Headers, inner: Reply) -> TakenOver {
        match inner.into_takeover() {
            Ok((stream, more)) => Ok((stream, extra.into_iter().chain(more).collect())),
            Err(inner) => Err(Reply::Headed(extra, Box::new(inner))),
        }
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        Reply::Json(err.status, serde_json::json!({ "error": err.message }))
    }
}

pub fn header(name: &str, value: &str) -> Header {
    // Names and values here are ours (constants, hashes, numbers): always valid.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

/// Sends a reply (extra headers, such as the browser rules' CORS, CSP and download headers,
/// come as `Reply::Headed`), or hands the connection to a stream; `false` when the
/// connection is no longer this thread's to serve.
pub fn respond(request: Request, reply: Reply) -> bool {
    match reply.into_takeover() {
        Ok((stream, headers)) => {
            stream.take_over(request, headers);
            false
        }
        Err(reply) => {
            send(request, reply);
            true
        }
    }
}

/// A client that has already gone away is no one to tell; a reply that fails part-way is
/// shut down by tiny_http (workshop patch), so the client sees the answer cut short at once.
fn send(request: Request, reply: Reply) {
    let _ = request.respond(into_response(reply));
}

type Body = Box<dyn Read + Send>;
/// A response body, its length when known, and the headers that describe it.
type Parts = (Body, Option<usize>, Vec<Header>);

/// Turns a reply into a tiny_http response.
fn into_response(reply: Reply) -> Response<Body> {
    let status = reply.status();
    let (body, len, headers) = match reply {
        Reply::Headed(extra, reply) => return with_headers(into_response(*reply), extra),
        Reply::Json(_, value) => typed(value.to_string().into_bytes(), "application/json"),
        Reply::Envelope(text) => typed(text.into_bytes(), "application/json"),
        Reply::Ndjson { body, len } => {
            let headers = vec![header("Content-Type", "application/x-ndjson")];
            (body, usize::try_from(len).ok(), headers)
        }
        Reply::JsonStream(body) => (body, None, vec![header("Content-Type", "application/json")]),
        Reply::Html(page) => typed(page.as_bytes().to_vec(), "text/html; charset=utf-8"),
        // A preflight's allow headers depend on its origin: `browser::Policy::headers`.
        Reply::Preflight | Reply::Empty(_) => (no_body(), None, vec![]),
        Reply::Throttled {
            message,
            retry_after_s,
        } => throttled(&message, retry_after_s),
        Reply::Metrics(text) => typed(text.into_bytes(), METRICS_TYPE),
        Reply::SeeOther(path) => see_other(path),
        Reply::File { file, len, etag } => file_parts(file, len, &etag),
        Reply::NotModified { etag } => (no_body(), None, cache_headers(&etag)),
        // Taken over in `respond`, before a response is built.
        Reply::Stream(_) => unreachable!("a stream takes its connection over"),
    };
    let response = Response::new(StatusCode(status), headers, body, len, None)
        // Known lengths are always sent with Content-Length, never chunked.
        .with_chunked_threshold(usize::MAX);
    with_safety_headers(response, status)
}

fn no_body() -> Body {
    Box::new(std::io::empty())
}

/// Prometheus text exposition format 0.0.4.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `data` as a body of `content_type`.
fn typed(data: Vec<u8>, content_type: &str) -> Parts {
    let len = data.len();
    let headers = vec![header("Content-Type", content_type)];
    (Box::new(std::io::Cursor::new(data)), Some(len), headers)
}

fn throttled(message: &str, retry_after_s: u64) -> Parts {
    let body = serde_json::json!({ "error": message }).to_string();
    let (body, len, mut headers) = typed(body.into_bytes(), "application/json");
    headers.push(header("Retry-After", &retry_after_s.to_string()));
    (body, len, headers)
}

fn see_other(path: &str) -> Parts {
    let text = format!("See {path}\n").into_bytes();
    let (body, len, mut headers) = typed(text, "text/plain; charset=utf-8");
    headers.push(header("Location", path));
    (body, len, headers)
}

fn file_parts(file: File, len: u64, etag: &str) -> Parts {
    let mut headers = vec![header("Content-Type", "application/octet-stream")];
    headers.extend(cache_headers(etag));
    (Box::new(file), usize::try_from(len).ok(), headers)
}

/// What a file's 200 and its 304 both say about caching it: a file's name is its hash, so
/// its bytes never change.
fn cache_headers(etag: &str) -> Vec<Header> {
    vec![
        header("ETag", etag),
        header("Cache-Control", "public, max-age=31536000, immutable"),
    ]
}

fn with_headers(mut response: Response<Body>, extra: Vec<(&str, String)>) -> Response<Body> {
    for (name, value) in extra {
        response.add_header(header(name, &value));
    }
    response
}

fn with_safety_headers(mut response: Response<Body>, status: u16) -> Response<Body> {
    // No answer may be sniffed into something runnable (HTML, script) by a browser.
    response.add_header(header("X-Content-Type-Options", "nosniff"));
    // Every 503 (busy, shutting down) passes: say when to come back.
    if status == 503 {
        response.add_header(header("Retry-After", "1"));
    }
    response
}

/// Splits a request target into its path and decoded query parameters.
pub fn split_url(url: &str) -> Result<(&str, HashMap<String, String>), ApiError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    Ok((path, decode_query(query)?))
}

/// The `key=value` pairs of a query string, percent-decoded; a key without `=` has an
/// empty value, and a later repeat of a key wins.
fn decode_query(query: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(percent_decode(key)?, percent_decode(value)?);
    }
    Ok(params)
}

/// Decodes `%XX` escapes and `+` (a space, as in HTML forms) in a query component.
pub fn percent_decode(raw: &str) -> Result<String, ApiError> {
    decode(raw, true)
}

/// Decodes `%XX` escapes in a path segment, where `+` is just a plus.
pub fn percent_decode_path(raw: &str) -> Result<String, ApiError> {
    decode(raw, false)
}

fn decode(raw: &str, plus_is_space: bool) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    // from_str_radix accepts a leading sign: "%+0" would decode to NUL.
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request("bad percent-encoding in the URL"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("URL is not valid UTF-8"))
}

/// `?n=`: a positive count, at most `max` (larger asks get `max`), `default` when absent.
pub fn count_param(
    params: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.get("n") {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(ApiError::bad_request(format!(
                "n must be a whole number from 1 (at most {max} are answered), got {}",
                shown(raw)
            ))),
        },
    }
}

/// The declared body length, when the client sent a parseable one.
pub fn declared_length(request: &Request) -> Option<u64> {
    request_header(request, "Content-Length").and_then(|v| v.trim().parse().ok())
}

pub fn request_header<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Reads a JSON object body, refusing more than 1 MiB while reading (413), never trusting
/// Content-Length alone.
pub fn read_json_object(request: &mut Request) -> Result<Map<String, Value>, ApiError> {
    match read_json(request)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request("request body must be a JSON object")),
    }
}

/// The request body as JSON of any shape, at most `MAX_JSON_BODY` bytes, every integer in
/// it exact.
pub fn read_json(request: &mut Request) -> Result<Value, ApiError> {
    let too_large = || ApiError::too_large("request body is over 1 MiB");
    if declared_length(request).is_some_and(|len| len > MAX_JSON_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_JSON_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
    if body.len() as u64 > MAX_JSON_BODY {
        return Err(too_large());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: it must be JSON",
        ));
    }
    match serde_json::from_slice(&body) {
        Ok(value) => crate::json_ints::refuse_inexact(&body).map(|()| value),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests;
