//! What an outside HTTP audit found, each over real sockets against the real binary: a browser
//! opening `/` is sent to the UI instead of an endless stream; a 304 carries the caching
//! headers its 200 would; every 405 says which methods its path takes (`Allow`); and the
//! errors the HTTP parser writes itself are JSON with `nosniff`, like every other answer.
mod common;

use common::{Response, Server, connect, raw_exchange, read_head, request, try_read_response};
use std::collections::BTreeSet;
use std::io::{BufReader, Cursor, Read, Write};
use std::time::Duration;

/// Generous: the machine running the tests may be small and busy.
const WAIT: Duration = Duration::from_secs(30);
/// Chromium's user agent: every browser's starts with `Mozilla/`.
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/156.0.0.0 Safari/537.36";
/// What a browser asks for when it opens a page.
const PAGE_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// `GET path` with exactly this `Host` and these headers; a stream's answer is its head alone
/// (the stream never ends), any other answer is read whole.
fn open(port: u16, path: &str, host: &str, headers: &[(&str, &str)]) -> Response {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = connect(port).expect("connect");
    stream.write_all(head.as_bytes()).expect("send head");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader).expect("a response head");
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if response.header("content-type") != Some("text/event-stream") {
        reader
            .read_to_end(&mut response.body)
            .expect("the whole answer");
    }
    response
}

