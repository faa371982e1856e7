//! The browser UI (`GET /ui`) tested in a real browser: Debian's chromium driven by playwright-core
//! (tests/browser/ui.test.mjs) against this build's server binary. The JS test starts the server
//! itself, in a temp dir given here, so it can kill it and start it again on the same port and files.
//! Skipped without chromium or node, except under CI (see tests/browser_support).
mod browser_support;

#[test]
fn ui_in_a_real_browser() {
    browser_support::run_ui_script("ui_browser", "ui.test.mjs");
}
