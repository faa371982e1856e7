//! How long the CLI waits on a hub that holds it back, and that it then gives up cleanly: a
//! loop guard that never lets a publish through (`WORKSHOP_THROTTLE_WAIT`), and a file
//! transfer where no byte moves any more (`WORKSHOP_TRANSFER_STALL`). The stalling peers are
//! raw `TcpListener`s in the test that answer as a hub would, then go quiet.
mod cli_support;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use cli_support::Cli;
use common::{BIN, Server, files_in, sha256_name};

const ME: &str = "limits.alice";

/// The stall time the transfer tests set, and how long a run may take in all: far longer
/// than the stall on a busy machine, far shorter than the 45 s read timeout and the
/// forever the CLI used to wait.
const STALL_SECS: &str = "2";
const BOUND: Duration = Duration::from_secs(30);

/// Runs `cmd` to its end; fails (killing it) if it is still running after `bound`.
fn run_bounded(mut cmd: Command, bound: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workshop");
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("workshop still running after {bound:?}: it does not give up");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    (child.wait_with_output().expect("output"), took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `out` is a transfer (`what`: upload, download) that gave up once nothing had moved for the
/// stall time: exit 5, saying so.
fn assert_stalled(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let says = format!("{what} stalled: nothing moved for {STALL_SECS} s");
    assert!(err.contains(&says), "{err}");
}

/// A publish the loop guard refuses every time ends, after the throttle budget, with the
/// exit status of an HTTP failure and a line that says why; it used to resend for ever.
#[test]
fn a_publish_the_loop_guard_always_refuses_gives_up_after_the_throttle_wait() {
    // A burst of one, refilled after 1000 s: the second publish is refused for the test's life.
    let hub = Server::start_with(&[("WORKSHOP_RATE", "0.001")]);
    hub.ok(ME, &["pub", "general", "msg.text", r#"{"text":"first"}"#]);
    let mut cmd = hub.cmd(ME, &["pub", "general", "msg.text", r#"{"text":"again"}"#]);
    cmd.env("WORKSHOP_THROTTLE_WAIT", "2");
    let (out, took) = run_bounded(cmd, BOUND);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("retrying in"), "it waited first: {err}");
    assert!(
        err.contains("still refused after 2 s") && err.contains("WORKSHOP_THROTTLE_WAIT"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "gave up before its budget: {took:?}"
    );
    assert!(out.stdout.is_empty(), "no id printed");
    let mine: Vec<_> = (hub.channel_history("general", "").into_iter())
        .filter(|m| m["from"] == ME)
        .map(|m| m["body"]["text"].clone())
        .collect();
    assert_eq!(mine, ["first"], "only the first was stored");
}

/// A bad budget is a usage error, before anything is sent.
#[test]
fn a_bad_throttle_wait_or_stall_is_a_usage_error() {
    let hub = Server::start();
    for (var, value) in [
        ("WORKSHOP_THROTTLE_WAIT", "soon"),
        ("WORKSHOP_TRANSFER_STALL", "0"),
        ("WORKSHOP_TRANSFER_STALL", "-1"),
    ] {
        let mut cmd = hub.cmd(ME, &["pub", "general", "msg.text", r#"{"text":"x"}"#]);
        let out = cmd.env(var, value).output().expect("run workshop");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(var), "{}", stderr(&out));
    }
    assert!(hub.channel_history("general", "").is_empty());
}

/// A peer that takes connections and answers each with `respond`, keeping every connection
/// open until the test ends (dropping the returned sender).
fn stalling_peer(
    respond: impl Fn(usize, &mut BufReader<TcpStream>) + Send + 'static,
) -> (String, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (done_tx, done_rx) = channel::<()>();
    thread::spawn(move || {
        let mut held = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            respond(n, &mut reader);
            held.push(reader);
            if n >= 1 {
                break; // the tests need at most two connections
            }
        }
        let _ = done_rx.recv_timeout(BOUND * 2);
    });
    (url, done_tx)
}

/// Reads one request's head; returns its Content-Length.
fn read_head(reader: &mut BufReader<TcpStream>) -> u64 {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return len;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            len = value.trim().parse().expect("content-length");
        }
    }
}

fn workshop_at(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("WORKSHOP_URL", url)
        .env("AGENT_ID", ME)
        .env("WORKSHOP_TRANSFER_STALL", STALL_SECS)
        .current_dir(dir);
    cmd
}

/// A download whose sender goes quiet half-way fails once nothing has arrived for the stall
/// time, and leaves no file, whole or partial, at `-o` or beside it.
#[test]
fn a_download_that_stalls_fails_and_leaves_no_file() {
    let (url, _hold) = stalling_peer(|_, reader| {
        read_head(reader);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                    Content-Length: 1048576\r\n\r\n";
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(&[7u8; 1000]).expect("a little");
    });
    let dir = tempfile::tempdir().expect("dir");
    let hash = sha256_name(&[7u8; 1_048_576]);
    let cmd = workshop_at(&url, dir.path(), &["download", &hash, "-o", "out.bin"]);
    let (out, _) = run_bounded(cmd, BOUND);
    assert_stalled(&out, "download");
    assert_eq!(
        files_in(dir.path()),
        Vec::<String>::new(),
        "nothing left behind"
    );
}

/// The hub's answer to an upload: the hash of what it read.
fn answer_upload(reader: &mut BufReader<TcpStream>) {
    let len = read_head(reader);
    let mut body = vec![0u8; usize::try_from(len).expect("len")];
    reader.read_exact(&mut body).expect("body");
    let reply = format!("{{\"hash\":\"{}\"}}", sha256_name(&body));
    let answer = format!(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    );
    reader
        .get_mut()
        .write_all(answer.as_bytes())
        .expect("answer");
}

/// The second of two uploads goes to a hub that reads its head, then neither reads on nor
/// answers: the CLI's writes stall, and it gives up. That upload used to go out on the
/// connection kept from the first, where no timeout was set, and hung for good.
#[test]
fn an_upload_whose_receiver_stops_reading_fails() {
    let (url, _hold) = stalling_peer(|n, reader| {
        // The first upload is answered; the second's body is never read, whether it comes
        // on the first connection, kept for reuse, or on a second one.
        if n == 0 {
            answer_upload(reader);
        }
        read_head(reader);
    });
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("small.txt"), "small").expect("small");
    // More than the socket buffers on both ends hold, so the writes must block.
    let big = vec![b'x'; 64 << 20];
    std::fs::write(dir.path().join("big.bin"), &big).expect("big");
    let cmd = workshop_at(&url, dir.path(), &["upload", "small.txt", "big.bin"]);
    let (out, _) = run_bounded(cmd, BOUND);
    assert_stalled(&out, "upload");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        printed.trim(),
        sha256_name(b"small"),
        "the first upload's hash"
    );
}

/// An upload the hub reads to the end but never answers fails the same way.
#[test]
fn an_upload_that_is_never_answered_fails() {
    let (url, _hold) = stalling_peer(|_, reader| {
        let len = read_head(reader);
        let mut body = vec![0u8; usize::try_from(len).expect("len")];
        reader.read_exact(&mut body).expect("body");
    });
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("a.txt"), "a").expect("a");
    let cmd = workshop_at(&url, dir.path(), &["upload", "a.txt"]);
    let (out, _) = run_bounded(cmd, BOUND);
    assert_stalled(&out, "upload");
}

/// A live stream opens a connection of its own. ureq drops a pooled connection's timeouts
/// when it reuses it, so `tail` (and the worker's stream) opened on the connection the call
/// before it had used waited for the hub's headers with no timeout at all: a hub cut off
/// right then held the stream for good.
#[test]
fn a_stream_never_rides_a_reused_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tail = workshop_at(&url, dir.path(), &["tail", "general"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn workshop");
    let (first, _) = listener.accept().expect("accept");
    let mut first = BufReader::new(first);
    let mut line = String::new();
    first.read_line(&mut line).expect("request line");
    assert!(line.starts_with("GET /ch/general/history"), "{line:?}");
    read_head(&mut first);
    let empty =
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 0\r\n\r\n";
    first.get_mut().write_all(empty.as_bytes()).expect("answer");

    // The stream's GET comes next: on a connection of its own, or on this one.
    listener.set_nonblocking(true).expect("nonblocking");
    let poll = Some(Duration::from_millis(100));
    first.get_ref().set_read_timeout(poll).expect("timeout");
    let deadline = Instant::now() + BOUND;
    let (on, request) = loop {
        assert!(Instant::now() < deadline, "no stream request came");
        if let Ok((own, _)) = listener.accept() {
            own.set_nonblocking(false).expect("blocking");
            let mut own = BufReader::new(own);
            let mut line = String::new();
            own.read_line(&mut line).expect("request line");
            break ("its own connection", line);
        }
        let mut line = String::new();
        if first.read_line(&mut line).is_ok_and(|n| n > 0) {
            break ("the reused connection", line);
        }
    };
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(request.starts_with("GET /ch/general"), "{request:?}");
    assert_eq!(on, "its own connection", "the stream's GET came on {on}");
}