fn assert_sent_to_ui(r: &Response, what: &str) {
    assert!(
        matches!(r.status, 302 | 303),
        "{what}: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(r.header("location"), Some("/ui"), "{what}");
    assert!(
        r.body.len() < 100,
        "{what}: a small body, got {:?}",
        r.text()
    );
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

fn assert_streamed(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream"),
        "{what}"
    );
}

#[test]
fn a_browser_opening_the_root_is_sent_to_the_ui_and_streams_stay_streams() {
    let s = Server::start();
    let host = format!("127.0.0.1:{}", s.port);
    let open_root = |port, host: &str, headers: &[(&str, &str)]| open(port, "/", host, headers);
    let navigation = |site: &'static str, dest: &'static str| {
        [
            ("User-Agent", CHROME),
            ("Accept", PAGE_ACCEPT),
            ("Sec-Fetch-Site", site),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", dest),
            ("Upgrade-Insecure-Requests", "1"),
        ]
    };
    // Typed in the address bar, and a link followed from another site; the same navigation
    // is let through to /ui (a link may lead there directly just as well).
    for site in ["none", "cross-site"] {
        let r = open_root(s.port, &host, &navigation(site, "document"));
        assert_sent_to_ui(&r, site);
        let ui = open(s.port, "/ui", &host, &navigation(site, "document"));
        assert_eq!(ui.status, 200, "{site}: {}", ui.text());
        assert!(ui.header("content-type").unwrap().starts_with("text/html"));
        assert!(ui.header("content-security-policy").is_some(), "{site}");
    }
    // A browser without fetch metadata (plain http under a host name) that asks for a page.
    let old = [("User-Agent", CHROME), ("Accept", PAGE_ACCEPT)];
    assert_sent_to_ui(&open_root(s.port, &host, &old), "no fetch metadata");

    // EventSource, curl, an agent that names no type, and one that takes a page or a stream.
    let event_source = [
        ("User-Agent", CHROME),
        ("Accept", "text/event-stream"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Dest", "empty"),
    ];
    assert_streamed(&open_root(s.port, &host, &event_source), "EventSource");
    let curl = [("User-Agent", "curl/8.5.0"), ("Accept", "*/*")];
    assert_streamed(&open_root(s.port, &host, &curl), "curl");
    assert_streamed(&open_root(s.port, &host, &[]), "no Accept");
    let either = [("Accept", "text/html, text/event-stream")];
    assert_streamed(&open_root(s.port, &host, &either), "either");

    // The browser rules still come first: another site's frame and a rebindable Host are
    // refused, not redirected.
    let framed = open_root(s.port, &host, &navigation("cross-site", "iframe"));
    assert_eq!(framed.status, 403, "{}", framed.text());
    let rebound = open_root(s.port, "rebound.example", &navigation("none", "document"));
    assert_eq!(rebound.status, 403, "{}", rebound.text());
}

/// The headers RFC 9110 §15.4.5 says a 304 carries when its 200 would have.
const CACHE_HEADERS: [&str; 6] = [
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "vary",
];

#[test]
fn a_304_carries_the_caching_headers_its_200_would() {
    // A listed origin makes answers `Vary: Origin`, one more header a 304 must repeat.
    let s = Server::start_with(&[("WORKSHOP_CORS_ORIGINS", "http://ui.example")]);
    let uploaded = request(s.port, "POST", "/files", &[], b"cached bytes");
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let path = format!("/files/{}", uploaded.json()["hash"].as_str().unwrap());
    let full = request(s.port, "GET", &path, &[], b"");
    assert_eq!(full.status, 200);
    let etag = full.header("etag").expect("a 200 has an ETag").to_string();
    for asked in [etag.clone(), format!("W/{etag}"), "*".to_string()] {
        let cached = request(s.port, "GET", &path, &[("If-None-Match", &asked)], b"");
        assert_eq!(cached.status, 304, "{asked}");
        assert!(cached.body.is_empty());
        for name in CACHE_HEADERS {
            let want = full.header(name).filter(|_| name != "date");
            let got = cached.header(name).filter(|_| name != "date");
            assert_eq!(got, want, "{name} on a 304 ({asked})");
        }
        assert!(cached.header("date").is_some(), "a 304 has a Date");
        assert_eq!(cached.header("x-content-type-options"), Some("nosniff"));
    }
}

/// The methods an `Allow` header lists, as a set.
fn allowed(r: &Response) -> BTreeSet<String> {
    let allow = r
        .header("allow")
        .unwrap_or_else(|| panic!("no Allow: {r:?}"));
    allow.split(',').map(|m| m.trim().to_string()).collect()
}

#[test]
fn every_405_lists_the_methods_its_path_takes() {
    let s = Server::start();
    let file = format!("/files/sha256:{}", "a".repeat(64));
    let cases: [(&str, &str, &[&str]); 10] = [
        ("DELETE", "/ch/a", &["GET", "HEAD", "POST", "OPTIONS"]),
        ("PUT", "/tasks", &["GET", "HEAD", "POST", "OPTIONS"]),
        ("POST", "/status", &["GET", "HEAD", "OPTIONS"]),
        ("POST", "/", &["GET", "HEAD", "OPTIONS"]),
        ("POST", &file, &["GET", "HEAD", "OPTIONS"]),
        ("GET", "/files", &["POST", "OPTIONS"]),
        ("HEAD", "/tasks/claim", &["POST", "OPTIONS"]),
        (
            "GET",
            "/tasks/01J4XYZABCDEFGHJKMNPQRSTVW/claim",
            &["POST", "OPTIONS"],
        ),
        ("PATCH", "/locks/acquire", &["POST", "OPTIONS"]),
        ("GET", "/inbox/bob/read", &["POST", "OPTIONS"]),
    ];
    for (method, path, methods) in cases {
        let r = request(s.port, method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}");
        let want: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(allowed(&r), want, "{method} {path}");
        if method != "HEAD" {
            assert!(r.error().contains(method), "{method} {path}: {}", r.error());
        }
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
}

/// One malformed request and the status the parser answers it with.
struct Refusal {
    what: &'static str,
    bytes: Vec<u8>,
    status: u16,
}

fn refusals() -> Vec<Refusal> {
    let refusal = |what, bytes: String, status| Refusal {
        what,
        bytes: bytes.into_bytes(),
        status,
    };
    let long = "a".repeat(17 * 1024);
    vec![
        refusal("not a request line", "GARBAGE\r\n\r\n".into(), 400),
        refusal("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n".into(), 400),
        refusal(
            "a header without a colon",
            "GET /status HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".into(),
            400,
        ),
        refusal(
            "a long target",
            format!("GET /{long} HTTP/1.1\r\n\r\n"),
            414,
        ),
        refusal(
            "a long header",
            format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n"),
            431,
        ),
        refusal(
            "two lengths",
            "POST /ch/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .into(),
            400,
        ),
        refusal(
            "a gzip body",
            "POST /ch/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            501,
        ),
        refusal(
            "an unknown expectation",
            "POST /ch/a HTTP/1.1\r\nHost: x\r\nExpect: a-miracle\r\nContent-Length: 2\r\n\r\n{}"
                .into(),
            417,
        ),
        refusal("HTTP/2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(), 505),
    ]
}

#[test]
fn the_parsers_own_errors_are_json_with_nosniff_and_close() {
    let s = Server::start();
    for Refusal {
        what,
        bytes,
        status,
    } in refusals()
    {
        let raw = raw_exchange(s.port, &bytes, WAIT).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut wire = Cursor::new(&raw);
        let r = try_read_response(&mut wire, false)
            .unwrap_or_else(|e| panic!("{what}: {e}: {:?}", String::from_utf8_lossy(&raw)));
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        let error = r.error();
        assert!(error.len() > 10, "{what}: says why: {error:?}");
        assert_eq!(
            wire.position() as usize,
            raw.len(),
            "{what}: one answer, then the end"
        );
    }
    s.assert_no_panic();
}
