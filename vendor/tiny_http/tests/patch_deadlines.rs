//! workshop: the test of patch 13 (PATCHES.md): a request head must arrive within 10 s of
//! its first byte, and a body keep up at least 1,000 bytes a second, never 10 s without a
//! byte. The server here sets no socket timeout, so upstream waited for ever in each case.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Sends `first`, then one byte of `more` each time the server has been silent for
/// `every`, until the server closes; returns what it answered and how long that took.
fn trickle(port: u16, first: &str, more: u8, every: Duration) -> (Exchange, Duration) {
    let mut stream = connect(port);
    stream.write_all(first.as_bytes()).unwrap();
    let started = Instant::now();
    let mut bytes = Vec::new();
    let closed_by_server = loop {
        if started.elapsed() > 60 * SECOND {
            break false;
        }
        match read_within(&mut stream, every, &mut bytes) {
            Some(open) if open => continue,
            Some(_) => break true,
            // Silent for `every`: one more byte (a failed write means the server closed).
            None if stream.write_all(&[more]).is_err() => break true,
            None => continue,
        }
    };
    (
        Exchange {
            bytes,
            closed_by_server,
        },
        started.elapsed(),
    )
}

/// Reads what arrives within `wait` into `bytes`: `Some(true)` if something came,
/// `Some(false)` if the server closed, `None` if nothing came.
fn read_within(stream: &mut TcpStream, wait: Duration, bytes: &mut Vec<u8>) -> Option<bool> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => Some(false),
        Ok(n) => {
            bytes.extend_from_slice(&buf[..n]);
            Some(true)
        }
        Err(e) if is_timeout(&e) => None,
        Err(_) => Some(false),
    }
}

#[test]
fn patch_13_a_trickled_head_is_cut_off_with_408() {
    let port = serve(read_body);
    let (answer, held) = trickle(port, "G", b'E', SECOND / 2);
    assert!(
        answer.closed_by_server,
        "a trickled head held its connection for {:?}",
        held
    );
    assert_eq!(answer.statuses(), vec![408], "{}", answer.text());
    assert!(
        held > 5 * SECOND && held < 25 * SECOND,
        "cut off after {:?}",
        held
    );
}

#[test]
fn patch_13_a_stalled_body_is_cut_off() {
    let port = serve(read_body);
    let mut stream = connect(port);
    let raw = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc";
    stream.write_all(raw.as_bytes()).unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, 60 * SECOND);
    let held = started.elapsed();
    assert!(
        answer.closed_by_server,
        "a stalled body held its connection"
    );
    assert_eq!(answer.statuses(), vec![400], "{}", answer.text());
    assert!(answer.text().contains("body error"), "{}", answer.text());
    assert!(
        held > 5 * SECOND && held < 25 * SECOND,
        "cut off after {:?}",
        held
    );
}

/// A byte every 200 ms (5 bytes a second) never leaves the socket silent for long, so only
/// the pace of at least 1,000 bytes a second cuts it off.
#[test]
fn patch_13_a_trickled_body_is_cut_off() {
    let port = serve(read_body);
    let raw = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\na";
    let (answer, held) = trickle(port, raw, b'a', SECOND / 5);
    assert!(
        answer.closed_by_server,
        "a trickled body held its connection for {:?}",
        held
    );
    assert_eq!(answer.statuses(), vec![400], "{}", answer.text());
    assert!(
        held > 5 * SECOND && held < 25 * SECOND,
        "cut off after {:?}",
        held
    );
}

/// Waiting for the next request on a keep-alive connection is not a head: no deadline
/// and no 408 before its first byte.
#[test]
fn patch_13_an_idle_keep_alive_connection_has_no_head_deadline() {
    let port = serve(read_body);
    let mut stream = connect(port);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).unwrap();
    let first = read_until(&mut stream, 10 * SECOND, |b| b.ends_with(b"read 0"));
    assert_eq!(first.statuses(), vec![200], "{}", first.text());
    // Idle for longer than the head deadline.
    thread::sleep(12 * SECOND);
    stream.write_all(request).unwrap();
    let second = read_until(&mut stream, 10 * SECOND, |b| b.ends_with(b"read 0"));
    assert_eq!(second.statuses(), vec![200], "{}", second.text());
}
