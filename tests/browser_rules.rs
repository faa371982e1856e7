//! The browser rules (README "Security model", API.md "Browser rules") and the data rules the
//! same attack pass tightened, over real sockets against the real binary. Browser requests are
//! written here byte for byte with the headers Chromium sends (tests/browser_threats.rs checks
//! the same rules in Chromium itself); curl-style requests carry none of them.
mod common;

use common::{Response, Server, connect, sha256_name, try_read_response, wait_for};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Chromium's user agent: every browser's starts with `Mozilla/`.
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/156.0.0.0 Safari/537.36";
const CURL: &str = "curl/8.5.0";
const EVIL: &str = "https://evil.example";

/// One request with exactly this `Host` and these headers (no others but `Connection` and
/// `Content-Length`).
fn send(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut stream = connect(port).expect("connect");
    stream.write_all(head.as_bytes()).expect("send head");
    let _ = stream.write_all(body);
    try_read_response(&mut BufReader::new(stream), method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"))
}

/// The hub's own address as a browser on this machine writes it.
fn own(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port)
}

fn own_origin(s: &Server) -> String {
    format!("http://127.0.0.1:{}", s.port)
}

/// A page's write as Chromium sends it: user agent, Origin, fetch metadata.
fn browser_post(s: &Server, path: &str, host: &str, origin: &str, body: &str) -> Response {
    let site = if origin == own_origin(s) {
        "same-origin"
    } else {
        "cross-site"
    };
    let headers = [
        ("User-Agent", CHROME),
        ("Origin", origin),
        ("Sec-Fetch-Site", site),
        ("Sec-Fetch-Mode", "cors"),
        ("Content-Type", "text/plain;charset=UTF-8"),
    ];
    send(s.port, "POST", path, host, &headers, body.as_bytes())
}

/// Messages and tasks stored, from /status.
fn stored(s: &Server) -> (u64, u64) {
    let status = s.status();
    (
        status["messages"].as_u64().unwrap(),
        status["tasks"].as_u64().unwrap(),
    )
}

fn assert_refused(r: &Response, mentions: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    let error = r.error();
    assert!(error.contains(mentions), "{error}");
}

