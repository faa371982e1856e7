//! A minimal keep-alive HTTP/1.1 client over a raw `TcpStream` (the benchmark's): one request
//! in flight per connection, the request written with one `write` when small, the response
//! read with `http`'s head parser (Content-Length or chunked body). Lighter and more
//! predictable than a general client, so the load generator costs as little CPU as possible
//! on a 2-core machine.
use crate::http::{content_length, is_chunked, read_chunk_size, read_head};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read buffer of a connection: large downloads come in big reads.
const BUFFER: usize = 256 * 1024;

/// Bodies up to this size go out in the same `write` as the head.
const ONE_WRITE: usize = 64 * 1024;

pub struct Conn {
    reader: BufReader<TcpStream>,
    req: Vec<u8>,
}

pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<not utf-8>")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            reader: BufReader::with_capacity(BUFFER, stream),
            req: Vec::with_capacity(1024),
        })
    }

    pub fn get(&mut self, path: &str) -> io::Result<Resp> {
        self.request("GET", path, None, &[])
    }

    pub fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<Resp> {
        self.request("POST", path, Some("application/json"), body)
    }

    /// Sends one request and reads its whole response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<Resp> {
        self.send_head(method, path, content_type, body.len() as u64)?;
        let stream = self.reader.get_mut();
        if body.len() <= ONE_WRITE {
            self.req.extend_from_slice(body);
            stream.write_all(&self.req)?;
        } else {
            stream.write_all(&self.req)?;
            stream.write_all(body)?;
        }
        let mut body = Vec::new();
        let status = self.read_response(&mut |chunk| body.extend_from_slice(chunk))?;
        Ok(Resp { status, body })
    }

    /// Builds the request head into `self.req` (not yet written).
    fn send_head(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        len: u64,
    ) -> io::Result<()> {
        self.req.clear();
        write!(self.req, "{method} {path} HTTP/1.1\r\nHost: bench\r\n")?;
        if let Some(ct) = content_type {
            write!(self.req, "Content-Type: {ct}\r\n")?;
        }
        if method == "POST" || len > 0 {
            write!(self.req, "Content-Length: {len}\r\n")?;
        }
        self.req.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// GET whose body is handed to `sink` as it arrives (large downloads); returns the status.
    pub fn get_streaming(&mut self, path: &str, sink: &mut dyn FnMut(&[u8])) -> io::Result<u16> {
        self.send_head("GET", path, None, 0)?;
        self.reader.get_mut().write_all(&self.req)?;
        self.read_response(sink)
    }

    /// The status; the body goes to `sink`. Without a length or chunks the body is empty
    /// (on a kept-alive connection, there is no end of stream to read to).
    fn read_response(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u16> {
        let (status, headers) = read_head(&mut self.reader)?;
        if is_chunked(&headers) {
            self.read_chunks_to(sink)?;
        } else {
            let len = content_length(&headers)?.unwrap_or(0);
            self.read_exact_to(len, sink)?;
        }
        Ok(status)
    }

    /// A chunked body, de-chunked; trailers (none expected) are skipped.
    fn read_chunks_to(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            let size = read_chunk_size(&mut self.reader)?;
            if size == 0 {
                return self.skip_to_blank_line();
            }
            self.read_exact_to(size, sink)?;
            self.skip_to_blank_line()?;
        }
    }

    /// Reads lines until an empty one (the CRLF after a chunk, or the end of trailers).
    fn skip_to_blank_line(&mut self) -> io::Result<()> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            if line.trim_end().is_empty() {
                return Ok(());
            }
        }
    }

    fn read_exact_to(&mut self, mut left: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while left > 0 {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            let take = (available.len() as u64).min(left) as usize;
            sink(&available[..take]);
            self.reader.consume(take);
            left -= take as u64;
        }
        Ok(())
    }
}
