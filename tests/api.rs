//! Channels, history, files, presence, status, CORS and routing: every row of API.md that is
//! not tasks or streams, against the real binary.
mod common;

use common::{Server, files_in, request, sha256_name};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// Generous: the machine running the tests may be small and busy.
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn publish_returns_id_and_ts_and_stores_the_envelope() {
    let s = Server::start();
    let r = s.post(
        "/ch/general",
        r#"{"from":"harvester.alice","type":"msg.hello","body":{"msg":"hi"},"extra":"ignored"}"#,
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Cross-origin access is opt-in (WORKSHOP_CORS_ORIGINS; tests/browser_rules.rs).
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let ack = r.json();
    let id = ack["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    let history = s.history("/ch/general/history");
    assert_eq!(history.len(), 1);
    let m = &history[0];
    assert_eq!(m["id"], id);
    assert_eq!(m["ts"], ack["ts"]);
    assert_eq!(m["from"], "harvester.alice");
    assert_eq!(m["ch"], "general");
    assert_eq!(m["type"], "msg.hello");
    assert_eq!(m["v"], 1);
    assert_eq!(m["body"], json!({"msg": "hi"}));
    assert_eq!(m["files"], json!([]));
    assert_eq!(m["reply_to"], Value::Null);
    assert!(m.get("extra").is_none());
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 9);
}

#[test]
fn publish_defaults_and_optional_fields() {
    let s = Server::start();
    let first = s.publish("c", "a.b", json!(null));
    // `reply-to` (the seed's spelling) is accepted; output is `reply_to`.
    let r = s.post_json(
        "/ch/c",
        json!({"from":"x","type":"t","reply-to": first, "v": 3}),
    );
    assert_eq!(r.status, 201);
    let r = s.post_json("/ch/c", json!({"from":"x","type":"t","reply_to": first}));
    assert_eq!(r.status, 201);
    let h = s.history("/ch/c/history");
    assert_eq!(
        h[0]["body"],
        Value::Null,
        "an explicit null body stays null"
    );
    assert_eq!(h[1]["reply_to"], json!(first));
    assert_eq!(h[1]["v"], 3);
    assert_eq!(h[1]["body"], json!({}), "absent body defaults to {{}}");
    assert_eq!(h[2]["reply_to"], json!(first));
}

#[test]
fn bad_publishes_are_400_and_change_nothing() {
    let s = Server::start();
    let cases: &[(&str, &str)] = &[
        ("/ch/general", "{"),
        ("/ch/general", "not json"),
        ("/ch/general", ""),
        ("/ch/general", "[]"),
        ("/ch/general", "\"string\""),
        ("/ch/general", r#"{"type":"t"}"#),
        ("/ch/general", r#"{"from":"x"}"#),
        ("/ch/general", r#"{"from":"  ","type":"t"}"#),
        ("/ch/general", r#"{"from":"x","type":""}"#),
        ("/ch/general", r#"{"from":7,"type":"t"}"#),
        ("/ch/general", r#"{"from":"x","type":["t"]}"#),
        ("/ch/general", r#"{"from":"x","type":"t","v":"one"}"#),
        ("/ch/general", r#"{"from":"x","type":"t","v":1.5}"#),
        (
            "/ch/general",
            r#"{"from":"x","type":"t","files":"sha256:00"}"#,
        ),
        ("/ch/general", r#"{"from":"x","type":"t","files":["nope"]}"#),
        (
            "/ch/general",
            r#"{"from":"x","type":"t","reply_to":"nope"}"#,
        ),
        ("/ch/general", r#"{"from":"x","type":"t","reply_to":5}"#),
        // Names that would clear a terminal or show in another order than they are.
        ("/ch/general", r#"{"from":"x\u001b[2J","type":"t"}"#),
        ("/ch/general", r#"{"from":"ali\u202eecila","type":"t"}"#),
        (
            "/ch/general",
            r#"{"from":"x","type":"t","to":["b\u2066ob"]}"#,
        ),
        ("/ch/bad%20name", r#"{"from":"x","type":"t"}"#),
        ("/ch/bad!name", r#"{"from":"x","type":"t"}"#),
    ];
    for (path, body) in cases {
        let r = s.post(path, body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert!(!r.error().is_empty());
    }
    let long_from = "x".repeat(129);
    let r = s.post_json("/ch/general", json!({"from": long_from, "type": "t"}));
    assert_eq!(r.status, 400);
    let long_channel = format!("/ch/{}", "c".repeat(65));
    assert_eq!(
        s.post(&long_channel, r#"{"from":"x","type":"t"}"#).status,
        400
    );
    // A file that is well formed but not stored.
    let missing = format!("sha256:{}", "0".repeat(64));
    let r = s.post_json(
        "/ch/general",
        json!({"from":"x","type":"t","files":[missing]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(s.get("/status").json()["messages"], 0);
    assert_eq!(s.get("/channels").json(), json!([]));
}

/// An error quotes what was wrong, never more than a few dozen characters of it: a client
/// that sends a megabyte where a name or an id belongs does not get the megabyte back.
#[test]
fn errors_quote_a_little_of_a_bad_value_never_all_of_it() {
    let s = Server::start();
    let huge = |c: &str| c.repeat(900_000);
    let bodies = [
        (
            "/ch/general",
            json!({"from":"x","type":"t","reply_to": huge("r")}),
        ),
        (
            "/ch/general",
            json!({"from":"x","type":"t","files": [huge("f")]}),
        ),
        ("/tasks", json!({"from":"x","title":"t","ch": huge("!")})),
        (
            "/locks/acquire",
            json!({"from":"x","name":"n","ttl_s":60,"ch": huge("?")}),
        ),
    ];
    for (path, body) in &bodies {
        let r = s.post_json(path, body.clone());
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            &r.text()[..200.min(r.text().len())]
        );
        let error = r.error();
        assert!(r.text().len() < 512, "{path}: {} bytes", r.text().len());
        // It still says which value was wrong: its start, cut off, and its length.
        assert!(
            error.contains("…") && error.contains("bytes)"),
            "{path}: {error}"
        );
    }
    let long_query = "z".repeat(4000);
    for path in [
        format!("/tasks?status={long_query}"),
        format!("/ch/general/history?since={long_query}"),
        format!("/ch/general/history?n={long_query}"),
        format!("/messages/{long_query}"),
    ] {
        let r = s.get(&path);
        assert!(matches!(r.status, 400 | 404), "{}: {}", r.status, r.text());
        assert!(
            r.text().len() < 512,
            "{}: {} bytes",
            &path[..20],
            r.text().len()
        );
        assert!(r.error().contains("…"), "{}", r.error());
    }
    // A path no route has, a method no route takes, a browser's foreign Host and Origin.
    let long_host = format!("{}.example", "h".repeat(4000));
    let long_origin = format!("http://{}.example", "o".repeat(4000));
    let misses = [
        request(s.port, "GET", &format!("/{long_query}"), &[], b""),
        request(s.port, &"A".repeat(4000), "/status", &[], b""),
        request(
            s.port,
            "POST",
            "/ch/general",
            &[("Origin", &long_origin)],
            b"{}",
        ),
    ];
    for (r, status) in misses.into_iter().zip([404, 405, 403]) {
        assert_eq!(r.status, status, "{}", r.text());
        assert!(
            r.text().len() < 512,
            "{}: {} bytes",
            r.status,
            r.text().len()
        );
    }
    let head = format!(
        "GET /status HTTP/1.1\r\nHost: {long_host}\r\nSec-Fetch-Mode: cors\r\nConnection: close\r\n\r\n"
    );
    let raw = common::raw_exchange(s.port, head.as_bytes(), WAIT).expect("an answer");
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(raw.len() < 1024, "{} bytes", raw.len());
    assert_eq!(s.get("/status").json()["messages"], 0);
    assert_eq!(s.get("/tasks").json().as_array().map(Vec::len), Some(0));
    assert_eq!(s.get("/locks").json().as_array().map(Vec::len), Some(0));
}

/// A batch (`POST /ch/:ch` with an array) is stored and streamed in the order given, each
/// message exactly as if posted alone, and answered with each one's id and ts.
#[test]
fn a_batch_is_stored_and_streamed_in_order() {
    let s = Server::start();
    let mut live = s.sse("/ch/batch", &[]);
    let first = s.publish("batch", "msg.first", json!({}));
    assert_eq!(
        live.next_message(WAIT).map(|(id, _)| id),
        Some(first.clone())
    );
    let batch = json!([
        {"from": "agent.a", "type": "log.line", "body": {"n": 0, "text": "quietly batched"}},
        {"from": "agent.a", "type": "log.line", "body": {"n": 1}, "reply_to": first},
        {"from": "agent.a", "type": "log.done", "body": {"n": 2}, "to": "agent.b"},
    ]);
    let r = s.post_json("/ch/batch", batch.clone());
    assert_eq!(r.status, 201, "{}", r.text());
    let stamped = r.json();
    let stamped = stamped.as_array().expect("an array");
    assert_eq!(stamped.len(), 3);
    let ids: Vec<&str> = stamped.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(
        first.as_str() < ids[0] && ids[0] < ids[1] && ids[1] < ids[2],
        "{ids:?}"
    );
    let history = s.history(&format!("/ch/batch/history?since={first}"));
    assert_eq!(history.len(), 3);
    for (i, m) in history.iter().enumerate() {
        assert_eq!(m["id"], stamped[i]["id"]);
        assert_eq!(m["ts"], stamped[i]["ts"]);
        assert_eq!(m["body"], batch[i]["body"]);
        assert_eq!(m["type"], batch[i]["type"]);
        let (id, streamed) = live.next_message(WAIT).expect("streamed");
        assert_eq!((id.as_str(), &streamed), (ids[i], m));
    }
    assert_eq!(history[1]["reply_to"], json!(first));
    assert_eq!(history[2]["to"], "agent.b");
    assert_eq!(s.history("/inbox/agent.b")[0]["id"], ids[2]);
    assert_eq!(s.history("/search?q=quietly")[0]["id"], ids[0]);
    assert_eq!(s.status()["messages"], 4);
    s.assert_no_panic();
}

/// A batch with anything wrong is refused whole, naming the first message at fault, and
/// stores nothing.
#[test]
fn a_bad_batch_is_refused_whole_and_changes_nothing() {
    let s = Server::start();
    let ok = json!({"from": "agent.a", "type": "t", "body": {}});
    let missing = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!([]), 400, "1 to 1000 messages"),
        (
            Value::Array(vec![ok.clone(); 1001]),
            400,
            "1 to 1000 messages",
        ),
        (json!([ok, 7]), 400, "message 2 of 2: must be a JSON object"),
        (
            json!([ok, [ok]]),
            400,
            "message 2 of 2: must be a JSON object",
        ),
        (
            json!([ok, {"from": "agent.a"}]),
            400,
            "message 2 of 2: type",
        ),
        (
            json!([ok, ok, {"from": "agent.b", "type": "t"}]),
            400,
            "message 3 of 3: every message of a batch must have the same from",
        ),
        (
            json!([ok, {"from": "agent.a", "type": "t", "files": [missing]}]),
            400,
            "message 2 of 2: ",
        ),
    ];
    for (batch, status, says) in cases {
        let r = s.post_json("/ch/c", batch.clone());
        assert_eq!(r.status, status, "{batch}: {}", r.text());
        assert!(r.error().contains(says), "{}: {}", says, r.error());
    }
    // Over 1 MiB as a whole, though each message is small.
    let text = "x".repeat(2_000);
    let big = json!({"from": "agent.a", "type": "t", "body": {"text": text}});
    let r = s.post_json("/ch/c", Value::Array(vec![big; 600]));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(s.status()["messages"], 0);
    assert_eq!(s.get("/channels").json(), json!([]));
    s.assert_no_panic();
}

#[test]
fn oversize_json_body_is_413_and_stores_nothing() {
    let s = Server::start();
    let big = format!(
        r#"{{"from":"x","type":"t","body":"{}"}}"#,
        "a".repeat(1024 * 1024)
    );
    let r = s.post("/ch/general", &big);
    assert_eq!(r.status, 413);
    assert!(r.error().contains("1 MiB"));
    // Content-Length that lies low: the limit is enforced while reading, chunked too.
    let r = request(
        s.port,
        "POST",
        "/ch/general",
        &[("Transfer-Encoding", "chunked")],
        format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(s.get("/status").json()["messages"], 0);
    // Just under the limit is fine.
    let ok = format!(
        r#"{{"from":"x","type":"t","body":"{}"}}"#,
        "a".repeat(1024 * 1024 - 64)
    );
    assert_eq!(s.post("/ch/general", &ok).status, 201);
}

#[test]
fn history_pages_forward_with_since_through_more_than_n() {
    let s = Server::start();
    let ids: Vec<String> = (0..25).map(|i| s.publish("p", "t", json!(i))).collect();
    s.publish("other", "t", json!("elsewhere"));
    // Without since: the newest n, oldest first.
    let newest = s.history("/ch/p/history?n=5");
    let got: Vec<&str> = newest.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        ids[20..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // With since: the oldest n after it, so paging forward sees everything once.
    let mut seen = Vec::new();
    let mut cursor = ids[2].clone();
    loop {
        let page = s.history(&format!("/ch/p/history?since={cursor}&n=7"));
        if page.is_empty() {
            break;
        }
        for m in &page {
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        cursor = seen.last().unwrap().clone();
    }
    assert_eq!(seen, ids[3..].to_vec());
    // before: older than the given id.
    let older = s.history(&format!("/ch/p/history?before={}&n=3", ids[10]));
    let got: Vec<&str> = older.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![&ids[7], &ids[8], &ids[9]]);
    // Defaults: 200 on a channel, 100 globally.
    let many: Vec<String> = (0..230).map(|i| s.publish("q", "t", json!(i))).collect();
    assert_eq!(s.history("/ch/q/history").len(), 200);
    let global = s.history("/history");
    assert_eq!(global.len(), 100);
    assert_eq!(global.last().unwrap()["id"], json!(many.last().unwrap()));
    assert_eq!(
        s.history("/history?n=5000").len(),
        256,
        "n is capped at 1000"
    );
}

#[test]
fn history_type_prefix_is_literal() {
    let s = Server::start();
    for kind in ["a_b", "axb", "a%c", "abc", "task.done", "taskXdone"] {
        s.publish("t", kind, json!({}));
    }
    let types = |path: &str| -> Vec<String> {
        s.history(path)
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(types("/ch/t/history?type=a_"), vec!["a_b"]);
    assert_eq!(types("/ch/t/history?type=a%25"), vec!["a%c"]);
    assert_eq!(types("/ch/t/history?type=task."), vec!["task.done"]);
    assert_eq!(types("/history?type=a"), vec!["a_b", "axb", "a%c", "abc"]);
}

#[test]
fn bad_history_queries_are_400() {
    let s = Server::start();
    for path in [
        "/ch/t/history?n=abc",
        "/ch/t/history?n=0",
        "/ch/t/history?n=-3",
        "/history?n=1.5",
        "/ch/t/history?since=nope",
        // Empty is not absent: a script whose variable was unset would replay the channel.
        "/ch/t/history?since=",
        "/history?before=",
        "/inbox/someone?since=",
        "/history?before=123",
        "/ch/t/history?type=%zz",
        "/ch/bad$/history",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        r.error();
    }
}

#[test]
fn percent_encoded_channel_names_in_paths_are_decoded() {
    let s = Server::start();
    assert_eq!(
        s.post("/ch/ok%2Dch", r#"{"from":"x","type":"t"}"#).status,
        201
    );
    assert_eq!(s.history("/ch/ok-ch/history").len(), 1);
    assert_eq!(s.history("/ch/ok%2dch/history").len(), 1);
    for bad in ["/ch/a%2Fb", "/ch/a%20b", "/ch/a%zz", "/ch/a+b"] {
        assert_eq!(
            s.post(bad, r#"{"from":"x","type":"t"}"#).status,
            400,
            "{bad}"
        );
    }
}

#[test]
fn channels_lists_every_channel_with_a_message_sorted() {
    let s = Server::start();
    for ch in ["zeta", "alpha", "mid:dle", "alpha"] {
        s.publish(ch, "t", json!({}));
    }
    assert_eq!(
        s.get("/channels").json(),
        json!(["alpha", "mid:dle", "zeta"])
    );
}

#[test]
fn files_upload_fetch_head_and_etag() {
    let s = Server::start();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = request(
        s.port,
        "POST",
        "/files",
        &[("Content-Type", "image/png")],
        &bytes,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let hash = r.json()["hash"].as_str().unwrap().to_string();
    assert_eq!(r.json()["size"], 200_000);
    assert_eq!(hash, sha256_name(&bytes));
    // Same bytes again: harmless, same answer.
    let again = request(s.port, "POST", "/files", &[], &bytes);
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["hash"], json!(hash));

    let got = s.get(&format!("/files/{hash}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("content-length"), Some("200000"));
    assert_eq!(
        got.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = got.header("etag").unwrap().to_string();
    assert_eq!(etag, format!("\"{hash}\""));
    let head = request(s.port, "HEAD", &format!("/files/{hash}"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("200000"));
    let cached = request(
        s.port,
        "GET",
        &format!("/files/{hash}"),
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(cached.status, 304);

    // A message may now reference it.
    let r = s.post_json(
        "/ch/f",
        json!({"from":"x","type":"file.uploaded","files":[hash]}),
    );
    assert_eq!(r.status, 201);
    assert!(files_in(&s.blobs_dir().join("tmp")).is_empty());
}

#[test]
fn file_names_other_than_a_hash_are_400_and_unknown_are_404() {
    let s = Server::start();
    let hex = "ab".repeat(32);
    for path in [
        "/files/../../etc/passwd".to_string(),
        "/files/..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("/files/sha256:{hex}/.."),
        format!("/files/sha256:{hex}/x"),
        "/files/tmp".to_string(),
        format!("/files/sha256%3A{hex}"),
        format!("/files/SHA256:{hex}"),
        format!("/files/sha256:{}", hex.to_uppercase()),
        format!("/files/sha256:{}", &hex[2..]),
        "/files/".to_string(),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        r.error();
    }
    let r = s.get(&format!("/files/sha256:{hex}"));
    assert_eq!(r.status, 404);
    r.error();
}

#[test]
fn upload_over_the_limit_is_413_and_stores_nothing() {
    let s = Server::start_with(&[("WORKSHOP_MAX_FILE_BYTES", "1000")]);
    let r = request(s.port, "POST", "/files", &[], &[7u8; 1001]);
    assert_eq!(r.status, 413);
    r.error();
    // Lying Content-Length is caught while streaming (chunked body, no length).
    let body = [9u8; 5000];
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = request(
        s.port,
        "POST",
        "/files",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(r.status, 413);
    let stored: Vec<String> = files_in(&s.blobs_dir())
        .into_iter()
        .filter(|f| f != "tmp")
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    assert!(files_in(&s.blobs_dir().join("tmp")).is_empty());
    let ok = request(s.port, "POST", "/files", &[], &[7u8; 1000]);
    assert_eq!(ok.status, 201);
}

#[test]
fn presence_lists_recent_heartbeats() {
    let s = Server::start();
    let r = s.post_json(
        "/presence",
        json!({"from":"harvester.alice","channels":["general"],"meta":{"v":2}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"ok": true}));
    s.post_json("/presence", json!({"from":"bare.bob"}));
    s.post_json(
        "/presence",
        json!({"from":"harvester.alice","channels":["x"]}),
    );
    let agents = s.get("/presence").json();
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 2);
    let alice = agents
        .iter()
        .find(|a| a["agent_id"] == "harvester.alice")
        .unwrap();
    assert_eq!(alice["channels"], json!(["x"]));
    assert!(alice["last_seen"].as_f64().unwrap() > 1.7e9);
    let bob = agents.iter().find(|a| a["agent_id"] == "bare.bob").unwrap();
    assert_eq!(bob["channels"], json!([]));
    assert_eq!(bob["meta"], json!({}));
    assert_eq!(s.get("/status").json()["agents-live"], 2);
    for bad in [
        r#"{}"#,
        r#"{"from":""}"#,
        r#"{"from":"x","channels":"general"}"#,
        "{",
    ] {
        assert_eq!(s.post("/presence", bad).status, 400, "{bad}");
    }
}

#[test]
fn status_reports_counts_with_the_documented_keys() {
    let s = Server::start();
    s.publish("a", "t", json!({}));
    s.post_json("/tasks", json!({"from":"x","title":"t"}));
    let status = s.get("/status").json();
    for key in [
        "uptime-s",
        "messages",
        "tasks",
        "agents-live",
        "subscribers",
    ] {
        assert!(status.get(key).is_some(), "{key} in {status}");
    }
    assert_eq!(status["messages"], 2, "the message and the task.created");
    assert_eq!(status["tasks"], 1);
    assert_eq!(status["subscribers"], 0);
}

#[test]
fn ui_is_served_as_html() {
    let s = Server::start();
    let r = s.get("/ui");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().to_lowercase().contains("<html") || r.text().contains("<!doctype"));
}

#[test]
fn cors_preflight_and_unknown_routes() {
    let s = Server::start();
    // Always 204; the allow headers only for an allowed origin (tests/browser_rules.rs).
    let r = request(s.port, "OPTIONS", "/ch/general", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-methods"), None);
    for path in ["/nope", "/ch", "/ch/a/b/c", "/tasks/x/y/z", "/status/x"] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        r.error();
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    for (method, path) in [
        ("DELETE", "/ch/a"),
        ("PUT", "/tasks"),
        ("POST", "/status"),
        ("POST", "/history"),
        ("GET", "/files"),
        ("POST", "/"),
        ("GET", "/tasks/01J4XYZABCDEFGHJKMNPQRSTVW/claim"),
    ] {
        let r = request(s.port, method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}");
        r.error();
    }
}

#[test]
fn restart_keeps_messages_tasks_files_and_id_order() {
    let mut s = Server::start();
    let before: Vec<String> = (0..10).map(|i| s.publish("keep", "t", json!(i))).collect();
    let task = s
        .post_json("/tasks", json!({"from":"x","title":"survive"}))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hash = request(s.port, "POST", "/files", &[], b"persist me").json()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    s.restart();
    let history = s.history("/ch/keep/history");
    let ids: Vec<&str> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, before.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(s.get(&format!("/tasks/{task}")).json()["title"], "survive");
    assert_eq!(s.get(&format!("/files/{hash}")).body, b"persist me");
    let status = s.get("/status").json();
    assert_eq!(status["messages"], 11);
    assert_eq!(status["tasks"], 1);
    let after = s.publish("keep", "t", json!("after"));
    assert!(after > *before.last().unwrap(), "ids keep increasing");
    assert_eq!(s.get("/channels").json(), json!(["keep", "tasks"]));
}

/// A setting that cannot work stops start-up with one line naming it, exit status 78
/// (`EX_CONFIG`, which the unit does not restart), and creates nothing.
#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-folder")).unwrap();
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    for (key, value) in [
        ("PORT", "abc"),
        ("WORKSHOP_RETENTION_DAYS", "soon"),
        ("WORKSHOP_VERBOSE", "maybe"),
        ("DB_PATH", "a-folder"),
        ("BLOBS_DIR", "a-file"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_workshop"))
            .env_clear()
            .env(key, value)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{key}={value}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
    }
    let mut made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    made.sort();
    assert_eq!(made, ["a-file", "a-folder"], "nothing was created");
    assert_eq!(
        std::fs::read_dir(dir.path().join("a-folder"))
            .unwrap()
            .count(),
        0
    );
}

/// A port in use (the commonest mistake) stops start-up before any file is made: it left
/// a database, its -wal, -shm and lock files behind at every try.
#[test]
fn a_port_in_use_stops_start_up_before_any_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_workshop"))
        .env_clear()
        .env("PORT", &port)
        .env("HOST", "127.0.0.1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files were made"
    );
}

/// Starts the binary in `dir` with only PORT=0, HOST and `env`; returns it with the first
/// line it printed (stderr piped, for tests that read it).
fn spawn_bare(dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_workshop"))
        .env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line)
}

#[test]
fn defaults_create_db_and_blobs_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, line) = spawn_bare(dir.path(), &[]);
    assert!(
        line.starts_with("workshop listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(dir.path().join("workshop.db").is_file());
    assert!(dir.path().join("blobs").is_dir());
    common::signal(child.id(), "INT");
    assert!(child.wait().unwrap().success(), "SIGINT is a clean exit");
    // Closed cleanly, the database is one file again: no -wal or -shm left beside it.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["blobs", "workshop.db", "workshop.db.lock"]);
}

#[test]
fn verbose_logs_one_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let (child, line) = spawn_bare(dir.path(), &[("WORKSHOP_VERBOSE", "true")]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(request(port, "GET", "/nowhere", &[], b"").status, 404);
    common::signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("GET /nowhere \u{2192} 404 (") && l.ends_with(" ms)")),
        "{stderr}"
    );
}

/// A burst of keep-alive connections is served at once, none queued behind another client's
/// idle connection (the vendored tiny_http's thread pool used to queue them; patch 4).
#[test]
fn a_burst_of_keep_alive_connections_is_served_without_waiting_on_idle_ones() {
    use std::io::{BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let s = Server::start();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let port = s.port;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                // Well under the server's 30 s idle timeout: a queued connection fails here.
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                barrier.wait();
                stream
                    .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let status = common::read_response(&mut reader, false).status;
                // Hand the connection back still open (idle keep-alive): it stays held
                // until every client has been answered or has failed.
                (status, reader)
            })
        })
        .collect();
    let mut held = Vec::new();
    for client in clients {
        let (status, connection) = client.join().expect("answered within 10 s");
        assert_eq!(status, 200);
        held.push(connection);
    }
}

/// A task reads the same from every endpoint, its fields in the schema's order: `GET
/// /tasks/:id` and claim-next answered them alphabetically, `GET /tasks` did not. Checked on
/// the raw text, which a parser might reorder.
#[test]
fn a_task_has_one_field_order_everywhere() {
    let s = Server::start();
    s.post_json("/tasks", json!({"from": "ann", "title": "order"}));
    let listed = s.get("/tasks").text();
    let id = s.get("/tasks").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = s.get(&format!("/tasks/{id}")).text();
    let claimed = s.post_json("/tasks/claim", json!({"from": "bob"})).text();
    for (what, text) in [
        ("listed", &listed),
        ("shown", &shown),
        ("claimed", &claimed),
    ] {
        let text = text.trim_start_matches('[');
        assert!(text.starts_with("{\"id\":"), "{what}: {text}");
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        let order = [
            "id",
            "created_at",
            "status",
            "title",
            "context",
            "ch",
            "claims",
        ];
        let places: Vec<usize> = order.iter().map(|key| at(key)).collect();
        assert!(places.is_sorted(), "{what}: {text}");
    }
}