#[test]
fn curl_style_requests_without_browser_headers_are_unaffected() {
    let s = Server::start();
    let publish = br#"{"from":"victim","type":"msg.text"}"#;
    // Any Host, any Content-Type, no Origin: agents and scripts keep working as before.
    for host in ["hub.example:4242", "evil.test", "127.0.0.1"] {
        let headers = [("User-Agent", CURL), ("Content-Type", "text/plain")];
        let r = send(s.port, "POST", "/ch/csrf", host, &headers, publish);
        assert_eq!(r.status, 201, "{host}: {}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let r = send(s.port, "GET", "/ch/csrf/history", host, &[], b"");
        assert_eq!(r.status, 200);
        let r = send(s.port, "OPTIONS", "/ch/csrf", host, &[], b"");
        assert_eq!(r.status, 204);
    }
    let id = s.create_task(json!({"from":"boss","title":"t"}));
    let headers = [("User-Agent", "python-requests/2.32")];
    let claim = br#"{"from":"w"}"#;
    let r = send(
        s.port,
        "POST",
        &format!("/tasks/{id}/claim"),
        "hub",
        &headers,
        claim,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut stream = common::Sse::connect(s.port, "/ch/csrf", &[("User-Agent", CURL)]);
    assert_eq!(stream.status, 200);
    assert!(stream.next(WAIT).is_some_and(|e| e.comment.is_some()));
    assert_eq!(
        stored(&s),
        (5, 1),
        "3 publishes, task.created, task.claimed"
    );
}

#[test]
fn browser_requests_need_a_host_that_cannot_be_rebound() {
    let s = Server::start_with(&[("WORKSHOP_HOSTNAMES", "hub.test,Mesh.Example")]);
    let p = s.port;
    let rebound = format!("evil.test:{p}");
    // What Chromium sends to http://evil.test:PORT (not a secure context: no Sec-Fetch-*).
    let navigate = [("User-Agent", CHROME), ("Upgrade-Insecure-Requests", "1")];
    let read = [("User-Agent", CHROME), ("Accept", "*/*")];
    for (path, headers) in [
        ("/ui", &navigate[..]),
        ("/history", &read[..]),
        ("/tasks", &read[..]),
        ("/presence", &read[..]),
        ("/channels", &read[..]),
        ("/status", &read[..]),
    ] {
        let r = send(p, "GET", path, &rebound, headers, b"");
        assert_refused(&r, "WORKSHOP_HOSTNAMES");
        assert!(!r.text().contains("<html"));
    }
    // Its EventSource too.
    let r = send(p, "GET", "/ch/x", &rebound, &read, b"");
    assert_refused(&r, "WORKSHOP_HOSTNAMES");
    let origin = format!("http://{rebound}");
    let r = browser_post(&s, "/ch/x", &rebound, &origin, r#"{"from":"a","type":"t"}"#);
    assert_refused(&r, "WORKSHOP_HOSTNAMES");
    assert_eq!(stored(&s), (0, 0));
    // Only Sec-Fetch metadata, or only an Origin, marks a browser just as well.
    let r = send(
        p,
        "GET",
        "/status",
        &rebound,
        &[("Sec-Fetch-Mode", "cors")],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = send(p, "GET", "/status", &rebound, &[("Origin", "null")], b"");
    assert_eq!(r.status, 403);

    for host in [
        own(&s),
        format!("localhost:{p}"),
        format!("[::1]:{p}"),
        format!("hub.test:{p}"),
        format!("MESH.example.:{p}"),
    ] {
        let r = send(p, "GET", "/ui", &host, &navigate, b"");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let origin = format!("http://{host}");
        let r = browser_post(&s, "/ch/ok", &host, &origin, r#"{"from":"a","type":"t"}"#);
        assert_eq!(r.status, 201, "{host}: {}", r.text());
    }
}

#[test]
fn cross_origin_writes_are_refused_and_change_nothing() {
    let s = Server::start();
    let host = own(&s);
    let hash = sha256_name(b"forged");
    let id = s.create_task(json!({"from":"boss","title":"real"}));
    s.task_action(&id, "claim", json!({"from":"w"}));
    let before = stored(&s);
    // The issue's reproduction, from a browser: a no-preflight text/plain fetch or form.
    for (path, body) in [
        ("/ch/csrf", r#"{"from":"victim","type":"msg.text"}"#),
        ("/tasks", r#"{"from":"victim","title":"rm -rf"}"#),
        ("/tasks/claim", r#"{"from":"victim"}"#),
        (&format!("/tasks/{id}/interrupt"), r#"{"from":"victim"}"#),
        (&format!("/tasks/{id}/done"), r#"{"from":"w"}"#),
        ("/presence", r#"{"from":"victim"}"#),
        ("/files", "forged"),
    ] {
        for origin in [
            EVIL,
            "null",
            "http://localhost:1",
            &format!("http://{host}.evil"),
        ] {
            let r = browser_post(&s, path, &host, origin, body);
            assert_refused(&r, "WORKSHOP_CORS_ORIGINS");
            assert_eq!(r.header("access-control-allow-origin"), None);
        }
    }
    // A POST with no Origin but cross-site fetch metadata is refused too.
    for site in ["cross-site", "same-site"] {
        let headers = [("User-Agent", CHROME), ("Sec-Fetch-Site", site)];
        let body = br#"{"from":"victim","type":"msg.text"}"#;
        let r = send(s.port, "POST", "/ch/csrf", &host, &headers, body);
        assert_refused(&r, "WORKSHOP_CORS_ORIGINS");
    }
    assert_eq!(stored(&s), before, "nothing stored");
    assert_eq!(s.get(&format!("/files/{hash}")).status, 404);
    assert!(s.get("/presence").json().as_array().unwrap().is_empty());
    assert_eq!(s.task(&id)["status"], "claimed");

    // The served UI's own writes, with any content type, still go through.
    let r = browser_post(
        &s,
        "/ch/ui",
        &host,
        &own_origin(&s),
        r#"{"from":"me","type":"t"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let headers = [
        ("User-Agent", CHROME),
        ("Origin", &own_origin(&s)),
        ("Sec-Fetch-Site", "same-origin"),
        ("Content-Type", "image/svg+xml"),
    ];
    let r = send(s.port, "POST", "/files", &host, &headers, b"forged");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["hash"], hash);
}

#[test]
fn cors_is_opt_in_by_origin() {
    let ui = "https://ui.example";
    let s = Server::start_with(&[("WORKSHOP_CORS_ORIGINS", "https://UI.example/, http://x:1")]);
    let host = own(&s);
    let p = s.port;
    let preflight = |origin: &str| {
        let headers = [
            ("User-Agent", CHROME),
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        send(p, "OPTIONS", "/ch/a", &host, &headers, b"")
    };
    let r = preflight(ui);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(ui));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,POST,OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type,Last-Event-ID,Idempotency-Key")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = preflight(EVIL);
    assert_eq!(r.status, 204, "always 204");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-methods"), None);

    let r = browser_post(&s, "/ch/a", &host, ui, r#"{"from":"ui","type":"t"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(ui));
    let read = [
        ("User-Agent", CHROME),
        ("Origin", ui),
        ("Sec-Fetch-Mode", "cors"),
    ];
    let r = send(p, "GET", "/ch/a/history", &host, &read, b"");
    assert_eq!(r.header("access-control-allow-origin"), Some(ui));
    assert_eq!(r.text().lines().count(), 1);
    // Errors are readable by an allowed origin too.
    let r = send(p, "GET", "/nope", &host, &read, b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some(ui));
    let mut stream = common::Sse::connect(p, "/ch/a", &read);
    assert_eq!(stream.header("access-control-allow-origin"), Some(ui));
    assert!(stream.next(WAIT).is_some());

    let evil_read = [("User-Agent", CHROME), ("Origin", EVIL)];
    let r = send(p, "GET", "/ch/a/history", &host, &evil_read, b"");
    assert_eq!(r.status, 200, "served, but the page may not read it:");
    assert_eq!(r.header("access-control-allow-origin"), None);
    let stream = common::Sse::connect(p, "/ch/a", &evil_read);
    assert_eq!(stream.header("access-control-allow-origin"), None);
    let r = browser_post(&s, "/ch/a", &host, EVIL, r#"{"from":"x","type":"t"}"#);
    assert_eq!(r.status, 403);
    assert_eq!(stored(&s).0, 1);
}

#[test]
fn star_restores_cross_origin_reads_and_writes() {
    let s = Server::start_with(&[("WORKSHOP_CORS_ORIGINS", "*")]);
    let host = own(&s);
    let r = browser_post(&s, "/ch/open", &host, EVIL, r#"{"from":"x","type":"t"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // As in the first release: every answer, with or without an Origin.
    assert_eq!(
        s.get("/status").header("access-control-allow-origin"),
        Some("*")
    );
    let r = common::request(s.port, "OPTIONS", "/ch/open", &[], b"");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-headers").is_some());
    let sse = s.sse("/ch/open", &[]);
    assert_eq!(sse.header("access-control-allow-origin"), Some("*"));
    let head = common::request(s.port, "HEAD", "/ch/open", &[], b"");
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    // The Host check still holds: `*` opens the hub to origins, not to rebinding.
    let r = send(
        s.port,
        "GET",
        "/status",
        "evil.test",
        &[("User-Agent", CHROME)],
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn security_headers_on_ui_files_and_every_answer() {
    let s = Server::start();
    let ui = s.get("/ui");
    let csp = ui
        .header("content-security-policy")
        .expect("CSP header on /ui");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The header carries the meta tag's policy, script hash included.
    let html = ui.text();
    let meta = html
        .split("http-equiv=\"Content-Security-Policy\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("CSP meta");
    assert!(meta.contains("script-src 'sha256-"));
    assert_eq!(csp, format!("{meta}; frame-ancestors 'none'"));

    let hash =
        common::request(s.port, "POST", "/files", &[], b"<svg onload=alert(1)>").json()["hash"]
            .as_str()
            .unwrap()
            .to_string();
    for method in ["GET", "HEAD"] {
        let r = common::request(s.port, method, &format!("/files/{hash}"), &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-disposition"), Some("attachment"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; sandbox")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // An absolute-form target (RFC 9112 §3.2.2) gets the same headers as its path.
    let absolute = format!("http://{}/files/{hash}", own(&s));
    for method in ["GET", "HEAD"] {
        let r = send(s.port, method, &absolute, &own(&s), &[], b"");
        assert_eq!(r.status, 200, "{method} {absolute}");
        assert_eq!(r.header("content-disposition"), Some("attachment"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; sandbox")
        );
    }
    let r = send(
        s.port,
        "GET",
        &format!("{absolute}?name=report.svg"),
        &own(&s),
        &[],
        b"",
    );
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"report.svg\"; filename*=UTF-8''report.svg")
    );
    let r = send(
        s.port,
        "GET",
        &format!("HTTP://{}/ui", own(&s)),
        &own(&s),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-security-policy"), Some(csp));
    for (name, want) in [
        (
            "report.svg",
            "attachment; filename=\"report.svg\"; filename*=UTF-8''report.svg",
        ),
        (
            "..%2F..%2F%C3%A9t%C3%A9%0D%0AX-Evil%3A%201.svg",
            "attachment; filename=\"_t_X-Evil: 1.svg\"; filename*=UTF-8''%C3%A9t%C3%A9X-Evil%3A%201.svg",
        ),
        (
            "%22%3B%20x",
            "attachment; filename=\"_ x\"; filename*=UTF-8''%3B%20x",
        ),
        ("..", "attachment"),
    ] {
        let r = s.get(&format!("/files/{hash}?name={name}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-disposition"), Some(want), "{name}");
        assert_eq!(r.header("x-evil"), None);
    }
    // nosniff on every kind of answer.
    let id = s.publish("n", "t", json!({}));
    for path in [
        "/status",
        "/ch/n/history",
        "/nope",
        "/ui",
        &format!("/tasks/{id}"),
    ] {
        let r = s.get(path);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let sse = s.sse("/ch/n", &[]);
    assert_eq!(sse.header("x-content-type-options"), Some("nosniff"));
    // Not duplicated on HEAD of a stream.
    let head = common::request(s.port, "HEAD", "/ch/n", &[], b"");
    let count = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-content-type-options"))
        .count();
    assert_eq!(count, 1);
}

fn announcements(s: &Server, kind: &str) -> Vec<Value> {
    s.history(&format!("/ch/tasks/history?type={kind}"))
}

#[test]
fn only_the_current_claimer_may_update_a_task() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"t"}));
    let update = |from: &str| s.task_action(&id, "update", json!({"from": from, "pct": 1}));
    let r = update("w1");
    assert_eq!(r.status, 409, "open: {}", r.text());
    r.error();
    s.task_action(&id, "claim", json!({"from":"w1"}));
    let r = update("intruder");
    assert_eq!(r.status, 403);
    assert!(r.error().contains("w1"));
    assert_eq!(update("w1").status, 200);
    s.task_action(&id, "done", json!({"from":"w1"}));
    assert_eq!(update("w1").status, 409, "done");
    assert_eq!(announcements(&s, "task.updated").len(), 1);

    // A worker whose lease ran out no longer holds the task.
    let leased = s.create_task(json!({"from":"boss","title":"leased"}));
    s.task_action(&leased, "claim", json!({"from":"w2","lease_s":1}));
    wait_for(WAIT, "the lease to expire", || {
        (s.task(&leased)["status"] == "open").then_some(())
    });
    let r = s.task_action(&leased, "update", json!({"from":"w2","pct":2}));
    assert_eq!(r.status, 409);
    assert_eq!(announcements(&s, "task.updated").len(), 1);
}

#[test]
fn presence_channels_are_channel_names_and_bounded() {
    let s = Server::start();
    let names: Vec<String> = (0..100).map(|i| format!("ch-{i}")).collect();
    let r = s.post_json("/presence", json!({"from":"ok","channels":names}));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut too_many = names.clone();
    too_many.push("one-more".into());
    for bad in [
        json!(["x".repeat(5000)]),
        json!(too_many),
        json!(["a b"]),
        json!([".."]),
        json!([7]),
        json!("general"),
    ] {
        let r = s.post_json("/presence", json!({"from":"bad","channels":bad}));
        assert_eq!(r.status, 400, "{bad}");
        r.error();
    }
    let live = s.get("/presence").json();
    let agents: Vec<&str> = live
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["ok"]);
    assert_eq!(live[0]["channels"].as_array().unwrap().len(), 100);
}

#[test]
fn dot_channels_are_refused_encoded_or_not() {
    let s = Server::start();
    let body = r#"{"from":"x","type":"t"}"#;
    for ch in [".", "..", "%2e", "%2E%2e", ".%2e", "%2e."] {
        let r = s.post(&format!("/ch/{ch}"), body);
        assert_eq!(r.status, 400, "{ch}: {}", r.text());
        r.error();
        assert_eq!(s.get(&format!("/ch/{ch}/history")).status, 400, "{ch}");
        assert_eq!(s.get(&format!("/ch/{ch}")).status, 400, "{ch}");
    }
    let r = s.post_json("/tasks", json!({"from":"x","title":"t","ch":".."}));
    assert_eq!(r.status, 400);
    assert_eq!(stored(&s), (0, 0));
    // Dots are fine inside a longer name.
    assert_eq!(s.post("/ch/...", body).status, 201);
    assert_eq!(s.post("/ch/a..b", body).status, 201);
}

#[test]
fn integers_beyond_64_bits_are_refused_not_rounded() {
    let s = Server::start();
    for body in [
        r#"{"from":"x","type":"t","body":{"n":18446744073709551616}}"#,
        r#"{"from":"x","type":"t","body":[-9223372036854775809]}"#,
        r#"{"from":"x","type":"t","v":123456789012345678901234567890}"#,
    ] {
        let r = s.post("/ch/big", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.error().contains("64 bits"));
    }
    let r = s.post(
        "/tasks",
        r#"{"from":"x","title":"t","context":{"id":99999999999999999999}}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(stored(&s), (0, 0));
    // What fits is stored exactly, as are big numbers sent as strings and float literals.
    let exact = r#"{"max":18446744073709551615,"min":-9223372036854775808,"s":"18446744073709551616","f":1e300}"#;
    let r = s.post(
        "/ch/big",
        &format!(r#"{{"from":"x","type":"t","body":{exact}}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let line = s.get("/ch/big/history").text();
    assert!(
        line.contains(
            r#""max":18446744073709551615,"min":-9223372036854775808,"s":"18446744073709551616""#
        ),
        "{line}"
    );
}

#[test]
fn leases_are_at_least_one_second() {
    let s = Server::start();
    let id = s.create_task(json!({"from":"boss","title":"t"}));
    for lease in [json!(1e-9), json!(0.5), json!(0.999)] {
        for action in ["claim", "touch"] {
            let r = s.task_action(&id, action, json!({"from":"w","lease_s":lease}));
            assert_eq!(r.status, 400, "{action} {lease}");
            assert!(r.error().contains("at least 1"));
        }
        let r = s.post_json("/tasks/claim", json!({"from":"w","lease_s":lease}));
        assert_eq!(r.status, 400);
    }
    assert_eq!(s.task(&id)["status"], "open");
    let r = s.task_action(&id, "claim", json!({"from":"w","lease_s":1}));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_verbose_log_escapes_control_characters() {
    let s = Server::start_with(&[("WORKSHOP_VERBOSE", "true")]);
    let raw =
        b"GET /nowhere\x1b[2J\x1b]0;pwned\x07 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = common::raw_exchange(s.port, raw, WAIT).expect("exchange");
    assert!(!answer.is_empty(), "an answer came back");
    let line = wait_for(WAIT, "the log line", || {
        s.stderr()
            .lines()
            .find(|l| l.contains("/nowhere"))
            .map(str::to_string)
    });
    assert!(
        !line.contains('\u{1b}') && !line.contains('\u{7}'),
        "{line:?}"
    );
    assert!(
        line.contains(r"/nowhere\u{1b}[2J\u{1b}]0;pwned\u{7}"),
        "{line}"
    );
}

#[test]
fn bad_browser_settings_stop_start_up_with_one_line_naming_them() {
    for (key, value) in [
        ("WORKSHOP_HOSTNAMES", "http://hub:4242"),
        ("WORKSHOP_CORS_ORIGINS", "ui.example"),
        ("WORKSHOP_CORS_ORIGINS", "https://ui.example/app"),
    ] {
        let scratch = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new(common::BIN)
            .env_clear()
            .env("PORT", "0")
            .env(key, value)
            .current_dir(scratch.path())
            .output()
            .expect("run workshop");
        assert!(!out.status.success(), "{key}={value} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
    }
}
