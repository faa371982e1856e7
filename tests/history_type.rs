//! `GET /ch/{ch}/history?type=` answers exactly the channel's messages whose type starts with
//! the prefix, at every selectivity, with `n`, `since` and `before`, and when the answer is
//! sent in several batches; whether the server walks the type index or the channel.
mod common;

use common::Server;
use serde_json::{Value, json};

/// The type of the `i`th message: 1 in 20 `task.created`, 1 in 5 `review.*` (two types),
/// 100 distinct `many.*` types (more than the type index plan walks), the rest `msg.*`.
fn kind(i: usize) -> String {
    match i % 20 {
        0 => "task.created".into(),
        1 | 2 => "review.asked".into(),
        3 | 4 => "review.done".into(),
        5..=9 => format!("many.{i}"),
        k if k % 2 == 0 => "msg.text".into(),
        _ => "msg.note".into(),
    }
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// The ids of `all` whose type starts with `prefix`.
fn expected(all: &[Value], prefix: &str) -> Vec<String> {
    let typed: Vec<Value> = all
        .iter()
        .filter(|m| m["type"].as_str().unwrap().starts_with(prefix))
        .cloned()
        .collect();
    ids(&typed)
}

#[test]
fn history_by_type_is_the_channel_filtered_at_any_selectivity() {
    let s = Server::start();
    for i in 0..400 {
        s.publish("t", &kind(i), json!({"i": i}));
        s.publish("other", &kind(i + 1), json!({"i": i}));
    }
    let all = s.history("/ch/t/history?n=1000");
    assert_eq!(all.len(), 400);
    let (since, before) = (
        all[100]["id"].as_str().unwrap(),
        all[300]["id"].as_str().unwrap(),
    );
    for prefix in [
        "task.",
        "task.created",
        "review.",
        "review.done",
        "msg.",
        "m",
        "many.",
        "many.3",
        "r",
        "none.",
    ] {
        let want = expected(&all, prefix);
        let got = |query: &str| ids(&s.history(&format!("/ch/t/history?type={prefix}{query}")));
        assert_eq!(got("&n=1000"), want, "{prefix}");
        let newest = &want[want.len().saturating_sub(7)..];
        assert_eq!(got("&n=7"), newest, "{prefix} n=7");
        let after: Vec<String> = want
            .iter()
            .filter(|id| id.as_str() > since)
            .cloned()
            .collect();
        assert_eq!(
            got(&format!("&since={since}&n=5")),
            after[..after.len().min(5)],
            "{prefix}"
        );
        let below: Vec<String> = want
            .iter()
            .filter(|id| id.as_str() < before)
            .cloned()
            .collect();
        let last = &below[below.len().saturating_sub(5)..];
        assert_eq!(
            got(&format!("&before={before}&n=5")),
            last,
            "{prefix} before"
        );
    }
}

/// Messages large enough that a page is read in several batches, each a range of the index.
#[test]
fn a_typed_page_of_large_messages_is_sent_whole() {
    let s = Server::start();
    let big = "x".repeat(200_000);
    for i in 0..12 {
        let kind = if i % 3 == 0 { "big.one" } else { "small.one" };
        s.publish("t", kind, json!({"i": i, "text": big}));
    }
    let page = s.history("/ch/t/history?type=big.&n=1000");
    let numbers: Vec<u64> = page
        .iter()
        .map(|m| m["body"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 3, 6, 9]);
    assert!(page.iter().all(|m| m["body"]["text"] == big.as_str()));
}
