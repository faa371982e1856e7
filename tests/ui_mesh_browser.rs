//! The /ui parts of issue 17 (replies, thread view, retention divider) in a real browser:
//! chromium driven by playwright-core (tests/browser/mesh.test.mjs) against a real server whose
//! retention really deleted messages. Skipped without chromium or node, except under CI (see
//! tests/browser_support).
mod browser_support;
mod common;
mod mesh_support;

use common::Server;
use mesh_support::server_with_pruned;
use serde_json::json;

fn reply(s: &Server, ch: &str, to: &str) -> String {
    let body = json!({"from": "b", "type": "msg.text", "body": {"text": "re"}, "reply_to": to});
    let r = s.post_json(&format!("/ch/{ch}"), body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn replies_threads_and_the_retention_divider_in_a_real_browser() {
    let (s, _) = server_with_pruned("gone", 2);
    let root = s.publish(
        "general",
        "msg.text",
        json!({"text": "why is the build red?"}),
    );
    let first = reply(&s, "general", &root);
    reply(&s, "general", &root);
    reply(&s, "elsewhere", &first);
    let shots = browser_support::screenshot_dir();
    let url = s.url();
    let env = [
        ("WORKSHOP_URL", url.as_ref()),
        ("ROOT", root.as_ref()),
        ("GONE", "gone".as_ref()),
        ("UI_SCREENSHOTS", shots.as_os_str()),
    ];
    let Some(run) = browser_support::run_script("ui_mesh_browser", "mesh.test.mjs", &env) else {
        return;
    };
    assert!(
        run.status.success(),
        "the browser test failed after {:.1} s (output above)",
        run.took.as_secs_f64()
    );
}
