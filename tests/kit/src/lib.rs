//! What workshop's integration tests and its load benchmark share (a dev-only crate): the real
//! `workshop` binary as a child process on port 0 (`server`); raw HTTP clients, one request
//! per connection (`http`) or keep-alive (`conn`); SSE readers, one stream read in order
//! (`sse`) or thousands polled with epoll (`fleet`); what `/proc` says about a process and the
//! signals sent to it (`os`); a seeded generator (`rng`); latency percentiles (`lat`); and
//! deadline polling. Nothing is mocked.
#![forbid(unsafe_code)] // the few system calls std lacks go through rustix's safe wrappers

pub mod calls;
pub mod conn;
pub mod fleet;
pub mod http;
pub mod lat;
pub mod os;
pub mod rng;
pub mod server;
pub mod sse;

pub use {conn::*, http::*, lat::*, os::*, rng::*, server::*, sse::*};

use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `wait_for` checks. Leak checks poll less often (see `wait_every`).
const POLL: Duration = Duration::from_millis(50);

/// What a `wait_for` check returns: `Some`/`Ok` once the wait is over; `None`, or `Err` with
/// the last observation (shown if the wait times out), to go on waiting.
pub trait Check<T> {
    fn into_result(self) -> Result<T, String>;
}

impl<T> Check<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Check<T> for Result<T, String> {
    fn into_result(self) -> Result<T, String> {
        self
    }
}

/// Polls `check` until it is done, or panics naming `what` after `timeout`.
pub fn wait_for<T, C: Check<T>>(timeout: Duration, what: &str, check: impl FnMut() -> C) -> T {
    wait_every(timeout, POLL, what, check)
}

/// `wait_for`, polling every `interval`. Leak checks poll slowly: each poll is a connection,
/// and tiny_http keeps a pooled thread alive for every connection in the last five seconds.
pub fn wait_every<T, C: Check<T>>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut check: impl FnMut() -> C,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().into_result() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                let last = if last.is_empty() {
                    last
                } else {
                    format!("; last: {last}")
                };
                panic!("timed out after {timeout:?} waiting for {what}{last}")
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// Now as the server's clock gives it: seconds since the Unix epoch, with a fraction (what
/// `ts`, `expires_at` and the like are compared against).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The name workshop stores `bytes` under: `sha256:<hex>`.
pub fn sha256_name(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut name = String::from("sha256:");
    for b in digest.iter() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// The names in `dir`, sorted (none if it cannot be read).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
