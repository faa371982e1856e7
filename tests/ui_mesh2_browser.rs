//! Issue 17's UI parts (search history, the locks panel) in a real browser: chromium driven by
//! playwright-core (tests/browser/mesh2.test.mjs) against this build's server binary. The JS test
//! starts the server itself, in a temp dir given here. Skipped without chromium or node, except
//! under CI (see tests/browser_support).
mod browser_support;

#[test]
fn search_history_and_locks_panel_in_a_real_browser() {
    browser_support::run_ui_script("ui_mesh2_browser", "mesh2.test.mjs");
}
