//! workshop: the test of how responses are framed (PATCHES.md 17), over a real socket to a
//! real server.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{Request, Response};

/// A body of unknown length: a MiB of `a` (more than any write buffer holds), then, after a
/// pause, `last`.
struct Slow {
    sent: usize,
    done: bool,
}

const FIRST: usize = 1024 * 1024;

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent < FIRST {
            let n = buf.len().min(FIRST - self.sent);
            buf[..n].fill(b'a');
            self.sent += n;
            return Ok(n);
        }
        if self.done {
            return Ok(0);
        }
        thread::sleep(2 * SECOND);
        self.done = true;
        buf[..4].copy_from_slice(b"last");
        Ok(4)
    }
}

/// `/slow`: 200 with the `Slow` body; anything else: 304.
fn answer(request: Request) {
    if request.url() == "/slow" {
        let _ = request.respond(Response::new(
            200.into(),
            vec![],
            Slow {
                sent: 0,
                done: false,
            },
            None,
            None,
        ));
    } else {
        let _ = request.respond(Response::empty(304));
    }
}

/// Patch 17: a body of unknown length to an HTTP/1.0 client was read whole into memory
/// before the first byte went out (to learn its Content-Length); now it is sent as it is
/// produced and the connection closes after it, even if the client asked to keep it. A 304
/// sent `Transfer-Encoding: chunked`; now it has no framing header.
#[test]
fn patch_17_responses_of_unknown_length_stream_to_http_1_0_and_304s_carry_no_framing() {
    let port = serve(answer);
    let mut stream = connect(port);
    let keep_alive = "GET /slow HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let next = "GET /304 HTTP/1.0\r\n\r\n";
    stream
        .write_all(format!("{keep_alive}{next}").as_bytes())
        .unwrap();
    let started = Instant::now();
    let first = read_until(&mut stream, 10 * SECOND, |bytes| bytes.ends_with(b"aaaa"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the first piece waited for the whole body: {:?}",
        started.elapsed()
    );
    let rest = read_until_closed(&mut stream, 10 * SECOND);
    let text = first.text() + &rest.text();
    assert!(rest.closed_by_server, "the body's end is the connection's");
    assert!(
        text.ends_with(&format!("\r\n\r\n{}last", "a".repeat(FIRST))),
        "{} bytes, ending {:?}",
        text.len(),
        &text[text.len() - 40..]
    );
    let head = &text[..text.find("\r\n\r\n").unwrap()].to_ascii_lowercase();
    assert!(!head.contains("content-length"), "{}", head);
    assert!(head.contains("connection: close"), "{}", head);
    assert_eq!(text.matches("HTTP/1.").count(), 1, "no second answer");

    let not_modified = exchange(port, b"GET /304 HTTP/1.1\r\nHost: x\r\n\r\n", SECOND);
    assert_eq!(not_modified.statuses(), [304]);
    let head = not_modified.text().to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding"), "{}", head);
    assert!(!head.contains("content-length"), "{}", head);
}
