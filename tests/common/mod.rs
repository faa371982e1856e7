//! Test harness: the real `workshop` binary on port 0 in a temp dir, a raw HTTP client,
//! and an SSE reader. Nothing is mocked.
#![allow(dead_code)] // each test binary uses a different part of the harness

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the binary with extra environment variables (PORT, HOST, DB_PATH and
    /// BLOBS_DIR are set for a fresh temp dir unless given).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Server {
            port: 0,
            dir,
            child: None,
            env,
        };
        server.launch(0);
        server
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("w.db")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    fn launch(&mut self, port: u16) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_workshop"));
        cmd.env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", self.db_path())
            .env("BLOBS_DIR", self.blobs_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn workshop");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("workshop printed nothing")
            .expect("read stdout");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.port = port;
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        child.wait().expect("wait")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (after `stop`) on the same port and files.
    pub fn restart_stopped(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.launch(self.port);
    }

    /// Stops it cleanly and starts it again on the same port and files.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "clean shutdown, got {status}");
        self.launch(self.port);
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        request(self.port, "POST", path, &[], body.as_bytes())
    }

    pub fn post_json(&self, path: &str, body: Value) -> Response {
        self.post(path, &body.to_string())
    }

    /// Publishes and returns the new id.
    pub fn publish(&self, ch: &str, kind: &str, body: Value) -> String {
        let r = self.post_json(
            &format!("/ch/{ch}"),
            serde_json::json!({"from": "test.me", "type": kind, "body": body}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().expect("id").to_string()
    }

    pub fn history(&self, path: &str) -> Vec<Value> {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect()
    }

    pub fn sse(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::connect(self.port, path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
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

/// One request on a fresh connection (`Connection: close`), raw bytes on the wire.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    read_response(&mut BufReader::new(stream), method == "HEAD")
}

pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (k, v) = trimmed.split_once(':').expect("header colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return response;
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().unwrap();
        response.body.resize(len, 0);
        reader.read_exact(&mut response.body).expect("body");
    } else {
        reader.read_to_end(&mut response.body).expect("body");
    }
    response
}

/// A raw SSE client: de-chunks the body and splits it into events.
pub struct Sse {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    buffer: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl Sse {
    pub fn connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, true);
        let chunked = response.header("transfer-encoding") == Some("chunked");
        Sse {
            reader,
            status: response.status,
            headers: response.headers,
            chunked,
            buffer: String::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next event or comment, or None on timeout or end of stream.
    pub fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_event(&block));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.read_some() {
                Some(text) if !text.is_empty() => self.buffer.push_str(&text),
                _ => return None,
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
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next event with data (skipping comments).
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

    fn read_some(&mut self) -> Option<String> {
        if !self.chunked {
            let mut buf = [0u8; 4096];
            let n = self.reader.read(&mut buf).ok()?;
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let mut size_line = String::new();
        if self.reader.read_line(&mut size_line).ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(size_line.trim(), 16).expect("chunk size");
        if size == 0 {
            return None;
        }
        let mut chunk = vec![0u8; size + 2];
        self.reader.read_exact(&mut chunk).ok()?;
        chunk.truncate(size);
        Some(String::from_utf8(chunk).expect("utf-8 chunk"))
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
        } else if let Some(rest) = line.strip_prefix(": ") {
            event.comment = Some(rest.to_string());
        }
    }
    event
}

/// Polls `check` until it returns Some, or panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
