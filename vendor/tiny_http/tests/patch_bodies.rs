//! workshop: one test per patch to how request bodies are framed and read (PATCHES.md 1, 7,
//! 9, 10, 11, 12), each over a real socket to a real server.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::io::Write;
use std::net::Shutdown;

const POST: &str = "POST / HTTP/1.1\r\nHost: x\r\n";
const CHUNKED: &str = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A request that must never be answered: it hides inside another request's body.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `head` and a part of its body, half-closes, and reads the answer.
fn truncated(port: u16, raw: &str) -> Exchange {
    let mut stream = connect(port);
    stream.write_all(raw.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    read_until_closed(&mut stream, 10 * SECOND)
}

/// Patch 1: upstream drained an unread body on drop with `vec![0; remaining]`, so a
/// declared length larger than memory aborted the whole process.
#[test]
fn patch_01_an_unread_body_larger_than_memory_is_never_allocated() {
    let port = serve(refuse);
    let raw = format!("{POST}Content-Length: 99999999999999999\r\n\r\nabc");
    let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![413], "{}", answer.text());
    assert!(answer.closed_by_server);
    // Still serving (an abort would have ended this test process).
    let raw = format!("{POST}Content-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(
        exchange(port, raw.as_bytes(), 10 * SECOND).statuses(),
        vec![413]
    );
}

/// Patch 7: a body that ended before its Content-Length, or inside a chunk, read as
/// complete. Both are now read errors.
#[test]
fn patch_07_a_truncated_body_is_a_read_error() {
    let port = serve(read_body);
    let answer = truncated(
        port,
        &format!("{POST}Content-Length: 2000\r\n\r\n{}", "a".repeat(1000)),
    );
    assert_eq!(answer.statuses(), vec![400], "{}", answer.text());
    assert!(answer.text().contains("body error"), "{}", answer.text());
    let answer = truncated(port, &format!("{CHUNKED}10\r\nabc"));
    assert_eq!(answer.statuses(), vec![400], "{}", answer.text());
    // The whole body still reads as it is.
    let answer = truncated(
        port,
        &format!("{POST}Content-Length: 2000\r\n\r\n{}", "a".repeat(2000)),
    );
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    assert!(answer.text().ends_with("read 2000"), "{}", answer.text());
}

