//! Running a real-browser test: a node script in tests/browser that drives Debian's chromium
//! with playwright-core against this build's server binary. Shared by tests/ui_browser.rs,
//! tests/ui_mesh_browser.rs, tests/ui_mesh2_browser.rs and tests/browser_threats.rs.
//!
//! Needs `node` and `/usr/bin/chromium` (`apt-get install chromium nodejs npm`); installs
//! playwright-core with `npm ci` when tests/browser/node_modules is missing. Without chromium or
//! node the test prints why and passes, except under CI (env `CI` set), where it fails.
#![allow(dead_code)] // not every test uses every helper
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What a script run ended with.
pub struct Run {
    pub status: ExitStatus,
    pub took: Duration,
}

/// Runs `node tests/browser/<script>` with `WORKSHOP_BIN`, `CHROMIUM` and `env` set, printing
/// its output whole (cargo shows it on failure, or always with --nocapture). `None` when
/// chromium or node is missing (the test is skipped, outside CI). `test` names the caller in
/// messages.
pub fn run_script(test: &str, script: &str, env: &[(&str, &OsStr)]) -> Option<Run> {
    if !Path::new(CHROMIUM).exists() {
        missing_tool(test, &format!("{CHROMIUM} is not installed"));
        return None;
    }
    if !node_works() {
        missing_tool(test, "node is not installed");
        return None;
    }
    let dir = browser_dir();
    ensure_playwright(test, &dir);
    let started = Instant::now();
    let out = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("WORKSHOP_BIN", env!("CARGO_BIN_EXE_workshop"))
        .env("CHROMIUM", CHROMIUM)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{test}: cannot run node: {e}"));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    Some(Run {
        status: out.status,
        took: started.elapsed(),
    })
}

/// Runs a /ui script that starts the server itself in a temp dir given here (`WORKSHOP_TEST_DIR`)
/// and saves screenshots in [`screenshot_dir`]; fails the test if the script failed.
pub fn run_ui_script(test: &str, script: &str) {
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let shots = screenshot_dir();
    let env = [
        ("WORKSHOP_TEST_DIR", scratch.path().as_os_str()),
        ("UI_SCREENSHOTS", shots.as_os_str()),
    ];
    let Some(run) = run_script(test, script, &env) else {
        return;
    };
    // Straight to the stderr handle, which the test harness does not capture, so CI logs always
    // show where the screenshots are.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: node exited with {} after {:.1} s; screenshots in {}",
        run.status,
        run.took.as_secs_f64(),
        shots.display()
    );
    assert!(
        run.status.success(),
        "the browser test failed (output above)"
    );
}

/// `<target dir>/ui-screenshots`, wherever CARGO_TARGET_DIR puts the target dir.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("ui-screenshots")
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn missing_tool(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} — CI must install it (apt-get install -y chromium nodejs npm)");
    }
    eprintln!(
        "{test} skipped: {why}. Install chromium (apt-get install chromium) and node to run it."
    );
}

fn node_works() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_playwright(test: &str, dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    eprintln!(
        "{test}: installing playwright-core (npm ci) in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        // playwright-core ships no browser; this only makes sure nothing tries to fetch one
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .unwrap_or_else(|e| panic!("{test}: cannot run npm (apt-get install npm): {e}"));
    assert!(
        status.success(),
        "{test}: `npm ci` in {} failed",
        dir.display()
    );
}
