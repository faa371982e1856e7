//! Harness for the reliability tests: the real `workshop` binary as a child process (which
//! can be SIGKILLed, restarted on the same port and files, or started under a low fd limit),
//! a raw `TcpStream` HTTP client that reports exactly what came back on the wire, a chunked
//! SSE reader, a seeded xorshift generator, and deadline polling. Nothing is mocked.
#![allow(dead_code)] // not every test uses every helper

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_workshop");

/// A workshop server process over a data directory that outlives restarts.
pub struct Server {
    pub port: u16,
    pub db_path: PathBuf,
    pub blobs_dir: PathBuf,
    pub stderr_path: PathBuf,
    env: Vec<(String, String)>,
    /// Run under `ulimit -n` of this many descriptors (soft and hard).
    fd_limit: Option<u32>,
    child: Option<Child>,
}

#[derive(Default)]
pub struct Options<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub fd_limit: Option<u32>,
    pub db_path: Option<PathBuf>,
    pub blobs_dir: Option<PathBuf>,
}

impl Server {
    /// A fresh server on port 0 with its files in `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, Options::default())
    }

    pub fn start_with(dir: &Path, options: Options) -> Server {
        let mut server = Server {
            port: 0,
            db_path: options.db_path.unwrap_or_else(|| dir.join("w.db")),
            blobs_dir: options.blobs_dir.unwrap_or_else(|| dir.join("blobs")),
            stderr_path: dir.join("stderr.log"),
            env: options
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fd_limit: options.fd_limit,
            child: None,
        };
        server.launch(0);
        server
    }

    fn launch(&mut self, port: u16) {
        if let Err(e) = self.try_launch(port) {
            panic!("{e}");
        }
    }

    fn try_launch(&mut self, port: u16) -> Result<(), String> {
        let mut cmd = match self.fd_limit {
            // The server raises its soft limit to the hard one, so lower both (soft first:
            // the hard limit may not drop below the soft one).
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -S -n {n} && ulimit -H -n {n} && exec \"$0\""
                    ))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr log");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", &self.db_path)
            .env("BLOBS_DIR", &self.blobs_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().expect("spawn workshop");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "workshop did not start; stderr:\n{}",
                    self.stderr()
                ));
            }
        };
        let port = first
            .strip_prefix("workshop listening on http://")
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash or the OOM killer.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and files (after `kill`). The port may be briefly
    /// unavailable, so retry for a while.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_launch(self.port) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn assert_no_panic(&self) {
        let log = self.stderr();
        assert!(!log.contains("panicked"), "server panicked; stderr:\n{log}");
    }

    /// GET /status, which must answer.
    pub fn status(&self) -> Value {
        let r = get(self.port, "/status").expect("GET /status");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Every message in history, oldest first, paging forward with `since`.
    pub fn all_messages(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut since = "00000000000000000000000000".to_string();
        loop {
            let r = get(self.port, &format!("/history?since={since}&n=1000")).expect("history");
            assert_eq!(r.status, 200, "{}", r.text());
            let page: Vec<Value> = r
                .text()
                .lines()
                .map(|l| serde_json::from_str(l).expect("ndjson line"))
                .collect();
            match page.last() {
                Some(last) => since = last["id"].as_str().expect("id").to_string(),
                None => return out,
            }
            out.extend(page);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What came back on the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request on its own connection (`Connection: close`), the whole response read back.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = connect(port)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    stream.write_all(&raw)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    parse_response(&answer)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP response"))
}

pub fn get(port: u16, path: &str) -> io::Result<Response> {
    request(port, "GET", path, &[], b"")
}

pub fn post_json(port: u16, path: &str, body: &Value) -> io::Result<Response> {
    request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Parses a status line, headers and a Content-Length body (all workshop's JSON replies
/// carry one). `None` when there is no complete head.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(rest.len())
        .min(rest.len());
    Some(Response {
        status,
        headers,
        body: rest[..len].to_vec(),
    })
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
    while let Some(pos) = find(&raw[at..], b"HTTP/1.") {
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A live SSE stream read straight off the socket (chunked transfer decoded by hand).
pub struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    /// Connects, sends the request and returns once the head and `: open` have arrived.
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> io::Result<Sse> {
        let mut stream = connect(port)?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!("stream refused: {line:?}")));
        }
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut sse = Sse { reader };
        let first = sse.chunk()?;
        if first != b": open\n\n" {
            return Err(io::Error::other(format!("first chunk {first:?}")));
        }
        Ok(sse)
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// One chunk (workshop sends one event or comment per chunk).
    fn chunk(&mut self) -> io::Result<Vec<u8>> {
        let mut size = String::new();
        if self.reader.read_line(&mut size)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut data = vec![0u8; size + 2];
        self.reader.read_exact(&mut data)?;
        data.truncate(size);
        Ok(data)
    }

    /// The next event's (id, data), skipping comments (keepalives).
    pub fn next_event(&mut self) -> io::Result<(String, String)> {
        loop {
            let chunk = self.chunk()?;
            let text = String::from_utf8_lossy(&chunk);
            if text.starts_with(':') {
                continue;
            }
            let mut id = None;
            let mut data = None;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_string());
                }
            }
            match (id, data) {
                (Some(id), Some(data)) => return Ok((id, data)),
                _ => return Err(io::Error::other(format!("bad event {text:?}"))),
            }
        }
    }
}

/// Polls `check` until it returns `Ok` or `timeout` passes; the panic names `what` and the
/// last observation.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    wait_every(what, timeout, Duration::from_millis(50), check)
}

/// `wait_for`, polling every `interval`. Leak checks poll slowly: each poll is a connection,
/// and tiny_http keeps a pooled thread alive for every connection in the last five seconds.
pub fn wait_every<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

pub fn sha256_name(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut name = String::from("sha256:");
    for b in digest.iter() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// Checks every blob in the folder: its bytes hash to its name, and the temp folder is empty.
/// Returns the blob names.
pub fn check_blobs(blobs_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(blobs_dir).expect("blobs dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tmp" {
            let left: Vec<_> = std::fs::read_dir(entry.path())
                .expect("tmp dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert!(left.is_empty(), "temp files left behind: {left:?}");
            continue;
        }
        let mut bytes = Vec::new();
        File::open(entry.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read blob");
        assert_eq!(
            sha256_name(&bytes),
            name,
            "blob {name} does not hash to its name"
        );
        names.push(name);
    }
    names.sort();
    names
}

/// Raises this test process's open-files soft limit to the hard limit.
pub use workshop::sys::raise_fd_limit;

pub fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}