/// Patch 9: ambiguous framing is refused (400, or 501 for an unknown coding) and the
/// connection closed, so a request hidden in a body is never answered.
#[test]
fn patch_09_ambiguous_framing_is_refused_and_closed() {
    let port = serve(read_body);
    let hidden = format!("0\r\n\r\n{SMUGGLED}");
    let n = hidden.len();
    let cases = [
        (
            format!("{POST}Content-Length: {n}\r\nContent-Length: 5\r\n\r\n{hidden}"),
            400,
        ),
        (format!("{POST}Content-Length: +{n}\r\n\r\n{hidden}"), 400),
        (
            format!("{POST}Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{hidden}"),
            400,
        ),
        (
            format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n{hidden}"),
            400,
        ),
        (
            format!(
                "{POST}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{hidden}"
            ),
            400,
        ),
        (
            format!("{POST}Transfer-Encoding: gzip\r\n\r\n{hidden}"),
            501,
        ),
        (
            format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{hidden}"),
            400,
        ),
        // An obs-fold continuation, which upstream trimmed into a header of its own.
        (
            format!("{POST}X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n{hidden}"),
            400,
        ),
    ];
    for (raw, status) in cases {
        let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
        assert_eq!(
            answer.statuses(),
            vec![status],
            "{raw:?}: {}",
            answer.text()
        );
        assert!(
            answer.closed_by_server,
            "{:?}: the connection stays open",
            raw
        );
    }
    // One length, or chunked alone, is read as before.
    let raw = format!(
        "{CHUNKED}5\r\nhello\r\n0\r\n\r\n{POST}Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200, 200], "{}", answer.text());
    assert!(answer.text().ends_with("read 3"), "{}", answer.text());
}

/// Patch 10: chunked bodies are decoded strictly, with bounded lines: a chunk-size line
/// without end, a signed size, extensions over 256 bytes and a chunk without its CRLF are
/// read errors.
#[test]
fn patch_10_chunked_bodies_are_decoded_strictly_with_bounded_lines() {
    let port = serve(read_body);
    let mut stream = connect(port);
    stream.write_all(CHUNKED.as_bytes()).unwrap();
    let sent = flood(&mut stream, &[b'1'; 64 * 1024], 16 * 1024 * 1024);
    let answer = read_until_closed(&mut stream, 10 * SECOND);
    assert_eq!(
        answer.statuses(),
        vec![400],
        "after {sent} bytes: {}",
        answer.text()
    );
    assert!(answer.closed_by_server);
    assert!(
        sent < 16 * 1024 * 1024,
        "the server read 16 MiB of one chunk-size line"
    );
    for body in [
        "+5\r\nhello\r\n0\r\n\r\n".to_string(),
        format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(300)),
        "5\r\nhelloX\r\n0\r\n\r\n".to_string(),
        format!("0\r\n{}\r\n", "T: v\r\n".repeat(65)),
    ] {
        let answer = exchange(port, format!("{CHUNKED}{body}").as_bytes(), 10 * SECOND);
        assert_eq!(answer.statuses(), vec![400], "{body:?}: {}", answer.text());
        assert!(answer.closed_by_server, "{:?}", body);
    }
    // Extensions under the bound, and trailers, are fine.
    let body = format!("5;{}\r\nhello\r\n0\r\nT: v\r\n\r\n", "e".repeat(200));
    let raw =
        format!("POST / HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    assert!(answer.text().ends_with("read 5"), "{}", answer.text());
}

/// Patch 11: a request answered before its body was read to the end says
/// `Connection: close`, and the rest of its body is never parsed as a request; the unread
/// rest is not drained either.
#[test]
fn patch_11_a_refused_requests_unread_body_is_never_parsed_as_a_request() {
    let port = serve(read_some_then_refuse);
    let data = format!("0123456789{SMUGGLED}");
    let raw = format!("{CHUNKED}{:x}\r\n{data}\r\n0\r\n\r\n", data.len());
    let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![413], "{}", answer.text());
    assert!(answer.says_close(), "{}", answer.text());
    assert!(answer.closed_by_server);
    // 100 of 2,000 bytes sent: answered and closed at once, not waiting for the rest.
    let raw = format!("{POST}Content-Length: 2000\r\n\r\n{}", "a".repeat(100));
    let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![413], "{}", answer.text());
    assert!(
        answer.closed_by_server,
        "the server waited for the rest of the body"
    );
}

/// Patch 11, the other side: bodies read to their end (on the handler's own thread, as
/// `recv()` users do) keep the connection open for the next request.
#[test]
fn patch_11_bodies_read_to_their_end_keep_the_connection() {
    let port = serve(read_body);
    let body = "b".repeat(2000);
    let one = format!("{POST}Content-Length: 2000\r\n\r\n{body}");
    let last = format!("{POST}Content-Length: 2000\r\nConnection: close\r\n\r\n{body}");
    let answer = exchange(port, format!("{one}{one}{last}").as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200, 200, 200], "{}", answer.text());
    assert!(answer.closed_by_server, "{}", answer.text());
}

/// Patch 12: an upgrade offer (what `curl --http2` sends) had the rest of the connection
/// as its body, so it hung; it is now ignored and the request answered as HTTP/1.1.
#[test]
fn patch_12_an_upgrade_offer_is_ignored_and_the_request_answered_at_once() {
    let port = serve(read_body);
    let raw = format!(
        "{POST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
    );
    let mut stream = connect(port);
    stream.write_all(raw.as_bytes()).unwrap();
    let answer = read_until(&mut stream, 5 * SECOND, |bytes| bytes.ends_with(b"read 5"));
    assert_eq!(
        answer.statuses(),
        vec![200],
        "no answer in 5 s: {}",
        answer.text()
    );
    assert!(answer.text().ends_with("read 5"), "{}", answer.text());
    // The connection goes on as HTTP/1.1.
    assert!(!answer.closed_by_server, "{}", answer.text());
}
