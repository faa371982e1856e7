//! workshop: one test per patch to how request heads are read (PATCHES.md 2, 6, 15, 16, 18,
//! 20), each over a real socket to a real server.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::io::Write;
use std::time::Instant;
use tiny_http::Request;

/// A GET with `headers` extra headers of `each` bytes of value.
fn head_with(headers: usize, each: usize) -> String {
    let value = "v".repeat(each);
    let lines: String = (0..headers)
        .map(|i| format!("X-{i}: {value}\r\n"))
        .collect();
    format!("GET / HTTP/1.1\r\n{lines}Connection: close\r\n\r\n")
}

/// Streams `prefix` and then `unit` without end; returns the answer once the server closes.
fn endless(port: u16, prefix: &str, unit: &[u8]) -> (Exchange, usize) {
    let mut stream = connect(port);
    stream.write_all(prefix.as_bytes()).unwrap();
    let sent = flood(&mut stream, unit, 16 * 1024 * 1024);
    (read_until_closed(&mut stream, 10 * SECOND), sent)
}

/// Patch 2: a head line had no length limit and the header count no bound. A line that
/// never ends is cut off (at 16 KiB), and more than 128 headers are refused.
#[test]
fn patch_02_head_lines_and_the_header_count_are_bounded() {
    let port = serve(read_body);
    let (answer, sent) = endless(port, "GET /", &[b'a'; 64 * 1024]);
    assert_eq!(
        answer.statuses(),
        vec![414],
        "after {sent} bytes: {}",
        answer.text()
    );
    assert!(
        sent < 16 * 1024 * 1024,
        "the server read 16 MiB of one request line"
    );
    let (answer, sent) = endless(port, "GET / HTTP/1.1\r\nX: ", &[b'a'; 64 * 1024]);
    assert_eq!(
        answer.statuses(),
        vec![431],
        "after {sent} bytes: {}",
        answer.text()
    );
    assert!(
        sent < 16 * 1024 * 1024,
        "the server read 16 MiB of one header line"
    );
    // 127 headers and `Connection` are served; 129 and `Connection` are not.
    let answer = exchange(port, head_with(127, 10).as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    let answer = exchange(port, head_with(129, 10).as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![431], "{}", answer.text());
    // A line just under the limit is served.
    let answer = exchange(port, head_with(1, 16 * 1024 - 6).as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
}

/// Patch 6: an HTTP/2.0 or 3.0 request line hung its connection thread forever (its 505
/// was queued behind the request's own writer). It is answered 505 and closed.
#[test]
fn patch_06_a_newer_http_version_is_answered_505_and_closed() {
    let port = serve(read_body);
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let raw = format!("GET / {version}\r\nHost: x\r\n\r\n");
        let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
        assert_eq!(answer.statuses(), vec![505], "{version}: {}", answer.text());
        assert!(answer.says_close(), "{}", answer.text());
        assert!(answer.closed_by_server, "{}: the connection hangs", version);
    }
}

/// Patch 15: a head line over the limit is 414 (request line) or 431 (header line), with
/// `Connection: close`; a bare LF or CR, anything after the version, an empty target and
/// HTTP/0.9 are 400 at once.
#[test]
fn patch_15_oversized_or_malformed_request_lines_are_answered_and_closed() {
    let port = serve(read_body);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let long_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    for (raw, status) in [
        (long_target, 414),
        (long_header, 431),
        (head_with(200, 1), 431),
    ] {
        let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
        assert_eq!(answer.statuses(), vec![status], "{}", answer.text());
        assert!(answer.says_close(), "{}", answer.text());
        assert!(answer.closed_by_server);
    }
    for raw in [
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        "GET / HTTP/1.1 junk\r\nHost: x\r\n\r\n",
        "GET / HTTP/0.9\r\nHost: x\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let started = Instant::now();
        let answer = exchange(port, raw.as_bytes(), 5 * SECOND);
        assert!(answer.closed_by_server, "{:?}: no answer within 5 s", raw);
        assert!(started.elapsed() < 5 * SECOND, "{:?}", raw);
        assert_eq!(answer.statuses(), vec![400], "{raw:?}: {}", answer.text());
    }
}

/// Patch 16: lines under their own limits could add up to 2 MiB a head; a whole head is
/// at most 64 KiB, and the line that would go over it is refused with 431 at once.
#[test]
fn patch_16_a_request_head_has_a_total_size_bound() {
    let port = serve(read_body);
    for (headers, each) in [(100, 1024), (120, 15 * 1024)] {
        let answer = exchange(port, head_with(headers, each).as_bytes(), 10 * SECOND);
        assert_eq!(
            answer.statuses(),
            vec![431],
            "{headers} x {each}: {}",
            answer.text()
        );
        assert!(answer.says_close(), "{}", answer.text());
        assert!(
            answer.closed_by_server,
            "{} x {}: the connection stays open",
            headers, each
        );
    }
    let answer = exchange(port, head_with(50, 1024).as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
}

/// Patch 18: header values were trimmed with `str::trim`, so a vertical tab or form feed
/// around `chunked` or a length framed a body that a proxy may not see framed; a NUL in a
/// value, or a field name that is not a token, was taken. Each is now refused and closed, the
/// body never read; spaces and tabs around a value are fine.
#[test]
fn patch_18_header_values_take_spaces_and_tabs_alone_and_names_are_tokens() {
    let port = serve(read_body);
    let post = "POST / HTTP/1.1\r\nHost: x\r\n";
    for bad in [
        "Transfer-Encoding: \x0cchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\x0b\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Content-Length: \x0b3\r\n\r\nabc",
        "Content-Length: 3\r\nX-A: a\0b\r\n\r\nabc",
        "Content-Length: 3\r\nX\x01A: b\r\n\r\nabc",
        "Content-Length: 3\r\nX(A): b\r\n\r\nabc",
        "Content-Length: 3\r\n: b\r\n\r\nabc",
    ] {
        let answer = exchange(port, format!("{post}{bad}").as_bytes(), 10 * SECOND);
        let status = answer.statuses();
        assert!(
            status == [400] || status == [501],
            "{:?}: {}",
            bad,
            answer.text()
        );
        assert!(answer.closed_by_server && answer.says_close(), "{:?}", bad);
        assert!(!answer.text().contains("read 3"), "{:?}", bad);
    }
    let fine =
        format!("{post}Content-Length:\t 3 \t\r\nX-A:  a b\t\r\nConnection: close\r\n\r\nabc");
    let answer = exchange(port, fine.as_bytes(), 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    assert!(answer.text().ends_with("read 3"), "{}", answer.text());
}

/// Patch 20: the errors tiny_http answers itself were bare (no body, no type), and lacked
/// the `X-Content-Type-Options: nosniff` every answer of workshop's has. Each is now JSON
/// `{"error": "..."}` with nosniff; a head that cannot be served still closes.
#[test]
fn patch_20_the_servers_own_errors_are_json_with_nosniff() {
    let port = serve(read_body);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let unanswered = serve(drop_unanswered);
    for (port, raw, status) in [
        (port, "GARBAGE\r\n\r\n".to_string(), 400),
        (port, "GET / HTTP/1.1\r\nno colon\r\n\r\n".into(), 400),
        (port, long_target, 414),
        (port, head_with(200, 1), 431),
        (
            port,
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
            400,
        ),
        (
            port,
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            501,
        ),
        (
            port,
            "POST / HTTP/1.1\r\nExpect: x\r\nContent-Length: 0\r\n\r\n".into(),
            417,
        ),
        (port, "GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(), 505),
        (
            unanswered,
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
            500,
        ),
    ] {
        let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
        let text = answer.text();
        assert_eq!(answer.statuses(), vec![status], "{}", text);
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
        let head = format!("{}\r\n", head.to_ascii_lowercase());
        assert!(
            head.contains("\r\nx-content-type-options: nosniff\r\n"),
            "{}",
            head
        );
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{}",
            head
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{}",
            head
        );
        assert!(
            body.starts_with("{\"error\":\"") && body.ends_with("\"}"),
            "{}",
            body
        );
        // An unanswered request's connection goes on as before (this one asked to close).
        assert!(answer.says_close() || status == 500, "{}", text);
        assert!(answer.closed_by_server, "{}", text);
    }
}

/// Drops the request without answering it (as a handler that panics does).
fn drop_unanswered(request: Request) {
    drop(request);
}

/// workshop patch 20: a HEAD request's refusal is a head alone (RFC 9110 §9.3.2), like every
/// other answer to HEAD.
#[test]
fn patch_20_a_head_requests_refusal_has_no_body() {
    let port = serve(read_body);
    for (raw, status) in [
        ("HEAD / HTTP/1.1\r\nExpect: x\r\n\r\n", 417),
        ("HEAD / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("HEAD / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ] {
        let answer = exchange(port, raw.as_bytes(), 10 * SECOND);
        let text = answer.text();
        assert_eq!(answer.statuses(), vec![status], "{}", text);
        let (_, body) = text.split_once("\r\n\r\n").expect("a whole head");
        assert!(body.is_empty(), "{}", text);
        assert!(answer.closed_by_server, "{}", text);
    }
}
