//! A raw SSE client (`Sse`): sends the request by hand, de-chunks the body and splits it into
//! events; and `stream_text`, the raw body of a stream with every line kept.

use crate::http::{connect, header, is_chunked, read_chunk_size, try_read_response};
use serde_json::Value;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Sse {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    /// Bytes read and not yet de-chunked: a read that times out part-way through a chunk
    /// (the server sent it in two pieces, as it does when the socket's buffer is full) keeps
    /// what came, where reading the chunk in place lost it and the framing with it.
    raw: Vec<u8>,
    /// How many bytes the chunk in `raw` still lacks, once its size line has come.
    missing: usize,
    buffer: String,
}

/// One event or comment block.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl Sse {
    /// Sends `GET path` and reads the response head, whatever its status.
    pub fn try_connect(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Sse> {
        let mut stream = connect(port)?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let response = try_read_response(&mut reader, true)?;
        let chunked = is_chunked(&response.headers);
        Ok(Sse {
            reader,
            status: response.status,
            headers: response.headers,
            chunked,
            raw: Vec::new(),
            missing: 0,
            buffer: String::new(),
        })
    }

    /// `try_connect`, panicking if no response head came back.
    pub fn connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::try_connect(port, path, headers)
            .unwrap_or_else(|e| panic!("GET {path}: no response: {e}"))
    }

    /// A stream the server took: it answered 200 and sent the `: open` comment.
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Sse> {
        let mut sse = Sse::try_connect(port, path, headers)?;
        if sse.status != 200 {
            return Err(io::Error::other(format!("stream refused: {}", sse.status)));
        }
        let first = sse.read_event(None)?;
        if first.comment.as_deref() != Some("open") || first.id.is_some() || first.data.is_some() {
            return Err(io::Error::other(format!("first event {first:?}")));
        }
        Ok(sse)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The next event or comment, or None on timeout or end of stream.
    pub fn next(&mut self, timeout: Duration) -> Option<Event> {
        match self.read_event(Some(Instant::now() + timeout)) {
            Ok(event) => Some(event),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => panic!("{e}"),
            Err(_) => None,
        }
    }

    /// The next event with data (skipping comments), its data parsed.
    pub fn next_message(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let event = self.next(left)?;
            if let (Some(id), Some(data)) = (event.id, event.data) {
                return Some((id, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
    }

    /// The next event's (id, data), skipping comments (keepalives). Each read waits as long as
    /// the socket's read timeout (30 s, unless changed through `stream()`).
    pub fn next_event(&mut self) -> io::Result<(String, String)> {
        loop {
            match self.read_event(None)? {
                Event {
                    id: Some(id),
                    data: Some(data),
                    ..
                } => return Ok((id, data)),
                Event {
                    id: None,
                    data: None,
                    comment: Some(_),
                } => continue,
                other => return Err(io::Error::other(format!("bad event {other:?}"))),
            }
        }
    }

    /// True when the server ends the stream (closes the connection) within `timeout`,
    /// whatever it sends before that.
    pub fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let socket = self.reader.get_ref();
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next block, reading until `deadline` (or, without one, for as long as each read
    /// of the socket is allowed). `InvalidData` when the framing is broken.
    fn read_event(&mut self, deadline: Option<Instant>) -> io::Result<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Ok(parse_event(&block));
            }
            if let Some(deadline) = deadline {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .ok_or(io::ErrorKind::TimedOut)?;
                self.reader
                    .get_ref()
                    .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            }
            let text = self.read_some()?;
            self.buffer.push_str(&text);
        }
    }

    /// One chunk (workshop sends an event or comment a chunk), or whatever whole characters
    /// have come when the stream is not chunked (HTTP/1.0).
    fn read_some(&mut self) -> io::Result<String> {
        loop {
            if let Some(text) = self.decoded()? {
                return Ok(text);
            }
            // Straight into `raw`, as much as the chunk still lacks (at least 16 KiB): a
            // reader of 1 MiB events that read them 4 KiB a call fell behind a busy server
            // and was cut off as a stalled one.
            let have = self.raw.len();
            let want = self.missing.clamp(16 << 10, 4 << 20);
            self.raw.resize(have + want, 0);
            let read = self.reader.read(&mut self.raw[have..]);
            self.raw.truncate(have + *read.as_ref().unwrap_or(&0));
            if read? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// What `raw` holds whole: the next chunk's data, or (not chunked) every complete
    /// character. `None` until more has come.
    fn decoded(&mut self) -> io::Result<Option<String>> {
        if !self.chunked {
            let whole = match std::str::from_utf8(&self.raw) {
                Ok(text) => text.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => self.raw.len(), // not UTF-8 at all: shown lossily
            };
            let bytes: Vec<u8> = self.raw.drain(..whole).collect();
            return Ok((!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned()));
        }
        let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = read_chunk_size(&mut &self.raw[..line_end + 2])? as usize;
        if size == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (start, end) = (line_end + 2, line_end + 2 + size);
        self.missing = (end + 2).saturating_sub(self.raw.len());
        if self.missing > 0 {
            return Ok(None);
        }
        if &self.raw[end..end + 2] != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not ended by CRLF",
            ));
        }
        let chunk: Vec<u8> = self.raw.drain(..end + 2).take(end).skip(start).collect();
        String::from_utf8(chunk)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn parse_event(block: &str) -> Event {
    let mut event = Event {
        id: None,
        data: None,
        comment: None,
    };
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("id: ") {
            event.id = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("data: ") {
            event.data = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix(':') {
            event.comment = Some(rest.strip_prefix(' ').unwrap_or(rest).to_string());
        }
    }
    event
}

/// The raw body of an SSE stream (HTTP/1.0, so unchunked) from its start until it contains
/// `until`, or panics after a generous deadline.
pub fn stream_text(port: u16, path: &str, headers: &[(&str, &str)], until: &str) -> String {
    let mut stream = connect(port).expect("connect");
    let mut head = format!("GET {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("socket");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains(until) {
        assert!(Instant::now() < deadline, "no {until:?} in {text:?}");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("socket");
        match stream.read(&mut buf) {
            Ok(0) => panic!("stream ended before {until:?}: {text:?}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let body = text.split_once("\r\n\r\n").expect("response head").1;
    body.to_string()
}
