//! smoke.sh (README "Checking a server") run as an operator runs it, against the real binary
//! on port 0: it checks the server its URL argument names, never another one. A VPS operator
//! who passes the URL must not get a success reported for the default server instead.
//! Needs `sh` and curl; skipped without curl, except under CI.
mod common;

use common::Server;
use std::path::Path;
use std::process::{Command, Output};

/// `sh smoke.sh args...` from the repository, with `WORKSHOP_URL` set to `env_url` if given
/// and no other environment but `PATH` (a proxy variable must not reroute curl).
fn smoke(args: &[&str], env_url: Option<&str>) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("smoke.sh"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(url) = env_url {
        cmd.env("WORKSHOP_URL", url);
    }
    cmd.output().expect("run sh smoke.sh")
}

/// Whether curl runs here; without it smoke.sh cannot, and only CI insists.
fn has_curl() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "curl is missing under CI"
    );
    found
}

/// A URL where nothing listens: port 1 (tcpmux, which nothing serves), outside the range
/// port 0 hands out, so a server another test starts meanwhile cannot take it. (A port the
/// kernel gave out and took back could be handed to one.)
fn dead_url() -> String {
    let refused = std::net::TcpStream::connect("127.0.0.1:1").is_err();
    assert!(refused, "something listens on port 1 here");
    "http://127.0.0.1:1".to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How many messages smoke.sh left on its channel: what shows which server it checked.
fn smoke_messages(s: &Server) -> usize {
    let history = s.get("/ch/smoke/history?n=1000");
    assert_eq!(history.status, 200, "{}", history.text());
    history.text().lines().count()
}

#[test]
fn smoke_checks_the_server_its_url_argument_names() {
    if !has_curl() {
        return;
    }
    let s = Server::start();
    let out = smoke(&[&s.url()], Some(&dead_url()));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let summary = format!("checks passed against {}", s.url());
    assert!(stdout.contains(&summary), "{stdout}");
    assert!(
        smoke_messages(&s) > 0,
        "smoke.sh left nothing on the server it named"
    );
}

#[test]
fn a_url_argument_where_nothing_answers_fails_and_never_falls_back() {
    if !has_curl() {
        return;
    }
    let s = Server::start();
    let dead = dead_url();
    // With a live server in WORKSHOP_URL, and with none at all (the default address).
    for env_url in [Some(s.url()), None] {
        let out = smoke(&[&dead], env_url.as_deref());
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{env_url:?}: {stdout}");
        let unreachable = format!("FAIL status: no answer from {dead}");
        assert!(stdout.contains(&unreachable), "{env_url:?}: {stdout}");
        assert!(!stdout.contains("ok "), "{env_url:?}: {stdout}");
    }
    assert_eq!(
        smoke_messages(&s),
        0,
        "smoke.sh checked WORKSHOP_URL instead"
    );
}

#[test]
fn smoke_refuses_what_is_not_one_url_and_explains_its_usage() {
    if !has_curl() {
        return;
    }
    let dead = dead_url();
    for args in [
        &[dead.as_str(), dead.as_str()][..],
        &["-x"],
        &["my-vps:4242"],
        &[""],
    ] {
        let out = smoke(args, Some(&dead));
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).starts_with("usage: "), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: checked nothing");
    }
    for help in ["-h", "--help"] {
        let out = smoke(&[help], Some(&dead));
        assert!(out.status.success(), "{help}");
        assert!(
            text(&out.stdout).starts_with("usage: sh smoke.sh [URL]"),
            "{help}"
        );
    }
}
