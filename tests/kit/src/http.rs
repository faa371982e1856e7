//! A raw HTTP/1.1 client over `TcpStream`: exactly the bytes given go on the wire, and the
//! answer is reported as it came back. The `try_` functions return what went wrong (for tests
//! where the server may be down or may hang up); the others panic.

use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// What came back on the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// The `error` text of a JSON error, asserting the error shape.
    pub fn error(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.json()["error"]
            .as_str()
            .expect("error text")
            .to_string()
    }
}

/// The value of the first header called `name` (any case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A connection to the server, with 30 s read and write timeouts and no Nagle delay.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request on its own connection (`Connection: close`), the whole response read back.
/// A `Content-Length` of the body is added unless `headers` has one or a
/// `Transfer-Encoding` (both at once is refused as ambiguous framing).
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = connect(port)?;
    stream.write_all(head.as_bytes())?;
    // The server may answer (a 413, say) and hang up before taking all of the body.
    let _ = stream.write_all(body);
    try_read_response(&mut BufReader::new(stream), method == "HEAD")
}

/// `try_request`, panicking if no complete response came back.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"))
}

pub fn try_get(port: u16, path: &str) -> io::Result<Response> {
    try_request(port, "GET", path, &[], b"")
}

/// POSTs `body` as `Content-Type: application/json`.
pub fn try_post_json(port: u16, path: &str, body: &Value) -> io::Result<Response> {
    try_request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Reads a status line, headers and (unless `head_only`) a body: `Content-Length` bytes of
/// it, or everything up to the end of the stream when there is no length.
pub fn try_read_response(reader: &mut impl BufRead, head_only: bool) -> io::Result<Response> {
    let (status, headers) = read_head(reader)?;
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return Ok(response);
    }
    if is_chunked(&response.headers) {
        read_chunked(reader, &mut response.body)?;
        return Ok(response);
    }
    match content_length(&response.headers)? {
        Some(len) => {
            response.body.resize(len as usize, 0);
            reader.read_exact(&mut response.body)?;
        }
        None => {
            reader.read_to_end(&mut response.body)?;
        }
    }
    Ok(response)
}

/// A response's status line and headers, up to the blank line that ends them.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("the stream ended inside the head".to_string()));
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok((status, headers));
        }
        let (k, v) = trimmed
            .split_once(':')
            .ok_or_else(|| invalid(format!("header without a colon: {trimmed:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

/// The `Content-Length` of a response head, if it has one.
pub fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    header(headers, "content-length")
        .map(|len| {
            len.parse()
                .map_err(|_| invalid(format!("bad Content-Length {len:?}")))
        })
        .transpose()
}

/// Whether a response head says its body is chunked.
pub fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// The size line of the next chunk of a chunked body (extensions after `;` ignored).
pub fn read_chunk_size(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let digits = size_line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(digits, 16).map_err(|_| invalid(format!("bad chunk size {size_line:?}")))
}

/// A chunked body, de-chunked into `body`; trailers (none expected) are skipped. Each
/// chunk's data must end with an empty line.
pub fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let size = read_chunk_size(reader)? as usize;
        if size == 0 {
            return skip_trailers(reader);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = String::new();
        reader.read_line(&mut end)?;
        if end != "\r\n" {
            return Err(invalid(format!("chunk data ends with {end:?}, not CRLF")));
        }
    }
}

/// The trailer lines after the last chunk, up to the empty line that ends the body.
fn skip_trailers(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.trim_end().is_empty() {
            return Ok(());
        }
    }
}

/// `try_read_response`, panicking if there is no complete response.
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Response {
    try_read_response(reader, head_only).unwrap_or_else(|e| panic!("reading a response: {e}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Sends raw bytes, half-closes (so the server sees the end of what we sent) and returns
/// every byte that came back before the server closed or `timeout` passed.
pub fn raw_exchange(port: u16, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = connect(port)?;
    stream.set_read_timeout(Some(timeout))?;
    // A server may close early (e.g. on a bad head) while we are still writing.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + timeout;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Reset by the server (it closed with unread input): what we got is the answer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no end of response",
            ));
        }
    }
    Ok(out)
}

/// Every HTTP status code in a byte stream of (possibly several, pipelined) responses.
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = find_bytes(&raw[at..], b"HTTP/1.") {
        let line_start = at + pos;
        let code = raw
            .get(line_start + 9..line_start + 12)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok());
        if let Some(code) = code {
            out.push(code);
        }
        at = line_start + 7;
    }
    out
}

/// Where `needle` first occurs in `hay`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
