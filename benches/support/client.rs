//! A minimal keep-alive HTTP/1.1 client over a raw `TcpStream`: one request in flight per
//! connection, the request written with one `write` when small, the response parsed by hand
//! (Content-Length or chunked). Lighter and more predictable than a general client, so the
//! load generator costs as little CPU as possible on a 2-core machine.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
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
            stream,
            buf: vec![0; 256 * 1024],
            pos: 0,
            end: 0,
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
        if body.len() <= 64 * 1024 {
            self.req.extend_from_slice(body);
            self.stream.write_all(&self.req)?;
        } else {
            self.stream.write_all(&self.req)?;
            self.stream.write_all(body)?;
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
        self.stream.write_all(&self.req)?;
        self.read_response(sink)
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            if self.end == self.buf.len() {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..self.end], b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_response(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u16> {
        let status_line = self.read_line()?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        if chunked {
            loop {
                let size_line = self.read_line()?;
                let size =
                    u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| io::Error::other("bad chunk size"))?;
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                self.read_exact_to(size, sink)?;
                self.read_line()?;
            }
        } else {
            self.read_exact_to(length.unwrap_or(0), sink)?;
        }
        Ok(status)
    }

    fn read_exact_to(&mut self, mut left: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while left > 0 {
            if self.pos == self.end {
                self.fill()?;
            }
            let take = ((self.end - self.pos) as u64).min(left) as usize;
            sink(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            left -= take as u64;
        }
        Ok(())
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
