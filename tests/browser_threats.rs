//! The browser threat model (README "Security model") in a real browser: a page on another
//! loopback origin tries to read and write the hub (fetch, form, EventSource) and a DNS-rebinding
//! page is simulated with chromium's host-resolver rules; tests/browser/threats.test.mjs drives
//! Debian's chromium with playwright-core against this build's server binary, which it starts
//! itself. Skipped without chromium or node, except under CI (see tests/browser_support).
mod browser_support;

#[test]
fn hostile_pages_cannot_use_the_browser_against_the_hub() {
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let env = [("WORKSHOP_TEST_DIR", scratch.path().as_os_str())];
    let Some(run) = browser_support::run_script("browser_threats", "threats.test.mjs", &env) else {
        return;
    };
    assert!(
        run.status.success(),
        "the browser threat test failed after {:.1} s (output above)",
        run.took.as_secs_f64()
    );
}
