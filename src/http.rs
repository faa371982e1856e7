//! HTTP plumbing shared by the handlers: replies, query strings, bounded JSON bodies.
use crate::error::ApiError;
use crate::store::batches::{Messages, NdjsonBody};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use tiny_http::{Header, Request, Response, StatusCode};

/// A JSON request body over this size is refused with 413.
pub const MAX_JSON_BODY: u64 = 1024 * 1024;

/// What a handler answers; `server::respond` turns it into bytes on the socket.
pub enum Reply {
    Json(u16, Value),
    /// Newline-delimited JSON of exactly `len` bytes, produced as it is sent.
    Ndjson {
        body: Box<dyn Read + Send>,
        len: u64,
    },
    Html(&'static str),
    /// The answer to a CORS preflight (`OPTIONS`).
    Preflight,
    /// A status with no body (204 No Content, 304 Not Modified).
    Empty(u16),
    /// The headers of an SSE stream, for `HEAD`.
    StreamHead,
    File {
        file: File,
        len: u64,
        etag: String,
    },
    /// 429 from the loop guard (`ratelimit`), with `Retry-After`.
    Throttled {
        message: String,
        retry_after_s: u64,
    },
    /// `GET /metrics`: Prometheus text exposition format 0.0.4.
    Metrics(String),
    /// Another reply with extra headers (`Workshop-Gap`, the browser rules' headers).
    Headed(Vec<(&'static str, String)>, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Json(status, body)
    }

    /// NDJSON of stored messages, one envelope a line, read from the store as it is sent.
    pub fn ndjson(messages: Messages) -> Reply {
        // Each envelope and its newline: the length is known before the first byte is read.
        let len = messages.bytes() + messages.len() as u64;
        Reply::Ndjson {
            body: Box::new(NdjsonBody::new(messages)),
            len,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Reply::Json(status, _) => *status,
            Reply::Preflight => 204,
            Reply::Empty(status) => *status,
            Reply::Throttled { .. } => 429,
            Reply::Headed(_, reply) => reply.status(),
            _ => 200,
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
/// come as `Reply::Headed`); a client that has already gone away is no one to tell. A
/// reply that fails part-way (its body could not be produced, or the client stopped reading)
/// leaves the connection mid-message: it is shut down, so the client sees the answer cut short
/// at once and nothing more is read from it.
pub fn respond(request: Request, reply: Reply) {
    // tiny_http (workshop patch) shuts the connection down when a response fails part-way.
    let _ = request.respond(into_response(reply));
}

/// Turns a reply into a tiny_http response.
fn into_response(reply: Reply) -> Response<Box<dyn Read + Send>> {
    let boxed = |data: Vec<u8>| -> (Box<dyn Read + Send>, Option<usize>) {
        let len = data.len();
        (Box::new(std::io::Cursor::new(data)), Some(len))
    };
    let status = reply.status();
    let (body, len, headers) = match reply {
        Reply::Json(_, value) => {
            let (body, len) = boxed(value.to_string().into_bytes());
            (body, len, vec![header("Content-Type", "application/json")])
        }
        Reply::Ndjson { body, len } => (
            body,
            usize::try_from(len).ok(),
            vec![header("Content-Type", "application/x-ndjson")],
        ),
        Reply::Html(page) => {
            let (body, len) = boxed(page.as_bytes().to_vec());
            (
                body,
                len,
                vec![header("Content-Type", "text/html; charset=utf-8")],
            )
        }
        // A preflight's allow headers depend on its origin: `browser::Policy::headers`.
        Reply::Preflight | Reply::Empty(_) => {
            let (body, _) = boxed(Vec::new());
            (body, None, vec![])
        }
        Reply::StreamHead => {
            let (body, _) = boxed(Vec::new());
            let headers = crate::sse::HEADERS
                .iter()
                .filter(|(name, _)| *name != "X-Content-Type-Options")
                .map(|(name, value)| header(name, value))
                .collect();
            (body, None, headers)
        }
        Reply::Throttled {
            message,
            retry_after_s,
        } => {
            let (body, len) = boxed(serde_json::json!({ "error": message }).to_string().into());
            let headers = vec![
                header("Content-Type", "application/json"),
                header("Retry-After", &retry_after_s.to_string()),
            ];
            (body, len, headers)
        }
        Reply::Metrics(text) => {
            let (body, len) = boxed(text.into_bytes());
            let kind = "text/plain; version=0.0.4; charset=utf-8";
            (body, len, vec![header("Content-Type", kind)])
        }
        Reply::Headed(extra, reply) => {
            let mut response = into_response(*reply);
            for (name, value) in extra {
                response.add_header(header(name, &value));
            }
            return response;
        }
        Reply::File { file, len, etag } => {
            let headers = vec![
                header("Content-Type", "application/octet-stream"),
                header("ETag", &etag),
                header("Cache-Control", "public, max-age=31536000, immutable"),
            ];
            let body: Box<dyn Read + Send> = Box::new(file);
            (body, usize::try_from(len).ok(), headers)
        }
    };
    let mut response = Response::new(StatusCode(status), headers, body, len, None)
        // Known lengths are always sent with Content-Length, never chunked.
        .with_chunked_threshold(usize::MAX);
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
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(percent_decode(key)?, percent_decode(value)?);
    }
    Ok((path, params))
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
                "n must be a whole number from 1 to {max}, got {raw:?}"
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
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => crate::json_ints::refuse_inexact(&body).map(|()| map),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let (path, q) = split_url("/ch/a/history?type=a%25&since=X&x=a+b&flag").unwrap();
        assert_eq!(path, "/ch/a/history");
        assert_eq!(q["type"], "a%");
        assert_eq!(q["since"], "X");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn bad_escapes_are_refused() {
        for bad in ["/?a=%", "/?a=%4", "/?a=%zz", "/?a=%ff", "/?%c3%28=1"] {
            assert_eq!(split_url(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn counts_are_bounded() {
        let q = |v: &str| HashMap::from([("n".to_string(), v.to_string())]);
        assert_eq!(count_param(&HashMap::new(), 200, 1000).unwrap(), 200);
        assert_eq!(count_param(&q("5"), 200, 1000).unwrap(), 5);
        assert_eq!(count_param(&q("1000"), 200, 1000).unwrap(), 1000);
        assert_eq!(count_param(&q("5000"), 200, 1000).unwrap(), 1000);
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999999"] {
            assert!(count_param(&q(bad), 200, 1000).is_err(), "{bad}");
        }
    }
}
