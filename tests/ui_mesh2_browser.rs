//! Issue 17's UI parts (search history, the locks panel) in a real browser: chromium driven by
//! playwright-core (tests/browser/mesh2.test.mjs) against this build's server binary. The JS test
//! starts the server itself, in a temp dir given here. Skipped without chromium or node, except
//! under CI (see tests/browser_support).
mod browser_support;

use std::io::Write;
use std::path::{Path, PathBuf};

/// `<target dir>/ui-screenshots`, wherever CARGO_TARGET_DIR puts the target dir.
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("ui-screenshots")
}

#[test]
fn search_history_and_locks_panel_in_a_real_browser() {
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let shots = screenshot_dir();
    let env = [
        ("WORKSHOP_TEST_DIR", scratch.path().as_os_str()),
        ("UI_SCREENSHOTS", shots.as_os_str()),
    ];
    let Some(run) = browser_support::run_script("ui_mesh2_browser", "mesh2.test.mjs", &env) else {
        return;
    };
    // Straight to the stderr handle, which the test harness does not capture, so CI logs always
    // show where the screenshots are.
    let _ = writeln!(
        std::io::stderr(),
        "ui_mesh2_browser: node exited with {} after {:.1} s; screenshots in {}",
        run.status,
        run.took.as_secs_f64(),
        shots.display()
    );
    assert!(
        run.status.success(),
        "the browser test failed (output above)"
    );
}
