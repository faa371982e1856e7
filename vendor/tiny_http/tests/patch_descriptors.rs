//! workshop: the tests of the patches for running out of file descriptors (PATCHES.md 3,
//! 5 and 14). The descriptor limit is the whole process's, so this file (its own test
//! binary) holds one test, which runs its steps in order.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::fs::File;
use std::io::Write;
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counts the accept errors tiny_http logs (`Error accepting new client`).
struct AcceptErrors {
    count: Mutex<usize>,
    changed: Condvar,
}

static ACCEPT_ERRORS: AcceptErrors = AcceptErrors {
    count: Mutex::new(0),
    changed: Condvar::new(),
};

impl log::Log for AcceptErrors {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() == log::Level::Error
    }

    fn log(&self, record: &log::Record<'_>) {
        if format!("{}", record.args()).starts_with("Error accepting new client") {
            *self.count.lock().unwrap() += 1;
            self.changed.notify_all();
        }
    }

    fn flush(&self) {}
}

impl AcceptErrors {
    /// Waits until at least `n` accept errors were logged, or `timeout` passes.
    fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let count = self.count.lock().unwrap();
        let waited = self.changed.wait_timeout_while(count, timeout, |c| *c < n);
        *waited.unwrap().0
    }
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Lowers this process's soft limit on open files to `soft` (`prlimit`, util-linux).
fn limit_descriptors(soft: usize) {
    let pid = std::process::id().to_string();
    let nofile = format!("--nofile={soft}:");
    let status = Command::new("prlimit")
        .args(["--pid", &pid, &nofile])
        .status();
    assert!(status.expect("prlimit (util-linux)").success());
}

/// Opens files until no descriptor is left; returns them.
fn take_every_descriptor() -> Vec<File> {
    let mut taken = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => taken.push(file),
            Err(e) if e.raw_os_error() == Some(24) => return taken,
            Err(e) => panic!("open: {}", e),
        }
    }
}

/// Patch 14: each connection holds one descriptor (upstream two: its read half was a
/// `try_clone`), so a descriptor limit is reached at twice as many connections.
fn each_connection_holds_one_descriptor(port: u16) {
    let before = open_descriptors();
    let held: Vec<_> = (0..20)
        .map(|_| {
            let mut stream = connect(port);
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let answer = read_until(&mut stream, 10 * SECOND, |b| b.ends_with(b"read 0"));
            assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
            stream
        })
        .collect();
    // 20 client ends and 20 server ends (upstream: 60).
    let grown = open_descriptors() - before;
    assert!(grown < 50, "20 connections took {} descriptors", grown);
    drop(held);
}

/// Patch 3: an accept error (EMFILE) ended upstream's accept loop for good; it now backs
/// off and retries. Patch 5: upstream then needed a second descriptor for the accepted
/// socket (`try_clone`, unwrapped), so the accept that took the last free one panicked the
/// accept thread; that socket is now enough (patch 14).
fn out_of_descriptors_the_server_waits_and_serves(port: u16) {
    limit_descriptors(open_descriptors() + 64);
    let mut taken = take_every_descriptor();
    taken.pop();
    // The last free descriptor: the server's accept fails with EMFILE.
    let mut client = connect(port);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    client.write_all(request).unwrap();
    let errors = ACCEPT_ERRORS.wait_for(1, 30 * SECOND);
    assert!(
        errors >= 1,
        "no accept error logged at the descriptor limit"
    );
    // One free descriptor: the accept loop takes it on a retry, and that is enough.
    taken.pop();
    let started = Instant::now();
    let answer = read_until_closed(&mut client, 30 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    assert!(
        started.elapsed() < 10 * SECOND,
        "served after {:?}",
        started.elapsed()
    );
    // With descriptors to spare again, the server goes on accepting.
    drop(taken);
    let answer = exchange(port, request, 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
}

#[test]
fn patches_03_05_14_descriptors() {
    log::set_logger(&ACCEPT_ERRORS).unwrap();
    log::set_max_level(log::LevelFilter::Error);
    let port = serve(read_body);
    each_connection_holds_one_descriptor(port);
    out_of_descriptors_the_server_waits_and_serves(port);
}
