//! The /ui parts of issue 17 (replies, thread view, retention divider) in a real browser:
//! chromium driven by playwright-core (tests/browser/mesh.test.mjs) against a real server whose
//! retention really deleted messages. Skips like ui_browser.rs when chromium or node is missing
//! (and fails under CI).
mod common;
mod mesh_support;

use common::Server;
use mesh_support::server_with_pruned;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn reply(s: &Server, ch: &str, to: &str) -> String {
    let body = json!({"from": "b", "type": "msg.text", "body": {"text": "re"}, "reply_to": to});
    let r = s.post_json(&format!("/ch/{ch}"), body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn replies_threads_and_the_retention_divider_in_a_real_browser() {
    let node = Command::new("node").arg("--version").output();
    let tools = Path::new(CHROMIUM).exists() && node.is_ok_and(|o| o.status.success());
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules");
    if !tools || !modules.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium, node and tests/browser/node_modules (see ui_browser.rs)"
        );
        eprintln!("ui_mesh_browser skipped: chromium, node or playwright-core is missing");
        return;
    }
    let (s, _) = server_with_pruned("gone", 2);
    let root = s.publish(
        "general",
        "msg.text",
        json!({"text": "why is the build red?"}),
    );
    let first = reply(&s, "general", &root);
    reply(&s, "general", &root);
    reply(&s, "elsewhere", &first);
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("mesh.test.mjs"))
        .current_dir(&browser_dir)
        .env("WORKSHOP_URL", s.url())
        .env("ROOT", &root)
        .env("GONE", "gone")
        .env("CHROMIUM", CHROMIUM)
        .env("UI_SCREENSHOTS", shots)
        .output()
        .expect("cannot run node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser test failed (output above)"
    );
}
